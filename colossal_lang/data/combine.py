"""Combine prepared parts into one dataset: count first, then mix, bin and write the buckets as a stream.

Every part already knows, per category, the tokens of each packed row (a few bytes a row), so the category
totals that token-share weights need are known before any row is chosen: resampling, bins and the stored
order are planned on those counts alone (`mixing.py`), exactly as if the whole corpus had been prepared at
once, and the rows are then copied from the parts' spool files into the bucket folders a record batch
at a time. Memory: about 20 bytes per output row for the plan, plus one record batch per category.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from colossal_lang.io.atomic_folder import staged_folder
from colossal_lang.data.arrow_output import BucketWriter
from colossal_lang.data.format import Manifest, part_folder, write_manifest
from colossal_lang.data.mixing import BucketPlan, build_buckets, resample_rows
from colossal_lang.data.parts import SpoolReader, rows_per_batch, spool_counts, spool_path
from colossal_lang.data.records import normalize_reasons

WRITE_TOKENS = 1 << 20  # a bucket is assembled and written in pieces of about this many tokens


@dataclass
class CategoryRows:
    """All packed rows of one category, over every part in order: row g lives in piece searchsorted(offsets, g)."""

    name: str
    spools: List[Path]  # one spool file per part holding the category, in part order
    offsets: np.ndarray  # first global row of each spool, and the total at the end
    tokens: np.ndarray  # per row
    loss_tokens: np.ndarray  # per row
    batch_rows: int

    def reader(self) -> "RowReader":
        return RowReader(self)


class RowReader:
    """Reads rows of a `CategoryRows` by global index, keeping one spool open at a time."""

    def __init__(self, rows: CategoryRows):
        self.rows = rows
        self.open_index, self.open = -1, None

    def take(self, global_rows: np.ndarray) -> pa.Table:
        spool_of = np.searchsorted(self.rows.offsets, global_rows, side="right") - 1
        cuts = np.flatnonzero(np.diff(spool_of)) + 1
        pieces = []
        for run_rows, run_spools in zip(np.split(global_rows, cuts), np.split(spool_of, cuts)):
            if not len(run_rows):
                continue
            index = int(run_spools[0])
            if index != self.open_index:
                if self.open is not None:
                    self.open.close()
                self.open_index, self.open = index, SpoolReader(self.rows.spools[index], self.rows.batch_rows)
            pieces.append(self.open.take(run_rows - self.rows.offsets[index]))
        table = pa.concat_tables(pieces)
        return table.append_column("category", pa.array([self.rows.name] * table.num_rows, type=pa.string()))

    def close(self) -> None:
        if self.open is not None:
            self.open.close()


def gather_categories(part_infos: Sequence[dict], part_folders: Sequence[Path], max_length: int) -> Dict[str, CategoryRows]:
    """Every category's rows over all parts, in order of first appearance."""
    pieces: Dict[str, list] = {}
    for info, folder in zip(part_infos, part_folders):
        for index, entry in enumerate(info["categories"]):
            pieces.setdefault(entry["name"], []).append(spool_path(folder, index))
    categories = {}
    for name, spools in pieces.items():
        counts = [spool_counts(path) for path in spools]
        sizes = [len(tokens) for tokens, _ in counts]
        categories[name] = CategoryRows(
            name, spools, np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
            np.concatenate([tokens for tokens, _ in counts]), np.concatenate([loss for _, loss in counts]),
            rows_per_batch(max_length))
    return categories


def category_totals(part_infos: Sequence[dict]) -> Dict[str, dict]:
    """Input-side counts per category summed over parts (records, documents, chunked, input tokens, ...)."""
    totals: Dict[str, dict] = {}
    for info in part_infos:
        for entry in info["categories"]:
            total = totals.setdefault(entry["name"], {})
            for key, value in entry.items():
                if key != "name":
                    total[key] = total.get(key, 0) + value
    return totals


