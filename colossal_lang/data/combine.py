"""Combine prepared parts into one dataset: count first, then mix, bin and write the buckets as a stream.

Every part already knows, per category, the tokens of each packed row (a few bytes a row), so the category
totals that token-share weights need are known before any row is chosen: resampling, bins and the stored
order are planned on those counts alone (`mixing.py`), exactly as if the whole corpus had been prepared at
once, and the rows are then copied from the parts' spool files into the bucket folders a record batch
at a time. Each bucket is written as consecutive row ranges of about FILE_TOKENS tokens, one arrow file
each, by `--num_proc` worker processes at once (one bucket of a small dataset is one file, as `save_to_disk`
writes it); the ranges depend on the plan only, so the output is the same bytes whatever `--num_proc`.
Memory: about 20 bytes per output row for the plan in the main process, and per worker one record batch per
category plus the plan of the file it writes.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from colossal_lang.errors import InputError
from colossal_lang.io.atomic_folder import staged_folder
from colossal_lang.io.error_text import one_line
from colossal_lang.data.arrow_output import DataFileWriter, data_file_name, write_bucket_info
from colossal_lang.data.format import Manifest, features, part_folder, write_manifest
from colossal_lang.data.mixing import BucketPlan, build_buckets, resample_rows
from colossal_lang.data.parts import SpoolReader, rows_per_batch, spool_counts, spool_path
from colossal_lang.data.process_pool import map_in_order
from colossal_lang.data.records import normalize_reasons
from colossal_lang.testing import faults

WRITE_TOKENS = 1 << 20  # a bucket is assembled and written in pieces of about this many tokens
FILE_TOKENS = 1 << 26  # ... into data files of about this many tokens (~0.5 GB, save_to_disk's shard size)


@dataclass
class CategorySpools:
    """Where the packed rows of one category lie, over every part in order: row g is in spool searchsorted(offsets, g)."""

    name: str
    spools: List[Path]  # one spool file per part holding the category, in part order
    offsets: np.ndarray  # first global row of each spool, and the total at the end
    batch_rows: int

    def reader(self) -> "RowReader":
        return RowReader(self)


@dataclass
class CategoryRows:
    """All packed rows of one category: their spools, and per row its tokens and learned tokens."""

    source: CategorySpools
    tokens: np.ndarray
    loss_tokens: np.ndarray


class RowReader:
    """Reads rows of a `CategorySpools` by global index, keeping one spool open at a time."""

    def __init__(self, rows: CategorySpools):
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
            CategorySpools(name, spools, np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
                           rows_per_batch(max_length)),
            np.concatenate([tokens for tokens, _ in counts]), np.concatenate([loss for _, loss in counts]))
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


def write_rows(writer: DataFileWriter, plan: BucketPlan, readers: Dict[str, RowReader], piece_rows: int) -> None:
    """Copy `plan`'s rows from the spools in its stored order, `piece_rows` rows at a time."""
    if plan.sequence is None:  # curriculum: each category's rows in turn
        for name in plan.categories:
            rows = plan.rows[name]
            for start in range(0, len(rows), piece_rows):
                writer.write(readers[name].take(rows[start:start + piece_rows]))
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


def file_plans(plan: BucketPlan, file_rows: int) -> Iterator[BucketPlan]:
    """`plan`'s stored rows cut into consecutive runs of `file_rows` (the last one shorter): the plan of each file."""
    stored = plan.sequence
    if stored is None:
        stored = np.repeat(np.arange(len(plan.categories), dtype=np.int16), [len(plan.rows[n]) for n in plan.categories])
    taken = np.zeros(len(plan.categories), dtype=np.int64)
    for start in range(0, len(stored), file_rows):
        which = stored[start:start + file_rows]
        counts = np.bincount(which, minlength=len(plan.categories))
        rows = {name: plan.rows[name][taken[index]:taken[index] + counts[index]] for index, name in enumerate(plan.categories)}
        taken += counts
        yield BucketPlan(plan.categories, rows, None if plan.sequence is None else which)


