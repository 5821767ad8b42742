"""Fault rigs: a private dockerd that a test may stop, and mounts that fill up or refuse writes.

The private engine never touches the machine's shared dockerd: its own socket, data root, exec
root (with its own containerd), pid file, and a bridge of its own with no iptables rules.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import docker

from jindr_nb.runtime.docker import unix_engine_pings


def run(*argv: str) -> None:
    """Run a system command (mount, ip); fail with its own stderr."""
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise OSError(f"{' '.join(argv)} failed: {done.stderr.strip()}")


def mounted(path: Path) -> bool:
    target = os.fsencode(str(path.resolve()))
    with open("/proc/self/mounts", "rb") as fh:
        return any(line.split()[1] == target for line in fh)


def unmount(path: Path) -> None:
    """Undo every mount stacked on `path` (lazily when something still holds it)."""
    while mounted(path):
        done = subprocess.run(["umount", str(path)], capture_output=True, timeout=60)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=60)


def read_only_bind(path: Path) -> None:
    """Make `path` read-only for everyone, root included (a read-only bind mount of itself)."""
    run("mount", "--bind", str(path), str(path))
    run("mount", "-o", "remount,ro,bind", str(path))


def tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path))


def writes_refused(path: Path) -> bool:
    """True when creating a file under `path` fails (checked for real, as root)."""
    probe = path / f".probe-{os.getpid()}"
    try:
        probe.write_bytes(b"x")
    except OSError:
        return True
    probe.unlink()
    return False


class PrivateDockerd:
    """A dockerd of the test's own, which the test may stop and start again."""

    def __init__(self) -> None:
        # Short paths: unix socket names are limited to 107 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="jdk-", dir="/tmp"))
        self.socket = self.root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.bridge = f"jdk{os.getpid() % 100000}"
        self.subnet = f"10.213.{os.getpid() % 250}.1/24"
        self.proc: subprocess.Popen[bytes] | None = None
        self._bridge_made = False

    def start(self, timeout: float = 60) -> None:
        if not self._bridge_made:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=30)
            run("ip", "link", "add", self.bridge, "type", "bridge")
            self._bridge_made = True
            run("ip", "addr", "add", self.subnet, "dev", self.bridge)
            run("ip", "link", "set", self.bridge, "up")
        with open(self.root / "dockerd.log", "ab") as log:
            self.proc = subprocess.Popen(
                [
                    "dockerd",
                    "-H",
                    self.host,
                    "--data-root",
                    str(self.root / "data"),
                    "--exec-root",
                    str(self.root / "exec"),
                    "--pidfile",
                    str(self.root / "docker.pid"),
                    "--bridge",
                    self.bridge,
                    "--iptables=false",
                    "--ip6tables=false",
                    "--ip-masq=false",
                ],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not unix_engine_pings(str(self.socket)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise OSError(f"private dockerd did not start: {self.log_tail()}")
            time.sleep(0.1)

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.host, timeout=60)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM dockerd (it stops its containers and its containerd) and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        """Stop, then remove everything it left: mounts, the bridge, its directories."""
        self.stop()
        with open("/proc/self/mounts", "rb") as fh:
            leftovers = [line.split()[1] for line in fh if line.split()[1].startswith(os.fsencode(str(self.root)))]
        for target in sorted(leftovers, key=len, reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True, timeout=30)
        if self._bridge_made:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=30)
            self._bridge_made = False
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self) -> str:
        try:
            return " | ".join((self.root / "dockerd.log").read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return ""
