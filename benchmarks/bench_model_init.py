"""How good is a grown vocabulary before any training, and what does growing it cost?

On the real SmolLM2-135M expanded with a Czech byte-level BPE (trained on data/pretrain/cs and appended
by colossal_lang.tokenizer, or by plain `tokenizers` calls where that stage is absent), this measures bits per byte on held-out
Czech and English for the base model with its own tokenizer and for the expanded model initialised with
mean_of_pieces, mean and random; and the wall time and peak RSS of `init_model` against loading the model once.

    .venv/bin/python benchmarks/bench_model_init.py [--czech_vocab_size 16000] [--docs 5] [--chars 1200]

Prints a markdown table; --write_results also writes it to benchmarks/results_model_init.md.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SMOLLM2 = REPO / ".cache" / "models" / "SmolLM2-135M-Instruct"
HELDOUT = {"cs": ["cs_fortunes.jsonl", "cs_libreoffice_help.jsonl"], "en": ["en_libreoffice_help.jsonl", "en_state_of_the_union.jsonl"]}
INITS = ("mean_of_pieces", "mean", "random")


def read_targets(path: Path, limit: int) -> list:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line)["target"] for line, _ in zip(handle, range(limit))]


def bits_per_byte(model, tokenizer, texts: list) -> tuple:
    """(bits per byte, tokens) with the evaluation stage's scorer: 512-token windows, stride 256."""
    from colossal_lang.evaluation.perplexity import bits_per_byte as project_bits_per_byte

    result = project_bits_per_byte(model, tokenizer, texts, max_length=512, stride=256, batch_size=4, progress=False)
    return result.bits_per_byte, result.num_tokens


def build_czech_tokenizer(workdir: Path, czech_vocab_size: int) -> tuple:
    """The tokenizer stage's pipeline: train a Czech byte-level BPE, expand SmolLM2 protecting English.
    Returns (folder, how)."""
    from colossal_lang.tokenizer import init_tokenizer, train_tokenizer

    output = workdir / "tokenizer-cs"
    trained = workdir / "trained-cs"
    train_tokenizer.main(["--data_input_dirs", "data/pretrain/cs", "--model_type", "byte_level_bpe",
                          "--base_tokenizer_dir", str(SMOLLM2), "--vocab_size", str(czech_vocab_size), "--output_dir", str(trained)])
    init_tokenizer.main(["--source_tokenizer_dir", str(SMOLLM2), "--target_tokenizer_dir", str(output),
                         "--expand_from_tokenizer", str(trained), "--reference_text", "data/pretrain/en"])
    return output, (f"colossal_lang.tokenizer: a {czech_vocab_size}-token Czech byte-level BPE trained on data/pretrain/cs, "
                    "appended to SmolLM2's tokenizer with pieces that would change data/pretrain/en's tokenization left out")


def peak_rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def child_measure(kind: str, target_tokenizer: str, output: str, init: str) -> None:
    """Run in a fresh process: time one load or one init_model and report its own peak RSS (JSON on stdout).

    Peak RSS is VmHWM from /proc (getrusage's ru_maxrss can carry the parent's peak across fork + exec).
    """
    import transformers  # noqa: F401  imported before the baseline so both rows pay it equally

    from colossal_lang.model.init_model import init_model

    baseline = peak_rss_kib()
    started = time.perf_counter()
    if kind == "load":
        model = transformers.AutoModelForCausalLM.from_pretrained(SMOLLM2, torch_dtype="auto", low_cpu_mem_usage=True)
        sum(float(p.sum()) for p in model.parameters())  # safetensors maps lazily: touch every weight once
    else:
        init_model(SMOLLM2, target_tokenizer, output, init=init, progress=False)
    seconds = time.perf_counter() - started
    peak = peak_rss_kib()
    print(json.dumps({"seconds": seconds, "peak_mib": peak / 1024, "above_baseline_mib": (peak - baseline) / 1024}))


