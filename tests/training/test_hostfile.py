"""hostfile.example as `colossalai run --hostfile` reads it: through Colossal-AI's own parser."""

from __future__ import annotations

import pytest

from tests.training.conftest import REPO_ROOT


@pytest.fixture
def unresolved_hosts(monkeypatch):
    """The parser asks DNS whether each name is this machine; node-01 and node-02 exist on no network here."""
    from colossalai.cli.launcher.hostinfo import HostInfo

    monkeypatch.setattr(HostInfo, "is_host_localhost", staticmethod(lambda hostname, port=None: False))


def host_names(path) -> list:
    from colossalai.cli.launcher.run import fetch_hostfile

    return [host.hostname for host in fetch_hostfile(str(path), ssh_port=None)]


def test_hostfile_example_names_two_nodes(unresolved_hosts):
    assert host_names(REPO_ROOT / "hostfile.example") == ["node-01", "node-02"]


def test_comment_lines_are_taken_for_host_names(unresolved_hosts, tmp_path):
    """Why hostfile.example holds no comment (train.example.sh says so): only blank lines are skipped."""
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# our cluster\nnode-01\n\n  node-02  \n")
    assert host_names(hostfile) == ["# our cluster", "node-01", "node-02"]


def test_localhost_entries_are_started_without_ssh():
    """A local entry is run with fabric's Connection.local, not over ssh (see test_multinode_launch.py)."""
    from colossalai.cli.launcher.hostinfo import HostInfo

    assert HostInfo("localhost").is_local_host and HostInfo("127.0.0.1").is_local_host
