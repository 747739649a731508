"""`prepare_sft_dataset.py`: validated conversations → chat-templated, assistant-masked arrow shards.

validate (file:line errors) → render with the chat template + tokenize + label assistant spans
(in order, `num_proc` workers) → drop whole trailing turns past max_length → optional packing
→ categories, weights, buckets → arrow parts + manifest.json (kind "sft"), same format as pretraining.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from colossal_lang.cli import parse_args_with_config
from colossal_lang.data.arrow_output import FORMAT
from colossal_lang.data.chat_templates import TEMPLATE_CHOICES, resolve_template
from colossal_lang.data.mixing import parse_category_weights
from colossal_lang.data.prepare_pretrain import (
    add_common_flags, already_prepared, category_order_of, check_common_flags, output_fingerprint, write_and_summarise,
)
from colossal_lang.data.records import normalize_reasons, scan_inputs, validate_sft_record
from colossal_lang.data.tokenize_sft import tokenize_sft_batch
from colossal_lang.data.tokenized_corpus import (
    TokenizedCorpus, bucket_counts, bucket_tables, chunk_and_pack, load_tokenizer, one_row_per_document, plan_buckets,
    tokenize_inputs,
)
from colossal_lang.io.jsonl import report_bad_record


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, default_packing="none")
    parser.add_argument("--chat_template", choices=TEMPLATE_CHOICES, default="auto",
                        help="auto/tokenizer: the tokenizer's own chat_template; or a built-in")
    parser.add_argument("--llama_version", type=int, choices=(2, 3), default=None,
                        help="Colossal-LLaMA's flag: same as --chat_template llama2 / llama3")
    return parser


def prepare_sft(args) -> Dict:
    """Run the whole SFT preparation for parsed `args`; returns the manifest written."""
    started = time.time()
    check_common_flags(args)
    weights = parse_category_weights(args.category_weights)
    tokenizer = load_tokenizer(args.tokenizer_dir)
    if args.llama_version is not None and args.chat_template == "auto":
        args.chat_template = f"llama{args.llama_version}"
    template = resolve_template(tokenizer, args.chat_template)
    inputs = scan_inputs(args.data_input_dirs)
    output_dir = Path(args.data_output_dirs)
    fingerprint, tokenizer_sha256 = output_fingerprint(args, inputs.sha256, kind="sft", template=template.source)
    existing = already_prepared(output_dir, fingerprint, args.overwrite)
    if existing is not None:
        return existing

    batches, read = tokenize_inputs(
        inputs, validate_sft_record, args.on_error, tokenize_sft_batch,
        {"tokenizer": tokenizer, "template": template, "max_length": args.max_length},
        args.num_proc, batch_size=256, desc="rendering + tokenizing",
    )
    # Problems found while tokenizing (first turn too long, template trouble) still name file:line.
    problems = [problem for batch in batches for problem in batch.problems]
    truncated_flags = np.concatenate([batch.truncated for batch in batches])
    keep, skipped = [], read.skipped
    for index, problem in enumerate(problems):
        if problem:
            report_bad_record(read.paths[index], read.lines[index], problem, args.on_error, skipped)
        else:
            keep.append(index)
    if not keep:
        report_bad_record(read.paths[0], None, "no conversation left after tokenization", "raise", None)
    kept_categories = [read.columns["category"][index] for index in keep]
    category_order = category_order_of(weights, kept_categories)
    keep = np.asarray(keep, dtype=np.int64)
    corpus = TokenizedCorpus.from_batches(batches, kept_categories, category_order, keep=keep)
    del batches
    if args.packing == "none":
        packed = one_row_per_document(corpus)
    else:
        packed = chunk_and_pack(corpus, args.max_length, chunk=False)
    buckets = plan_buckets(packed, category_order, weights, args.num_spliced_dataset_bins, args.order, args.seed, args.total_tokens)
    counts = bucket_counts(packed, corpus, buckets)

    truncated_kept = truncated_flags[keep]
    categories = {}
    for index, category in enumerate(category_order):
        doc_ids = (corpus.doc_category == index).nonzero()[0]
        entry = {
            # Records kept, as for pretraining: one skipped while tokenizing is counted under "skipped" only.
            "records": int(len(doc_ids)),
            "documents": int(len(doc_ids)),
            "chunked_documents": 0,
            "truncated_documents": int(truncated_kept[doc_ids].sum()),
            "input_sequences": len(packed.rows.get(category, [])),
            "input_tokens": int((corpus.doc_offsets[doc_ids + 1] - corpus.doc_offsets[doc_ids]).sum()),
        }
        entry.update(counts.get(category, {"sequences": 0, "tokens": 0, "loss_tokens": 0}))
        categories[category] = entry
    skipped = normalize_reasons(skipped)
    manifest = {
        "format": FORMAT,
        "kind": "sft",
        "tokenizer_hash": tokenizer_sha256,
        "tokenizer_dir": str(args.tokenizer_dir),
        "max_length": args.max_length,
        # Unpacked rows hold one conversation each: the loader treats them like doc_causal rows of one document.
        "packing": "doc_causal" if args.packing == "none" else args.packing,
        "packed": args.packing != "none",
        "chat_template": template.name,
        "num_buckets": args.num_spliced_dataset_bins,
        "categories": categories,
        "category_weights": weights or None,
        "order": args.order,
        "seed": args.seed,
        "inputs": read.input_files,
        "records_read": read.records_read,
        "records_kept": len(keep),
        "skipped": dict(skipped),
    }
    return write_and_summarise("prepare_sft_dataset", output_dir, bucket_tables(corpus, packed, buckets),
                               manifest, fingerprint, started)


def main(argv: Optional[list] = None) -> Dict:
    return prepare_sft(parse_args_with_config(build_parser(), argv))
