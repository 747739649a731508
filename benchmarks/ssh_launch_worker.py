"""The worker bench_ssh_launch.py launches: meet over gloo, then end; with a path, rank 1 SIGKILLs itself first
(the time of the kill written there) and rank 0 fails in the next collective, as in a training run."""

import os
import signal
import sys
import time

import torch.distributed as dist

dist.init_process_group("gloo")
dist.barrier()
if len(sys.argv) > 1 and os.environ["RANK"] == "1":
    with open(sys.argv[1], "w") as handle:
        handle.write(repr(time.time()))
    os.kill(os.getpid(), signal.SIGKILL)
dist.barrier()
