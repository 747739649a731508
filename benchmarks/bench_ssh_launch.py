"""Launching two CPU processes four ways, and how long a killed node takes to end the run (issue 25).

    python benchmarks/bench_ssh_launch.py [--repeats 2]

Ways: torchrun with 2 processes (one node, the reference), `colossalai run` with the hosts localhost and
127.0.0.1 (two nodes, both started here without SSH), `colossalai run` with 127.0.0.1 and 127.0.0.2 (node 1
over SSH to a private sshd, tests/training/ssh_node.py), and colossal-lang-launch the same way (an SSH login
to each remote host first). The worker (ssh_launch_worker.py) meets over gloo and ends: the time is launch,
rendezvous and exit. "kill to exit": rank 1 SIGKILLs itself after the first barrier; seconds from then until
the launcher has exited. CPU seconds are those of the launcher's own child processes: node 1's processes run
under sshd and are not counted. Needs sshd (skips without it).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.training.ssh_node import ADDRESS, SshNode, sshd_binary  # noqa: E402

WORKER = REPO_ROOT / "benchmarks" / "ssh_launch_worker.py"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def commands(hostfiles: dict) -> dict:
    def colossalai(hosts):
        return [str(BIN / "colossalai"), "run", "--nproc_per_node", "1", "--hostfile", hostfiles[hosts]]

    return {
        "torchrun, 1 node x 2": lambda: [str(BIN / "torchrun"), "--nproc_per_node=2", f"--master_port={free_port()}"],
        "colossalai run, 2 local hosts": lambda: colossalai("local") + ["--master_port", str(free_port())],
        "colossalai run, node 1 over SSH": lambda: colossalai("ssh") + ["--master_port", str(free_port())],
        "colossal-lang-launch, node 1 over SSH": lambda: [sys.executable, "-m", "colossal_lang.training.launch_nodes",
                                                          "--nproc_per_node", "1", "--hostfile", hostfiles["ssh"],
                                                          "--master_port", str(free_port())],
    }


def timed(command: list, env: dict, killed_at: Path | None) -> tuple[float, float, int]:
    """(seconds from start, or from the kill, to exit; CPU seconds of the children; return code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    result = subprocess.run(command + [str(WORKER)] + ([str(killed_at)] if killed_at else []), cwd=REPO_ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    ended = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    start = float(killed_at.read_text()) if killed_at else started
    return ended - start, cpu, result.returncode


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    if sshd_binary() is None:
        print("skipped: no sshd on this machine (apt-get install openssh-server)")
        return
    with tempfile.TemporaryDirectory(prefix="bench-ssh-launch-") as tmp:
        tmp = Path(tmp)
        node = SshNode(tmp / "node", sshd_binary())
        node.root.mkdir()
        node.start()
        try:
            hostfiles = {"local": tmp / "local", "ssh": tmp / "ssh"}
            hostfiles["local"].write_text("localhost\n127.0.0.1\n")
            hostfiles["ssh"].write_text(f"127.0.0.1\n{ADDRESS}\n")
            env = dict(os.environ, HOME=str(node.home), OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT),
                       PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
            rows = measure(commands({k: str(v) for k, v in hostfiles.items()}), env, tmp, args.repeats)
        finally:
            node.stop()
    print_table(rows, args.repeats)


def measure(ways: dict, env: dict, tmp: Path, repeats: int) -> list:
    rows = []
    for name, command in ways.items():
        runs = {"launch": [], "kill": []}
        for index in range(repeats):
            seconds, cpu, code = timed(command(), env, None)
            assert code == 0, f"{name}: exit {code}"
            runs["launch"].append((seconds, cpu))
            seconds, cpu, code = timed(command(), env, tmp / f"killed-{len(rows)}-{index}")
            assert code != 0, f"{name}: a killed rank, and exit 0"
            runs["kill"].append((seconds, cpu))
        rows.append((name, runs))
    return rows


def print_table(rows: list, repeats: int) -> None:
    reference = statistics.median(s for s, _ in rows[0][1]["launch"])
    print(f"median of {repeats}; wall seconds (CPU seconds of local children); under load on a shared machine")
    print(f"{'launch':40} {'start to exit':>18} {'ratio':>6} {'kill to exit':>14}")
    for name, runs in rows:
        launch = statistics.median(s for s, _ in runs["launch"])
        launch_cpu = statistics.median(c for _, c in runs["launch"])
        kill = statistics.median(s for s, _ in runs["kill"])
        print(f"{name:40} {launch:8.1f} s ({launch_cpu:4.1f}) {launch / reference:6.2f} {kill:12.1f} s")


if __name__ == "__main__":
    main()
