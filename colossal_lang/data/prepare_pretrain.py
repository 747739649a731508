"""`prepare_pretrain_dataset.py`: validated jsonl → masked, chunked, packed, category-binned arrow shards.

validate (main process, file:line errors) → tokenize + loss boundary (in order, `num_proc` workers)
→ chunk → pack per category → resample to weights → bins/buckets → arrow parts + manifest.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Dict, List, Optional

from colossal_lang.cli import parse_args_with_config
from colossal_lang.data.arrow_output import FORMAT, check_existing_output, tokenizer_hash, write_dataset
from colossal_lang.data.mixing import ORDER_CHOICES, parse_category_weights
from colossal_lang.data.records import scan_inputs, validate_pretrain_record
from colossal_lang.data.summary import print_summary
from colossal_lang.data.tokenize_pretrain import (
    SPECIAL_TOKENS_IN_TEXT,
    document_specials,
    documents_with_special_ids_inside,
    special_token_ids,
    tokenize_pretrain_batch,
)
from colossal_lang.data.tokenized_corpus import (
    TokenizedCorpus, bucket_counts, bucket_tables, chunk_and_pack, load_tokenizer, plan_buckets, tokenize_inputs,
)
from colossal_lang.errors import InputError
from colossal_lang.io.jsonl import ON_ERROR_CHOICES

PACKING_CHOICES = ("doc_causal", "causal")


def add_common_flags(parser: argparse.ArgumentParser, default_packing: str) -> None:
    """Flags shared by pretraining and SFT preparation (Colossal-LLaMA's names first)."""
    parser.add_argument("--data_input_dirs", required=True, help="comma-separated jsonl folders or files")
    parser.add_argument("--tokenizer_dir", required=True, help="Hugging Face tokenizer (or model) folder")
    parser.add_argument("--data_output_dirs", required=True, help="output folder (manifest.json + arrow/part-XXXXX)")
    parser.add_argument("--max_length", type=int, default=4096, help="tokens per training sequence")
    parser.add_argument("--num_spliced_dataset_bins", type=int, default=1,
                        help="bins per category; bucket k (arrow/part-k) holds bin k of every category")
    parser.add_argument("--packing", choices=PACKING_CHOICES + (("none",) if default_packing == "none" else ()),
                        default=default_packing,
                        help="doc_causal: attention stays inside each packed document; causal: across them")
    parser.add_argument("--category_weights", default=None,
                        help="token shares of the output, e.g. cs=0.75,en=0.25 (resampled with --seed)")
    parser.add_argument("--total_tokens", type=int, default=None,
                        help="with --category_weights: output size in tokens (default: the input's)")
    parser.add_argument("--order", choices=ORDER_CHOICES, default="shuffle",
                        help="shuffle rows, or curriculum: categories in the order of --category_weights / the inputs")
    parser.add_argument("--on_error", choices=ON_ERROR_CHOICES, default="raise", help="bad record: stop, or skip and count")
    parser.add_argument("--num_proc", type=int, default=1, help="tokenization processes")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--overwrite", action="store_true", help="replace an output folder holding another dataset")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, default_packing="doc_causal")
    parser.add_argument("--special_tokens_in_text", choices=SPECIAL_TOKENS_IN_TEXT, default=None,
                        help="a special token's string in the text (</s>, <|im_end|>): parse = that special token "
                             "(keeps the markers of chat-formatted text), split = ordinary text (raw web text: no fake "
                             "EOS or turn markers); default: as tokenizer(text), i.e. parse unless the tokenizer's "
                             "config sets split_special_tokens. BOS/EOS around documents are added either way")
    return parser


def check_common_flags(args) -> None:
    if args.max_length < 2:
        raise InputError(f"--max_length must be at least 2 (a token and the one it predicts), got {args.max_length}")
    if args.num_proc < 1:
        raise InputError(f"--num_proc must be at least 1, got {args.num_proc}")
    if args.num_spliced_dataset_bins < 1:
        raise InputError(f"--num_spliced_dataset_bins must be at least 1, got {args.num_spliced_dataset_bins}")


def category_order_of(weights: Dict[str, float], categories_in_file_order: List[str]) -> List[str]:
    """The weights' order when given, else the order categories first appear in (sorted) input files."""
    seen = list(dict.fromkeys(categories_in_file_order))
    return list(weights) + [c for c in seen if c not in weights] if weights else seen


def settings_fingerprint(settings: Dict, input_sha256: str, tokenizer_sha256: str) -> str:
    text = json.dumps({"settings": settings, "inputs": input_sha256, "tokenizer": tokenizer_sha256, "format": FORMAT}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def output_fingerprint(args, input_sha256: str, **kind_settings) -> tuple[str, str]:
    """(fingerprint of the inputs, tokenizer and output settings; the tokenizer's hash)."""
    settings = {name: getattr(args, name) for name in (
        "max_length", "num_spliced_dataset_bins", "packing", "category_weights", "total_tokens", "order", "seed")}
    tokenizer_sha256 = tokenizer_hash(args.tokenizer_dir)
    return settings_fingerprint(dict(settings, **kind_settings), input_sha256, tokenizer_sha256), tokenizer_sha256


def already_prepared(output_dir: Path, fingerprint: str, overwrite: bool) -> Optional[Dict]:
    """The manifest of `output_dir` if it already holds this very dataset (then there is nothing to do)."""
    if not check_existing_output(output_dir, fingerprint, overwrite):
        return None
    print(f"{output_dir} already holds this dataset (same inputs, tokenizer and settings): nothing to do")
    return json.loads((output_dir / "manifest.json").read_text(encoding="utf-8"))


def write_and_summarise(command: str, output_dir: Path, tables, manifest: Dict, fingerprint: str, started: float) -> Dict:
    """Write the arrow parts and manifest atomically, print the summary, and return the manifest as written."""
    write_dataset(output_dir, tables, manifest, fingerprint)
    manifest = json.loads((output_dir / "manifest.json").read_text(encoding="utf-8"))
    print_summary(command, manifest, output_dir, time.time() - started)
    return manifest


def prepare_pretrain(args) -> Dict:
    """Run the whole pretraining preparation for parsed `args`; returns the manifest written."""
    started = time.time()
    check_common_flags(args)
    weights = parse_category_weights(args.category_weights)
    tokenizer = load_tokenizer(args.tokenizer_dir)
    if args.special_tokens_in_text is None:  # what tokenizer(text) does
        args.special_tokens_in_text = "split" if getattr(tokenizer, "split_special_tokens", False) else "parse"
    inputs = scan_inputs(args.data_input_dirs)
    output_dir = Path(args.data_output_dirs)
    # "parse" stays out of the fingerprint: outputs prepared before the flag existed are still recognised.
    split = {"special_tokens_in_text": "split"} if args.special_tokens_in_text == "split" else {}
    fingerprint, tokenizer_sha256 = output_fingerprint(args, inputs.sha256, kind="pretrain", **split)
    existing = already_prepared(output_dir, fingerprint, args.overwrite)
    if existing is not None:
        return existing

    specials = document_specials(tokenizer)
    batches, read = tokenize_inputs(
        inputs, validate_pretrain_record, args.on_error, tokenize_pretrain_batch,
        {"tokenizer": tokenizer, "prefix_ids": specials.prefix_ids, "suffix_ids": specials.suffix_ids,
         "special_tokens_in_text": args.special_tokens_in_text},
        args.num_proc, batch_size=1000, desc="reading + tokenizing",
    )
    category_order = category_order_of(weights, read.columns["category"])
    corpus = TokenizedCorpus.from_batches(batches, read.columns["category"], category_order)
    del batches
    packed = chunk_and_pack(corpus, args.max_length)
    buckets = plan_buckets(packed, category_order, weights, args.num_spliced_dataset_bins, args.order, args.seed, args.total_tokens)
    counts = bucket_counts(packed, corpus, buckets)
    special_inside = documents_with_special_ids_inside(
        corpus.token_ids, corpus.doc_offsets, special_token_ids(tokenizer), len(specials.prefix_ids), len(specials.suffix_ids))

    categories = {}
    for index, category in enumerate(category_order):
        doc_ids = (corpus.doc_category == index).nonzero()[0]
        doc_lengths = corpus.doc_offsets[doc_ids + 1] - corpus.doc_offsets[doc_ids]
        entry = {
            "records": int(len(doc_ids)),
            "documents": int(len(doc_ids)),
            "chunked_documents": int((doc_lengths > args.max_length).sum()),
            "special_token_documents": int(special_inside[doc_ids].sum()),
            "input_sequences": len(packed.rows.get(category, [])),
            "input_tokens": int(doc_lengths.sum()),
        }
        entry.update(counts.get(category, {"sequences": 0, "tokens": 0, "loss_tokens": 0}))
        categories[category] = entry
    manifest = {
        "format": FORMAT,
        "kind": "pretrain",
        "tokenizer_hash": tokenizer_sha256,
        "tokenizer_dir": str(args.tokenizer_dir),
        "max_length": args.max_length,
        "packing": args.packing,
        "num_buckets": args.num_spliced_dataset_bins,
        "categories": categories,
        "category_weights": weights or None,
        "order": args.order,
        "seed": args.seed,
        "special_tokens_in_text": args.special_tokens_in_text,
        "inputs": read.input_files,
        "records_read": read.records_read,
        "records_kept": read.kept,
        "skipped": dict(read.skipped),
    }
    return write_and_summarise("prepare_pretrain_dataset", output_dir, bucket_tables(corpus, packed, buckets),
                               manifest, fingerprint, started)


def main(argv: Optional[list] = None) -> Dict:
    return prepare_pretrain(parse_args_with_config(build_parser(), argv))

