"""Writing prepared datasets: rows built straight from numpy, bucket folders streamed to disk, reuse checks.

A bucket (`arrow/part-XXXXX`) is written as it fills, one arrow record batch at a time, in the layout
`datasets.save_to_disk` produces (`data-00000-of-00001.arrow`, or consecutive row ranges in
`data-XXXXX-of-YYYYY.arrow` files written in parallel; `state.json`, `dataset_info.json`), so
`load_from_disk` memory-maps it and nothing holds a whole bucket in memory. The whole output folder is
built in a hidden staging folder and moved into place when complete (see `staged_folder`). An existing
output is reused when its fingerprint (settings + input bytes + tokenizer) matches, replaced with
`overwrite=True`, and otherwise refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from colossal_lang.data.batch_tokenize import labels_of
from colossal_lang.data.chunking import gather_index
from colossal_lang.data.format import MANIFEST_FILE, features
from colossal_lang.errors import InputError

# Files that define a tokenizer's behaviour; model weights in the same folder do not change the hash.
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "merges.txt", "tokenizer.model", "chat_template.json", "chat_template.jinja",
)
ROW_COLUMNS = ("input_ids", "labels", "doc_lengths")  # a category's rows before the category column is added


def tokenizer_hash(folder) -> str:
    """sha256 over the names and bytes of the tokenizer files in `folder` (sorted)."""
    digest = hashlib.sha256()
    folder = Path(folder)
    for name in sorted(TOKENIZER_FILES):
        path = folder / name
        if path.is_file():
            digest.update(name.encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass
class Rows:
    """Packed rows of one category: the table (ROW_COLUMNS) and, per row, its tokens and learned tokens."""

    table: pa.Table
    tokens: np.ndarray  # int32
    loss_tokens: np.ndarray  # int32


def build_rows(token_ids: np.ndarray, learned: np.ndarray, span_starts: np.ndarray, span_lengths: np.ndarray,
               rows: Sequence[Sequence[int]]) -> Rows:
    """Row r concatenates spans `rows[r]` of the flat token arrays; labels are the ids where `learned`, else -100."""
    spans_per_row = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
    span_order = np.fromiter((span for row in rows for span in row), dtype=np.int64, count=int(spans_per_row.sum()))
    lengths = span_lengths[span_order]
    gather = gather_index(span_starts[span_order], lengths)
    first_span = np.cumsum(spans_per_row) - spans_per_row
    row_tokens = np.add.reduceat(lengths, first_span) if len(rows) else np.zeros(0, np.int64)
    token_offsets = np.concatenate([[0], np.cumsum(row_tokens)]).astype(np.int32)
    row_ids = token_ids.take(gather).astype(np.int32, copy=False)
    row_learned = learned.take(gather)
    row_loss = np.add.reduceat(row_learned, token_offsets[:-1], dtype=np.int64) if len(rows) else np.zeros(0, np.int64)
    offsets = pa.array(token_offsets)
    table = pa.table({
        "input_ids": pa.ListArray.from_arrays(offsets, pa.array(row_ids)),
        "labels": pa.ListArray.from_arrays(offsets, pa.array(labels_of(row_ids, row_learned))),
        "doc_lengths": pa.ListArray.from_arrays(pa.array(np.concatenate([[0], np.cumsum(spans_per_row)]).astype(np.int32)),
                                                pa.array(lengths.astype(np.int32))),
    })
    return Rows(table, row_tokens.astype(np.int32), row_loss.astype(np.int32))


def data_file_name(index: int, count: int) -> str:
    """The name `save_to_disk` gives file `index` of a dataset written as `count` files."""
    return f"data-{index:05d}-of-{count:05d}.arrow"


class DataFileWriter:
    """Append tables (COLUMNS) to one arrow data file of a bucket folder; `close()` returns the rows written.

    `schema`: `features().arrow_schema`, passed in so that a worker process need not import `datasets` (a second
    of CPU per process)."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.schema = schema
        self.writer = pa.ipc.new_stream(str(path), self.schema)
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table.cast(self.schema))
        self.rows += table.num_rows

    def close(self) -> int:
        self.writer.close()
        return self.rows


def write_bucket_info(folder: Path, data_files: Sequence[str], fingerprint: str) -> None:
    """The files beside a bucket's data files that `load_from_disk` needs; it reads `data_files` in this order."""
    state = {"_data_files": [{"filename": name} for name in data_files], "_fingerprint": fingerprint,
             "_format_columns": None, "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False,
             "_split": None}
    info = {"citation": "", "description": "", "features": features().to_dict(), "homepage": "", "license": ""}
    (Path(folder) / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
    (Path(folder) / "dataset_info.json").write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf-8")


def check_existing_output(output_dir: Path, fingerprint: str, overwrite: bool) -> bool:
    """True when `output_dir` already holds this exact dataset (nothing to do).

    Raises InputError when it holds anything else, unless `overwrite`.
    """
    if not output_dir.exists():
        return False
    manifest_path = output_dir / MANIFEST_FILE
    if manifest_path.is_file():
        try:
            existing = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            existing = {}
        if existing.get("fingerprint") == fingerprint and not overwrite:
            return True
    if overwrite:
        return False
    if output_dir.is_dir() and not any(output_dir.iterdir()):
        return False
    what = "a different dataset" if manifest_path.is_file() else "other files"
    raise InputError(f"output folder already holds {what}; pass --overwrite to replace it", output_dir)
