"""The registry binary run as a detached background process, with a pid file and a log."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import RuntimeFailure
from ..models import InstanceRow
from .base import (
    RegistrySpec,
    bind_address,
    check_bucket,
    dial_host,
    from_serving,
    make_storage,
    port_holder,
    port_of,
    private_dirs,
    proxy_credentials,
    registry_config,
    serving_files,
    state_dir,
    wait_port_free,
    wait_ready,
    write_private,
)

__all__ = ["ProcessRuntime", "find_binary"]

_BINARY_NAMES = ("registry", "docker-registry")

# Registries this process spawned: the only pids it may reap (waitpid on any other pid could
# steal the exit status of a child that belongs to someone else in the same kernel).
_CHILDREN: set[int] = set()


def find_binary(explicit: str | None = None) -> str | None:
    """`--binary`, else $JINDR_REGISTRY_BINARY, else `registry` or Debian's `docker-registry` on PATH."""
    candidate = explicit or os.environ.get("JINDR_REGISTRY_BINARY")
    if candidate:
        found = shutil.which(candidate)
        return found or None
    for name in _BINARY_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def binary_version(binary: str) -> str:
    """`2.8.2` / `3.0.0` from `registry --version` ("" when it cannot tell)."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    for word in out.split():
        word = word.removeprefix("v")
        if word[:1].isdigit() and "." in word:
            return word.split("+")[0]
    return ""


class ProcessRuntime:
    """Runs `registry serve CONFIG` on 127.0.0.1 only; it outlives the kernel or CLI that started it."""

    name = "process"

    def __init__(self, binary: str | None = None, state: Path | None = None) -> None:
        self.binary = binary
        self._state = state

    @property
    def state(self) -> Path:
        base = (self._state or state_dir()) / "process"
        private_dirs(base)
        return base

    def _dir(self, registry: str) -> Path:
        return self.state / str(port_of(registry))

    def start(self, spec: RegistrySpec, *, progress: Callable[[str], None] | None = None) -> InstanceRow:
        running = self.status(spec.registry)
        if running is not None and running.status == "running":
            return running
        binary = find_binary(self.binary)
        if binary is None:
            wanted = self.binary or os.environ.get("JINDR_REGISTRY_BINARY")
            raise RuntimeFailure(
                f"registry binary {wanted!r} not found"
                if wanted
                else "no registry binary found: install it (Debian/Ubuntu: apt-get install docker-registry), "
                "pass --binary PATH, or use --runtime docker"
            )
        if not wait_port_free(spec.port, 2.0):
            holder = port_holder(spec.port)
            raise RuntimeFailure(
                f"port {spec.port} is already in use{' by ' + holder if holder else ''}; "
                f"choose another with -r localhost:PORT"
            )
        version = binary_version(binary)
        if spec.bucket is None:
            make_storage(spec.storage)
        else:
            check_bucket(spec)
        serving = serving_files(spec)
        workdir = self._dir(spec.registry)
        private_dirs(workdir)
        config = workdir / "config.yml"
        listen = bind_address(spec.listen, spec.port)
        write_private(config, registry_config(spec, listen, str(spec.storage), serving=serving, version=version))
        log_path = workdir / "registry.log"
        try:
            pid = _spawn([binary, "serve", str(config)], _environment(spec), log_path)
        except BaseException:
            config.unlink(missing_ok=True)  # it may hold S3 keys: nothing left behind by a start that failed
            raise
        try:
            wait_ready(
                spec.registry,
                15,
                lambda: _alive(pid),
                lambda: _tail(log_path),
                tls=serving.context(),
                host=dial_host(spec.listen),
            )
        except BaseException:
            _terminate(pid)
            config.unlink(missing_ok=True)
            raise
        state = {
            "registry": spec.registry,
            "pid": pid,
            "start_ticks": _start_ticks(pid),
            "binary": binary,
            "version": version,
            "storage": str(spec.storage),
            "serving": spec.serving(),
            "name": spec.name,
            "proxy_url": spec.proxy_url,
            "proxy_username": spec.proxy_username,
            "config": str(config),
            "log": str(log_path),
        }
        _write_json(workdir / "state.json", state)
        row = self._row(state)
        assert row is not None
        return row

    def stop(self, registry: str) -> InstanceRow | None:
        state = self._load(registry)
        if state is None:
            return None
        row = self._row(state)
        if row is not None and row.status != "stopped":
            _terminate(state["pid"])
            row.status = "stopped"
        (self._dir(registry) / "state.json").unlink(missing_ok=True)
        if (state.get("serving") or {}).get("bucket"):
            Path(state["config"]).unlink(missing_ok=True)  # it holds the S3 keys: gone with the registry
        return row

    def pause(self, registry: str) -> None:
        state = self._load(registry)
        if state is not None and _is_ours(state):
            _terminate(state["pid"])
            wait_port_free(port_of(registry))

    def resume(self, registry: str) -> InstanceRow:
        spec = self.spec_of(registry)
        if spec is None:
            raise RuntimeFailure(f"nothing to resume at {registry}")
        binary = self._load(registry)["binary"]  # type: ignore[index]
        return ProcessRuntime(binary, self._state).start(spec)

    def status(self, registry: str) -> InstanceRow | None:
        state = self._load(registry)
        if state is None:
            return None
        row = self._row(state)
        if row is None or row.status == "stopped":
            return None
        return row

    def instances(self) -> list[InstanceRow]:
        rows = []
        for path in sorted(self.state.glob("*/state.json")):
            state = _read_json(path)
            if state:
                rows.append(self._row(state))  # a registry that died is listed too, as stopped
        return rows

    def spec_of(self, registry: str) -> RegistrySpec | None:
        state = self._load(registry)
        if state is None:
            return None
        return RegistrySpec(
            state["registry"],
            Path(state["storage"]),
            state.get("name", ""),
            state.get("proxy_url", ""),
            state.get("proxy_username", ""),
            _proxy_password(Path(state["config"])),
            **from_serving(state.get("serving")),
        )

    def garbage_collect(self, registry: str, *, dry_run: bool) -> str:
        """Run `registry garbage-collect` on the (stopped) registry's storage; return its output."""
        state = self._load(registry)
        if state is None:
            raise RuntimeFailure(f"no process registry for {registry}")
        args = [state["binary"], "garbage-collect", state["config"]]
        if dry_run:
            args.append("--dry-run")
        spec = self.spec_of(registry)
        if spec is not None and spec.bucket is not None:
            # The config holds the credentials the run needs; the S3 config is written again at
            # each start, so keys that were rotated since are the ones used.
            write_private(Path(state["config"]), _config_text(spec, state))
        env = _environment(spec if spec is not None else RegistrySpec(registry, Path(state["storage"])))
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=3600, env=env)
        except (OSError, subprocess.SubprocessError) as exc:
            raise RuntimeFailure(f"garbage-collect failed to run: {exc}") from None
        if done.returncode != 0:
            raise RuntimeFailure(f"garbage-collect failed: {_why(done)}")
        return done.stdout + done.stderr

    def _load(self, registry: str) -> dict | None:
        return _read_json(self._dir(registry) / "state.json")

    def _row(self, state: dict) -> InstanceRow:
        pid = int(state.get("pid", 0))
        alive = _is_ours(state)
        bucket = (state.get("serving") or {}).get("bucket") or {}
        return InstanceRow(
            registry=state["registry"],
            runtime=self.name,
            name=str(pid),
            status="running" if alive else "stopped",
            storage=str(bucket.get("url") or state["storage"]),
            size=0,  # `runtime.measured` fills it for the commands that show it: walking the storage is not free
            image=state["binary"],
            version=state.get("version", ""),
            mode="proxy" if state.get("proxy_url") else "registry",
            upstream=state.get("proxy_url", ""),
        )


