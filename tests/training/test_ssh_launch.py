"""`colossalai run --hostfile` over real SSH: node 0 is 127.0.0.1 (started here), node 1 is 127.0.0.2, reached
through OpenSSH's sshd (ssh_node.py), one CPU process each, gloo, the ddp plugin.

What is checked: what `colossalai run` itself sends and prints (every variable of the launching shell), and
what colossal-lang-launch (colossal_lang/training/launch_nodes.py) does instead: a node killed mid-run ends the
run within 30 s with one line naming it, the losses before the kill and after the resume are the one-node
run's, a host that SSH cannot reach stops the launch in bounded time, and a node that does not share
--save_dir stops both before training. A fake HF_TOKEN is in the launching environment throughout.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time

import psutil
import pytest

from tests.training.conftest import (REPO_ROOT, STEPS, VENV_BIN, assert_same_steps, base_args, environment, free_port,
                                     step_records)
from colossal_lang.training.node_output import NodeOutput
from tests.training.ssh_node import ADDRESS, SshNode, can_mount_privately, install_openssh_server

SECRET = "hf_fakeTOKENthatMustNotLeak0123456789"
KILL_STEP = 5


@pytest.fixture(scope="session")
def ssh_node(tmp_path_factory):
    try:
        sshd = install_openssh_server()
    except subprocess.SubprocessError as error:  # .ci/run installs it first, and fails there if it cannot
        pytest.skip(f"openssh-server could not be installed: {error}")
    if sshd is None:
        pytest.skip("no sshd, and openssh-server cannot be installed here (not root, or no apt-get)")
    node = SshNode(tmp_path_factory.mktemp("ssh-node"), sshd).start()
    yield node
    node.stop()


def hostfile(tmp_path, *hosts) -> str:
    path = tmp_path / "hostfile"
    path.write_text("".join(f"{host}\n" for host in hosts))
    return str(path)


def launch(node: SshNode, command: list, timeout: int = 240, **variables) -> tuple:
    """(result, seconds): `command` with the fake secret in its environment and node's HOME (its ssh config)."""
    env = dict(environment(), HOME=str(node.home), HF_TOKEN=SECRET, **{k: str(v) for k, v in variables.items()})
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:  # a hang: the launcher and what it started here
            for proc in [*psutil.Process(process.pid).children(recursive=True), psutil.Process(process.pid)]:
                proc.kill()
            process.communicate()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr), time.monotonic() - started


def wrapper(*args) -> list:
    return [sys.executable, "-m", "colossal_lang.training.launch_nodes", "--nproc_per_node", "1",
            "--master_port", str(free_port()), *map(str, args)]


def test_colossalai_run_sends_the_whole_environment_and_prints_it_on_failure(ssh_node, tmp_path):
    """Upstream behaviour, shown: why colossal-lang-launch exists."""
    command = [str(VENV_BIN / "colossalai"), "run", "--nproc_per_node", "1", "--master_port", str(free_port()),
               "--hostfile", hostfile(tmp_path, "127.0.0.1", ADDRESS), "tests/training/report_env_and_fail.py"]
    result, _ = launch(ssh_node, command, timeout=120)
    assert result.returncode == 1
    assert f"{ADDRESS}: failure" in result.stdout and "127.0.0.1: failure" in result.stdout
    assert "rank 1 sees HF_TOKEN: True" in result.stdout  # node 1's worker got it, over SSH
    assert f'HF_TOKEN="{SECRET}"' in result.stdout  # fabric's failure message: the command, exports and all
    sent = [c for c in ssh_node.commands() if "report_env_and_fail.py" in c]
    assert len(sent) == 1 and f'HF_TOKEN="{SECRET}"' in sent[0] and "--node_rank=1" in sent[0]


def latest_step(save_dir) -> int:
    return max(int(p.name.split("step-")[1]) for p in save_dir.glob("epoch-0_step-*"))


