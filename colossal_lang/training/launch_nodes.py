"""`colossalai run` with three mends: a small environment, hosts checked first, and the failed rank named.

    colossal-lang-launch --nproc_per_node 8 --hostfile hostfile --master_port 29500 train.py --pretrained ...

The options are `colossalai run`'s (before the script), plus `--forward NAME` and `--ssh_timeout`.

- `colossalai run` puts `export NAME="value"` for every variable of the shell it was started from in front of
  the command it runs on each node: an HF_TOKEN or cloud credential ends up on the remote command line (any
  user of the node can read it there) and, when a node fails, in the log. It is started here with only the
  variables a run needs (FORWARDED_NAMES, FORWARDED_PREFIXES, and what `--forward` names); fabric's failure
  message is printed with variable names only.
- A host that SSH cannot reach left the other nodes waiting at the rendezvous for good; each remote host is
  now reached once (a login running `true`, bounded by --ssh_timeout) before anything starts, and the first
  that fails stops the launch with one line naming it.
- torchrun is told to tag each worker line with its global rank (`--tee 3` and a line prefix), so that at
  the end of a failed run one line names the rank that failed first, its node and how it ended, followed by
  that rank's last lines and every node's status.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading

from colossal_lang.errors import InputError
from colossal_lang.io.error_text import one_line
from colossal_lang.training.node_output import NodeOutput, exit_reason, without_values

FORWARDED_NAMES = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TZ", "TMPDIR", "SSH_AUTH_SOCK",
                   "PYTHONPATH", "PYTHONUNBUFFERED", "VIRTUAL_ENV", "TOKENIZERS_PARALLELISM", "HF_HOME",
                   "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_CACHE")
FORWARDED_PREFIXES = ("LC_", "CUDA_", "NCCL_", "GLOO_", "TORCH_", "TORCHELASTIC_", "OMP_", "MKL_", "COLOSSAL_LANG_")
LOCAL_NAMES = ("localhost", "127.0.0.1", "0.0.0.0")
# colossalai run writes `export NAME="value"` for a shell to read: `\$` reaches torchrun as `$`.
RANK_PREFIX_TEMPLATE = r"[rank\${rank}]:"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="colossal-lang-launch", description=__doc__.split("\n\n")[0],
                                     allow_abbrev=False, epilog="The other options are colossalai run's.")
    parser.add_argument("--forward", action="append", default=[], metavar="NAME",
                        help="also pass this environment variable to the nodes (repeatable); its value is then on "
                             "the nodes' command lines")
    parser.add_argument("--ssh_timeout", type=float, default=20.0,
                        help="seconds to connect, greet and log in to each remote host before the launch")
    for flag in ("--host", "--hostfile", "--include", "--exclude", "--master_addr", "--extra_launch_args"):
        parser.add_argument(flag, default=None)
    parser.add_argument("--nproc_per_node", type=int, required=True)
    parser.add_argument("--num_nodes", type=int, default=-1)
    parser.add_argument("--master_port", type=int, default=None)
    parser.add_argument("--ssh-port", "--ssh_port", dest="ssh_port", type=int, default=None)
    parser.add_argument("script", help="the training script, e.g. train.py")
    parser.add_argument("script_args", nargs=argparse.REMAINDER)
    return parser.parse_args(argv)


def listed_hosts(args) -> list[str]:
    """The hosts in the order colossalai run gives node ranks: hostfile, --include/--exclude, --num_nodes.

    Colossal-AI's own parser (cli/launcher/run.py: fetch_hostfile, parse_device_filter) is not called: importing
    it imports colossalai (seconds, and chatter on stderr before our one-line errors), and it `exit()`s with
    status 0 on a bad hostfile. tests/training/test_launch_nodes.py checks this order against that parser."""
    if args.hostfile:
        try:
            with open(args.hostfile, encoding="utf-8") as handle:
                hosts = [line.strip() for line in handle if line.strip()]
        except OSError as error:
            raise InputError(f"cannot read the hostfile: {error.strerror}", args.hostfile) from None
        if args.include:  # in the order --include names them, as colossalai run numbers them
            named = args.include.split(",")
            unknown = [h for h in named if h not in hosts]
            if unknown:
                raise InputError(f"--include names {unknown[0]!r}, which is not in the hostfile", args.hostfile)
            hosts = named
        if args.exclude:
            hosts = [h for h in hosts if h not in args.exclude.split(",")]
        return hosts[: args.num_nodes] if args.num_nodes > 0 else hosts
    return args.host.split(",") if args.host else ["127.0.0.1"]


def is_this_machine(host: str, port) -> bool:
    """Colossal-AI's test for a host it starts without SSH (colossalai/cli/launcher/hostinfo.py)."""
    if host in LOCAL_NAMES:
        return True
    try:
        port = port or 22
        return socket.getaddrinfo(socket.getfqdn(host), port) == socket.getaddrinfo(socket.gethostname(), port)
    except OSError:
        raise InputError(f"cannot resolve host {host!r} in the host list") from None


