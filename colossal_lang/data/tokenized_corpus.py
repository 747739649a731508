"""The tokenized corpus in the shape every later step wants: one flat token array, CSR document offsets.

Also the steps shared by pretraining and SFT preparation: loading the tokenizer with a clear error,
reading + tokenizing the inputs, chunking + packing per category, resampling, bucketing, and building
the tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from colossal_lang.data.arrow_output import TOKENS_PER_TABLE_CHUNK, rows_table
from colossal_lang.data.batch_tokenize import TokenizedBatch, batched, tokenize_in_order
from colossal_lang.data.chunking import Spans, chunk_documents
from colossal_lang.data.mixing import build_buckets, resample_rows
from colossal_lang.data.packing import pack_spans
from colossal_lang.data.records import InputFiles, ReadResult, iter_validated
from colossal_lang.errors import InputError
from colossal_lang.io.tokenizer_files import load_hf_tokenizer


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


def tokenize_inputs(inputs: InputFiles, validate, on_error: str, function, kwargs: dict, num_proc: int,
                    batch_size: int, desc: str) -> Tuple[List[TokenizedBatch], ReadResult]:
    """Read, validate and tokenize every record of `inputs` in order (see `batch_tokenize`)."""
    read = ReadResult()
    records = iter_validated(inputs, validate, on_error, read)
    batches = []
    with tqdm(total=inputs.lines, desc=desc, unit="doc", mininterval=1.0) as progress:
        for batch in tokenize_in_order(batched(records, batch_size), function, kwargs, num_proc):
            batches.append(batch)
            progress.update(len(batch.lengths))
    return batches, read


@dataclass
class TokenizedCorpus:
    """Documents as a flat token array: document d is `token_ids[doc_offsets[d]:doc_offsets[d+1]]`."""

    token_ids: np.ndarray
    learned: np.ndarray  # bool per token: learned (label = the token) or not (IGNORE_INDEX)
    doc_offsets: np.ndarray
    doc_category: np.ndarray  # index into `categories`, one per document
    categories: List[str]

    @classmethod
    def from_batches(cls, batches: Sequence[TokenizedBatch], categories_per_doc: Sequence[str],
                     category_order: Sequence[str], keep: Optional[np.ndarray] = None) -> "TokenizedCorpus":
        """Concatenate tokenized batches; `keep` (document indices) drops documents with a problem (no tokens)."""
        token_ids = np.concatenate([batch.token_ids for batch in batches]) if batches else np.zeros(0, np.int32)
        learned = np.concatenate([batch.learned for batch in batches]) if batches else np.zeros(0, bool)
        lengths = np.concatenate([batch.lengths for batch in batches]) if batches else np.zeros(0, np.int64)
        if keep is not None:
            if int(lengths.sum()) != int(lengths[keep].sum()):
                raise ValueError("a dropped document still holds tokens")
            lengths = lengths[keep]
        doc_offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
        index_of = {name: index for index, name in enumerate(category_order)}
        doc_category = np.fromiter((index_of[name] for name in categories_per_doc), dtype=np.int64, count=len(categories_per_doc))
        return cls(token_ids, learned, doc_offsets, doc_category, list(category_order))


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
    """One arrow table per bucket, gathered in pieces of about `TOKENS_PER_TABLE_CHUNK` tokens."""
    for runs in buckets:
        chunks, rows, categories, tokens = [], [], [], 0
        for category, row_ids in runs:
            category_rows, category_tokens = packed.rows[category], packed.row_tokens[category]
            for row_id in row_ids.tolist():
                rows.append(category_rows[row_id])
                categories.append(category)
                tokens += int(category_tokens[row_id])
                if tokens >= TOKENS_PER_TABLE_CHUNK:
                    chunks.append(rows_table(corpus.token_ids, corpus.learned, packed.spans.starts, packed.spans.lengths, rows, categories))
                    rows, categories, tokens = [], [], 0
        if rows or not chunks:
            chunks.append(rows_table(corpus.token_ids, corpus.learned, packed.spans.starts, packed.spans.lengths, rows, categories))
        yield pa.concat_tables(chunks)


def bucket_counts(packed: PackedRows, corpus: TokenizedCorpus, buckets) -> Dict[str, Dict[str, int]]:
    """Sequences, tokens and loss tokens per category in the output (after resampling)."""
    # Spans tile the token array in order and none is empty, so reduceat sums exactly each span.
    learned = corpus.learned
    loss_per_span = np.add.reduceat(learned, packed.spans.starts, dtype=np.int64) if len(learned) else np.zeros(0, np.int64)
    counts: Dict[str, Dict[str, int]] = {}
    for category in packed.rows:
        rows = packed.rows[category]
        spans_per_row = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        span_ids = np.fromiter((span for row in rows for span in row), dtype=np.int64, count=int(spans_per_row.sum()))
        row_loss = np.add.reduceat(loss_per_span[span_ids], np.cumsum(spans_per_row) - spans_per_row) if rows else np.zeros(0, np.int64)
        chosen = [row_ids for runs in buckets for name, row_ids in runs if name == category]
        if not chosen:
            continue
        chosen = np.concatenate(chosen)
        counts[category] = {"sequences": int(len(chosen)), "tokens": int(packed.row_tokens[category][chosen].sum()),
                            "loss_tokens": int(row_loss[chosen].sum())}
    return counts