@pytest.fixture(scope="module")
def killed_then_resumed(ssh_node, tiny_model_dir, packed_dataset, tmp_path_factory):
    """Node 1's worker SIGKILLs itself at step KILL_STEP; then train.example.sh resumes (--load_checkpoint latest)
    with the reference run's flags after its own (the last value of a flag wins)."""
    root = tmp_path_factory.mktemp("ssh-two-nodes")
    save_dir, killed_at = root / "save", root / "killed_at"
    hosts = hostfile(root, "127.0.0.1", ADDRESS)
    args = base_args(tiny_model_dir, packed_dataset, save_dir)
    killed, _ = launch(ssh_node, wrapper("--hostfile", hosts, "tests/training/die_at_step.py", 1, KILL_STEP,
                                         save_dir / "log.jsonl", killed_at, *args))
    ended = time.time()
    killed_steps = [r["step"] for r in step_records(save_dir / "log.jsonl")]
    resume_step = latest_step(save_dir)
    example = ["bash", "train.example.sh", *args, "--accumulation_steps", "1", "--keep_last", "0"]
    resumed, seconds = launch(ssh_node, example,
                              HOSTFILE=hosts, NPROC=1, PLUGIN="ddp", PRECISION="fp32", MASTER_PORT=free_port(),
                              PRETRAINED=tiny_model_dir, DATASET=packed_dataset, SAVE_DIR=save_dir)
    return dict(save_dir=save_dir, killed=killed, exit_after_kill_s=ended - float(killed_at.read_text()),
                killed_steps=killed_steps, resume_step=resume_step, resumed=resumed, resumed_s=seconds)


def test_a_killed_node_is_named_in_one_line_and_the_run_ends_within_30_s(killed_then_resumed):
    run = killed_then_resumed
    killed = run["killed"]
    assert killed.returncode == 1, killed.stderr[-4000:]
    report = killed.stderr.rstrip("\n").splitlines()
    first = next(i for i, line in enumerate(report) if line.startswith("error: "))
    assert report[first] == (f"error: rank 1 on node {ADDRESS} (node rank 1) failed first: "
                             + re.search(r"Signal 9 \(SIGKILL\) received by PID \d+", report[first]).group(0))
    assert report[-1] == f"nodes: 127.0.0.1 failure, {ADDRESS} failure"
    assert all(line.startswith("  rank 1: ") for line in report[first + 1:-1])
    assert run["exit_after_kill_s"] < 30, run["exit_after_kill_s"]
    # Rank 0 failed too, a moment later, in a collective with the dead peer: read as a consequence.
    output = NodeOutput()
    for line in (killed.stdout + killed.stderr).splitlines():
        output.feed(line)
    assert sorted(f.rank for f in output.failures) == [0, 1]
    assert output.lost_a_peer(0) and not output.lost_a_peer(1)
    print(f"\nnode failure to exit: {run['exit_after_kill_s']:.1f} s")
    left = [p for p in psutil.process_iter(["cmdline"]) if str(run["save_dir"]) in " ".join(p.info["cmdline"] or [])]
    assert not left


def test_train_example_sh_over_ssh_resumes_exactly_like_one_node_with_two_processes(killed_then_resumed,
                                                                                      uninterrupted):
    run = killed_then_resumed
    resumed = run["resumed"]
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert f"{ADDRESS}: success" in resumed.stdout and "127.0.0.1: success" in resumed.stdout
    assert KILL_STEP <= run["killed_steps"][-1] < STEPS and run["resume_step"] <= run["killed_steps"][-1]
    checkpoint = run["save_dir"] / f"epoch-0_step-{run['resume_step']}"
    assert f"[rank0]:resumed from {checkpoint}" in resumed.stdout
    records = step_records(run["save_dir"] / "log.jsonl")
    assert [r["step"] for r in records] == run["killed_steps"] + list(range(run["resume_step"] + 1, STEPS + 1))
    assert_same_steps(records, uninterrupted / "log.jsonl")  # before the kill and after the resume
    assert {p.name for p in (run["save_dir"] / f"epoch-0_step-{STEPS}" / "rng").iterdir()} == {"rank-0.pt", "rank-1.pt"}
    assert (run["save_dir"] / "final" / "model.safetensors").is_file()
    print(f"\ntwo nodes over SSH, {STEPS - run['resume_step']} steps after resume: {run['resumed_s']:.1f} s")