def measure(kind: str, target_tokenizer="", output="", init="") -> dict:
    command = [sys.executable, __file__, "--child", kind, target_tokenizer, output, init]
    result = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--czech_vocab_size", type=int, default=16000)
    parser.add_argument("--docs", type=int, default=5, help="held-out documents per file")
    parser.add_argument("--chars", type=int, default=1200, help="characters kept per document")
    parser.add_argument("--write_results", action="store_true")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_measure(*args.child)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from colossal_lang.model.import_smollm2 import import_smollm2

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    import_smollm2(SMOLLM2)
    workdir = Path(tempfile.mkdtemp(prefix="bench-model-init-"))
    os.chdir(REPO)
    tokenizer_dir, how = build_czech_tokenizer(workdir, args.czech_vocab_size)
    added = len(AutoTokenizer.from_pretrained(tokenizer_dir)) - len(AutoTokenizer.from_pretrained(SMOLLM2))
    heldout = {
        language: [text[: args.chars] for name in files for text in read_targets(REPO / "data/heldout" / name, args.docs)]
        for language, files in HELDOUT.items()
    }
    print(f"expanded tokenizer: +{added} tokens; held-out bytes: " + ", ".join(f"{k} {sum(len(t.encode()) for t in v)}" for k, v in heldout.items()), flush=True)

    rows = collections.OrderedDict()
    load = measure("load")
    base_tokenizer = AutoTokenizer.from_pretrained(SMOLLM2)
    model = AutoModelForCausalLM.from_pretrained(SMOLLM2).eval()
    rows["base (own tokenizer)"] = {lang: bits_per_byte(model, base_tokenizer, texts) for lang, texts in heldout.items()}
    print("base", rows["base (own tokenizer)"], flush=True)
    del model
    costs = {}
    expanded_tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    for init in INITS:
        output = workdir / f"model-{init}"
        costs[init] = measure("init", str(tokenizer_dir), str(output), init)
        model = AutoModelForCausalLM.from_pretrained(output).eval()
        rows[f"expanded, {init}"] = {lang: bits_per_byte(model, expanded_tokenizer, texts) for lang, texts in heldout.items()}
        print(init, rows[f"expanded, {init}"], costs[init], flush=True)
        del model

    base = rows["base (own tokenizer)"]
    model_mib = sum(f.stat().st_size for f in SMOLLM2.glob("*.safetensors")) / 2**20
    lines = [
        f"## Model initialisation: SmolLM2-135M + {added} Czech tokens, before any training",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.machine()}, {os.cpu_count()} CPU cores "
        f"(shared with other jobs: load average {os.getloadavg()[0]:.1f}, so wall times are upper bounds), torch {torch.__version__}; held-out: first {args.docs} documents of each file in data/heldout, "
        f"first {args.chars} characters each. Expanded tokenizer: {how}. Bits per byte: "
        "colossal_lang.evaluation.perplexity (512-token windows, stride 256).",
        "",
        "| model | cs bits/byte | cs tokens | cs vs base | en bits/byte | en tokens | en vs base |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, result in rows.items():
        (cs_bpb, cs_tokens), (en_bpb, en_tokens) = result["cs"], result["en"]
        lines.append(
            f"| {name} | {cs_bpb:.3f} | {cs_tokens} | {cs_bpb / base['cs'][0]:.3f} | {en_bpb:.3f} | {en_tokens} | {en_bpb / base['en'][0]:.3f} |"
        )
    lines += [
        "",
        f"| step | wall s | vs load | peak RSS MiB | above import MiB | vs model size ({model_mib:.0f} MiB) |",
        "|---|---|---|---|---|---|",
        f"| load model once (and touch every weight) | {load['seconds']:.2f} | 1.00 | {load['peak_mib']:.0f} | {load['above_baseline_mib']:.0f} | {load['above_baseline_mib'] / model_mib:.2f} |",
    ]
    for init, cost in costs.items():
        lines.append(
            f"| init_model --init {init} (load, grow, save) | {cost['seconds']:.2f} | {cost['seconds'] / load['seconds']:.2f} | "
            f"{cost['peak_mib']:.0f} | {cost['above_baseline_mib']:.0f} | {cost['above_baseline_mib'] / model_mib:.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    shutil.rmtree(workdir, ignore_errors=True)
    if args.write_results:
        (REPO / "benchmarks" / "results_model_init.md").write_text("# Benchmark results: model initialisation\n\n" + table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
