"""How good is a grown vocabulary before any training, and what does growing it cost?

On the real SmolLM2-135M expanded with a Czech byte-level BPE (trained here on data/pretrain/cs with
`tokenizers`; its new tokens and merges appended to SmolLM2's), this measures bits per byte on held-out
Czech and English for the base model with its own tokenizer and for the expanded model initialised with
mean_of_pieces, mean and random; and the wall time and peak RSS of `init_model` against loading the model once.

    .venv/bin/python benchmarks/bench_model_init.py [--czech_vocab_size 16000] [--docs 10] [--chars 1500]

Prints a markdown table; --write_results also writes it to benchmarks/results_model_init.md.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import math
import os
import platform
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


def expand_byte_level_tokenizer(base_dir: Path, texts: list, czech_vocab_size: int, output_dir: Path) -> int:
    """Append a Czech BPE's new tokens and merges to the byte-level tokenizer in `base_dir`; returns the number added."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer

    czech = Tokenizer(models.BPE())
    czech.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=czech_vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    czech.train_from_iterator(texts, trainer)
    base = AutoTokenizer.from_pretrained(base_dir)
    spec = json.loads(base.backend_tokenizer.to_str())
    vocab, merges = spec["model"]["vocab"], spec["model"]["merges"]
    known = {tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges}
    added = 0
    for merge in json.loads(czech.to_str())["model"]["merges"]:
        left, right = merge if isinstance(merge, list) else merge.split(" ")
        if (left, right) in known or left not in vocab or right not in vocab:
            continue
        if left + right not in vocab:
            vocab[left + right] = len(base) + added
            added += 1
        merges.append([left, right] if isinstance(merges[0], list) else f"{left} {right}")
    base.save_pretrained(output_dir)
    for stale in ("vocab.json", "merges.txt"):
        (output_dir / stale).unlink(missing_ok=True)
    (output_dir / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return added


def bits_per_byte(model, tokenizer, texts: list, max_length: int = 512) -> tuple:
    """Sum of next-token NLL (nats) / ln 2 / UTF-8 bytes; every token is predicted, after one <|endoftext|>.

    Documents longer than `max_length` tokens are scored in non-overlapping windows, each after the same
    start token, so both tokenizers are charged for every byte of the text. Returns (bpb, tokens).
    """
    start_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    total_nats, total_bytes, total_tokens = 0.0, 0, 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        total_bytes += len(text.encode("utf-8"))
        total_tokens += len(ids)
        for begin in range(0, len(ids), max_length - 1):
            window = torch.tensor([[start_id] + ids[begin : begin + max_length - 1]])
            with torch.no_grad():
                logits = model(window).logits[0, :-1].float()
            total_nats += torch.nn.functional.cross_entropy(logits, window[0, 1:], reduction="sum").item()
    return total_nats / math.log(2) / total_bytes, total_tokens


def child_measure(kind: str, target_tokenizer: str, output: str, init: str) -> None:
    """Run in a fresh process: time one load or one init_model and report its own peak RSS (JSON on stdout)."""
    import resource

    import transformers  # noqa: F401  imported before the baseline so both rows pay it equally

    from colossal_lang.model.init_model import init_model

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    if kind == "load":
        model = transformers.AutoModelForCausalLM.from_pretrained(SMOLLM2, torch_dtype="auto", low_cpu_mem_usage=True)
        sum(float(p.sum()) for p in model.parameters())  # safetensors maps lazily: touch every weight once
    else:
        init_model(SMOLLM2, target_tokenizer, output, init=init, progress=False)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_mib": peak / 1024, "above_baseline_mib": (peak - baseline) / 1024}))


def measure(kind: str, target_tokenizer="", output="", init="") -> dict:
    command = [sys.executable, __file__, "--child", kind, target_tokenizer, output, init]
    result = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--czech_vocab_size", type=int, default=16000)
    parser.add_argument("--docs", type=int, default=10, help="held-out documents per file")
    parser.add_argument("--chars", type=int, default=1500, help="characters kept per document")
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
    czech_train = [t for name in ("fortunes", "libreoffice_help", "gnome_help") for t in read_targets(REPO / "data/pretrain/cs" / f"{name}.jsonl", 10**6)]
    tokenizer_dir = workdir / "tokenizer-cs"
    added = expand_byte_level_tokenizer(SMOLLM2, czech_train, args.czech_vocab_size, tokenizer_dir)
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
        f"(shared), torch {torch.__version__}; held-out: first {args.docs} documents of each file in data/heldout, "
        f"first {args.chars} characters each; expanded tokenizer = SmolLM2 + a {args.czech_vocab_size}-token Czech "
        "byte-level BPE trained on data/pretrain/cs.",
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
    if args.write_results:
        (REPO / "benchmarks" / "results_model_init.md").write_text("# Benchmark results: model initialisation\n\n" + table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
