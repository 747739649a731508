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
    doc_offsets = np.asarray(doc_offsets, dtype=np.int64)
    return chunk_spans(doc_offsets[:-1], np.diff(doc_offsets), max_length)


def chunk_spans(doc_starts: np.ndarray, doc_lengths: np.ndarray, max_length: int) -> Spans:
    """Split each document (start, length) of a flat token array into windows of at most `max_length`."""
    if max_length < 1:
        raise ValueError("max_length must be positive")
    doc_starts, doc_lengths = np.asarray(doc_starts, dtype=np.int64), np.asarray(doc_lengths, dtype=np.int64)
    pieces = np.maximum(1, -(-doc_lengths // max_length))  # ceil, at least one piece per document
    document = np.repeat(np.arange(len(doc_lengths), dtype=np.int64), pieces)
    # Position of each piece inside its document: 0, 1, 2, ... restarted per document.
    first_piece = np.cumsum(pieces) - pieces
    piece_index = np.arange(len(document), dtype=np.int64) - np.repeat(first_piece, pieces)
    offset_in_doc = piece_index * max_length
    starts = doc_starts[document] + offset_in_doc
    lengths = np.minimum(doc_lengths[document] - offset_in_doc, max_length)
    return Spans(starts=starts, lengths=lengths, document=document)


def gather_index(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Indices of every token of the spans (start, length), span after span: `flat.take(gather_index(...))`."""
    lengths = np.asarray(lengths, dtype=np.int64)
    output_start = np.cumsum(lengths) - lengths
    gather = np.arange(int(lengths.sum()), dtype=np.int64)
    gather += np.repeat(np.asarray(starts, dtype=np.int64) - output_start, lengths)
    return gather
