"""Compression report: how many tokens each tokenizer spends on each data file.

    python -m colossal_lang.tokenizer.report --tokenizer BASE --tokenizer EXPANDED \
        --data data/heldout/cs_fortunes.jsonl --data data/heldout/en_state_of_the_union.jsonl \
        [--output_markdown report.md] [--output_csv report.csv]

Columns: characters, bytes and words per token count, and the share of bytes that fell to byte
fallback (`<0xNN>` tokens: characters the vocabulary does not hold at all).
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from tqdm import tqdm

from colossal_lang.cli import parse_args_with_config
from colossal_lang.errors import InputError, run_cli
from colossal_lang.tokenizer.corpus import load_texts
from colossal_lang.tokenizer.load import load_encoder


@dataclass
class CompressionRow:
    tokenizer: str
    data: str
    documents: int
    tokens: int
    chars_per_token: float
    bytes_per_token: float
    tokens_per_word: float
    byte_fallback_share: float


def measure(encoder, texts: Sequence[str], tokenizer_name: str, data_name: str) -> CompressionRow:
    tokens = chars = raw_bytes = words = fallback_bytes = 0
    for text in texts:
        ids = encoder.encode(text)
        tokens += len(ids)
        chars += len(text)
        raw_bytes += len(text.encode("utf-8"))
        words += len(text.split())
        fallback_bytes += sum(1 for token_id in ids if encoder.is_byte_fallback(token_id))
    tokens = max(tokens, 1)
    return CompressionRow(tokenizer_name, data_name, len(texts), tokens, chars / tokens, raw_bytes / tokens,
                          tokens / max(words, 1), fallback_bytes / max(raw_bytes, 1))


def compression_table(tokenizers: Sequence[str], data_files: Sequence[str]) -> List[CompressionRow]:
    """One row per (tokenizer, data file); tokenizers are folders or SentencePiece .model files."""
    encoders = [load_encoder(path) for path in tokenizers]
    texts_by_file = {path: load_texts(path) for path in data_files}
    rows = []
    with tqdm(total=len(encoders) * len(data_files), desc="measuring", unit="file") as progress:
        for encoder in encoders:
            for path, texts in texts_by_file.items():
                rows.append(measure(encoder, texts, encoder.name, Path(path).name))
                progress.update()
    return rows


def chars_per_token(tokenizers: Sequence[str], data: str) -> Dict[str, float]:
    """Characters per token of each tokenizer on all of `data` (jsonl files/folders, comma-separated)."""
    texts = load_texts(data)
    return {path: measure(load_encoder(path), texts, str(path), str(data)).chars_per_token for path in tokenizers}


def to_markdown(rows: Sequence[CompressionRow]) -> str:
    lines = ["| tokenizer | data | docs | tokens | chars/token | bytes/token | tokens/word | byte fallback |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row.tokenizer} | {row.data} | {row.documents} | {row.tokens} | {row.chars_per_token:.3f} | "
                     f"{row.bytes_per_token:.3f} | {row.tokens_per_word:.3f} | {100 * row.byte_fallback_share:.2f}% |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", action="append", required=True, help="folder or .model; repeat for several")
    parser.add_argument("--data", action="append", required=True, help="jsonl file/folder or .txt; repeat")
    parser.add_argument("--output_markdown", default=None)
    parser.add_argument("--output_csv", default=None)
    return parser


def main(argv: Optional[List[str]] = None) -> List[CompressionRow]:
    args = parse_args_with_config(build_parser(), argv)
    for output in filter(None, (args.output_markdown, args.output_csv)):
        if Path(output).is_dir():
            raise InputError("is a folder; give a file name", output)
    rows = compression_table(args.tokenizer, args.data)
    table = to_markdown(rows)
    print(table)
    for output in filter(None, (args.output_markdown, args.output_csv)):
        Path(output).parent.mkdir(parents=True, exist_ok=True)
    if args.output_markdown:
        Path(args.output_markdown).write_text(table, encoding="utf-8")
    if args.output_csv:
        with open(args.output_csv, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(asdict(rows[0])))
            writer.writeheader()
            writer.writerows(asdict(row) for row in rows)
    print(f"measured {len(args.tokenizer)} tokenizers on {len(args.data)} data files")
    return rows


if __name__ == "__main__":
    run_cli(main)
