"""Workers die with their launcher, and one live run holds a save_dir (real torchrun processes over gloo)."""

from __future__ import annotations

import signal
import subprocess
import time

import psutil

from tests.training.conftest import REPO_ROOT, base_args, environment, read_log, run_training, torchrun_command


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_held_save_dir_is_refused_and_workers_die_with_their_launcher(tiny_model_dir, packed_dataset, tmp_path):
    save_dir = tmp_path / "shared"
    long_run = base_args(tiny_model_dir, packed_dataset, save_dir, max_steps=100000, save_interval=0, warmup_steps=1)
    launcher = subprocess.Popen(torchrun_command(2, long_run), cwd=REPO_ROOT, env=environment(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = []
    try:
        log = save_dir / "log.jsonl"
        wait_for(lambda: log.exists() and len(read_log(log)) >= 2, 240, "the first run's steps")
        workers = [p for p in psutil.Process(launcher.pid).children(recursive=True) if "train.py" in " ".join(p.cmdline())]
        assert len(workers) == 2

        second = run_training(1, base_args(tiny_model_dir, packed_dataset, save_dir, max_steps=2), check=False)
        assert second.returncode != 0
        refusal = [line for line in second.stderr.splitlines() if "in use by another live training run" in line]
        assert refusal and str(save_dir) in refusal[0] and any(f"pid {w.pid} " in refusal[0] for w in workers)
        assert all(alive(w) for w in workers)  # the refused run touched nothing of the live one

        launcher.send_signal(signal.SIGKILL)  # the launcher only: its workers sit in sessions of their own
        launcher.wait()
        wait_for(lambda: not any(alive(w) for w in workers), 30, "the workers to die with their launcher")
        lines = len(read_log(log))
        time.sleep(1.0)
        assert len(read_log(log)) == lines  # nobody trains on

        third = run_training(1, base_args(tiny_model_dir, packed_dataset, save_dir, max_steps=2,
                                          loss_log=tmp_path / "third.jsonl"))
        assert "done: 2/2 steps" in third.stdout  # the lock went with its holder
    finally:  # whatever failed above, leave no training behind
        for process in [*workers, psutil.Process(launcher.pid) if launcher.poll() is None else None]:
            if process is not None and alive(process):
                process.kill()
