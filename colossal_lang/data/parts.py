"""Input parts: the units a preparation is split into, resumed by, and spread over machines with.

The sorted input files are grouped, in order, into parts of at least `part_bytes` of jsonl (a larger file is
a part by itself). Each part is prepared on its own (tokenized, chunked, packed per category) into
`<work>/part-XXXXX/`: one arrow file of packed rows per category, their token counts, and `part.json`
(counts and a fingerprint of the settings and the part's input bytes), written last and moved into place
atomically. A part folder whose fingerprint matches is never prepared again, so a killed run resumes
where it stopped, and `--shard_index K --num_shards N` prepares only the parts of shard K: contiguous runs
of parts of about equal bytes, disjoint for a given N. Parts do not depend on N, so a dataset combined
from N=1 or N=4 shards is byte for byte the same.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pyarrow as pa

from colossal_lang.data.arrow_output import Rows
from colossal_lang.data.records import file_digest

PART_FILE = "part.json"
SPOOL_BATCH_TOKENS = 1 << 20  # rows are stored and read back in record batches of about this many tokens
ROW_SCHEMA = pa.schema([(name, pa.list_(pa.int32())) for name in ("input_ids", "labels", "doc_lengths")])


@dataclass
class InputPart:
    index: int
    files: List[Path]
    bytes: int

    @property
    def name(self) -> str:
        return f"part-{self.index:05d}"


def plan_parts(files: Sequence[Path], part_bytes: int) -> List[InputPart]:
    """Group consecutive files into parts of at least `part_bytes` (the last one may be smaller)."""
    parts, current, size = [], [], 0
    for path in files:
        current.append(Path(path))
        size += Path(path).stat().st_size
        if size >= part_bytes:
            parts.append(InputPart(len(parts), current, size))
            current, size = [], 0
    if current:
        parts.append(InputPart(len(parts), current, size))
    return parts


def shard_of(parts: Sequence[InputPart], num_shards: int) -> List[int]:
    """The shard of every part: contiguous runs of about `total / num_shards` bytes each, none empty while
    there are at least as many parts as shards."""
    total = sum(part.bytes for part in parts) or 1
    middles = np.cumsum([part.bytes for part in parts]) - np.asarray([part.bytes for part in parts]) / 2
    starts = [0]
    for shard in range(1, num_shards):
        ideal = int(np.searchsorted(middles, shard * total / num_shards))
        if len(parts) >= num_shards:  # at least one part each
            ideal = min(max(ideal, starts[-1] + 1), len(parts) - (num_shards - shard))
        starts.append(max(ideal, starts[-1]))
    return [int(np.searchsorted(starts, index, side="right")) - 1 for index in range(len(parts))]


def part_fingerprint(part: InputPart, settings: dict) -> tuple[str, int]:
    """(sha256 of the settings, file names and bytes of `part`; its line count)."""
    digest, lines = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()), 0
    for path in part.files:
        file_sha256, file_lines = file_digest(path)
        digest.update(f"\0{path}\0{file_sha256}".encode())
        lines += file_lines
    return digest.hexdigest(), lines


def read_part_info(folder: Path, fingerprint: str) -> Optional[dict]:
    """The `part.json` of a finished part folder with this fingerprint, else None (prepare it again)."""
    try:
        info = json.loads((folder / PART_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if info.get("fingerprint") == fingerprint else None


def spool_path(folder: Path, category_index: int) -> Path:
    return Path(folder) / f"rows-{category_index:04d}.arrow"


def rows_per_batch(max_length: int) -> int:
    return max(16, SPOOL_BATCH_TOKENS // max_length)


class SpoolWriter:
    """The packed rows of one category of one part: an arrow file of record batches of exactly `batch_rows` rows
    (the last may be shorter), so row r lies in batch r // batch_rows; plus per-row token and loss counts."""

    def __init__(self, path: Path, batch_rows: int):
        self.path = Path(path)
        self.batch_rows = batch_rows
        self.writer = pa.ipc.new_file(str(self.path), ROW_SCHEMA)
        self.pending: List[pa.Table] = []
        self.pending_rows = 0
        self.tokens: List[np.ndarray] = []
        self.loss_tokens: List[np.ndarray] = []

    def write(self, rows: Rows) -> None:
        self.pending.append(rows.table)
        self.pending_rows += rows.table.num_rows
        self.tokens.append(rows.tokens)
        self.loss_tokens.append(rows.loss_tokens)
        if self.pending_rows >= self.batch_rows:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        table = pa.concat_tables(self.pending).combine_chunks() if self.pending else None
        start = 0
        while table is not None and (table.num_rows - start >= self.batch_rows or (final and start < table.num_rows)):
            piece = table.slice(start, self.batch_rows).combine_chunks()
            for batch in piece.to_batches(max_chunksize=self.batch_rows):
                self.writer.write_batch(batch)
            start += piece.num_rows
        rest = table.slice(start) if table is not None and start < table.num_rows else None
        self.pending = [rest] if rest is not None else []
        self.pending_rows = rest.num_rows if rest is not None else 0

    def close(self) -> Dict[str, int]:
        self._flush(final=True)
        self.writer.close()
        tokens = np.concatenate(self.tokens) if self.tokens else np.zeros(0, np.int32)
        loss_tokens = np.concatenate(self.loss_tokens) if self.loss_tokens else np.zeros(0, np.int32)
        np.save(self.path.with_suffix(".tokens.npy"), tokens)
        np.save(self.path.with_suffix(".loss.npy"), loss_tokens)
        return {"rows": int(len(tokens)), "row_tokens": int(tokens.sum(dtype=np.int64)),
                "loss_tokens": int(loss_tokens.sum(dtype=np.int64))}


def spool_counts(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, loss tokens) of every row of a spool file."""
    path = Path(path)
    return np.load(path.with_suffix(".tokens.npy")), np.load(path.with_suffix(".loss.npy"))


class SpoolReader:
    """Rows of one spool by index, one record batch in memory at a time (read, not memory-mapped)."""

    def __init__(self, path: Path, batch_rows: int):
        self.file = pa.OSFile(str(path))
        self.reader = pa.ipc.open_file(self.file)
        self.batch_rows = batch_rows
        self.cached_index, self.cached = -1, None

    def _batch(self, index: int) -> pa.Table:
        if index != self.cached_index:
            self.cached_index, self.cached = index, pa.Table.from_batches([self.reader.get_batch(index)])
        return self.cached

    def take(self, rows: np.ndarray) -> pa.Table:
        """The rows `rows` (local indices, any order; increasing order reads each batch once)."""
        batch_of = rows // self.batch_rows
        cuts = np.flatnonzero(np.diff(batch_of)) + 1
        pieces = [self._batch(int(run_batches[0])).take(pa.array(run_rows - int(run_batches[0]) * self.batch_rows))
                  for run_rows, run_batches in zip(np.split(rows, cuts), np.split(batch_of, cuts)) if len(run_rows)]
        return pa.concat_tables(pieces) if pieces else ROW_SCHEMA.empty_table()

    def close(self) -> None:
        self.file.close()
