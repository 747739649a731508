"""Writing prepared datasets: arrow parts built straight from numpy, a manifest, an all-or-nothing move.

The output is built in a hidden sibling folder (`.<name>.partial-<pid>`) and renamed into place only
after every part and `manifest.json` are written, so a run killed part way never leaves a folder that
looks complete. An existing output is reused when its fingerprint (settings + input bytes + tokenizer)
matches, replaced with `overwrite=True`, and otherwise refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Dict, Iterable, List, Sequence

import numpy as np
import pyarrow as pa

from colossal_lang.data.batch_tokenize import labels_of
from colossal_lang.errors import InputError
from colossal_lang.io.atomic_folder import staged_folder

FORMAT = "colossal-lang/packed-v1"
# Files that define a tokenizer's behaviour; model weights in the same folder do not change the hash.
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "merges.txt", "tokenizer.model", "chat_template.json", "chat_template.jinja",
)
TOKENS_PER_TABLE_CHUNK = 1 << 22  # rows are gathered in pieces of about this many tokens, to bound memory


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


def rows_table(
    token_ids: np.ndarray, learned: np.ndarray, span_starts: np.ndarray, span_lengths: np.ndarray,
    rows: Sequence[Sequence[int]], categories: Sequence[str],
) -> pa.Table:
    """Arrow table of packed rows: row r concatenates spans `rows[r]` of the flat token arrays.

    Labels are the token ids where `learned`, IGNORE_INDEX elsewhere.
    """
    spans_per_row = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
    span_order = np.fromiter((span for row in rows for span in row), dtype=np.int64, count=int(spans_per_row.sum()))
    lengths = span_lengths[span_order]
    starts = span_starts[span_order]
    # Gather index of every output token: span start + position inside the span (built in place).
    output_start = np.cumsum(lengths) - lengths
    gather = np.arange(int(lengths.sum()), dtype=np.int64)
    gather += np.repeat(starts - output_start, lengths)
    row_tokens = np.add.reduceat(lengths, np.cumsum(spans_per_row) - spans_per_row) if len(rows) else np.zeros(0, np.int64)
    token_offsets = pa.array(np.concatenate([[0], np.cumsum(row_tokens)]).astype(np.int32))
    doc_offsets = pa.array(np.concatenate([[0], np.cumsum(spans_per_row)]).astype(np.int32))
    row_ids = token_ids.take(gather).astype(np.int32, copy=False)
    row_labels = labels_of(row_ids, learned.take(gather))
    return pa.table({
        "input_ids": pa.ListArray.from_arrays(token_offsets, pa.array(row_ids)),
        "labels": pa.ListArray.from_arrays(token_offsets, pa.array(row_labels)),
        "doc_lengths": pa.ListArray.from_arrays(doc_offsets, pa.array(lengths.astype(np.int32))),
        "category": pa.array(list(categories), type=pa.string()),
    })


def check_existing_output(output_dir: Path, fingerprint: str, overwrite: bool) -> bool:
    """True when `output_dir` already holds this exact dataset (nothing to do).

    Raises InputError when it holds anything else, unless `overwrite`.
    """
    if not output_dir.exists():
        return False
    manifest_path = output_dir / "manifest.json"
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


def write_dataset(output_dir, tables: Iterable[pa.Table], manifest: Dict, fingerprint: str) -> List[int]:
    """Write each table as `arrow/part-XXXXX`, then `manifest.json`, then move the folder into place.

    Returns the row count of each part.
    """
    from datasets import Dataset

    part_rows = []
    with staged_folder(output_dir) as partial:
        for index, table in enumerate(tables):
            part_fingerprint = hashlib.sha256(f"{fingerprint}/{index}".encode()).hexdigest()[:16]
            dataset = Dataset(table, fingerprint=part_fingerprint)
            dataset.save_to_disk(str(partial / "arrow" / f"part-{index:05d}"))
            part_rows.append(len(dataset))
        manifest = dict(manifest, fingerprint=fingerprint, num_buckets=len(part_rows), part_rows=part_rows)
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return part_rows
