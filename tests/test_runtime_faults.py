"""Faults under a running registry: the engine stops, the registry is killed, a stale pid file,
storage that refuses writes, a full disk. jindr must say so in one line, `status`/`info` must tell
the truth, and `start` must bring back what can be brought back.

Every case tried is counted into `tests/.counts/runtime_faults.json` for the README.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faults_rig import PrivateDockerd, read_only_bind, run, tmpfs, unmount, writes_refused
from jindr_run import jindr
from rig import ImageFactory, free_port, registry_binary, write_counts
from test_runtime import verify_pull

from jindr_nb.client import RegistryClient
from jindr_nb.errors import JindrError, NotFound, RegistryError, RegistryUnreachable, RuntimeFailure

CASES: list[str] = []
CLI = str(Path(sys.executable).parent / "jindr")


def case(name: str) -> None:
    CASES.append(name)


@pytest.fixture(scope="module", autouse=True)
def _write_counts():
    yield
    write_counts("runtime_faults", fault_cases=len(CASES), cases=CASES)


def _need_root_and(*tools: str) -> str:
    binary = registry_binary()
    missing = [t for t in tools if not shutil.which(t)]
    if binary is None or missing or os.geteuid() != 0:
        message = f"needs root, the registry binary and {', '.join(tools) or 'nothing else'}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


def cli(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The console script in a subprocess (the environment, DOCKER_HOST included, as monkeypatched)."""
    return subprocess.run([CLI, *argv], capture_output=True, text=True, timeout=timeout)


