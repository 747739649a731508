"""Prepare one input part as a stream: read + validate → tokenize (in order, `num_proc` workers) → chunk →
pack per category in a bounded window → packed rows appended to the part's spool files as they fill.

Nothing here holds more than the batches in flight (`2 × num_proc`), one packing window per category
(`buffer_tokens`) and one record batch of rows per category, whatever the size of the part. Pretraining and
SFT differ only in their `RecordKind`: how a record is validated and tokenized, whether long documents are
chunked and whether documents are packed.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from colossal_lang.io.atomic_folder import staged_folder
from colossal_lang.data.arrow_output import build_rows
from colossal_lang.data.batch_tokenize import TokenizedBatch, tokenize_in_order
from colossal_lang.data.chunking import chunk_spans
from colossal_lang.io.jsonl import report_bad_record
from colossal_lang.data.packing import WindowPacker
from colossal_lang.data.parts import PART_FILE, InputPart, SpoolWriter, rows_per_batch, spool_path
from colossal_lang.data.records import ReadResult, iter_validated

BATCH_CHARS = 1 << 22  # about a million tokens of text per batch at most, whatever the batch's record count


@dataclass
class RecordKind:
    """What makes pretraining and SFT preparation differ; every later step is shared."""

    name: str  # "pretrain" or "sft": the manifest's kind
    validate: Callable[[dict], tuple]
    batch_function: Callable[..., TokenizedBatch]
    batch_kwargs: dict
    batch_size: int
    chunk: bool  # cut documents longer than max_length into windows (pretraining)
    pack: bool  # False: one document per row (SFT without packing)
    # Per document of a tokenized batch, flags counted per category (e.g. "truncated_documents").
    document_flags: Callable[[TokenizedBatch], Dict[str, np.ndarray]] = lambda batch: {}
    # Characters of text in a record: a batch also closes at BATCH_CHARS, so a run of long documents (speeches,
    # books) makes more batches, not bigger ones, and tokenizer memory does not depend on document lengths.
    record_chars: Callable[[dict], int] = lambda record: 0
    desc: str = "reading + tokenizing"
    settings: dict = field(default_factory=dict)  # kind-specific settings that change the rows (fingerprinted)


@dataclass
class CategoryState:
    """Rows of one category being built: its packer, its spool file and its counts."""

    spool: SpoolWriter
    packer: Optional[WindowPacker]
    counts: Counter = field(default_factory=Counter)


class PartSink:
    """Receives tokenized batches and turns them into packed rows on disk, category by category."""

    def __init__(self, folder: Path, kind: RecordKind, max_length: int, buffer_tokens: int):
        self.folder, self.kind, self.max_length, self.buffer_tokens = folder, kind, max_length, buffer_tokens
        self.categories: Dict[str, CategoryState] = {}  # in order of first appearance

    def _state(self, name: str) -> CategoryState:
        state = self.categories.get(name)
        if state is None:
            spool = SpoolWriter(spool_path(self.folder, len(self.categories)), rows_per_batch(self.max_length))
            packer = None
            if self.kind.pack:
                packer = WindowPacker(self.max_length, self.buffer_tokens,
                                      lambda ids, learned, starts, lengths, rows: spool.write(
                                          build_rows(ids, learned, starts, lengths, rows)))
            state = self.categories[name] = CategoryState(spool, packer)
        return state

    def add(self, batch: TokenizedBatch, categories: List[str], keep: np.ndarray) -> None:
        index_of: Dict[str, int] = {}
        doc_category = np.fromiter((index_of.setdefault(name, len(index_of)) for name in categories),
                                   dtype=np.int64, count=len(categories))
        starts = np.cumsum(batch.lengths) - batch.lengths
        flags = self.kind.document_flags(batch)
        for name, category_index in index_of.items():
            docs = np.flatnonzero((doc_category == category_index) & keep)
            if not len(docs):
                continue
            state = self._state(name)
            lengths = batch.lengths[docs]
            state.counts.update(records=len(docs), documents=len(docs), input_tokens=int(lengths.sum()),
                                chunked_documents=int((lengths > self.max_length).sum()) if self.kind.chunk else 0,
                                **{flag: int(values[docs].sum()) for flag, values in flags.items()})
            if self.kind.chunk:
                spans = chunk_spans(starts[docs], lengths, self.max_length)
                span_starts, span_lengths = spans.starts, spans.lengths
            else:
                span_starts, span_lengths = starts[docs], lengths
            if state.packer is not None:
                state.packer.add(batch.token_ids, batch.learned, span_starts, span_lengths)
            else:
                rows = [[span] for span in range(len(span_lengths))]
                state.spool.write(build_rows(batch.token_ids, batch.learned, span_starts, span_lengths, rows))

    def finish(self) -> List[dict]:
        """Flush every packer and spool; per category (in order of first appearance) its counts."""
        entries = []
        for name, state in self.categories.items():
            if state.packer is not None:
                state.packer.finish()
            entries.append({"name": name, **state.counts, **state.spool.close()})
        return entries


def batched_by_size(records, size: int, record_chars: Callable[[dict], int]):
    """Lists of (record, file, line): `size` records, or fewer once they hold BATCH_CHARS characters."""
    batch, chars = [], 0
    for item in records:
        batch.append(item)
        chars += record_chars(item[0])
        if len(batch) == size or chars >= BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def prepare_part(part: InputPart, kind: RecordKind, folder: Path, fingerprint: str, max_length: int,
                 buffer_tokens: int, num_proc: int, on_error: str, progress) -> dict:
    """Prepare `part` into `folder` (atomically); returns its part.json content."""
    read = ReadResult()
    tokenize_skipped: Counter = Counter()  # problems found while tokenizing (SFT), counted apart from reading
    records = iter_validated(part.files, kind.validate, on_error, read)
    where: deque = deque()  # (categories, files, lines) of each batch in flight, in order

    def record_batches():
        for batch in batched_by_size(records, kind.batch_size, kind.record_chars):
            where.append(([clean["category"] for clean, _, _ in batch], [path for _, path, _ in batch],
                          [line for _, _, line in batch]))
            yield [clean for clean, _, _ in batch]

    with staged_folder(folder) as staging:
        sink = PartSink(staging, kind, max_length, buffer_tokens)
        for batch in tokenize_in_order(record_batches(), kind.batch_function, kind.batch_kwargs, num_proc):
            categories, paths, lines = where.popleft()
            keep = np.ones(len(categories), dtype=bool)
            for index, problem in enumerate(batch.problems):
                if problem:  # a problem found while tokenizing still names its file:line
                    report_bad_record(paths[index], lines[index], problem, on_error, tokenize_skipped)
                    keep[index] = False
            sink.add(batch, categories, keep)
            progress.update(len(categories))
        info = {"fingerprint": fingerprint, "files": read.input_files, "records_read": read.records_read,
                "records_kept": read.kept - sum(tokenize_skipped.values()),
                "skipped": dict(read.skipped + tokenize_skipped), "rows_per_batch": rows_per_batch(max_length),
                "categories": sink.finish()}
        (staging / PART_FILE).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return info
