"""Stands in for train.py in tests of benchmarks/gpu_check.py's wrapper (no torch, no colossalai).

Honours the flags the wrapper relies on: --loss_log (one JSON line per step), --max_steps, --stop_at_step,
--load_checkpoint latest (prints "resumed from", continues after the saved step: read from --save_dir).
--plugin gemini hangs instead, with a worker in a session of its own (as torchrun starts its workers) whose
pid goes to <save_dir>/worker.pid, so a test can check that a timeout ends the worker too.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser()
for flag in ("--loss_log", "--save_dir", "--plugin", "--load_checkpoint"):
    parser.add_argument(flag)
parser.add_argument("--max_steps", type=int)
parser.add_argument("--stop_at_step", type=int, default=0)
args, _ = parser.parse_known_args()
save_dir = Path(args.save_dir)
save_dir.mkdir(parents=True, exist_ok=True)
print(f"fake train.py: plugin {args.plugin}", flush=True)
if args.plugin == "gemini":
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    (save_dir / "worker.pid").write_text(str(worker.pid))
    print("worker started", flush=True)
    time.sleep(600)
start = 0
if args.load_checkpoint == "latest":
    start = int((save_dir / "saved_step").read_text())
    print(f"resumed from {save_dir}/step-{start}", flush=True)
stop = args.stop_at_step or args.max_steps
with open(args.loss_log, "a") as log:
    for step in range(start + 1, stop + 1):
        log.write(json.dumps({"step": step, "loss": 1.0, "tokens_per_s": 1000.0 * step, "mfu": 0.01 * step,
                              "memory/peak_allocated_gib": 0.5 * step}) + "\n")
(save_dir / "saved_step").write_text(str(stop))
if args.plugin == "zero2" and args.max_steps == stop:  # a measuring launch would now save ~13 GB: linger
    time.sleep(600)