@dataclass
class FileJob:
    """One data file of one bucket: the plan of its rows, where they are read from and where they go."""

    bucket: int
    path: Path
    plan: BucketPlan
    sources: Dict[str, CategorySpools]  # the categories the file holds rows of
    piece_rows: int
    schema: pa.Schema
    number: int  # of the file over the whole dataset, from 1 (fault injection)


def write_data_file(job: FileJob) -> tuple:
    """Write `job`'s file (in a worker process, or in this one); returns (bucket, file name, rows)."""
    readers = {name: source.reader() for name, source in job.sources.items()}
    writer = DataFileWriter(job.path, job.schema)
    try:
        write_rows(writer, job.plan, readers, job.piece_rows)
        faults.trigger("combine_disk_full", job.number, rank=0)  # (tests: a full disk, or a killed worker)
        faults.trigger("combine_kill", job.number, rank=0)
    finally:
        for reader in readers.values():
            reader.close()
    return job.bucket, job.path.name, writer.close()


def file_jobs(staging: Path, buckets: Sequence[BucketPlan], rows: Dict[str, CategoryRows], max_length: int) -> Iterator[FileJob]:
    """Every data file to write, bucket by bucket: rows cut at multiples of the piece size, so that a bucket of
    one file is written exactly as before files were cut, and cut points depend on the plan only."""
    piece_rows = max(64, WRITE_TOKENS // max_length)
    schema = features().arrow_schema
    file_rows = max(piece_rows, FILE_TOKENS // max_length // piece_rows * piece_rows)
    number = 0
    for bucket, plan in enumerate(buckets):
        count = -(-plan.num_rows // file_rows)
        for index, file_plan in enumerate(file_plans(plan, file_rows)):
            number += 1
            sources = {name: rows[name].source for name in file_plan.categories if len(file_plan.rows[name])}
            yield FileJob(bucket, part_folder(staging, bucket) / data_file_name(index, count), file_plan, sources,
                          piece_rows, schema, number)


def write_buckets(staging: Path, buckets: Sequence[BucketPlan], rows: Dict[str, CategoryRows], max_length: int,
                  fingerprint: str, num_proc: int, output_dir: Path) -> List[int]:
    """Write every bucket folder under `staging`, `num_proc` files at a time; returns the rows of each bucket.

    A file that fails to be written (a full disk, a killed worker) is an InputError naming `output_dir`; the
    files in flight finish first, so the caller's staging folder can then be removed."""
    for bucket in range(len(buckets)):
        part_folder(staging, bucket).mkdir(parents=True)
    jobs = file_jobs(staging, buckets, rows, max_length)
    if num_proc <= 1:
        written = map(write_data_file, jobs)
    else:
        written = map_in_order(write_data_file, jobs, num_proc,
                               died="a bucket-writing worker process died (killed, most likely for lack of memory)")
    files: List[List[str]] = [[] for _ in buckets]
    part_rows = [0] * len(buckets)
    try:
        with tqdm(total=sum(plan.num_rows for plan in buckets), desc="writing buckets", unit="row", mininterval=1.0) as progress:
            for bucket, name, file_rows in written:
                files[bucket].append(name)
                part_rows[bucket] += file_rows
                progress.update(file_rows)
    except (OSError, RuntimeError) as error:
        raise InputError(f"writing the buckets failed, nothing was written: {one_line(error)}", output_dir) from None
    for bucket, names in enumerate(files):
        write_bucket_info(part_folder(staging, bucket), names,
                          hashlib.sha256(f"{fingerprint}/{bucket}".encode()).hexdigest()[:16])
    return part_rows


def combine_parts(output_dir: Path, part_infos: Sequence[dict], part_folders: Sequence[Path], manifest: Manifest,
                  category_order: Sequence[str], weights: Dict[str, float], total_tokens: Optional[int],
                  num_proc: int = 1) -> Manifest:
    """Plan the mix over all parts and write the dataset (buckets + manifest) atomically, the buckets' files by
    `num_proc` processes; returns the manifest."""
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

    with staged_folder(output_dir) as staging:
        part_rows = write_buckets(staging, buckets, rows, manifest.max_length, manifest.fingerprint, num_proc, output_dir)
        manifest.num_buckets, manifest.part_rows = len(part_rows), part_rows
        write_manifest(staging, manifest)
    return manifest
