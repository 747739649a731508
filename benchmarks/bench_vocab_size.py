"""How many tokens to add? Sweep the size of the Czech expansion of SmolLM2 and measure, right after init:

- target (Czech) and English characters per token on held-out text (the compression each size buys);
- bits per byte on held-out Czech and English for mean_of_pieces, mean and random and, with
  --distill_max_tokens N > 0, for --init distill fitting the N most frequent new tokens (the rest keep
  mean_of_pieces);
- the cost of one training step (forward, backward, AdamW, batch 2 x 256 tokens, every parameter trained)
  relative to the base vocabulary, measured in the same run: the larger embedding and head.

Each size is a real tokenizer-stage expansion (train a Czech byte-level BPE of --czech_vocab_sizes tokens
on data/pretrain/cs, append it to SmolLM2's with English protected), so the added count is what that stage
gives for that size.

    .venv/bin/python benchmarks/bench_vocab_size.py [--czech_vocab_sizes 3500,6000,10500,20000] [--docs 3]
        [--chars 1000] [--distill_max_tokens 0] [--write_results]

For about 2k, 4k, 8k, 16k and 32k added tokens: --czech_vocab_sizes 3500,6000,10500,20000,40000.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model_init import HELDOUT, REPO, SMOLLM2, bits_per_byte, build_czech_tokenizer, read_targets  # noqa: E402


def step_seconds(model, vocab_rows: int, steps: int = 3, batch=(2, 256)) -> float:
    """Median wall time of a full training step (all parameters) on random ids of the grown vocabulary."""
    model = copy.deepcopy(model).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    generator = torch.Generator().manual_seed(0)
    times = []
    for step in range(steps + 1):  # the first step allocates AdamW's state: not timed
        ids = torch.randint(0, vocab_rows, batch, generator=generator)
        started = time.perf_counter()
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def chars_per_token(tokenizer, texts: list) -> float:
    return sum(len(text) for text in texts) / sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--czech_vocab_sizes", default="3500,6000,10500,20000")
    parser.add_argument("--docs", type=int, default=3, help="held-out documents per file")
    parser.add_argument("--chars", type=int, default=1000, help="characters kept per document")
    parser.add_argument("--distill_max_tokens", type=int, default=0, help="also --init distill on this many tokens (0: skip)")
    parser.add_argument("--write_results", action="store_true")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from colossal_lang.model.distill_rows import DistillSettings, distill_new_rows, iter_texts
    from colossal_lang.model.import_smollm2 import import_smollm2
    from colossal_lang.model.init_model import expand_model

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    import_smollm2(SMOLLM2)
    os.chdir(REPO)
    workdir = Path(tempfile.mkdtemp(prefix="bench-vocab-size-"))
    heldout = {
        language: [text[: args.chars] for name in files for text in read_targets(REPO / "data/heldout" / name, args.docs)]
        for language, files in HELDOUT.items()
    }
    base_tokenizer = AutoTokenizer.from_pretrained(SMOLLM2)
    base_model = AutoModelForCausalLM.from_pretrained(SMOLLM2).eval()
    score = lambda model, tokenizer: {lang: bits_per_byte(model, tokenizer, texts)[0] for lang, texts in heldout.items()}
    base = score(base_model, base_tokenizer)
    base_step = step_seconds(base_model, len(base_tokenizer))
    results = [("base (own tokenizer)", 0, {lang: chars_per_token(base_tokenizer, texts) for lang, texts in heldout.items()},
                {"base": base}, base_step)]
    print("base", results[-1], flush=True)
    for czech_vocab_size in [int(size) for size in args.czech_vocab_sizes.split(",")]:
        tokenizer_dir, _ = build_czech_tokenizer(workdir / str(czech_vocab_size), czech_vocab_size)
        expanded = AutoTokenizer.from_pretrained(tokenizer_dir)
        measured = {}
        for init in ("mean", "random", "mean_of_pieces"):  # mean_of_pieces last: distill starts from its model
            model = copy.deepcopy(base_model)
            report = expand_model(model, base_tokenizer, expanded, init, progress=False)
            measured[init] = score(model, expanded)
        if args.distill_max_tokens:
            settings = DistillSettings(max_tokens=args.distill_max_tokens)
            distill_new_rows(model, base_tokenizer, expanded, report.new_token_ids, iter_texts(["data/pretrain/cs"]),
                             settings, iter_texts(["data/pretrain/en"]), progress=False)
            measured["distill"] = score(model, expanded)
        compression = {lang: chars_per_token(expanded, texts) for lang, texts in heldout.items()}
        results.append((f"+{len(report.new_token_ids)} ({czech_vocab_size}-token Czech BPE)", len(report.new_token_ids),
                        compression, measured, step_seconds(model, report.new_rows)))
        print(results[-1], flush=True)
        del model

    methods = ["mean_of_pieces", "mean", "random"] + (["distill"] if args.distill_max_tokens else [])
    header = "| added tokens | cs chars/token | en chars/token | " + " | ".join(
        f"cs vs base ({m}) | en vs base ({m})" for m in methods) + " | train step s | step vs base |"
    lines = [
        "## How many tokens to add: SmolLM2-135M + Czech expansions of several sizes, before any training",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.machine()}, {os.cpu_count()} CPU cores shared "
        f"with other jobs (load average {os.getloadavg()[0]:.1f}: step times are noisy upper bounds), torch {torch.__version__}. "
        f"Held-out: first {args.docs} documents of each data/heldout file, first {args.chars} characters. Base bits/byte: "
        f"cs {base['cs']:.3f}, en {base['en']:.3f}. Train step: forward + backward + AdamW on 2 x 256 random ids, all parameters, "
        "median of 3." + (f" distill: the {args.distill_max_tokens} most frequent new tokens, the rest mean_of_pieces." if args.distill_max_tokens else ""),
        "",
        header,
        "|" + "---|" * (header.count("|") - 1),
    ]
    for name, _, compression, measured, seconds in results:
        ratios = " | ".join(
            "1.000 | 1.000" if name.startswith("base") else
            f"{measured[m]['cs'] / base['cs']:.3f} | {measured[m]['en'] / base['en']:.3f}" for m in methods)
        lines.append(f"| {name} | {compression['cs']:.2f} | {compression['en']:.2f} | {ratios} | {seconds:.2f} | {seconds / base_step:.2f} |")
    table = "\n".join(lines)
    print(table)
    if args.write_results:
        (REPO / "benchmarks" / "results_vocab_size.md").write_text("# Benchmark results: vocabulary size\n\n" + table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
