"""What every runtime shares: the spec of a registry to run, its state directory, and the config."""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .._files import private_dirs
from ..errors import InvalidReference, RegistryError, RuntimeFailure
from ..models import InstanceRow
from ..refs import is_loopback, parse_registry

if TYPE_CHECKING:
    from .s3 import BucketStorage

__all__ = [
    "DEFAULT_STORAGE",
    "Runtime",
    "RegistrySpec",
    "dir_size",
    "make_storage",
    "port_of",
    "port_holder",
    "private_dirs",
    "registry_config",
    "state_dir",
    "wait_ready",
]

DEFAULT_STORAGE = "~/.jindr"

# Docker's own rule for container names; the process runtime keeps the name only as a label.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def state_dir() -> Path:
    """Where jindr keeps pid files, logs and generated configs (`$JINDR_STATE_DIR` overrides)."""
    explicit = os.environ.get("JINDR_STATE_DIR")
    base = (
        Path(explicit)
        if explicit
        else Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "jindr_nb"
    )
    private_dirs(base)
    return base


@dataclass(frozen=True)
class RegistrySpec:
    """A registry to run: its address, storage, name, and pull-through upstream if any."""

    registry: str
    storage: Path
    name: str = ""
    proxy_url: str = ""
    proxy_username: str = ""
    proxy_password: str = ""  # never shown: not in repr, rows or logs
    # Object storage instead of `storage` (which then only names where jindr keeps the registry's
    # local state); set by `start --storage s3://...`. gc, du and rmr read and delete through it.
    bucket: BucketStorage | None = None

    def __repr__(self) -> str:
        where = self.bucket.url if self.bucket is not None else str(self.storage)
        return f"RegistrySpec(registry={self.registry!r}, storage={where!r}, proxy_url={self.proxy_url!r})"

    @classmethod
    def make(
        cls,
        registry: str,
        storage: str | os.PathLike[str] | None = None,
        name: str = "",
        proxy_url: str = "",
        proxy_username: str = "",
        proxy_password: str = "",
    ) -> RegistrySpec:
        """Validate: a loopback registry with a port; storage expanded and absolute."""
        registry = parse_registry(registry)
        if not is_loopback(registry):
            raise InvalidReference(
                f"jindr only runs registries on this machine: {registry} is not localhost/127.0.0.1 "
                "(use -r localhost:PORT)"
            )
        port_of(registry)
        path = Path(os.path.expanduser(str(storage or os.environ.get("JINDR_STORAGE") or DEFAULT_STORAGE))).resolve()
        if proxy_url and not proxy_url.startswith(("http://", "https://")):
            raise InvalidReference(f"invalid --proxy {proxy_url!r}: expected http(s)://HOST[:PORT]")
        if name and not _NAME.fullmatch(name):
            raise InvalidReference(
                f"invalid --name {name!r}: use letters, digits, '_', '.' and '-' (starting with a letter or digit)"
            )
        return cls(registry, path, name or default_name(registry), proxy_url, proxy_username, proxy_password)

    @property
    def port(self) -> int:
        return port_of(self.registry)

    @property
    def mode(self) -> str:
        return "proxy" if self.proxy_url else "registry"


def default_name(registry: str) -> str:
    """`jindr-5001` for localhost:5001."""
    return f"jindr-{port_of(registry)}"


def port_of(registry: str) -> int:
    """The port of a loopback registry address (80 when none is given)."""
    if registry.startswith("["):
        _, _, port = registry.partition("]:")
    else:
        _, _, port = registry.partition(":")
    if not port:
        return 80
    return int(port)


class Runtime(Protocol):
    """How a registry is run: docker (or Podman's API), or the registry binary as a process."""

    name: str

    def start(self, spec: RegistrySpec, *, progress: Callable[[str], None] | None = None) -> InstanceRow: ...

    def stop(self, registry: str) -> InstanceRow | None: ...

    def status(self, registry: str) -> InstanceRow | None: ...

    def instances(self) -> list[InstanceRow]: ...

    def spec_of(self, registry: str) -> RegistrySpec | None: ...

    def pause(self, registry: str) -> None:
        """Stop the registry so nothing can write, keeping what `resume` needs."""

    def resume(self, registry: str) -> InstanceRow:
        """Start a paused registry again exactly as it was."""

    def garbage_collect(self, registry: str, *, dry_run: bool) -> str:
        """Run the registry's own `garbage-collect` on a paused registry's storage; return its output."""


