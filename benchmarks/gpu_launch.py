"""One launch of a command with its whole output kept in a log file and a hard time limit.

torchrun starts each worker in a session of its own (torch/distributed/elastic/multiprocessing/
subprocess_handler/subprocess_handler.py: `start_new_session=True`), so killing the launcher's process group
leaves the workers running and holding the GPU. A launch that runs out of time, or that its caller ends early,
is therefore ended as a tree: every descendant is listed first (while their parents still exist), then the
launcher's group and each descendant get SIGTERM, and whatever is left after a grace period gets SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import psutil


@dataclass
class LaunchResult:
    returncode: Optional[int]  # None when the launch was ended (timed out or stopped by `done`)
    timed_out: bool
    ended_early: bool  # `done` said the launch had done its work, so it was ended before it exited
    seconds: float
    log: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0 or self.ended_early

    def tail(self, characters: int = 4000) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.is_file() else ""
        return text[-characters:]

    def last_line(self) -> str:
        """The line that best says why a launch failed: the last exception line, else the last line."""
        lines = [line.strip() for line in self.tail(20000).splitlines() if line.strip()]
        for line in reversed(lines):
            if "Error" in line or "error:" in line:
                return line
        return lines[-1] if lines else ""


def _signal_tree(process: subprocess.Popen, processes, sig: int) -> None:
    """Send `sig` to the launcher's process group and to each of `processes` (workers in other sessions)."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    for child in processes:
        try:
            child.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


def kill_tree(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the launcher's process group and every descendant (in any session), then SIGKILL survivors."""
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    _signal_tree(process, descendants, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    _, alive = psutil.wait_procs(descendants, timeout=grace_s)
    _signal_tree(process, alive, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=grace_s)
    process.wait()


def run_launch(command: list[str], log: Path, timeout_s: float, env: Optional[dict] = None, cwd: Optional[Path] = None,
               done: Optional[Callable[[], bool]] = None, poll_s: float = 0.5, grace_s: float = 10.0) -> LaunchResult:
    """Run `command` with stdout and stderr appended to `log`; end it (with its workers) after `timeout_s`, or
    as soon as `done()` is true. Never raises for the command's own failure; an interrupt still ends the tree."""
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "ab") as sink:
        sink.write(("$ " + " ".join(command) + "\n").encode())
        sink.flush()
        # start_new_session: the launcher leads its own group, which kill_tree signals as one
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, cwd=cwd, start_new_session=True)
        timed_out = ended_early = False
        try:
            while process.poll() is None:
                if time.perf_counter() - started > timeout_s:
                    timed_out = True
                    break
                if done is not None and done():
                    ended_early = True
                    break
                time.sleep(poll_s)
        finally:
            if process.poll() is None:  # timed out, done, or interrupted (SIGTERM/Ctrl-C on the caller)
                kill_tree(process, grace_s)
    seconds = time.perf_counter() - started
    note = "timed out after" if timed_out else "ended early (its work was done) after" if ended_early else "exited"
    with open(log, "a", encoding="utf-8") as sink:
        sink.write(f"\n[gpu_launch] {note} {seconds:.0f} s, exit code {process.returncode}\n")
    returncode = None if (timed_out or ended_early) else process.returncode
    return LaunchResult(returncode, timed_out, ended_early, seconds, log)
