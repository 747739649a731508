"""`prepare_pretrain_dataset.py`: validated jsonl → masked, chunked, packed, category-binned arrow shards.

validate (main process, file:line errors) → tokenize + loss boundary (in order, `num_proc` workers)
→ chunk → pack per category in a bounded window → per-part spools → count, resample to weights, bins/buckets
→ arrow parts + manifest.json. The shared machinery is in `prepare_common.py`; this file says only how a
pretraining record becomes a document.
"""

from __future__ import annotations

import argparse
from typing import Dict, Optional

import numpy as np

from colossal_lang.cli import parse_args_with_config
from colossal_lang.data.prepare_common import add_common_flags, run_preparation
from colossal_lang.data.records import validate_pretrain_record
from colossal_lang.data.stream_part import RecordKind
from colossal_lang.data.tokenize_pretrain import (
    SPECIAL_TOKENS_IN_TEXT,
    document_specials,
    documents_with_special_ids_inside,
    special_token_ids,
    tokenize_pretrain_batch,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, default_packing="doc_causal")
    parser.add_argument("--special_tokens_in_text", choices=SPECIAL_TOKENS_IN_TEXT, default=None,
                        help="a special token's string in the text (</s>, <|im_end|>): parse = that special token "
                             "(keeps the markers of chat-formatted text), split = ordinary text (raw web text: no fake "
                             "EOS or turn markers); default: as tokenizer(text), i.e. parse unless the tokenizer's "
                             "config sets split_special_tokens. BOS/EOS around documents are added either way")
    return parser


def pretrain_kind(args, tokenizer) -> RecordKind:
    """How a `{source, target, category}` record becomes a document: joint tokenization, BOS/EOS, chunking."""
    if args.special_tokens_in_text is None:  # what tokenizer(text) does
        args.special_tokens_in_text = "split" if getattr(tokenizer, "split_special_tokens", False) else "parse"
    specials = document_specials(tokenizer)
    special_ids = special_token_ids(tokenizer)

    def document_flags(batch) -> Dict:
        offsets = np.concatenate(([0], np.cumsum(batch.lengths)))
        return {"special_token_documents": documents_with_special_ids_inside(
            batch.token_ids, offsets, special_ids, len(specials.prefix_ids), len(specials.suffix_ids))}

    return RecordKind(
        name="pretrain", validate=validate_pretrain_record, batch_function=tokenize_pretrain_batch,
        batch_kwargs={"tokenizer": tokenizer, "prefix_ids": specials.prefix_ids, "suffix_ids": specials.suffix_ids,
                      "special_tokens_in_text": args.special_tokens_in_text},
        batch_size=1000, chunk=True, pack=True, document_flags=document_flags,
        record_chars=lambda record: len(record["source"]) + len(record["target"]),
        settings={"special_tokens_in_text": args.special_tokens_in_text})


def prepare_pretrain(args) -> Dict:
    """Run the pretraining preparation for parsed `args`; returns the manifest written (or a shard's report)."""
    return run_preparation(args, "prepare_pretrain_dataset", lambda tokenizer: pretrain_kind(args, tokenizer),
                           lambda: {"special_tokens_in_text": args.special_tokens_in_text})


def main(argv: Optional[list] = None) -> Dict:
    return prepare_pretrain(parse_args_with_config(build_parser(), argv))