def registry_config(spec: RegistrySpec, listen: str, root: str) -> str:
    """A registry config (YAML; JSON is YAML) with delete enabled and the optional proxy."""
    import json

    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": root},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": {"addr": listen, "headers": {"X-Content-Type-Options": ["nosniff"]}},
    }
    if spec.proxy_url:
        proxy: dict[str, str] = {"remoteurl": spec.proxy_url}
        if spec.proxy_username:
            proxy["username"] = spec.proxy_username
            proxy["password"] = spec.proxy_password
        config["proxy"] = proxy
    return json.dumps(config, indent=2) + "\n"


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (0600, in 0700 directories), replacing it atomically."""
    private_dirs(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    # A leftover temporary file (a write cut short) may have another mode, or be a planted symlink:
    # it is removed, and the new one is created afresh (O_EXCL), never followed, and made 0600 whatever the umask.
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            fd = -1
            out.write(text)
    finally:
        if fd != -1:
            os.close(fd)
    os.replace(tmp, path)


def proxy_credentials(config: Path) -> tuple[str, str]:
    """(username, password) of the proxy section of a config `registry_config` wrote; blanks if none."""
    import json

    try:
        proxy = json.loads(config.read_text()).get("proxy", {})
        return str(proxy.get("username", "")), str(proxy.get("password", ""))
    except (OSError, ValueError, AttributeError):
        return "", ""


def wait_ready(registry: str, timeout: float, alive: Callable[[], bool], log_tail: Callable[[], str]) -> None:
    """Return when the registry answers the client's ping (GET /v2/ on 127.0.0.1, where every runtime
    publishes it); raise with the registry's own log tail if it dies or does not answer in time."""
    from ..client import RegistryClient

    deadline = time.monotonic() + timeout
    delay = 0.005
    # One try per round (no retries of its own), each bounded by a second: the loop does the waiting.
    with RegistryClient(f"127.0.0.1:{port_of(registry)}", retries=0, connect_timeout=1, timeout=1) as client:
        while True:
            try:
                client.ping()
                return
            except RegistryError:
                pass  # not listening yet, or not answering as a registry yet
            if not alive():
                raise RuntimeFailure(f"the registry for {registry} exited while starting: {_tail(log_tail)}")
            if time.monotonic() > deadline:
                raise RuntimeFailure(
                    f"the registry for {registry} did not answer within {timeout:.0f} s: {_tail(log_tail)}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def _tail(log_tail: Callable[[], str]) -> str:
    return log_tail() or "no log output"


def port_holder(port: int) -> str:
    """Who listens on 127.0.0.1:`port`, as far as /proc tells ("" when unknown)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    if not inodes:
        return ""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                    return f"pid {proc.name} ({cmd[:80]})"
        except OSError:
            continue
    return ""


def port_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:`port`."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_port_free(port: int, timeout: float = 3.0) -> bool:
    """True once nothing listens on 127.0.0.1:`port` (a registry that just stopped may linger briefly)."""
    deadline = time.monotonic() + timeout
    while not port_free(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def make_storage(path: Path) -> None:
    """Create the storage directory (mode 0700) and check that it can be written, or say why not."""
    try:
        private_dirs(path)
    except OSError as exc:
        raise RuntimeFailure(f"cannot create the storage directory {path}: {exc.strerror}") from None
    # os.access asks the file system too: a read-only mount refuses even root, which bare mode bits do not.
    if not os.access(path, os.W_OK | os.X_OK):
        raise RuntimeFailure(f"the storage directory {path} is not writable; choose another with -d DIR")


def dir_size(path: Path) -> int:
    """Bytes on disk under `path` (0 when missing or unreadable)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total