def one_line_error(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jindr: "), done.stderr
    return lines[0]


def timed(*argv: str):
    """Run in-process; (result or the JindrError raised, seconds)."""
    started = time.monotonic()
    try:
        out: object = jindr(*argv)
    except JindrError as exc:
        out = exc
    return out, time.monotonic() - started


def state_file(address: str) -> Path:
    return Path(os.environ["JINDR_STATE_DIR"]) / "process" / address.rsplit(":", 1)[1] / "state.json"


@pytest.fixture()
def private_dockerd(monkeypatch: pytest.MonkeyPatch):
    """A dockerd of this test's own (the shared one is never stopped) with the offline registry image."""
    from engines import build_registry_image

    binary = _need_root_and("dockerd", "ip")
    engine = PrivateDockerd()
    try:
        engine.start()
        client = engine.client()
        try:
            image = build_registry_image(client, binary)
        finally:
            client.close()
    except Exception:
        engine.close()
        raise
    monkeypatch.setenv("DOCKER_HOST", engine.host)
    yield engine, image
    from jindr_nb.runtime import docker as docker_runtime

    stale = docker_runtime._CLIENTS.pop(engine.host, None)
    if stale is not None:
        stale.close()
    engine.close()


def test_dockerd_stops_under_a_running_registry(private_dockerd, tmp_path: Path) -> None:
    engine, image = private_dockerd
    address, storage = f"127.0.0.1:{free_port()}", tmp_path / "storage"
    start = ("-r", address, "start", "--runtime", "docker", "--image", image, "-d", str(storage))
    row = jindr(*start).rows[0]
    assert (row.status, row.runtime) == ("running", "docker")
    try:
        with RegistryClient(address) as client:
            pushed = ImageFactory(client, seed=41).index("kept", "v1")

        engine.stop()  # SIGTERM: Docker stops its containers on the way down
        case("dockerd stopped: status")
        status, seconds = timed("-r", address, "status")
        assert not status.ok and seconds < 5
        assert [(r.registry, r.runtime, r.status, r.storage) for r in status.rows] == [
            (address, "docker", "engine down", str(storage))
        ]
        case("dockerd stopped: info")
        info, seconds = timed("info")  # DOCKER_HOST is the private engine: only its records count
        assert [(r.registry, r.status, r.name) for r in info.rows] == [(address, "engine down", row.name)]
        assert seconds < 5
        case("dockerd stopped: CLI status and info")
        started = time.monotonic()
        done = cli("-r", address, "status")
        assert done.returncode == 1 and "engine down" in done.stdout and "Traceback" not in done.stderr
        listed = cli("info")
        assert listed.returncode == 0 and "engine down" in listed.stdout and address in listed.stdout
        assert time.monotonic() - started < 20
        case("dockerd stopped: start says why")
        failed, seconds = timed(*start)
        assert isinstance(failed, RuntimeFailure) and "no Docker engine answers" in str(failed)
        assert "\n" not in str(failed) and seconds < 5
        assert "no Docker engine answers" in one_line_error(cli(*start))
        case("dockerd stopped: stop says why")
        failed, _ = timed("-r", address, "stop", "-G")
        assert isinstance(failed, RuntimeFailure) and "no Docker engine answers" in str(failed)
        case("dockerd stopped: listing says the registry is unreachable")
        failed, seconds = timed("-r", address, "lsi")
        assert isinstance(failed, RegistryUnreachable) and seconds < 10

        engine.start()
        case("dockerd back: status tells the container stopped")
        back = jindr("-r", address, "status")
        assert not back.ok and back.rows[0].status in ("stopped", "exited") and back.rows[0].runtime == "docker"
        case("dockerd back: start recovers")
        again = jindr(*start).rows[0]
        assert again.status == "running" and again.storage == str(storage)
        assert [(r.repository, r.tag, r.digest) for r in jindr("-r", address, "lsi").rows] == [
            ("kept", "v1", pushed.digest)
        ]
        with RegistryClient(address) as client:
            verify_pull(client, "kept", "v1", pushed)
    finally:
        if engine.proc is not None:
            jindr("-r", address, "stop", "-G")


def test_process_registry_killed(tmp_path: Path) -> None:
    _need_root_and()
    address, storage = f"localhost:{free_port()}", tmp_path / "storage"
    start = ("-r", address, "start", "--runtime", "process", "-d", str(storage))
    first = jindr(*start).rows[0]
    try:
        with RegistryClient(address) as client:
            pushed = ImageFactory(client, seed=42).index("survives", "v1")
        os.kill(int(first.name), signal.SIGKILL)  # our own child: jindr must reap it, not the test
        case("SIGKILL (in-process start): status")
        status, seconds = timed("-r", address, "status")
        assert not status.ok and status.rows[0].status == "stopped" and seconds < 2
        case("SIGKILL: CLI status exits 1")
        done = cli("-r", address, "status")
        assert done.returncode == 1 and "stopped" in done.stdout and "Traceback" not in done.stderr
        case("SIGKILL: info lists it as stopped")
        assert [r.status for r in jindr("info").rows if r.registry == address] == ["stopped"]
        case("SIGKILL: listing fails in one line")
        failed, _ = timed("-r", address, "lsi")
        assert isinstance(failed, RegistryUnreachable)
        case("SIGKILL: start again, data still there")
        again = jindr(*start).rows[0]
        assert again.status == "running" and again.name != first.name
        with RegistryClient(address) as client:
            verify_pull(client, "survives", "v1", pushed)

        case("SIGKILL of a registry a CLI process started")
        jindr("-r", address, "stop", "-G")
        assert cli(*start).returncode == 0
        pid = json.loads(state_file(address).read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while cli("-r", address, "status").returncode != 1:
            assert time.monotonic() < deadline, "status still says running after SIGKILL"
            time.sleep(0.1)
        assert jindr(*start).rows[0].status == "running"
        assert [r.digest for r in jindr("-r", address, "lsi", "survives:v1").rows] == [pushed.digest]
    finally:
        jindr("-r", address, "stop", "-G")


def _zombie() -> int:
    """A child of this process that has exited and is not reaped yet."""
    pid = os.posix_spawn("/bin/true", ["true"], dict(os.environ))
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return pid


def _ticks(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


@pytest.mark.parametrize("kind", ["dead pid", "live unrelated pid", "forged start time", "unreaped child", "garbage"])
def test_stale_pid_file(kind: str, tmp_path: Path) -> None:
    _need_root_and("sleep")
    address, storage = f"localhost:{free_port()}", tmp_path / "storage"
    start = ("-r", address, "start", "--runtime", "process", "-d", str(storage))
    jindr(*start)
    real = json.loads(state_file(address).read_text())
    os.kill(real["pid"], signal.SIGKILL)
    assert not jindr("-r", address, "status").ok  # reaps the registry, which was our child
    victim = subprocess.Popen(["sleep", "60"]) if kind in ("live unrelated pid", "forged start time") else None
    zombie = _zombie() if kind == "unreaped child" else None

    def forge() -> None:
        data = dict(real)
        if kind == "dead pid":
            gone = subprocess.Popen(["true"])
            gone.wait()
            data["pid"] = gone.pid
        elif victim is not None:
            data["pid"] = victim.pid
            if kind == "forged start time":
                data["start_ticks"] = _ticks(victim.pid)  # only the command line still tells
        elif zombie is not None:
            data["pid"], data["start_ticks"] = zombie, _ticks(zombie)
        if kind == "garbage":
            state_file(address).write_text('{"registry": "' + address + '", "pid": ')
        else:
            state_file(address).write_text(json.dumps(data))

    try:
        case(f"stale pid file ({kind}): status")
        forge()
        status = jindr("-r", address, "status")
        assert not status.ok and status.rows[0].status in ("stopped", "not running")
        assert cli("-r", address, "status").returncode == 1
        assert all(r.status != "running" for r in jindr("info").rows if r.registry == address)
        case(f"stale pid file ({kind}): stop signals nothing")
        jindr("-r", address, "stop")
        assert not state_file(address).exists() or kind == "garbage"
        case(f"stale pid file ({kind}): restart starts afresh")
        forge()
        if kind != "garbage":
            restarted = jindr("-r", address, "restart").rows[0]
            assert restarted.status == "running" and restarted.name not in (str(real["pid"]), str(zombie))
            jindr("-r", address, "stop", "-G")
            forge()
        case(f"stale pid file ({kind}): start works")
        fresh = jindr(*start).rows[0]
        assert fresh.status == "running" and jindr("-r", address, "status").ok
        if victim is not None:
            assert victim.poll() is None, "jindr signalled a process that is not its registry"
        if zombie is not None:
            assert os.waitpid(zombie, 0)[0] == zombie, "jindr reaped a child that is not its registry"
            zombie = None
    finally:
        jindr("-r", address, "stop", "-G")
        if victim is not None:
            victim.kill()
            victim.wait()
        if zombie is not None:
            os.waitpid(zombie, 0)


@pytest.fixture()
def source(registry):
    """A registry with a small image and a big one (12 MB of incompressible layers)."""
    with RegistryClient(registry.address) as client:
        factory = ImageFactory(client, seed=43)
        small = factory.single("small", "v1")
        big = factory.single("big", "v1", layers=3, layer_size=4_000_000)
    return registry.address, small, big


def pull_single(client: RegistryClient, repository: str, tag: str, digest: str) -> None:
    """Fetch a single-platform image the way a pull does: manifest, config and every layer, verified."""
    from jindr_nb.models import parse_manifest

    got = client.get_manifest(repository, tag)
    assert got.digest == digest
    manifest = parse_manifest(got.raw, got.media_type, got.digest)
    for blob in [manifest.config, *manifest.layers]:
        assert len(client.get_blob(repository, blob.digest)) == blob.size


def _cause_named(message: str, *words: str) -> None:
    """The registry's own reason (ENOSPC, EROFS) reaches the user."""
    assert any(w in message.lower() for w in words), message


def test_storage_not_writable(source, tmp_path: Path) -> None:
    _need_root_and("mount", "umount")
    src, small, big = source
    address, storage = f"localhost:{free_port()}", tmp_path / "storage"
    jindr("-r", address, "start", "--runtime", "process", "-d", str(storage))
    try:
        jindr("-r", src, "cp", "small:v1", address)
        read_only_bind(storage)
        assert writes_refused(storage), "the read-only bind mount does not stop root"
        case("read-only storage: push fails in one line")
        failed, seconds = timed("-r", src, "cp", "big:v1", address)
        assert isinstance(failed, RegistryError) and "\n" not in str(failed) and seconds < 30
        line = one_line_error(cli("-r", src, "cp", "big:v1", address))
        case("read-only storage: nothing half-written is tagged")
        assert [(r.repository, r.tag) for r in jindr("-r", address, "lsi").rows] == [("small", "v1")]
        with RegistryClient(address) as client, pytest.raises(NotFound):
            client.get_manifest("big", "v1")
        case("read-only storage: status still true")
        assert jindr("-r", address, "status").rows[0].status == "running"
        case("read-only storage: start elsewhere refuses it")
        other = f"localhost:{free_port()}"
        with pytest.raises(RuntimeFailure, match="is not writable"):
            jindr("-r", other, "start", "--runtime", "process", "-d", str(storage / "docker"))
        assert jindr("-r", other, "status").rows[0].status == "not running"
        case("read-only storage: writable again, the push completes")
        unmount(storage)
        done = jindr("-r", src, "cp", "big:v1", address).rows[0]
        assert done.digest == big.digest
        with RegistryClient(address) as client:
            pull_single(client, "big", "v1", big.digest)
        _cause_named(str(failed) + line, "read-only", "read only")
    finally:
        unmount(storage)
        jindr("-r", address, "stop", "-G")


def test_disk_full(source, tmp_path: Path) -> None:
    _need_root_and("mount", "umount")
    src, small, big = source
    address, storage = f"localhost:{free_port()}", tmp_path / "storage"
    tmpfs(storage, "8m")
    try:
        jindr("-r", address, "start", "--runtime", "process", "-d", str(storage))
        jindr("-r", src, "cp", "small:v1", address)
        case("disk full: cp fails in one line")
        failed, seconds = timed("-r", src, "cp", "big:v1", address)
        assert isinstance(failed, RegistryError) and "\n" not in str(failed) and seconds < 30
        case("disk full: load fails in one line")
        archive = tmp_path / "big.tar"
        jindr("-r", src, "save", "big:v1", str(archive))
        line = one_line_error(cli("-r", address, "load", str(archive), "loaded:v1"))
        case("disk full: no tag points at an incomplete image")
        assert [(r.repository, r.tag) for r in jindr("-r", address, "lsi").rows] == [("small", "v1")]
        with RegistryClient(address) as client:
            for repository in ("big", "loaded"):
                with pytest.raises(NotFound):
                    client.get_manifest(repository, "v1")
        case("disk full: status and info still true")
        status = jindr("-r", address, "status")
        assert status.ok and status.rows[0].status == "running" and status.rows[0].size >= 7 * 1024 * 1024
        assert [r.status for r in jindr("info").rows if r.registry == address] == ["running"]
        case("disk full: freed, re-running completes")
        run("mount", "-o", "remount,size=64m", str(storage))
        assert jindr("-r", src, "cp", "big:v1", address).rows[0].digest == big.digest
        assert jindr("-r", address, "load", str(archive), "loaded:v1").rows[0].digest == big.digest
        with RegistryClient(address) as client:
            for repository in ("big", "loaded"):
                pull_single(client, repository, "v1", big.digest)
        _cause_named(str(failed) + line, "no space", "disk", "full")
    finally:
        jindr("-r", address, "stop", "-G")
        unmount(storage)
