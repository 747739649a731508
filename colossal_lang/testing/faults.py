"""Fault injection for tests: the product calls `armed` / `trigger` at named points; nothing happens unless the
environment variable COLOSSAL_LANG_FAULTS names that point and step.

    COLOSSAL_LANG_FAULTS="nan_loss@2,save_disk_full@6"

Points (steps counted from 1, as logged):
- `nan_loss@S`: the loss of step S becomes NaN (all ranks), before backward.
- `save_disk_full@S`: the checkpoint of step S fails after its model part, like a full disk (all ranks).
- `save_kill@S`: global rank 0 is SIGKILLed after writing the model part of step S's checkpoint.
- `combine_disk_full@F`: writing data file F of the prepared dataset (counted from 1 over the buckets in order)
  fails after its rows, like a full disk; `combine_kill@F`: the process writing it is SIGKILLed there.
"""

from __future__ import annotations

import os
import signal

ENVIRONMENT = "COLOSSAL_LANG_FAULTS"


def armed(point: str, step: int) -> bool:
    """Whether the fault `point` is set for `step` (read at each call: one interpreter may run several trainings)."""
    spec = os.environ.get(ENVIRONMENT, "")
    return f"{point}@{step}" in {item.strip() for item in spec.split(",")}


def trigger(point: str, step: int, rank: int) -> None:
    """Act out the fault `point` at `step` if it is armed: raise like a full disk, or die like a killed process."""
    if not armed(point, step):
        return
    if point.endswith("_disk_full"):
        raise OSError(28, "No space left on device (simulated)")
    if point.endswith("_kill") and rank == 0:
        os.kill(os.getpid(), signal.SIGKILL)