def test_no_secret_in_the_log_or_on_the_remote_command_line(killed_then_resumed, ssh_node):
    from colossal_lang.training.launch_nodes import FORWARDED_NAMES, FORWARDED_PREFIXES

    for result in (killed_then_resumed["killed"], killed_then_resumed["resumed"]):
        assert SECRET not in result.stdout + result.stderr
    save_dir = str(killed_then_resumed["save_dir"])
    sent = [c for c in ssh_node.commands() if "torchrun" in c and save_dir in c]
    assert len(sent) == 2 and all("--node_rank=1" in c for c in sent)
    for command in sent:
        exported = re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="', command.split(" && torchrun")[0])
        assert {"PATH", "HOME", "PYTHONPATH", "TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE"} <= set(exported)
        assert all(n in FORWARDED_NAMES or n.startswith(FORWARDED_PREFIXES) for n in exported), exported
        assert 'TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE="[rank\\${rank}]:"' in command
    # fabric's failure message repeats each node's command: printed with the variables' names only
    shown = [line for line in killed_then_resumed["killed"].stdout.splitlines() if line.startswith("Command: 'cd ")]
    assert len(shown) == 2
    for line in shown:
        assert re.search(r" && export [A-Za-z0-9_ ]*\bPATH\b[A-Za-z0-9_ ]* && torchrun ", line) and '="' not in line


def silent_listener():
    """A TCP port on 127.0.0.4 that accepts connections and never says a word (a host that hangs SSH)."""
    sock = socket.socket()
    sock.bind(("127.0.0.4", 0))
    sock.listen(8)
    return sock


def test_an_unreachable_host_stops_the_launch_in_bounded_time_naming_it(ssh_node, tmp_path):
    refused, seconds = launch(ssh_node, wrapper("--hostfile", hostfile(tmp_path, "127.0.0.1", "127.0.0.3"),
                                                "--ssh_timeout", 5, "train.py"), timeout=60)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.startswith("error: cannot reach node 127.0.0.3 over SSH within 5 s (")
    assert refused.stderr.count("\n") == 1 and seconds < 20
    print(f"\nrefused host: stopped after {seconds:.1f} s")
    with silent_listener() as sock:
        port = sock.getsockname()[1]
        silent, seconds = launch(ssh_node, wrapper("--hostfile", hostfile(tmp_path, "127.0.0.1", "127.0.0.4"),
                                                   "--ssh-port", port, "--ssh_timeout", 3, "train.py"), timeout=60)
    assert silent.returncode == 2 and silent.stdout == ""
    assert silent.stderr == (f"error: cannot reach node 127.0.0.4 port {port} over SSH within 3 s (Error reading SSH "
                             "protocol banner); no node was started\n")
    assert silent.stderr.count("\n") == 1 and 3 <= seconds < 20
    print(f"silent host: stopped after {seconds:.1f} s")
    assert not [c for c in ssh_node.commands() if "torchrun" in c and "127.0.0.3" in c]


def test_a_node_that_does_not_share_save_dir_stops_both_before_training(ssh_node, tiny_model_dir, packed_dataset,
                                                                        tmp_path):
    """Node 1 runs in a mount namespace with an empty tmpfs over the save_dir's parent: rank 0's file is not there."""
    if not can_mount_privately(tmp_path / "scratch"):
        pytest.skip("no private mount namespace here (unshare --mount needs root and a runtime that allows it)")
    private = tmp_path / "private"
    private.mkdir()
    ssh_node.set_private_dirs([private])
    try:
        args = base_args(tiny_model_dir, packed_dataset, private / "save")
        result, seconds = launch(ssh_node, wrapper("--hostfile", hostfile(tmp_path, "127.0.0.1", ADDRESS),
                                                   "train.py", *args), timeout=180)
    finally:
        ssh_node.set_private_dirs([])
    assert result.returncode == 1
    for rank in (0, 1):  # each rank's own one-line error, tagged with its rank
        assert re.search(rf"^\[rank{rank}\]:error: .*--save_dir is not shared by all nodes: rank 1 on", result.stderr,
                         re.MULTILINE)
    assert "]:plugin ddp" not in result.stdout and not (private / "save" / "log.jsonl").exists()
    report = result.stderr.rstrip("\n").splitlines()
    assert report[-1] == f"nodes: 127.0.0.1 failure, {ADDRESS} failure"
    print("\n".join(report[-4:]))
    first = next(i for i, line in enumerate(report) if line.startswith("error: rank "))
    found = re.fullmatch(r"error: rank ([01]) on node (\S+) \(node rank \1\) failed first: exit code 2", report[first])
    assert found and found.group(2) == ["127.0.0.1", ADDRESS][int(found.group(1))]
    assert "--save_dir is not shared by all nodes" in report[first + 1] and report[first + 1].startswith("  rank ")
