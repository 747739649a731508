"""Feed prepared datasets to training: load the arrow parts, pad batches, and a sampler that resumes exactly.

- `load_prepared_dataset` reads `data_output_dir` folders (with `manifest.json`) or single part folders, in
  order, and refuses folders built with different tokenizers or `max_length`s.
- `PackedCollator` pads with the pad id (labels with -100), gives each packed document its own position ids,
  and, for `doc_causal` packing, keeps attention inside each document.
- `ResumableSampler` walks the buckets (arrow parts) in their order, each one in a seeded per-epoch
  permutation (the stored order for a curriculum); its position is the global number of samples consumed in
  the current epoch, so a resumed run (even with another number of data-parallel workers) continues at the
  same place in the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import torch
from torch.utils.data import Sampler

from colossal_lang.data.format import ARROW_DIR, COLUMNS, MANIFEST_FILE, Manifest, read_manifest
from colossal_lang.errors import InputError

ATTENTION_MODES = ("doc_causal", "causal", "position_ids_only")


@dataclass
class PreparedDataset:
    dataset: object  # a datasets.Dataset with COLUMNS, buckets concatenated in training order
    packing: str  # "doc_causal" or "causal"
    max_length: Optional[int]
    tokenizer_hash: Optional[str]
    categories: List[str] = field(default_factory=list)
    sources: List[str] = field(default_factory=list)
    curriculum: bool = False  # prepared with --order curriculum: train the rows in their stored order
    bucket_sizes: List[int] = field(default_factory=list)  # rows per bucket (part k of every path), in training order


def _part_folders(path: Path) -> tuple[list[Path], Optional[Manifest]]:
    """The part folders under one dataset path, in training order, and its manifest (None for a bare part)."""
    manifest_path = path / MANIFEST_FILE
    if manifest_path.is_file():
        try:
            manifest = read_manifest(path)
        except ValueError as error:
            raise InputError(f"manifest is not valid JSON: {error}", manifest_path) from None
        arrow = path / ARROW_DIR
        parts = sorted(p for p in arrow.glob("part-*") if p.is_dir()) if arrow.is_dir() else []
        if not parts:
            raise InputError(f"no {ARROW_DIR}/part-* folders beside the manifest", path)
        if manifest.num_buckets is not None and manifest.num_buckets != len(parts):
            raise InputError(f"manifest says {manifest.num_buckets} buckets but {len(parts)} part folders exist", path)
        return parts, manifest
    if (path / "dataset_info.json").is_file() or (path / "state.json").is_file():
        return [path], None
    raise InputError("not a prepared dataset (no manifest.json) nor a saved datasets part folder", path)


def load_prepared_dataset(paths: Sequence[str]) -> PreparedDataset:
    """Concatenate the parts of every path, bucket by bucket, after checking the manifests agree.

    Bucket k holds part k of every path (paths in the order given): one prepared folder is read part after
    part, while separately prepared folders (a target-language set and a replay set) are mixed, not read one
    after the other. Bare part folders (Colossal-LLaMA's `--dataset .../arrow/part-00000 ...`) are each a
    path with one part, so they form one bucket and are shuffled together, as in Colossal-LLaMA.
    """
    from datasets import concatenate_datasets

    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise InputError("no dataset given (--dataset)")
    buckets, manifests = _buckets_and_manifests(paths)
    curriculum = _check_manifests_agree(manifests)
    first = manifests[0][1] if manifests else Manifest(kind="pretrain", max_length=None, tokenizer_hash=None)
    datasets, bucket_sizes = [], []
    for folders in buckets:  # every bucket has a part: bucket k exists because some path has k + 1 parts
        parts = [_load_part(folder) for folder in folders]
        datasets.extend(parts)
        bucket_sizes.append(sum(len(part) for part in parts))
    dataset = concatenate_datasets(datasets) if len(datasets) > 1 else datasets[0]
    if len(dataset) == 0:
        raise InputError(f"the dataset(s) {', '.join(map(str, paths))} hold no rows")
    return PreparedDataset(
        dataset=dataset.with_format("python"), packing=first.packing, max_length=first.max_length,
        tokenizer_hash=first.tokenizer_hash, categories=sorted(set(dataset.unique("category"))),
        sources=[str(p) for p in paths], bucket_sizes=bucket_sizes, curriculum=curriculum,
    )


def _buckets_and_manifests(paths: Sequence[str]):
    """([part folders of bucket k for k ...], [(path, manifest) of the paths that have one])."""
    parts_per_path, manifests = [], []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise InputError("dataset folder not found", path)
        folders, manifest = _part_folders(path)
        parts_per_path.append(folders)
        if manifest is not None:
            manifests.append((path, manifest))
    num_buckets = max(len(folders) for folders in parts_per_path)
    return [[folders[k] for folders in parts_per_path if k < len(folders)] for k in range(num_buckets)], manifests


def _check_manifests_agree(manifests) -> bool:
    """Refuse datasets prepared differently; returns whether their order is a curriculum."""
    for key in ("tokenizer_hash", "max_length", "packing"):
        values = {getattr(m, key) for _, m in manifests}
        if len(values) > 1:
            listing = "; ".join(f"{p}: {getattr(m, key)}" for p, m in manifests)
            raise InputError(f"datasets disagree on {key} ({listing})")
    curriculum = {path: m.curriculum for path, m in manifests}
    if len(set(curriculum.values())) > 1:  # one order for the whole run: no shuffling half of it
        listing = "; ".join(f"{p}: {'curriculum' if c else 'shuffle'}" for p, c in curriculum.items())
        raise InputError(f"datasets disagree on order ({listing}); prepare them with the same --order")
    return any(curriculum.values())


def _load_part(folder: Path):
    from datasets import load_from_disk

    try:
        part = load_from_disk(str(folder))
    except Exception as error:  # datasets raises several types for damaged folders
        raise InputError(f"cannot load arrow part: {error}", folder) from None
    missing = [c for c in COLUMNS if c not in part.column_names]
    if missing:
        raise InputError(f"part lacks column(s) {', '.join(missing)}", folder)
    return part.select_columns(list(COLUMNS))


class PackedCollator:
    """Pad rows to the longest in the batch and describe where each packed document starts.

    attention:
      "doc_causal"        4D mask (batch, 1, L, L): causal and block-diagonal per document, for SDPA/eager.
                          `mask_dtype` float → additive (0 / dtype min); bool → True where attention is allowed.
      "causal"            2D padding mask: plain causal attention across the packed documents.
      "position_ids_only" no mask at all: flash_attention_2 finds document boundaries from position ids
                          (varlen kernels), padding forms its own short document.
    Position ids restart at 0 at every document in every mode. With per-document attention, the first token
    of each later document gets label -100: the token before it belongs to another document and cannot see it.
    """

    def __init__(self, pad_token_id: int, attention: str = "doc_causal", mask_dtype: torch.dtype = torch.float32,
                 pad_to_multiple_of: int = 1):
        if attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {ATTENTION_MODES}")
        self.pad_token_id = pad_token_id
        self.attention = attention
        self.mask_dtype = mask_dtype
        self.pad_to_multiple_of = max(1, pad_to_multiple_of)

    def __call__(self, rows: List[dict]) -> dict:
        longest = max(len(row["input_ids"]) for row in rows)
        length = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = len(rows)
        input_ids = torch.full((batch, length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((batch, length), -100, dtype=torch.long)
        position_ids = torch.zeros((batch, length), dtype=torch.long)
        document_ids = torch.zeros((batch, length), dtype=torch.long)  # which document each token belongs to
        padding_mask = torch.zeros((batch, length), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            if len(row["labels"]) != n:
                raise ValueError("input_ids and labels differ in length")
            doc_lengths = list(row["doc_lengths"]) or [n]
            if sum(doc_lengths) != n:
                raise ValueError(f"doc_lengths sum to {sum(doc_lengths)}, not the row length {n}")
            input_ids[i, :n] = torch.as_tensor(row["input_ids"], dtype=torch.long)
            labels[i, :n] = torch.as_tensor(row["labels"], dtype=torch.long)
            padding_mask[i, :n] = 1
            start = 0
            for doc_index, doc_length in enumerate(doc_lengths):
                position_ids[i, start:start + doc_length] = torch.arange(doc_length)
                document_ids[i, start:start + doc_length] = doc_index
                if start > 0 and self.attention != "causal":
                    # Its predictor (the previous token) cannot see this document: no loss at its first token.
                    labels[i, start] = -100
                start += doc_length
            if n < length:  # padding is one more document, so no query row is ever fully masked
                position_ids[i, n:] = torch.arange(length - n)
                document_ids[i, n:] = len(doc_lengths)

        out = {
            "input_ids": input_ids,
            "labels": labels,
            "position_ids": position_ids,
            "categories": [row["category"] for row in rows],
            "indices": [row.get("index") for row in rows],  # dataset rows fed, for audits and resume checks
        }
        if self.attention == "doc_causal":
            out["attention_mask"] = doc_causal_mask(document_ids, self.mask_dtype)
        elif self.attention == "causal":
            out["attention_mask"] = padding_mask
        return out


def doc_causal_mask(document_ids: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(batch, 1, L, L) mask letting token i see token j only if j <= i and both lie in the same document."""
    length = document_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    same_document = document_ids[:, :, None] == document_ids[:, None, :]
    allowed = (same_document & causal)[:, None, :, :]
    if dtype == torch.bool:
        return allowed
    mask = torch.zeros(allowed.shape, dtype=dtype)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)


