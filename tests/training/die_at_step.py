"""train.py, except that global rank RANK SIGKILLs itself once the loss log shows step STEP (tests only).

    die_at_step.py RANK STEP LOSS_LOG KILLED_AT_FILE train.py-args...

Ranks step together (every step ends in an all-reduce), so the victim dies within a step of STEP; the time
of the kill goes into KILLED_AT_FILE first, for the test to time how long the run takes to end.
"""

import json
import os
import runpy
import signal
import sys
import threading
import time
from pathlib import Path


def watch(step: int, log: Path, killed_at: Path) -> None:
    while True:
        try:
            steps = [json.loads(line).get("step", 0) for line in log.read_text().splitlines() if line.strip()]
        except (OSError, ValueError):  # not written yet, or a line half written
            steps = []
        if steps and max(steps) >= step:
            killed_at.write_text(repr(time.time()))
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.02)


if __name__ == "__main__":
    rank, step, log, killed_at = sys.argv[1:5]
    if os.environ.get("RANK") == rank:
        threading.Thread(target=watch, args=(int(step), Path(log), Path(killed_at)), daemon=True).start()
    train = Path(__file__).resolve().parents[2] / "train.py"
    sys.argv = [str(train), *sys.argv[5:]]
    runpy.run_path(str(train), run_name="__main__")
