"""Benchmark: base tokenizers expanded with a 16k Czech tokenizer.

    .venv/bin/python benchmarks/bench_tokenizer.py [--vocab_size 16000] [--output_markdown benchmarks/results_tokenizer.md]
        [--sections protection,families] [--czech_train data/pretrain/cs]

`protection`: SmolLM2 (byte-level BPE) and Mistral v1 (SentencePiece), with and without protection of
English (reference: data/pretrain/en): characters per token on held-out Czech (data/heldout/cs_*.jsonl)
and its ratio to the base, and on held-out English the change in token count and the share of documents
tokenized exactly as before.

`families` (benchmarks/tokenizer_families.py): one row per base family users adapt (Llama 3/3.1,
Qwen 3, DeepSeek-V3, gpt-oss, Gemma 3, Llama 2, Mistral folder), protected: new tokens, Czech chars/token
before and after, English ids identical, round trip, special ids unchanged.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from colossal_lang.tokenizer.corpus import load_texts  # noqa: E402
from colossal_lang.tokenizer.init_tokenizer import _encoder, expand, pieces_as_bytes_from_tokenizer  # noqa: E402
from colossal_lang.tokenizer.train_tokenizer import main as train_main  # noqa: E402


def evaluate(encode, base_encode, czech, english):
    czech_tokens = sum(len(encode(t)) for t in czech)
    english_ids = [encode(t) for t in english]
    base_english_ids = [base_encode(t) for t in english]
    return {
        "cs_chars_per_token": sum(map(len, czech)) / czech_tokens,
        "en_tokens": sum(map(len, english_ids)),
        "en_identical": sum(a == b for a, b in zip(english_ids, base_english_ids)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vocab_size", type=int, default=16000)
    parser.add_argument("--output_markdown", default=None)
    parser.add_argument("--sections", default="protection,families", help="comma-separated: protection, families")
    parser.add_argument("--czech_train", default=str(REPO / "data" / "pretrain" / "cs"),
                        help="Czech jsonl the target tokenizers are trained on")
    args = parser.parse_args()
    sections = [part.strip() for part in args.sections.split(",")]
    markdown = ""
    if "protection" in sections:
        markdown += protection_section(args)
    if "families" in sections:
        from tokenizer_families import families_section

        markdown += families_section(args.vocab_size, args.czech_train)
    if args.output_markdown:
        header = (f"# Tokenizer expansion benchmark\n\nRun {datetime.date.today().isoformat()} on "
                  f"{platform.machine()} Linux, {os.cpu_count()} CPU cores (shared), `benchmarks/bench_tokenizer.py "
                  f"--vocab_size {args.vocab_size} --sections {args.sections} --czech_train {args.czech_train}`.\n\n")
        Path(args.output_markdown).write_text(header + markdown, encoding="utf-8")


def protection_section(args) -> str:
    from colossal_lang.model.import_smollm2 import import_smollm2

    smollm2 = import_smollm2(REPO / ".cache" / "models" / "SmolLM2-135M-Instruct")
    mistral = REPO / "data" / "tokenizers" / "mistral-v1"
    czech_train = args.czech_train
    heldout = REPO / "data" / "heldout"
    czech = load_texts(sorted(str(p) for p in heldout.glob("cs_*.jsonl")))
    english = load_texts(sorted(str(p) for p in heldout.glob("en_*.jsonl")))
    reference = load_texts(str(REPO / "data" / "pretrain" / "en"))
    work = Path(tempfile.mkdtemp(prefix="bench-tokenizer-"))
    rows = []
    for name, base_dir, model_type in (("SmolLM2-135M", smollm2, "byte_level_bpe"), ("Mistral-v1", mistral, "bpe")):
        started = time.time()
        trained = work / f"cs-{model_type}"
        train_args = ["--data_input_dirs", czech_train, "--model_type", model_type, "--vocab_size",
                      str(args.vocab_size), "--output_dir", str(trained)]
        if model_type == "byte_level_bpe":
            train_args += ["--base_tokenizer_dir", str(base_dir)]
        train_main(train_args)
        pieces = pieces_as_bytes_from_tokenizer(trained)
        print(f"{name}: trained in {time.time() - started:.1f}s")
        family = None
        base_result = None
        for protected in (False, True):
            started = time.time()
            family, base_model, plan, expanded = expand(base_dir, pieces, reference if protected else None)
            seconds = time.time() - started
            base_encode = _encoder(family, base_model)
            if base_result is None:
                base_result = evaluate(base_encode, base_encode, czech, english)
                rows.append((name, "base", 0, 0, base_result, base_result, 0.0))
            result = evaluate(_encoder(family, expanded), base_encode, czech, english)
            rows.append((name, "protected" if protected else "unprotected", len(plan.new_tokens),
                         plan.protected_dropped, result, base_result, seconds))
    table = render(rows, len(czech), len(english))
    print(table)
    return (f"## Protection: SmolLM2 and Mistral v1\n\nCzech tokenizers trained on {czech_train}; English protected "
            f"against data/pretrain/en; measured on data/heldout ({len(czech)} Czech, {len(english)} English "
            "documents).\n\n" + table + "\n")


def render(rows, czech_docs, english_docs) -> str:
    lines = ["| base | expansion | new tokens | dropped by protection | cs chars/token | vs base | "
             "en tokens change | en identical docs | expand time |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, variant, new_tokens, dropped, result, base, seconds in rows:
        change = result["en_tokens"] / base["en_tokens"] - 1
        lines.append(f"| {name} | {variant} | {new_tokens} | {dropped} | {result['cs_chars_per_token']:.3f} | "
                     f"{result['cs_chars_per_token'] / base['cs_chars_per_token']:.2f}x | {100 * change:+.2f}% | "
                     f"{result['en_identical']}/{english_docs} | {seconds:.1f}s |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
