"""Starting the processes right: one process without a launcher, workers that die with their launcher, and one
live run per save_dir.

torchrun starts each worker in a session of its own (torch/distributed/elastic/multiprocessing), so a SIGKILL of
the launcher (or of its terminal's process group) leaves the workers training and writing checkpoints into a
save_dir that the next run then shares with them. Each worker therefore asks the kernel to SIGKILL it when
its parent dies (prctl PR_SET_PDEATHSIG, Linux), and global rank 0 holds an exclusive lock on
save_dir/.train.lock (fcntl: the kernel releases it when the holder dies, however it dies).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import socket
import sys
from pathlib import Path

from colossal_lang.errors import InputError

PR_SET_PDEATHSIG = 1
LOCK_FILE = ".train.lock"


def single_process_defaults() -> None:
    """`python train.py ...` without a launcher runs as one process."""
    if "RANK" not in os.environ:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def started_by_launcher() -> bool:
    """torchrun (and `colossalai run`, which runs torchrun) sets TORCHELASTIC_RUN_ID in every worker."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def die_with_launcher() -> bool:
    """SIGKILL this worker when its launcher dies; returns whether that is arranged (Linux, under a launcher).

    Not for a process started by hand: its parent is a shell, whose exit must not end a training run.
    """
    if not started_by_launcher() or not sys.platform.startswith("linux"):
        return False
    launcher = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return False
    if os.getppid() != launcher:  # the launcher died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)
    return True


class SaveDirLock:
    """An exclusive, non-blocking fcntl lock on save_dir/.train.lock for the life of this process."""

    def __init__(self, save_dir):
        self.path = Path(save_dir) / LOCK_FILE
        self.handle = None

    def acquire(self) -> "SaveDirLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise InputError(f"--save_dir is in use by another live training run ({holder}): wait for it to end, "
                             "stop it, or choose another --save_dir", self.path.parent) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self.handle = handle
        return self

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing the file drops the lock
            self.handle = None
