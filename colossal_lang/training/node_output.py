"""Reading what `colossalai run` prints for all nodes at once: which rank failed first, on which node, and why.

Every node's torchrun writes into the same two streams (fabric copies the remote ones here), so a line is
tied to its rank by the prefix torchrun puts on each worker line when told to (`[rank3]:`, see
launch_nodes.py). When a worker fails, its node's torchrun prints a "Root Cause (first observed failure)"
block with the time (to the second), the global rank and the exit code. A failure is only a consequence
when the rank lost a peer (a collective over a closed connection), so those rank after failures of their
own; then the earlier time, then what arrived first. The command fabric ran, with `export NAME="value"` for
every variable it forwards, is shortened to the names: values stay out of the log.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from dataclasses import dataclass, field

RANK_LINE = re.compile(r"^\[rank(\d+)\]:(.*)$")
ROOT_CAUSE_FIELD = re.compile(r"^\s+(time|rank|exitcode|traceback)\s*:\s*(.*)$")
NODE_STATUS = re.compile(r"^(\S+): (success|failure)$")
EXPORTS = re.compile(r'export ((?:[A-Za-z_][A-Za-z0-9_]*="[^"]*" ?)+)')
# How gloo, NCCL and the c10d store report a peer that went away: the failure happened elsewhere first.
PEER_LOST = re.compile(r"Connection closed by peer|Connection reset by peer|Broken pipe|remote process exited|"
                       r"DistNetworkError|recvValue failed|Socket Timeout|Connection refused|"
                       r"NCCL communicator was aborted",
                       re.IGNORECASE)
TAIL_LINES = 8


def without_values(line: str) -> str:
    """`export A="1" B="2"` becomes `export A B` (fabric's failure message repeats the whole command)."""
    return EXPORTS.sub(lambda m: "export " + " ".join(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="', m.group(1))) + " ",
                       line)


@dataclass
class Failure:
    rank: int
    time: str = ""
    exitcode: str = ""
    traceback: str = ""
    arrival: int = 0


@dataclass
class NodeOutput:
    """Fed every line of both streams (from two threads); answers what failed first once the run is over."""

    tails: dict = field(default_factory=dict)  # rank -> its last lines
    failures: list = field(default_factory=list)
    statuses: dict = field(default_factory=dict)  # host -> success | failure, from Colossal-AI's summary
    _open: Failure | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def feed(self, line: str) -> None:
        with self._lock:
            self._read(line.rstrip("\n"))

    def _read(self, line: str) -> None:
        tagged = RANK_LINE.match(line)
        if tagged:
            self.tails.setdefault(int(tagged.group(1)), deque(maxlen=TAIL_LINES)).append(tagged.group(2))
            return
        status = NODE_STATUS.match(line)
        if status:
            self.statuses[status.group(1)] = status.group(2)
            return
        if "Root Cause (first observed failure)" in line:
            self._open = Failure(rank=-1, arrival=len(self.failures))
            return
        found = ROOT_CAUSE_FIELD.match(line) if self._open is not None else None
        if found:
            name, value = found.groups()
            if name == "rank":
                self._open.rank = int(value.split()[0])
            else:
                setattr(self._open, name, value.strip())
            if name == "traceback":  # the block's last field
                self.failures.append(self._open)
                self._open = None

    def lost_a_peer(self, rank: int) -> bool:
        return any(PEER_LOST.search(text) for text in self.tails.get(rank, ()))

    def first_failure(self) -> Failure | None:
        with self._lock:
            known = [f for f in self.failures if f.rank >= 0]
            return min(known, key=lambda f: (self.lost_a_peer(f.rank), f.time, f.arrival), default=None)

    def last_lines(self, rank: int) -> list[str]:
        with self._lock:
            return list(self.tails.get(rank, ()))


def exit_reason(failure: Failure) -> str:
    """torchrun's words for how the worker ended: 'Signal 9 (SIGKILL) received by PID 12', or its exit code."""
    if failure.traceback and not failure.traceback.startswith("To enable traceback"):
        return failure.traceback
    return f"exit code {failure.exitcode.split(' (')[0]}" if failure.exitcode else "failed"
