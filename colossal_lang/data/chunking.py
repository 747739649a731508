"""Chunking: cut documents longer than `max_length` into consecutive windows, losing no token.

Documents live in one flat token array with CSR offsets; a chunk is a (start, length) span into it.
Every full window is exactly `max_length` tokens (it fills a training row by itself); the remainder
becomes a shorter span that packing places beside other documents.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Spans:
    """Pieces of the flat token array: `starts[i]`, `lengths[i]`, from document `document[i]`."""

    starts: np.ndarray
    lengths: np.ndarray
    document: np.ndarray


def chunk_documents(doc_offsets: np.ndarray, max_length: int) -> Spans:
    """Split each document `[doc_offsets[d], doc_offsets[d+1])` into windows of at most `max_length`."""
    if max_length < 1:
        raise ValueError("max_length must be positive")
    doc_offsets = np.asarray(doc_offsets, dtype=np.int64)
    doc_lengths = np.diff(doc_offsets)
    pieces = np.maximum(1, -(-doc_lengths // max_length))  # ceil, at least one piece per document
    document = np.repeat(np.arange(len(doc_lengths), dtype=np.int64), pieces)
    # Position of each piece inside its document: 0, 1, 2, ... restarted per document.
    first_piece = np.cumsum(pieces) - pieces
    piece_index = np.arange(len(document), dtype=np.int64) - np.repeat(first_piece, pieces)
    offset_in_doc = piece_index * max_length
    starts = doc_offsets[:-1][document] + offset_in_doc
    lengths = np.minimum(doc_lengths[document] - offset_in_doc, max_length)
    return Spans(starts=starts, lengths=lengths, document=document)
