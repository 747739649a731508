"""Worker processes of data preparation (tokenizing batches, writing bucket files): results in input order,
a bounded number of items in flight, and a worker that dies reported instead of a silent hang."""

from __future__ import annotations

import multiprocessing
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable, Iterator, Optional


def map_in_order(function: Callable, items: Iterable, num_proc: int, died: str,
                 initializer: Optional[Callable] = None, initargs: tuple = ()) -> Iterator:
    """`function(item)` for every item, computed by `num_proc` processes and yielded in input order; at most
    `2 * num_proc` items are in flight, so memory stays bounded however many items there are.

    An exception raised by `function` is raised here (after the items in flight have finished); a worker that
    dies outright (the kernel's out-of-memory killer) is a RuntimeError with the message `died`.
    """
    # The platform's default start method (fork on Linux: `initargs` are inherited, not pickled; spawn elsewhere).
    # Not multiprocessing.Pool: it replaces a killed worker and waits forever for the item it held.
    executor = ProcessPoolExecutor(num_proc, mp_context=multiprocessing.get_context(), initializer=initializer,
                                   initargs=initargs)
    try:
        pending: deque = deque()
        for item in items:
            pending.append(executor.submit(function, item))  # raises too once a worker has died
            if len(pending) >= 2 * num_proc:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    except BrokenProcessPool:
        raise RuntimeError(died) from None
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
