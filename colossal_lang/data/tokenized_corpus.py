"""The tokenized corpus in the shape every later step wants: one flat token array, CSR document offsets.

Also the steps shared by pretraining and SFT preparation after tokenization: loading the tokenizer
with a clear error, chunking + packing per category, resampling, bucketing, and building the tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import pyarrow as pa

from colossal_lang.data.arrow_output import ROWS_PER_TABLE_CHUNK, rows_table
from colossal_lang.data.chunking import Spans, chunk_documents
from colossal_lang.data.mixing import build_buckets, resample_rows
from colossal_lang.data.packing import pack_spans
from colossal_lang.data.tokenize_pretrain import IGNORE_INDEX
from colossal_lang.errors import InputError
from colossal_lang.tokenizer.load import load_hf_tokenizer


def load_tokenizer(tokenizer_dir):
    """A fast Hugging Face tokenizer from `tokenizer_dir`, or an InputError naming the folder."""
    if not Path(tokenizer_dir).is_dir():
        raise InputError("no such tokenizer folder", tokenizer_dir)
    tokenizer = load_hf_tokenizer(tokenizer_dir)
    # Documents are chunked here, so the model's context limit does not apply to whole documents.
    tokenizer.model_max_length = 1 << 60
    if not getattr(tokenizer, "is_fast", False):
        raise InputError("the tokenizer is not a fast (Rust) tokenizer; character offsets are needed for exact masks", tokenizer_dir)
    return tokenizer


def parallel_map(dataset, function, num_proc: int, fn_kwargs: dict, fingerprint: str, desc: str, batch_size: int):
    """`dataset.map(batched=True)` over `num_proc` processes (one when there is too little to share).

    With several processes, each tokenizer runs single-threaded: the Rust thread pool of every worker
    would otherwise claim all cores, and the workers would fight over them.
    """
    import os

    processes = num_proc if num_proc > 1 and len(dataset) >= 2 * num_proc else None
    saved = os.environ.get("TOKENIZERS_PARALLELISM")
    if processes:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        return dataset.map(function, batched=True, batch_size=batch_size, num_proc=processes,
                           remove_columns=dataset.column_names, fn_kwargs=fn_kwargs,
                           new_fingerprint=fingerprint[:16], desc=desc)
    finally:
        if processes:
            if saved is None:
                os.environ.pop("TOKENIZERS_PARALLELISM", None)
            else:
                os.environ["TOKENIZERS_PARALLELISM"] = saved


@dataclass
class TokenizedCorpus:
    """Documents as a flat token array: document d is `token_ids[doc_offsets[d]:doc_offsets[d+1]]`."""

    token_ids: np.ndarray
    labels: np.ndarray
    doc_offsets: np.ndarray
    doc_category: np.ndarray  # index into `categories`, one per document
    categories: List[str]

    @classmethod
    def from_dataset(cls, dataset, categories_per_doc: Sequence[str], category_order: Sequence[str]) -> "TokenizedCorpus":
        """From a `datasets.Dataset` with `input_ids` and either `labels` or `loss_start` columns."""
        if dataset._indices is not None:  # after select/filter the arrow table is not yet in row order
            dataset = dataset.flatten_indices()
        ids_column = dataset.data.column("input_ids").combine_chunks()
        doc_offsets = np.asarray(ids_column.offsets, dtype=np.int64)
        doc_offsets = doc_offsets - doc_offsets[0]
        token_ids = np.asarray(ids_column.flatten(), dtype=np.int32)
        if "labels" in dataset.column_names:
            labels = np.asarray(dataset.data.column("labels").combine_chunks().flatten(), dtype=np.int32)
        else:
            loss_start = np.asarray(dataset.data.column("loss_start"), dtype=np.int64)
            doc_lengths = np.diff(doc_offsets)
            position_in_doc = np.arange(len(token_ids), dtype=np.int64) - np.repeat(doc_offsets[:-1], doc_lengths)
            labels = np.where(position_in_doc < np.repeat(loss_start, doc_lengths), IGNORE_INDEX, token_ids).astype(np.int32)
        index_of = {name: index for index, name in enumerate(category_order)}
        doc_category = np.fromiter((index_of[name] for name in categories_per_doc), dtype=np.int64, count=len(categories_per_doc))
        return cls(token_ids, labels, doc_offsets, doc_category, list(category_order))


@dataclass
class PackedRows:
    """Rows of every category: `rows[c][r]` lists the global span ids that make row r of category c."""

    spans: Spans
    rows: Dict[str, List[List[int]]]
    row_tokens: Dict[str, np.ndarray]


def chunk_and_pack(corpus: TokenizedCorpus, max_length: int, chunk: bool = True) -> PackedRows:
    """Chunk documents longer than `max_length` (if `chunk`), then pack each category on its own."""
    spans = chunk_documents(corpus.doc_offsets, max_length if chunk else np.iinfo(np.int64).max)
    span_category = corpus.doc_category[spans.document]
    rows: Dict[str, List[List[int]]] = {}
    row_tokens: Dict[str, np.ndarray] = {}
    for index, category in enumerate(corpus.categories):
        global_ids = np.flatnonzero(span_category == index)
        local_rows = pack_spans(spans.lengths[global_ids], max_length)
        rows[category] = [[int(global_ids[span]) for span in row] for row in local_rows]
        row_tokens[category] = np.fromiter((int(spans.lengths[row].sum()) for row in rows[category]), dtype=np.int64)
    return PackedRows(spans, rows, row_tokens)


def one_row_per_document(corpus: TokenizedCorpus) -> PackedRows:
    """No packing: every document is its own row (SFT without --packing)."""
    spans = chunk_documents(corpus.doc_offsets, np.iinfo(np.int64).max)
    rows, row_tokens = {}, {}
    for index, category in enumerate(corpus.categories):
        global_ids = np.flatnonzero(corpus.doc_category[spans.document] == index)
        rows[category] = [[int(span)] for span in global_ids]
        row_tokens[category] = spans.lengths[global_ids].astype(np.int64)
    return PackedRows(spans, rows, row_tokens)


def plan_buckets(packed: PackedRows, category_order, weights: Dict[str, float], num_bins: int, order: str,
                 seed: int, total_tokens: Optional[int] = None):
    """Resample to the weights (when given), then split into buckets: see `colossal_lang.data.mixing`."""
    present = [category for category in category_order if packed.rows[category]]
    if weights:
        chosen = resample_rows({c: packed.row_tokens[c] for c in present}, weights, seed, total_tokens)
    else:
        chosen = {c: np.arange(len(packed.rows[c]), dtype=np.int64) for c in present}
    return build_buckets(chosen, present, num_bins, order, seed)


def bucket_tables(corpus: TokenizedCorpus, packed: PackedRows, buckets) -> Iterator[pa.Table]:
    """One arrow table per bucket, built in chunks of rows to bound memory."""
    for runs in buckets:
        chunks, rows, categories = [], [], []
        for category, row_ids in runs:
            for row_id in row_ids.tolist():
                rows.append(packed.rows[category][row_id])
                categories.append(category)
                if len(rows) == ROWS_PER_TABLE_CHUNK:
                    chunks.append(rows_table(corpus.token_ids, corpus.labels, packed.spans.starts, packed.spans.lengths, rows, categories))
                    rows, categories = [], []
        if rows:
            chunks.append(rows_table(corpus.token_ids, corpus.labels, packed.spans.starts, packed.spans.lengths, rows, categories))
        yield pa.concat_tables(chunks)


def bucket_counts(packed: PackedRows, corpus: TokenizedCorpus, buckets) -> Dict[str, Dict[str, int]]:
    """Sequences, tokens and loss tokens per category in the output (after resampling)."""
    loss_per_span = np.add.reduceat((corpus.labels != IGNORE_INDEX).astype(np.int64), packed.spans.starts) if len(corpus.labels) else np.zeros(0)
    # reduceat sums to the next start; spans are contiguous and in order, so this is per span.
    counts: Dict[str, Dict[str, int]] = {}
    for runs in buckets:
        for category, row_ids in runs:
            entry = counts.setdefault(category, {"sequences": 0, "tokens": 0, "loss_tokens": 0})
            for row_id in row_ids.tolist():
                row = packed.rows[category][row_id]
                entry["sequences"] += 1
                entry["tokens"] += int(packed.spans.lengths[row].sum())
                entry["loss_tokens"] += int(loss_per_span[row].sum())
    return counts