class IndexedRows(torch.utils.data.Dataset):
    """A dataset view whose rows also carry their index, so each batch knows which rows it holds."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return dict(self.dataset[index], index=index)


class ResumableSampler(Sampler):
    """Yields this rank's share of a seeded per-epoch order of the dataset, from a global sample position.

    The order walks the buckets (`bucket_sizes`, the arrow parts in training order; one bucket by default)
    one after the other, each shuffled with a generator seeded by `seed + epoch` (kept as stored without
    `shuffle`). Global position p (0-based, within the epoch) goes to rank p % num_replicas, so micro-batch m
    of every rank together covers positions [start + m·B·R, start + (m+1)·B·R).

    An epoch reads whole optimizer steps from `start` while they fit in the dataset: from 0 that is
    `samples_per_epoch` (the last `dataset_size % global_batch_size` rows are dropped, and reported by the
    trainer). A run resumed with another global batch may start between steps; it reads every whole global
    batch left after `start` (`end`), so it reads the same rows the saved run would have, save at most the
    last `dropped` < global batch, and every rank gets the same number of micro-batches (one more on a rank
    would leave it alone in a collective).
    """

    def __init__(self, dataset_size: int, num_replicas: int, rank: int, seed: int, global_batch_size: int,
                 shuffle: bool = True, bucket_sizes: Optional[Sequence[int]] = None):
        if global_batch_size % num_replicas:
            raise ValueError("the global batch must be a multiple of the number of data-parallel ranks")
        bucket_sizes = [dataset_size] if bucket_sizes is None else [int(size) for size in bucket_sizes]
        if sum(bucket_sizes) != dataset_size or min(bucket_sizes, default=0) < 0:
            raise ValueError(f"bucket sizes {bucket_sizes} do not add up to the dataset size {dataset_size}")
        self.dataset_size = dataset_size
        self.bucket_sizes = bucket_sizes
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.shuffle = shuffle
        self.global_batch_size = global_batch_size
        self.epoch = 0
        self.start = 0  # global samples already consumed in this epoch
        self.resumed_layout = None  # (epoch, bucket sizes): a resumed epoch finished in its checkpoint's order

    @property
    def steps_per_epoch(self) -> int:
        return self.dataset_size // self.global_batch_size

    @property
    def samples_per_epoch(self) -> int:
        return self.steps_per_epoch * self.global_batch_size

    def set_position(self, epoch: int, consumed_samples: int) -> None:
        """Continue at `consumed_samples` of `epoch`; less than a global batch left in it starts the next."""
        if consumed_samples < 0:
            raise ValueError(f"consumed_samples must not be negative, got {consumed_samples}")
        self.epoch = epoch
        self.start = consumed_samples
        if self.dataset_size - self.start < self.global_batch_size:
            self.epoch, self.start = epoch + 1, 0

    @property
    def end(self) -> int:
        """Where reading this epoch stops: after the last whole global batch from `start` within the dataset."""
        steps_left = max(0, self.dataset_size - self.start) // self.global_batch_size
        return self.start + steps_left * self.global_batch_size

    @property
    def dropped(self) -> int:
        """Rows of this epoch after `end`, never read (fewer than a global batch)."""
        return max(0, self.dataset_size - self.end)

    def follow_saved_layout(self, saved: dict, epoch: int, consumed_samples: int) -> Optional[str]:
        """Read the rest of a resumed `epoch` in the bucket layout the checkpoint was reading; later epochs use the
        current one. Without this, a position saved in one layout would point into another order, reading some rows
        twice and others never.

        `saved` is the checkpoint's `sampler` state; one without `bucket_sizes` walked a single permutation of its whole
        dataset. Returns a warning when the checkpoint read another number of rows (the data changed): its order
        cannot be rebuilt, and the run continues at the same position in the new data.
        """
        if not saved or consumed_samples <= 0 or not self.shuffle:
            return None
        sizes = [int(size) for size in saved.get("bucket_sizes") or [saved.get("dataset_size", self.dataset_size)]]
        if sizes == self.bucket_sizes:
            return None
        if sum(sizes) != self.dataset_size:
            return (f"the checkpoint read {sum(sizes)} rows, the data now hold {self.dataset_size}: epoch {epoch} goes on "
                    f"at sample {consumed_samples} of the new data's order, so it may repeat or miss rows")
        self.resumed_layout = (epoch, sizes)
        return None

    def order(self, epoch: int) -> List[int]:
        """Dataset indices in this epoch's reading order: bucket after bucket, each permuted when shuffling."""
        if not self.shuffle:
            return list(range(self.dataset_size))
        generator = torch.Generator().manual_seed(self.seed + epoch)
        resumed = self.resumed_layout is not None and self.resumed_layout[0] == epoch
        order, offset = [], 0
        for size in (self.resumed_layout[1] if resumed else self.bucket_sizes):  # one bucket: one permutation of all
            order += (torch.randperm(size, generator=generator) + offset).tolist()
            offset += size
        return order

    def __iter__(self) -> Iterator[int]:
        order = self.order(self.epoch)
        for position in range(self.start + self.rank, self.end, self.num_replicas):
            yield order[position]

    def __len__(self) -> int:
        return (self.end - self.start) // self.num_replicas

    def state_dict(self, consumed_samples: int) -> dict:
        return {"epoch": self.epoch, "consumed_samples": consumed_samples, "seed": self.seed,
                "dataset_size": self.dataset_size, "global_batch_size": self.global_batch_size,
                "bucket_sizes": list(self.bucket_sizes)}
