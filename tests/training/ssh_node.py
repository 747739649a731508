"""A second "node" reached over real SSH, for the launcher tests: OpenSSH's sshd on 127.0.0.2 (Colossal-AI
starts `localhost`, `127.0.0.1` and `0.0.0.0` without SSH; any other loopback address goes through fabric).

Everything lives in one folder the test owns: host and client keys, sshd's config, and a HOME for the
launcher whose .ssh/config names the key and port (fabric reads ~/.ssh/config; colossalai run has no option for
a key). Nothing outside it changes but /run/sshd (sshd's privilege-separation folder, when sshd runs as root),
which is removed again if this made it. sshd runs every command through a ForceCommand script that writes the
command it was sent to `commands.log` before running it unchanged: what the remote command line held.
A node may be given `private_dirs`: the command then runs in a mount namespace of its own with an empty tmpfs
over each, as on a machine that does not share those folders.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

ADDRESS = "127.0.0.2"
PRIVSEP_DIR = Path("/run/sshd")

RECORD_AND_RUN = """#!/bin/sh
# Write down the command the client sent, then run it as sshd would have (the login shell, -c).
printf '%s\\n' "$SSH_ORIGINAL_COMMAND" >> {log}
if [ -s {private} ]; then
    exec unshare --mount --propagation private sh -c \\
        'while read -r dir; do mount -t tmpfs private "$dir"; done < {private}
         exec "$SHELL" -c "$SSH_ORIGINAL_COMMAND"'
fi
exec "$SHELL" -c "$SSH_ORIGINAL_COMMAND"
"""


def sshd_binary() -> str | None:
    return shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd",) if os.access(p, os.X_OK)), None)


def install_openssh_server() -> str | None:
    """Debian's openssh-server through apt-get when sshd is missing and we are root (CI); the path to sshd.

    The package would start sshd on port 22 for good; a policy-rc.d that refuses (as Docker images ship) is
    put in place for the install when there is none. .ci/run does the same before the suite.
    """
    if sshd_binary() or os.geteuid() != 0 or not shutil.which("apt-get"):
        return sshd_binary()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    if made_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "openssh-server"], env=env,
                       check=True, capture_output=True, timeout=600)
    finally:
        if made_policy:
            policy.unlink()
    return sshd_binary()


def can_mount_privately(scratch: Path) -> bool:
    """Whether a command can get a mount namespace with a tmpfs of its own (root, and a runtime that allows it)."""
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "private",
                               str(scratch)], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        scratch.rmdir()


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "colossal-lang test", "-f", str(path)],
                   check=True, capture_output=True)


def wait_for_banner(address: str, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=2) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


class SshNode:
    """sshd on ADDRESS:port, key login only, for this user; `home` is the HOME to give the launcher."""

    def __init__(self, root: Path, sshd: str):
        self.root, self.sshd = Path(root), sshd
        self.address, self.port = ADDRESS, free_port(ADDRESS)
        self.home = self.root / "home"
        self.commands_log = self.root / "commands.log"
        self.private_list = self.root / "private_dirs"
        self.process = None
        self.made_privsep_dir = False

    def write_files(self) -> None:
        keygen(self.root / "host_key")
        keygen(self.root / "client_key")
        (self.root / "authorized_keys").write_text((self.root / "client_key.pub").read_text())
        script = self.root / "record_and_run"
        script.write_text(RECORD_AND_RUN.format(log=self.commands_log, private=self.private_list))
        script.chmod(0o755)
        self.private_list.write_text("")
        (self.root / "sshd_config").write_text("\n".join([
            f"ListenAddress {self.address}:{self.port}", f"HostKey {self.root / 'host_key'}",
            f"PidFile {self.root / 'sshd.pid'}", f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
            f"AllowUsers {getpass.getuser()}", "PubkeyAuthentication yes", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password", "UsePAM no",
            "StrictModes no", f"ForceCommand {script}", "LogLevel ERROR", ""]))
        ssh_dir = self.home / ".ssh"
        ssh_dir.mkdir(parents=True)
        (ssh_dir / "config").write_text("\n".join([
            f"Host {self.address}", f"    Port {self.port}", f"    User {getpass.getuser()}",
            f"    IdentityFile {self.root / 'client_key'}", "    IdentitiesOnly yes", ""]))

    def start(self) -> "SshNode":
        self.write_files()
        if os.geteuid() == 0 and not PRIVSEP_DIR.exists():
            PRIVSEP_DIR.mkdir(mode=0o755)
            self.made_privsep_dir = True
        log = open(self.root / "sshd.log", "w")
        self.process = subprocess.Popen([self.sshd, "-D", "-e", "-f", str(self.root / "sshd_config")],
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            wait_for_banner(self.address, self.port)
        except OSError:
            self.stop()
            raise RuntimeError(f"sshd did not start: {(self.root / 'sshd.log').read_text()[-2000:]}") from None
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        if self.made_privsep_dir:
            shutil.rmtree(PRIVSEP_DIR, ignore_errors=True)

    def set_private_dirs(self, dirs: list) -> None:
        self.private_list.write_text("".join(f"{d}\n" for d in dirs))

    def commands(self) -> list[str]:
        return self.commands_log.read_text().splitlines() if self.commands_log.exists() else []