class KeptErrors(logging.Handler):
    """paramiko's transport thread logs why it gave up (e.g. no SSH banner) and the caller only hears 'No
    existing session': keep those records for the message, and off the terminal."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages = []

    def emit(self, record) -> None:
        self.messages.append(record.getMessage())


def check_reachable(host: str, port, timeout: float) -> None:
    """Log in to `host` the way colossalai run will (fabric, ~/.ssh/config) and run `true`, within `timeout`."""
    import fabric

    kept, logger = KeptErrors(), logging.getLogger("paramiko")
    logger.addHandler(kept)
    connection = fabric.Connection(host, port=port, connect_timeout=timeout,
                                   connect_kwargs={"banner_timeout": timeout, "auth_timeout": timeout})
    try:
        connection.run("true", hide=True, timeout=timeout)
    except Exception as error:  # paramiko and socket errors have no common base worth naming
        transport = connection.client.get_transport()
        connection.close()
        if transport is not None:
            transport.join(timeout)  # its last words (the record kept) come from its own thread
        where = f"{host} port {port}" if port else host
        why = kept.messages[0].removeprefix("Exception (client): ") if kept.messages else \
            f"{type(error).__name__}: {error or 'no answer'}"
        raise InputError(f"cannot reach node {where} over SSH within {timeout:g} s ({one_line(why)}); "
                         "no node was started") from None
    finally:
        connection.close()
        logger.removeHandler(kept)


def launch_environment(forward: list) -> dict:
    """Only what the nodes need from this shell, plus the line prefix that names each worker's rank."""
    env = {name: value for name, value in os.environ.items()
           if name in FORWARDED_NAMES or name.startswith(FORWARDED_PREFIXES) or name in forward}
    env["TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE"] = RANK_PREFIX_TEMPLATE
    return env


def launcher_command(args) -> list[str]:
    command = [shutil.which("colossalai") or "colossalai", "run", "--nproc_per_node", str(args.nproc_per_node)]
    for name in ("host", "hostfile", "include", "exclude", "master_addr", "master_port"):
        if getattr(args, name) is not None:
            command += [f"--{name}", str(getattr(args, name))]
    if args.num_nodes > 0:
        command += ["--num_nodes", str(args.num_nodes)]
    if args.ssh_port is not None:
        command += ["--ssh-port", str(args.ssh_port)]
    extra = ",".join(filter(None, [args.extra_launch_args, "tee=3"]))  # every worker line through torchrun, tagged
    return command + ["--extra_launch_args", extra, args.script, *args.script_args]


def relay(stream, sink, output: NodeOutput) -> None:
    for line in stream:
        output.feed(line)
        sink.write(without_values(line))
        sink.flush()


def run_launcher(command: list, env: dict) -> tuple[int, NodeOutput]:
    output = NodeOutput()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               errors="replace", bufsize=1)
    readers = [threading.Thread(target=relay, args=(process.stdout, sys.stdout, output), daemon=True),
               threading.Thread(target=relay, args=(process.stderr, sys.stderr, output), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        process.wait()
    except KeyboardInterrupt:  # the launcher shares our terminal's process group: it has the signal too
        process.wait()
    for reader in readers:
        reader.join()
    return process.returncode, output


def failure_report(output: NodeOutput, hosts: list, nproc_per_node: int) -> list[str]:
    failure = output.first_failure()
    statuses = ", ".join(f"{host} {state}" for host, state in output.statuses.items()) or "unknown"
    if failure is None:
        failed = [host for host, state in output.statuses.items() if state == "failure"]
        head = f"error: the run failed on {', '.join(failed) or 'a node'} (no worker failure was reported)"
        return [head, f"nodes: {statuses}"]
    node_rank = failure.rank // nproc_per_node
    host = hosts[node_rank] if node_rank < len(hosts) else "?"
    lines = [f"error: rank {failure.rank} on node {host} (node rank {node_rank}) failed first: {exit_reason(failure)}"]
    lines += [f"  rank {failure.rank}: {text}" for text in output.last_lines(failure.rank)]
    return lines + [f"nodes: {statuses}"]


def main(argv=None) -> None:
    args = parse_args(argv)
    hosts = listed_hosts(args)
    for host in hosts:
        if not is_this_machine(host, args.ssh_port):
            check_reachable(host, args.ssh_port, args.ssh_timeout)
    returncode, output = run_launcher(launcher_command(args), launch_environment(args.forward))
    if returncode != 0:
        print("\n".join(failure_report(output, hosts, args.nproc_per_node)), file=sys.stderr, flush=True)
    sys.exit(returncode)


if __name__ == "__main__":
    from colossal_lang.errors import run_cli

    run_cli(main)
