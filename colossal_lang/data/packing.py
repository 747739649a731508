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