#: What the registry gets of jindr's environment: where to find things, the locale and time zone,
#: proxies (a pull-through cache's upstream) and the CA store. Nothing else: a password a user
#: exported for `user add --password-env` or JINDR_PASSWORD_ENV, or a cloud key, stays with jindr.
_PASSED = frozenset({"PATH", "HOME", "TMPDIR", "TZ", "LANG", "SSL_CERT_FILE", "SSL_CERT_DIR"})
_PASSED_PROXY = frozenset({"http_proxy", "https_proxy", "no_proxy", "all_proxy"})


def _environment(spec: RegistrySpec) -> dict[str, str]:
    """The registry's environment: the few variables it reads (`_PASSED`, LC_*, proxies), none of
    REGISTRY_* (the config is the whole truth), and never the proxy password or an AWS_* variable."""
    env = {k: v for k, v in os.environ.items() if k in _PASSED or k.startswith("LC_") or k.lower() in _PASSED_PROXY}
    env["OTEL_TRACES_EXPORTER"] = "none"
    if spec.proxy_password:
        env = {k: v for k, v in env.items() if v != spec.proxy_password}
    return env


def _config_text(spec: RegistrySpec, state: dict) -> str:
    """The config of a recorded registry, written again (S3 credentials asked of boto3 afresh)."""
    serving = serving_files(spec)
    listen = bind_address(spec.listen, spec.port)
    return registry_config(spec, listen, str(spec.storage), serving=serving, version=str(state.get("version", "")))


