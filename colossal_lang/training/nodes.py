"""Ranks on several nodes and one shared save_dir: decisions read from the folder are global rank 0's.

Each node sees save_dir through its own mount of a shared filesystem, and mounts may lag one another (NFS
clients cache directory listings for up to a minute). So what is read from the folder to decide something
(which checkpoint is the latest) is read once, on global rank 0, and handed to every rank; ranks that resumed
from different checkpoints would otherwise train apart without an error. A node that does not see rank 0's
save_dir at all is refused at the start, not at the first checkpoint, possibly hours later.
"""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path
from typing import Callable, TypeVar

import torch.distributed as dist

from colossal_lang.errors import InputError

T = TypeVar("T")


def several_processes() -> bool:
    return dist.is_initialized() and dist.get_world_size() > 1


def decided_by_rank0(decide: Callable[[], T]) -> T:
    """decide() run on global rank 0 only; its result, or the InputError it raised, on every rank."""
    if not several_processes():
        return decide()
    outcome = [None]
    if dist.get_rank() == 0:
        try:
            outcome = [(decide(), None)]
        except InputError as error:
            outcome = [(None, str(error))]
    dist.broadcast_object_list(outcome, src=0)
    value, problem = outcome[0]
    if problem is not None:
        raise InputError(problem)
    return value


def check_save_dir_shared(save_dir, wait_s: float = 2.0) -> None:
    """Every rank must see a file that global rank 0 writes into save_dir (same filesystem, same path)."""
    if not several_processes():
        return
    rank = dist.get_rank()
    written = [None]  # (the file's name, what went wrong writing it)
    if rank == 0:
        name = f".shared-check-{uuid.uuid4().hex}"
        try:
            Path(save_dir).mkdir(parents=True, exist_ok=True)
            (Path(save_dir) / name).write_text("global rank 0 checks that every node sees this folder\n", encoding="utf-8")
            written = [(name, None)]
        except OSError as error:
            written = [(name, f"global rank 0 cannot write into --save_dir: {error}")]
    dist.broadcast_object_list(written, src=0)  # after the write: the file exists before anyone looks
    name, problem = written[0]
    if problem is not None:
        raise InputError(problem, save_dir)
    marker = Path(save_dir) / name  # as this rank sees save_dir (its own mount, its own working directory)
    deadline = time.monotonic() + wait_s
    while not marker.is_file() and time.monotonic() < deadline:  # a slow mount may show it a moment later
        time.sleep(0.25)
    seen = [None] * dist.get_world_size()
    dist.all_gather_object(seen, (marker.is_file(), socket.gethostname()))
    if rank == 0:
        marker.unlink(missing_ok=True)
    blind = [f"rank {r} on {host}" for r, (found, host) in enumerate(seen) if not found]
    if blind:
        raise InputError(f"--save_dir is not shared by all nodes: {', '.join(blind)} cannot see the file global rank 0 "
                         f"(on {seen[0][1]}) wrote there; every node must see the same folder at the same path "
                         "(a shared filesystem)", save_dir)
