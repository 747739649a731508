"""GPU check: every plugin for a few steps with a save and a resume, on one CUDA machine.

For each model (SmolLM2-135M, and a ~1.1B LLaMA-shaped model built from a config) and each plugin
(ddp, gemini, gemini_auto, zero2, zero2_cpu, 3d), train.py runs `--max_steps 2*S` stopping at S
(`--stop_at_step`, which saves), then resumes with `--load_checkpoint latest` to 2*S. Reported per run:
tokens/s and MFU (mean over the steps after the first of each launch; formula and peak table in
docs/training.md), peak GPU memory, and whether the resumed half continued (steps S+1..2S logged after
"resumed from"). Writes a markdown table to stdout (paste it into benchmarks/RESULTS.md).

    .venv/bin/python benchmarks/gpu_check.py [--steps 4] [--models smollm2 1b] [--plugins ddp gemini ...]
                                             [--seq_length 2048] [--batch_size 8] [--accumulation_steps 2]
                                             [--mixed_precision bf16|fp16]

Accumulation (default 2 micro-batches per step) exercises the no-sync and Gemini accumulation paths; fp16
the plugins' loss scaling. 3d runs --tp 2 on 2+ GPUs, and --pp 2 (micro-batches of 2, no accumulation:
pipeline parallelism takes --batch_size instead) on 4+ GPUs, always with ZeRO-1.

Without CUDA it refuses (exit 2) before doing anything.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
SMOLLM2 = REPO_ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct"
PLUGINS = ("ddp", "gemini", "gemini_auto", "zero2", "zero2_cpu", "3d")


def one_b_model(out: Path, tokenizer_dir: Path) -> Path:
    """A TinyLlama-shaped model (22 layers, d 2048, GQA 32/4 heads, SwiGLU 5632) over SmolLM2's vocabulary."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if (out / "config.json").is_file():
        return out
    config = LlamaConfig(vocab_size=49152, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                         num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=4096,
                         tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=2,
                         torch_dtype="bfloat16")
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    del model
    torch.cuda.empty_cache()
    return out


def dataset(out: Path, tokenizer_dir: Path, seq_length: int) -> Path:
    from transformers import AutoTokenizer

    from colossal_lang.testing.prepared import read_texts, write_prepared_dataset

    if (out / "manifest.json").is_file():
        return out
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    texts = {"cs": read_texts("cs/libreoffice_help.jsonl", 100000), "en": read_texts("en/libreoffice_help.jsonl", 100000)}
    return write_prepared_dataset(out, tokenizer, texts, max_length=seq_length)


def plugin_flags(plugin: str, gpus: int) -> list[str]:
    if plugin == "3d":
        tp = 2 if gpus >= 2 else 1
        flags = ["--tp", str(tp), "--zero_stage", "1"]
        if gpus >= 4:
            flags += ["--pp", "2", "--microbatch_size", "2"]
        return flags
    return []


def accumulation_flags(plugin: str, gpus: int, accumulation_steps: int) -> list[str]:
    if "--pp" in plugin_flags(plugin, gpus):  # refused by train.py: pipelines split --batch_size instead
        return []
    return ["--accumulation_steps", str(accumulation_steps)]


def launch(args_list: list[str], gpus: int, log: Path, timeout: int) -> tuple[int, str]:
    command = [str(Path(sys.executable).parent / "torchrun"), f"--nproc_per_node={gpus}", "--master_port=29777",
               str(REPO_ROOT / "train.py"), *args_list, "--loss_log", str(log), "--progress", "false"]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stdout + result.stderr[-4000:]


def train_args(model_dir: Path, data_dir: Path, plugin: str, steps: int, batch_size: int, gpus: int, save_dir: Path,
               flash: bool, accumulation_steps: int, precision: str) -> list[str]:
    """train.py's flags for one plugin's two launches (the second adds --load_checkpoint latest)."""
    return ["--pretrained", str(model_dir), "--dataset", str(data_dir), "--plugin", plugin, "--mixed_precision", precision,
            "--batch_size", str(batch_size), "--max_steps", str(2 * steps), "--save_interval", "0",
            "--save_dir", str(save_dir), "--lr", "1e-4", "--warmup_steps", "1", "--use_grad_checkpoint",
            *plugin_flags(plugin, gpus), *accumulation_flags(plugin, gpus, accumulation_steps),
            *(["--use_flash_attn"] if flash else [])]


