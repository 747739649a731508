"""Mixing and bucketing of packed rows: category weights, per-category bins, buckets.

Weights are token-weighted: `cs=0.75,en=0.25` means 75% of the output's tokens (row lengths, padding
never counts because rows are unpadded) come from `cs`. The output size is set so that the category
with the largest weight is used exactly once (the target language in a replay mix), unless
`total_tokens` says otherwise; each category is then resampled to `weight * total` tokens: whole
copies of the category first (upsampling), then a seeded random subset of its rows for the remainder
(downsampling when the weight asks for less than the category holds). Shares are
exact up to one row (at most `max_length` tokens) per category.

Bins follow Colossal-LLaMA's bucket-based training, done as described there: every category is split
into `num_bins` bins of near-equal row counts, and bucket k holds bin k of every category, so each
bucket is a miniature of the whole mix and training can go bucket by bucket.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from colossal_lang.errors import InputError


def parse_category_weights(text: Optional[str]) -> Dict[str, float]:
    """Parse `cs=0.75,en=0.25` into {"cs": 0.75, "en": 0.25}, normalised to sum to 1 (order kept)."""
    if not text:
        return {}
    weights: Dict[str, float] = {}
    for item in str(text).split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not sep or not name or weight < 0:
            raise InputError(f"--category_weights: expected name=weight with weight >= 0, got {item.strip()!r}")
        if name in weights:
            raise InputError(f"--category_weights: category {name!r} given twice")
        weights[name] = weight
    total = sum(weights.values())
    if total <= 0:
        raise InputError("--category_weights: the weights sum to 0")
    return {name: weight / total for name, weight in weights.items()}


def category_rng(seed: int, category: str, purpose: str) -> np.random.Generator:
    """A generator that depends on the seed, the category and the purpose only (not on dict order)."""
    return np.random.default_rng([seed, zlib.crc32(category.encode()), zlib.crc32(purpose.encode())])


def resample_rows(
    row_tokens: Dict[str, np.ndarray], weights: Dict[str, float], seed: int, total_tokens: Optional[int] = None
) -> Dict[str, np.ndarray]:
    """Row indices per category so that category c holds `weights[c] * total` tokens (see module doc)."""
    missing = sorted(set(row_tokens) - set(weights))
    unknown = sorted(set(weights) - set(row_tokens))
    if missing:
        raise InputError(f"--category_weights gives no weight for category {', '.join(map(repr, missing))} found in the data")
    if unknown:
        raise InputError(f"--category_weights names category {', '.join(map(repr, unknown))} that no record has")
    if total_tokens is None:
        heaviest = max(row_tokens, key=lambda category: weights[category])
        total_tokens = int(row_tokens[heaviest].sum()) / weights[heaviest]
    chosen: Dict[str, np.ndarray] = {}
    for category, tokens in row_tokens.items():
        wanted = weights[category] * total_tokens
        available = int(tokens.sum())
        copies = int(wanted // available)
        remainder = wanted - copies * available
        order = category_rng(seed, category, "resample").permutation(len(tokens))
        cumulative = np.cumsum(tokens[order])
        take = int(np.searchsorted(cumulative, remainder))
        # Take the row that crosses the remainder only if that lands closer to it.
        if take < len(order) and cumulative[take] - remainder < remainder - (cumulative[take - 1] if take else 0):
            take += 1
        base = np.tile(np.arange(len(tokens), dtype=np.int64), copies)
        chosen[category] = np.concatenate([base, np.sort(order[:take])])
    return chosen


@dataclass
class BucketPlan:
    """What one bucket holds and in which stored order.

    `rows[c]`: the rows of category c in the order they are stored (indices into the category's rows, with
    repeats when it is upsampled). `sequence`: the category (index into `categories`) of every stored row in
    turn, a seeded random interleaving; None keeps categories one after the other (curriculum).
    """

    categories: List[str]
    rows: Dict[str, np.ndarray]
    sequence: Optional[np.ndarray]

    @property
    def num_rows(self) -> int:
        return sum(len(rows) for rows in self.rows.values())


def build_buckets(
    rows_by_category: Dict[str, np.ndarray],
    category_order: Sequence[str],
    num_bins: int,
    order: str,
    seed: int,
) -> List[BucketPlan]:
    """Split each category's rows into `num_bins` bins; bucket k = bin k of every category.

    `order="shuffle"` assigns rows to bins by a seeded permutation per category and interleaves the categories
    of a bucket at random; within a category a bin's rows are stored in input order (they are read back
    sequentially, and training shuffles every bucket anew each epoch). `order="curriculum"` keeps rows in
    file order and categories in `category_order` (BafoGPT's curriculum: with one bin, all of the first
    category comes first).
    """
    if num_bins < 1:
        raise InputError("--num_spliced_dataset_bins must be at least 1")
    bins: Dict[str, List[np.ndarray]] = {}
    for category in category_order:
        rows = np.asarray(rows_by_category[category], dtype=np.int64)
        if order == "shuffle":
            rows = rows[category_rng(seed, category, "bins").permutation(len(rows))]
            bins[category] = [np.sort(part, kind="stable") for part in np.array_split(rows, num_bins)]
        else:
            bins[category] = np.array_split(rows, num_bins)
    buckets = []
    for bucket_index in range(num_bins):
        names = [category for category in category_order if len(bins[category][bucket_index])]
        if not names:
            raise InputError(f"--num_spliced_dataset_bins {num_bins} leaves bucket {bucket_index} empty: too few sequences")
        rows = {category: bins[category][bucket_index] for category in names}
        sequence = None
        if order == "shuffle":
            which = np.repeat(np.arange(len(names), dtype=np.int16), [len(rows[name]) for name in names])
            sequence = np.random.default_rng([seed, bucket_index]).permutation(which)
        buckets.append(BucketPlan(names, rows, sequence))
    return buckets
