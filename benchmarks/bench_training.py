"""Tokens/s of train.py (Booster, ddp plugin, 1 CPU process) against a bare PyTorch loop, same model/data/steps.

Both sides: the same model folder, the same packed rows in the same order (ResumableSampler), the same batch,
fp32, torch AdamW, the same number of threads. The bare loop is what one would write by hand:
model(input_ids, labels=...) with plain causal attention, loss.backward(), clip, step. train.py adds
per-document attention, per-token normalisation, metrics, the spike guard and the progress bookkeeping.
Throughput is measured per step after a warm-up step; train.py's number comes from its own step log, so its
start-up (imports, launch, model load) and the final save are not counted on either side. On a shared CPU
machine wall-clock tokens/s swings with the neighbours' load, so tokens per CPU-second (process CPU time,
all threads) is reported too; it is the steadier of the two ratios.

    .venv/bin/python benchmarks/bench_training.py [--model DIR] [--steps 6] [--batch_size 2] [--max_length 256]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def bare_loop(model_dir, dataset_dir, steps: int, batch_size: int, seed: int, threads: int) -> list[tuple[float, float]]:
    """(tokens per wall second, tokens per CPU second) of each step of a hand-written loop over train.py's rows."""
    import torch
    from transformers import AutoModelForCausalLM

    from colossal_lang.data.loader import PackedCollator, ResumableSampler, load_prepared_dataset

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rows = load_prepared_dataset([str(dataset_dir)]).dataset
    sampler = ResumableSampler(len(rows), 1, 0, seed, global_batch_size=batch_size)
    order = list(sampler)
    collate = PackedCollator(pad_token_id=2, attention="causal")
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, attn_implementation="sdpa")
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    speeds = []
    for step in range(steps):
        batch = collate([rows[i] for i in order[step * batch_size:(step + 1) * batch_size]])
        started, started_cpu = time.perf_counter(), time.process_time()
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        tokens = batch["input_ids"].numel()
        speeds.append((tokens / (time.perf_counter() - started), tokens / (time.process_time() - started_cpu)))
    return speeds


def train_py(model_dir, dataset_dir, steps: int, batch_size: int, seed: int, threads: int, work: Path):
    """(tokens per wall second, tokens per CPU second) of each step of train.py as it logs them, and the wall
    time of the whole launch."""
    log = work / "train_log.jsonl"
    command = [str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node=1", "--master_port=29731",
               str(REPO_ROOT / "train.py"), "--pretrained", str(model_dir), "--dataset", str(dataset_dir),
               "--plugin", "ddp", "--mixed_precision", "fp32", "--batch_size", str(batch_size), "--max_steps", str(steps),
               "--save_interval", "0", "--save_dir", str(work / "ckpt"), "--lr", "1e-4", "--seed", str(seed),
               "--loss_log", str(log), "--progress", "false"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO_ROOT, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in log.read_text().splitlines() if '"event"' not in line]
    return [(r["tokens_per_s"], r["tokens"] / r["cpu_s"]) for r in records], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO_ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct"))
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--max_length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from colossal_lang.testing.prepared import read_texts, write_prepared_dataset

    if not Path(args.model).is_dir():  # the embedded SmolLM2 is imported on first use
        from colossal_lang.model.import_smollm2 import import_smollm2

        import_smollm2(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        texts = {"cs": read_texts("cs/fortunes.jsonl", 300), "en": read_texts("en/state_of_the_union.jsonl", 20)}
        dataset = write_prepared_dataset(work / "data", tokenizer, texts, max_length=args.max_length)
        # Interleave the measurements (bare, train.py, bare) so a shared machine's load hits both sides alike.
        bare_first = bare_loop(args.model, dataset, args.steps, args.batch_size, args.seed, args.threads)
        booster_speeds, wall = train_py(args.model, dataset, args.steps, args.batch_size, args.seed, args.threads, work)
        bare_second = bare_loop(args.model, dataset, args.steps, args.batch_size, args.seed, args.threads)

    def steady(speeds, which):  # the first step warms up allocators and kernels
        return statistics.mean(s[which] for s in speeds[1:])

    print(f"# training throughput, {Path(args.model).name}, batch {args.batch_size} x {args.max_length}, "
          f"{args.steps} steps ({args.steps - 1} timed), fp32, {args.threads} threads, {platform.processor() or platform.machine()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| loop | tokens/s (wall) | ratio | tokens per CPU-second | ratio |")
    print("|---|---:|---:|---:|---:|")
    bare = [statistics.mean([steady(bare_first, k), steady(bare_second, k)]) for k in (0, 1)]
    booster = [steady(booster_speeds, k) for k in (0, 1)]
    print(f"| bare PyTorch, mean of 2 runs (wall {steady(bare_first, 0):.0f} / {steady(bare_second, 0):.0f}) | "
          f"{bare[0]:.0f} | 1.00 | {bare[1]:.0f} | 1.00 |")
    print(f"| train.py, ddp plugin, 1 process | {booster[0]:.0f} | {booster[0] / bare[0]:.2f} | "
          f"{booster[1]:.0f} | {booster[1] / bare[1]:.2f} |")
    print(f"\ntrain.py launch wall time (imports, load, {args.steps} steps, final save): {wall:.1f} s")


if __name__ == "__main__":
    main()