def _why(done: subprocess.CompletedProcess[str]) -> str:
    """One line for a failed run: the signal that killed it, else the error it wrote first (cobra
    puts the usage after it), else the last line it printed."""
    if done.returncode < 0:
        try:
            return f"killed by {signal.Signals(-done.returncode).name}"
        except ValueError:
            return f"killed by signal {-done.returncode}"
    errors = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    output = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    line = errors[0] if errors else output[-1] if output else f"exit status {done.returncode}"
    return line[:300]


def _spawn(argv: list[str], env: dict[str, str], log_path: Path) -> int:
    """Start a detached process (own session, stdin /dev/null, output appended to the log); its pid.

    posix_spawn rather than Popen: the registry is meant to outlive this process, and a Popen
    object left behind would warn at exit that its child is still running.
    """
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    try:
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)
    except OSError as exc:
        raise RuntimeFailure(f"could not run {argv[0]}: {exc.strerror}") from None
    _CHILDREN.add(pid)
    return pid


def _is_ours(state: dict) -> bool:
    """True when the pid file's process is alive and is the registry jindr started, not a reused pid.

    The start time tells a reused pid; the command line (`registry serve CONFIG`) also tells a
    state file that was copied or edited by hand, so jindr never signals an unrelated process.
    """
    try:
        pid = int(state.get("pid", 0))
    except (TypeError, ValueError):
        return False
    if pid <= 1 or pid == os.getpid() or not _alive(pid) or _start_ticks(pid) != state.get("start_ticks"):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"serve" in argv and os.fsencode(str(state.get("config", ""))) in argv


def _alive(pid: int) -> bool:
    if pid in _CHILDREN:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)  # reap the registry we spawned once it has exited
            if done == pid:
                _CHILDREN.discard(pid)
                return False
        except ChildProcessError:
            _CHILDREN.discard(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is gone


def _start_ticks(pid: int) -> int | None:
    """Process start time (clock ticks since boot): tells our registry from a reused pid."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _terminate(pid: int, timeout: float = 10) -> None:
    """SIGTERM, wait up to `timeout`, then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    delay = 0.002
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while _alive(pid) and time.monotonic() < deadline + 5:
        time.sleep(0.01)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("registry"), str):
        return None
    pid = data.get("pid")
    # A hand-edited or corrupt state file is "not running", never a traceback.
    return data if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.chmod(0o600)
    os.replace(tmp, path)


def _proxy_password(config: Path) -> str:
    return proxy_credentials(config)[1]