def write_bucket(writer: BucketWriter, plan: BucketPlan, readers: Dict[str, RowReader], max_length: int,
                 progress) -> None:
    """Copy the bucket's rows from the spools in `plan`'s stored order, a piece of ~WRITE_TOKENS at a time."""
    piece_rows = max(64, WRITE_TOKENS // max_length)
    if plan.sequence is None:  # curriculum: each category's rows in turn
        for name in plan.categories:
            rows = plan.rows[name]
            for start in range(0, len(rows), piece_rows):
                writer.write(readers[name].take(rows[start:start + piece_rows]))
                progress.update(min(piece_rows, len(rows) - start))
        return
    taken = {name: 0 for name in plan.categories}
    for start in range(0, len(plan.sequence), piece_rows):
        which = plan.sequence[start:start + piece_rows]
        counts = np.bincount(which, minlength=len(plan.categories))
        tables = []
        for index, name in enumerate(plan.categories):
            if counts[index]:
                tables.append(readers[name].take(plan.rows[name][taken[name]:taken[name] + counts[index]]))
                taken[name] += int(counts[index])
        grouped = pa.concat_tables(tables)  # categories one after the other, each in stored order
        by_category = np.argsort(which, kind="stable")  # the positions of the grouped rows
        position_of = np.empty_like(by_category)
        position_of[by_category] = np.arange(len(which))
        writer.write(grouped.take(pa.array(position_of)))
        progress.update(len(which))


def combine_parts(output_dir: Path, part_infos: Sequence[dict], part_folders: Sequence[Path], manifest: Manifest,
                  category_order: Sequence[str], weights: Dict[str, float], total_tokens: Optional[int]) -> Manifest:
    """Plan the mix over all parts and write the dataset (buckets + manifest) atomically; returns the manifest."""
    rows = gather_categories(part_infos, part_folders, manifest.max_length)
    present = [name for name in category_order if name in rows and len(rows[name].tokens)]
    if weights:
        chosen = resample_rows({name: rows[name].tokens for name in present}, weights, manifest.seed, total_tokens)
    else:
        chosen = {name: np.arange(len(rows[name].tokens), dtype=np.int64) for name in present}
    buckets = build_buckets(chosen, present, manifest.num_buckets, manifest.order, manifest.seed)

    totals = category_totals(part_infos)
    for name in category_order:
        entry = {key: value for key, value in totals.get(name, {}).items() if key not in ("rows", "row_tokens", "loss_tokens")}
        picked = chosen.get(name, np.zeros(0, np.int64))
        category = rows.get(name)
        input_rows = len(category.tokens) if category else 0
        entry.update({
            "input_sequences": input_rows,
            "fill_ratio": round(float(category.tokens.sum()) / (input_rows * manifest.max_length), 4) if input_rows else None,
            "sequences": int(len(picked)),
            "tokens": int(category.tokens[picked].sum(dtype=np.int64)) if category else 0,
            "loss_tokens": int(category.loss_tokens[picked].sum(dtype=np.int64)) if category else 0,
        })
        manifest.categories[name] = entry
    all_rows = sum(len(rows[name].tokens) for name in present)
    all_tokens = sum(int(rows[name].tokens.sum(dtype=np.int64)) for name in present)
    manifest.fill_ratio = round(all_tokens / (all_rows * manifest.max_length), 4) if all_rows else None
    manifest.records_read = sum(info["records_read"] for info in part_infos)
    manifest.records_kept = sum(info["records_kept"] for info in part_infos)
    skipped = sum((Counter(info["skipped"]) for info in part_infos), Counter())
    manifest.skipped = dict(normalize_reasons(skipped))
    manifest.inputs = [path for info in part_infos for path in info["files"]]

    readers = {name: rows[name].reader() for name in present}
    with staged_folder(output_dir) as staging, \
            tqdm(total=sum(plan.num_rows for plan in buckets), desc="writing buckets", unit="row", mininterval=1.0) as progress:
        part_rows = []
        for index, plan in enumerate(buckets):
            bucket_fingerprint = hashlib.sha256(f"{manifest.fingerprint}/{index}".encode()).hexdigest()[:16]
            writer = BucketWriter(part_folder(staging, index), bucket_fingerprint)
            write_bucket(writer, plan, readers, manifest.max_length, progress)
            part_rows.append(writer.close())
        for reader in readers.values():
            reader.close()
        manifest.num_buckets, manifest.part_rows = len(part_rows), part_rows
        write_manifest(staging, manifest)
    return manifest
