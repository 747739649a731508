"""Packing: place document spans into rows of at most `max_length` tokens, never splitting a span.

Best-fit decreasing: spans are placed longest first, each into the open row with the least room that
still fits it. It fills rows far better than appending in order (which wastes the tail of every row
a long document does not fit), and it is deterministic: ties keep the input order.
"""

from __future__ import annotations

import bisect
from typing import Dict, List

import numpy as np


def pack_spans(lengths: np.ndarray, max_length: int) -> List[List[int]]:
    """Group span indices into rows whose lengths sum to at most `max_length`.

    Returns rows as lists of span indices; within a row spans keep the order they were placed in.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(lengths) and int(lengths.max()) > max_length:
        raise ValueError("a span is longer than max_length: chunk documents before packing")
    # Stable sort, longest first, so equal lengths keep file order.
    order = np.argsort(-lengths, kind="stable")
    rows: List[List[int]] = []
    # Open rows grouped by their free room; `rooms` is the sorted list of rooms that have a row.
    rows_by_room: Dict[int, List[int]] = {}
    rooms: List[int] = []
    for span in order.tolist():
        length = int(lengths[span])
        position = bisect.bisect_left(rooms, length)
        if position < len(rooms):
            room = rooms[position]
            row = rows_by_room[room].pop()
            if not rows_by_room[room]:
                del rows_by_room[room]
                rooms.pop(position)
        else:
            row = len(rows)
            rows.append([])
            room = max_length
        rows[row].append(span)
        room -= length
        if room > 0:
            if room not in rows_by_room:
                rows_by_room[room] = []
                bisect.insort(rooms, room)
            rows_by_room[room].append(row)
    # Present rows in the order of their first span in the input, so output follows file order.
    rows = [sorted(row) for row in rows]
    rows.sort(key=lambda row: row[0])
    return rows


# A row this full or fuller is written when its window is packed; emptier rows give their spans back to
# the next window (at most CARRY_SHARE of a window), where longer neighbours can fill them up.
CARRY_BELOW = 0.9
CARRY_SHARE = 0.25
EMIT_TOKENS = 1 << 20


class WindowPacker:
    """Best-fit decreasing inside a bounded window of spans, for a stream of documents of one category.

    Spans are copied in as they come (`add`); whenever `window_tokens` are buffered they are packed with
    `pack_spans`, full rows are handed to `emit(token_ids, learned, starts, lengths, rows)` and the spans of
    underfull rows wait for the next window. Memory is about `window_tokens × 10` bytes (int32 id + flag, and
    their copy while packing)
    whatever the stream's length; the fill equals global packing's once the window holds many rows' worth.
    """

    def __init__(self, max_length: int, window_tokens: int, emit):
        self.max_length = max_length
        self.window_tokens = max(window_tokens, max_length)
        self.emit = emit
        self._ids: List[np.ndarray] = []
        self._learned: List[np.ndarray] = []
        self._lengths: List[np.ndarray] = []
        self._buffered = 0

    def add(self, token_ids: np.ndarray, learned: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> None:
        from colossal_lang.data.chunking import gather_index

        if not len(lengths):
            return
        gather = gather_index(starts, lengths)
        self._ids.append(token_ids.take(gather))
        self._learned.append(learned.take(gather))
        self._lengths.append(np.asarray(lengths, dtype=np.int64))
        self._buffered += len(gather)
        if self._buffered >= self.window_tokens:
            self._pack(final=False)

    def finish(self) -> None:
        if self._buffered:
            self._pack(final=True)

    def _pack(self, final: bool) -> None:
        token_ids, learned = np.concatenate(self._ids), np.concatenate(self._learned)
        lengths = np.concatenate(self._lengths)
        starts = np.cumsum(lengths) - lengths
        rows = pack_spans(lengths, self.max_length)
        carried: List[List[int]] = []
        if not final:
            fill = np.fromiter((int(lengths[row].sum()) for row in rows), dtype=np.int64, count=len(rows))
            budget = int(CARRY_SHARE * self.window_tokens)
            carry = set()
            for row_index in np.argsort(fill, kind="stable").tolist():  # emptiest first
                if fill[row_index] >= CARRY_BELOW * self.max_length or fill[row_index] > budget:
                    break
                budget -= int(fill[row_index])
                carry.add(row_index)
            carried = [rows[index] for index in sorted(carry)]
            rows = [row for index, row in enumerate(rows) if index not in carry]
        # Handed over in slices of about EMIT_TOKENS, so building the rows never copies a whole window at once.
        rows_per_emit = max(1, EMIT_TOKENS // self.max_length)
        for first in range(0, len(rows), rows_per_emit):
            self.emit(token_ids, learned, starts, lengths, rows[first:first + rows_per_emit])
        spans = sorted(span for row in carried for span in row)
        self._ids, self._learned, self._lengths, self._buffered = [], [], [], 0
        if spans:
            spans = np.asarray(spans, dtype=np.int64)
            self.add(token_ids, learned, starts[spans], lengths[spans])
