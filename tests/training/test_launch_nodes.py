"""colossal_lang.training.launch_nodes without a launch: the host list in colossalai run's order, the environment
it passes on, and what it keeps out of the log. The launches themselves are in test_ssh_launch.py."""

from __future__ import annotations

import pytest

from colossal_lang.errors import InputError
from colossal_lang.training.launch_nodes import launch_environment, launcher_command, listed_hosts, parse_args
from colossal_lang.training.node_output import NodeOutput, without_values
from tests.training.test_hostfile import unresolved_hosts  # noqa: F401 (a fixture)

HOSTS = ["node-01", "node-02", "node-03", "node-04"]


def colossalai_order(path, include=None, exclude=None, num_nodes=-1) -> list:
    """What colossalai run itself makes of the hostfile: its own parser and filter (colossalai/cli/launcher/run.py)."""
    from colossalai.cli.launcher.run import fetch_hostfile, parse_device_filter

    pool = parse_device_filter(fetch_hostfile(str(path), ssh_port=None), include, exclude)
    hosts = [host.hostname for host in pool]
    return hosts[:num_nodes] if num_nodes > 0 else hosts


@pytest.mark.parametrize("options", [{}, {"include": "node-03,node-01"}, {"exclude": "node-02"}, {"num_nodes": 2},
                                     {"exclude": "node-01", "num_nodes": 2}])
def test_hosts_come_in_the_order_colossalai_run_gives_node_ranks(unresolved_hosts, tmp_path, options):  # noqa: F811
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node-01\n\n  node-02\nnode-03\nnode-04\n")
    argv = ["--nproc_per_node", "1", "--hostfile", str(hostfile)]
    for name, value in options.items():
        argv += [f"--{name}", str(value)]
    assert listed_hosts(parse_args(argv + ["train.py"])) == colossalai_order(hostfile, **options)


def test_a_host_not_in_the_hostfile_or_no_hostfile_is_one_line(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node-01\n")
    with pytest.raises(InputError, match="--include names 'node-09', which is not in the hostfile"):
        listed_hosts(parse_args(["--nproc_per_node", "1", "--hostfile", str(hostfile), "--include", "node-09", "t.py"]))
    with pytest.raises(InputError, match=f"{tmp_path / 'missing'}: cannot read the hostfile"):
        listed_hosts(parse_args(["--nproc_per_node", "1", "--hostfile", str(tmp_path / "missing"), "t.py"]))


def test_only_the_listed_variables_and_those_forwarded_reach_the_launcher(monkeypatch):
    for name, value in {"HF_TOKEN": "hf_x", "AWS_SECRET_ACCESS_KEY": "k", "WANDB_API_KEY": "w", "NCCL_DEBUG": "INFO",
                        "PATH": "/bin", "LC_ALL": "C.UTF-8", "COLOSSAL_LANG_FAULTS": ""}.items():
        monkeypatch.setenv(name, value)
    env = launch_environment(["WANDB_API_KEY"])
    assert {"PATH", "NCCL_DEBUG", "LC_ALL", "COLOSSAL_LANG_FAULTS", "WANDB_API_KEY"} <= set(env)
    assert "HF_TOKEN" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert env["TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE"] == "[rank\\${rank}]:"


def test_the_script_and_its_flags_pass_through_and_tee_joins_extra_launch_args():
    args = parse_args(["--nproc_per_node", "8", "--hostfile", "h", "--ssh-port", "2222", "--extra_launch_args",
                       "max_restarts=1", "train.py", "--forward", "x", "--nproc_per_node", "3"])
    command = launcher_command(args)
    assert command[1:] == ["run", "--nproc_per_node", "8", "--hostfile", "h", "--ssh-port", "2222",
                           "--extra_launch_args", "max_restarts=1,tee=3", "train.py", "--forward", "x",
                           "--nproc_per_node", "3"]


def test_fabric_failure_message_keeps_the_names_and_drops_the_values():
    line = "Command: 'cd /w && export PATH=\"/a b:/c\" HF_TOKEN=\"hf_x\" EMPTY=\"\" && torchrun --nnodes=2 t.py'"
    assert without_values(line) == "Command: 'cd /w && export PATH HF_TOKEN EMPTY && torchrun --nnodes=2 t.py'"


ROOT_CAUSE = """Root Cause (first observed failure):
[0]:
  time      : 2026-12-07_15:51:19
  host      : node-{node}
  rank      : {rank} (local_rank: 0)
  exitcode  : {code} (pid: 42)
  error_file: <N/A>
  traceback : {traceback}
"""


def test_a_rank_that_lost_its_peer_is_not_the_first_failure():
    output = NodeOutput()
    text = ("[rank0]:RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer\n"
            + ROOT_CAUSE.format(node=1, rank=0, code=1, traceback="To enable traceback see: https://x")
            + ROOT_CAUSE.format(node=2, rank=3, code=-9, traceback="Signal 9 (SIGKILL) received by PID 42")
            + "127.0.0.1: failure\nnode-02: failure\n")
    for line in text.splitlines():
        output.feed(line)
    first = output.first_failure()
    assert (first.rank, first.traceback) == (3, "Signal 9 (SIGKILL) received by PID 42")
    assert output.statuses == {"127.0.0.1": "failure", "node-02": "failure"}