def check(model_dir: Path, data_dir: Path, plugin: str, steps: int, batch_size: int, gpus: int, work: Path,
          flash: bool, timeout: int, accumulation_steps: int = 2, precision: str = "bf16") -> dict:
    save_dir = work / f"{model_dir.name}-{plugin}"
    log = save_dir / "log.jsonl"
    common = train_args(model_dir, data_dir, plugin, steps, batch_size, gpus, save_dir, flash, accumulation_steps, precision)
    started = time.perf_counter()
    code, output = launch(common + ["--stop_at_step", str(steps)], gpus, log, timeout)
    if code == 0:
        code, output = launch(common + ["--load_checkpoint", "latest"], gpus, log, timeout)
    row = {"model": model_dir.name, "plugin": plugin + (" " + " ".join(plugin_flags(plugin, gpus)) if plugin == "3d" else ""),
           "ok": code == 0, "wall_s": time.perf_counter() - started}
    if not log.exists():
        row["error"] = output.strip().splitlines()[-1] if output.strip() else f"exit {code}"
        return row
    records = [json.loads(line) for line in log.read_text().splitlines() if '"event"' not in line]
    timed = [r for r in records if r["step"] not in (1, steps + 1)]  # first step of each launch warms up
    if timed:
        row["tokens_per_s"] = statistics.mean(r["tokens_per_s"] for r in timed)
        row["mfu"] = statistics.mean(r.get("mfu", 0.0) for r in timed)
        row["peak_gib"] = max(r.get("memory/peak_allocated_gib", 0.0) for r in records)
    row["resumed"] = [r["step"] for r in records] == list(range(1, 2 * steps + 1)) and "resumed from" in output
    if code != 0:
        row["error"] = output.strip().splitlines()[-1]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="steps per launch (two launches: save, then resume)")
    parser.add_argument("--models", nargs="+", default=["smollm2", "1b"], choices=["smollm2", "1b"])
    parser.add_argument("--plugins", nargs="+", default=list(PLUGINS), choices=PLUGINS)
    parser.add_argument("--seq_length", type=int, default=2048)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--accumulation_steps", type=int, default=2)
    parser.add_argument("--mixed_precision", default="bf16", choices=["bf16", "fp16"])
    parser.add_argument("--work_dir", default=None, help="keep models, data and checkpoints here (default: a temp dir)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per launch")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a CUDA machine (CPU runs only --plugin ddp: see "
              "benchmarks/bench_training.py)", file=sys.stderr)
        sys.exit(2)
    import importlib.util

    flash = importlib.util.find_spec("flash_attn") is not None
    gpus = torch.cuda.device_count()
    device_name = torch.cuda.get_device_name()
    if not SMOLLM2.is_dir():
        from colossal_lang.model.import_smollm2 import import_smollm2

        import_smollm2(SMOLLM2)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = dataset(work / f"data-{args.seq_length}", SMOLLM2, args.seq_length)
        models = {"smollm2": SMOLLM2}
        if "1b" in args.models:
            models["1b"] = one_b_model(work / "llama-1.1b", SMOLLM2)
        rows = [check(models[m], data, plugin, args.steps, args.batch_size, gpus, work, flash, args.timeout,
                      args.accumulation_steps, args.mixed_precision)
                for m in args.models for plugin in args.plugins]

    print(f"# GPU check: {gpus} x {device_name}, {args.mixed_precision}, batch {args.batch_size} x {args.seq_length} "
          f"per GPU x {args.accumulation_steps} micro-batches (3d with --pp: none), "
          f"grad checkpointing, flash-attn {'on' if flash else 'off (SDPA)'}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| model | plugin | ok | save+resume | tokens/s | MFU | peak GiB | wall s | error |")
    print("|---|---|---|---|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['model']} | {r['plugin']} | {'yes' if r['ok'] else 'NO'} | {'yes' if r.get('resumed') else 'no'} | "
              f"{r.get('tokens_per_s', 0):.0f} | {100 * r.get('mfu', 0):.1f}% | {r.get('peak_gib', 0):.1f} | "
              f"{r['wall_s']:.0f} | {r.get('error', '')[:80]} |")
    sys.exit(0 if all(r["ok"] and r.get("resumed") for r in rows) else 1)


if __name__ == "__main__":
    main()
