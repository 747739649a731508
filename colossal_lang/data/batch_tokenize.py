"""Tokenize batches of records in input order, in this process or over `num_proc` worker processes.

A batch function turns a list of records into one `TokenizedBatch` of flat numpy arrays, so what
travels between processes is a few arrays per batch, not a Python object per token.

With one process the Rust tokenizer spreads each batch over all cores itself. With several, each
worker's tokenizer runs single-threaded (the workers would otherwise fight over the cores) and the
main process goes on reading and validating the next records while the workers tokenize; at most
`2 * num_proc` batches are in flight, so memory stays bounded however large the input. A worker that
dies outright (the kernel's out-of-memory killer) ends the run with an error instead of a silent hang.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, List, Optional

import numpy as np

from colossal_lang.data.process_pool import map_in_order

IGNORE_INDEX = -100  # the label of a token that is not learned (PyTorch's cross-entropy default)


@dataclass
class TokenizedBatch:
    """Documents of one batch, flat: document i is `token_ids[offsets[i]:offsets[i+1]]`."""

    token_ids: np.ndarray  # int32
    learned: np.ndarray  # bool per token: its label is the token itself, else IGNORE_INDEX
    lengths: np.ndarray  # int64, tokens per document (0 for a document with a problem)
    truncated: np.ndarray = None  # bool per document (SFT: trailing turns dropped)
    problems: List[str] = field(default_factory=list)  # per document, "" when fine

    def __post_init__(self):
        if self.truncated is None:
            self.truncated = np.zeros(len(self.lengths), dtype=bool)
        if not self.problems:
            self.problems = [""] * len(self.lengths)

    @property
    def labels(self) -> np.ndarray:
        return labels_of(self.token_ids, self.learned)


def labels_of(token_ids: np.ndarray, learned: np.ndarray) -> np.ndarray:
    """Training labels (int32): the token id where it is learned, IGNORE_INDEX elsewhere."""
    return np.where(learned, token_ids, IGNORE_INDEX).astype(np.int32, copy=False)


def plain_backend(tokenizer, split_special_tokens: Optional[bool] = None):
    """The Rust tokenizer of `tokenizer`, without the truncation or padding a tokenizer.json may have saved.

    `tokenizer(text)` turns both off on every call (as the Hugging Face tokenizer itself does); a direct
    call must too, or documents come out cut and padded to the saved length.

    `split_special_tokens`: True tokenizes special-token strings in the text (`</s>`, `<|im_end|>`) as ordinary
    text, False makes them the special tokens; None does what `tokenizer(text)` does (the tokenizer's own
    `split_special_tokens`, False unless its config says otherwise). Always set: the Rust tokenizer keeps
    the last value given, and `tokenizer(text, split_special_tokens=True)` leaves it on.
    """
    backend = tokenizer.backend_tokenizer
    if backend.truncation is not None:
        backend.no_truncation()
    if backend.padding is not None:
        backend.no_padding()
    if split_special_tokens is None:
        split_special_tokens = bool(getattr(tokenizer, "split_special_tokens", False))
    if backend.encode_special_tokens != split_special_tokens:
        backend.encode_special_tokens = split_special_tokens
    return backend


def flatten_documents(documents: List[List[int]], loss_starts: Iterable[int]) -> TokenizedBatch:
    """One batch from per-document token lists; tokens from each `loss_start` on are learned."""
    lengths = np.fromiter(map(len, documents), dtype=np.int64, count=len(documents))
    flat: List[int] = []
    for ids in documents:
        flat += ids
    token_ids = np.array(flat, dtype=np.int32)
    starts = np.fromiter(loss_starts, dtype=np.int64, count=len(documents))
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1])) if len(lengths) else np.zeros(0, dtype=np.int64)
    position_in_doc = np.arange(len(token_ids), dtype=np.int64) - np.repeat(offsets, lengths)
    return TokenizedBatch(token_ids, position_in_doc >= np.repeat(starts, lengths), lengths)


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Lists of `size` consecutive items (the last one shorter)."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


_worker_function = None
_worker_kwargs: dict = {}


def _install_worker(function: Callable, kwargs: dict) -> None:
    global _worker_function, _worker_kwargs
    _worker_function, _worker_kwargs = function, kwargs


def _run_worker(batch: list) -> TokenizedBatch:
    return _worker_function(batch, **_worker_kwargs)


def tokenize_in_order(
    batches: Iterable[list], function: Callable[..., TokenizedBatch], kwargs: dict, num_proc: int,
) -> Iterator[TokenizedBatch]:
    """`function(batch, **kwargs)` for every batch, yielded in input order."""
    if num_proc <= 1:
        for batch in batches:
            yield function(batch, **kwargs)
        return
    saved = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # inherited by the workers (started on first submit)
    try:
        yield from map_in_order(_run_worker, batches, num_proc, initializer=_install_worker, initargs=(function, kwargs),
                                died="a tokenizing worker process died (killed, most likely for lack of memory); "
                                     "rerun with a smaller --num_proc or split the input")
    finally:
        if saved is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = saved

