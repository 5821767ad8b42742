"""start / stop / restart / status / info / gc on every runtime: the registry binary, Docker, Podman."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from jindr_run import jindr
from rig import ImageFactory, Pushed, free_port

from jindr_nb.client import RegistryClient
from jindr_nb.errors import InvalidReference, JindrError, NotFound, RegistryError, RuntimeFailure
from jindr_nb.models import Index, parse_manifest
from jindr_nb.runtime.base import dir_size


@dataclass
class Case:
    kind: str
    address: str
    storage: Path
    args: list[str]


@pytest.fixture(params=["process", "docker", "podman"])
def rt(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Case:
    kind = request.param
    if kind == "process":
        args = ["--runtime", "process"]
    elif kind == "docker":
        _, image = request.getfixturevalue("docker_engine")
        monkeypatch.delenv("DOCKER_HOST", raising=False)
        args = ["--runtime", "docker", "--image", image]
    else:
        _, image, host = request.getfixturevalue("podman_engine")
        monkeypatch.setenv("DOCKER_HOST", host)
        args = ["--runtime", "docker", "--image", image]
    return Case(kind, f"localhost:{free_port()}", tmp_path / "storage", args)


def _started_here() -> set[str]:
    """Every address this test had jindr run a registry at, whichever runtime: jindr's own records
    under the test's state directory (conftest gives each test a fresh one, so all of them are its)."""
    root = Path(os.environ["JINDR_STATE_DIR"])
    ports = {p.name for p in (root / "process").glob("*") if p.name.isdigit()}
    ports |= {p.stem for p in (root / "docker").glob("*.json") if p.stem.isdigit()}
    return {f"localhost:{port}" for port in ports}


def _port_free(address: str, within: float = 10.0) -> bool:
    import time

    port = int(address.rsplit(":", 1)[1])
    deadline = time.monotonic() + within
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return True  # nothing listens there any more
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


@pytest.fixture(autouse=True)
def _nothing_leaks() -> Iterator[None]:
    """After each test: stop every registry it started; fail, naming each, if one cannot be stopped."""
    yield
    leaks = []
    for address in sorted(_started_here()):
        try:
            jindr("-r", address, "stop", "-G")  # "nothing to stop" when the test stopped it already
            running = [r for r in jindr("-r", address, "status").rows if r.status == "running"]
        except JindrError as exc:
            leaks.append(f"{address}: stop failed ({exc})")
            continue
        if running:
            leaks.append(f"{address}: still running after stop ({', '.join(f'{r.runtime} {r.name}' for r in running)})")
        elif not _port_free(address):
            leaks.append(f"{address}: stopped, but something still listens on its port")
    if leaks:
        pytest.fail("teardown could not stop what the test started: " + "; ".join(leaks))


def verify_pull(client: RegistryClient, repository: str, tag: str, pushed: Pushed) -> None:
    """Fetch the image the way a pull does — index, every platform manifest, config and layers — verified."""
    top = client.get_manifest(repository, tag)
    assert top.digest == pushed.digest
    index = parse_manifest(top.raw, top.media_type, top.digest)
    assert isinstance(index, Index)
    for child in index.manifests:
        got = client.get_manifest(repository, child.digest)
        manifest = parse_manifest(got.raw, got.media_type, got.digest)
        for blob in [manifest.config, *manifest.layers]:
            assert len(client.get_blob(repository, blob.digest)) == blob.size


def start(case: Case, *extra: str):
    return jindr("-r", case.address, "start", "-d", str(case.storage), *case.args, *extra)


def test_lifecycle_gc_and_persistence(rt: Case) -> None:
    first = start(rt).rows[0]
    assert first.status == "running" and first.runtime == ("process" if rt.kind == "process" else "docker")
    assert first.registry == rt.address and first.storage == str(rt.storage)
    assert rt.storage.stat().st_mode & 0o777 == 0o700
    again = start(rt)
    assert again.rows[0].name == first.name and "already running" in again.message
    assert jindr("-r", rt.address, "status").ok

    with RegistryClient(rt.address) as client:
        f = ImageFactory(client, seed=11)
        keep = f.index("app", "v1", layers=2, layer_size=50_000)
        old = f.index("app", "v2", layer_size=300_000)
        f.index("app", "v2", layer_size=1_000)  # v2 moves on: the old index and its children are untagged
    rows = {r.registry: r for r in jindr("info").rows}
    assert rows[rt.address].size > 600_000 and rows[rt.address].status == "running"

    size = dir_size(rt.storage)
    dry = jindr("-r", rt.address, "gc", "--dry-run").rows[0]
    assert dry.dry_run and dry.manifests_deleted == 5 and dry.blobs_deleted >= 7 and dry.reclaimed_bytes >= 600_000
    assert dir_size(rt.storage) == size

    done = jindr("-r", rt.address, "gc").rows[0]
    assert not done.dry_run and done.manifests_deleted == 5 and done.blobs_deleted >= 7
    assert done.reclaimed_bytes == dry.reclaimed_bytes and done.blobs_deleted == dry.blobs_deleted
    # Disk blocks count directories too: at least the files' blocks that `dir_size` sums.
    assert done.disk_after == done.disk_before - done.disk_freed >= dir_size(rt.storage)
    with RegistryClient(rt.address) as client:
        verify_pull(client, "app", "v1", keep)  # the tagged two-platform index survives, byte for byte
        with pytest.raises(NotFound):
            client.get_manifest("app", old.digest)
        # After gc the registry restarted: a re-push of swept content is not skipped and pulls again.
        again_pushed = ImageFactory(client, seed=11).index("app", "v1", layers=2, layer_size=50_000)
        assert again_pushed.digest == keep.digest
        verify_pull(client, "app", "v1", keep)

    assert jindr("-r", rt.address, "restart").rows[0].status == "running"
    assert [r.tag for r in jindr("-r", rt.address, "lsi").rows] == ["v1", "v2"]
    stopped = jindr("-r", rt.address, "stop")
    assert stopped.rows[0].status == "stopped" and "reclaimed" in stopped.message
    status = jindr("-r", rt.address, "status")
    assert not status.ok and status.rows[0].status in ("not running", "stopped")
    nothing = jindr("-r", rt.address, "stop")
    assert nothing.rows == [] and "nothing to stop" in nothing.message

    start(rt)  # persistence: same storage, same images
    assert [r.digest for r in jindr("-r", rt.address, "lsi", "app:v1").rows] == [keep.digest]


def test_port_held_by_something_else(rt: Case) -> None:
    port = int(rt.address.rsplit(":", 1)[1])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen(1)
        with pytest.raises(RuntimeFailure, match=f"port {port} is already in use") as info:
            start(rt)
    if rt.kind == "process":
        assert f"pid {os.getpid()}" in str(info.value)
    assert not rt.storage.exists() or not any(rt.storage.iterdir())


def test_only_loopback_registries_are_run() -> None:
    with pytest.raises(InvalidReference, match="not localhost"):
        jindr("-r", "example.com:5000", "start", "--runtime", "process")


def test_binary_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    address = f"localhost:{free_port()}"
    with pytest.raises(RuntimeFailure, match="registry binary '/nonexistent/registry' not found"):
        jindr("-r", address, "start", "--runtime", "process", "--binary", "/nonexistent/registry")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeFailure, match="apt-get install docker-registry"):
        jindr("-r", address, "start", "--runtime", "process", "-d", str(tmp_path / "s"))


def test_engine_down(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    with pytest.raises(RuntimeFailure, match="no Docker engine answers.*--runtime process"):
        jindr("-r", f"localhost:{free_port()}", "start", "--runtime", "docker", "-d", str(tmp_path / "s"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeFailure, match="no way to run a registry here"):
        jindr("-r", f"localhost:{free_port()}", "start", "-d", str(tmp_path / "s"))


def test_stale_pid_files_are_never_acted_on(tmp_path: Path) -> None:
    address = f"localhost:{free_port()}"
    row = jindr("-r", address, "start", "--runtime", "process", "-d", str(tmp_path / "s")).rows[0]
    os.kill(int(row.name), signal.SIGKILL)
    os.waitpid(int(row.name), 0)
    status = jindr("-r", address, "status")
    assert not status.ok and status.rows[0].status == "stopped"
    fresh = jindr("-r", address, "start", "--runtime", "process", "-d", str(tmp_path / "s")).rows[0]
    assert fresh.status == "running" and fresh.name != row.name
    # Make the pid file name a live process that is not the registry (this test's own process).
    state = Path(os.environ["JINDR_STATE_DIR"]) / "process" / address.rsplit(":", 1)[1] / "state.json"
    data = json.loads(state.read_text())
    real_pid, data["pid"] = data["pid"], os.getpid()
    state.write_text(json.dumps(data))
    assert not jindr("-r", address, "status").ok
    jindr("-r", address, "stop", "-G")  # must not signal us: we are still here to assert it
    os.kill(real_pid, signal.SIGTERM)


def test_started_by_cli_found_by_magic_and_back(tmp_path: Path) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    address = f"localhost:{free_port()}"
    cli = [str(Path(sys.executable).parent / "jindr"), "-r", address]
    started = subprocess.run(
        [*cli, "start", "--runtime", "process", "-d", str(tmp_path / "s")], capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 0, started.stderr
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "jindr_nb")
    frame = ip.run_line_magic("jindr", f"-r {address} status")
    assert list(frame.status) == ["running"]
    ip.run_line_magic("jindr", f"-r {address} stop -G")
    after = subprocess.run([*cli, "status"], capture_output=True, text=True, timeout=60)
    assert after.returncode == 1 and "not running" in after.stdout
    ip.run_line_magic("jindr", f"-r {address} start --runtime process -d {tmp_path / 's'}")
    stop = subprocess.run([*cli, "stop"], capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0 and "stopped" in stop.stdout
    assert list(ip.run_line_magic("jindr", f"-r {address} status").status) == ["not running"]


def test_pull_through_cache(registry, tmp_path: Path) -> None:
    with RegistryClient(registry.address) as upstream:
        pushed = ImageFactory(upstream, seed=5).index("team/app", "v1")
    address = f"localhost:{free_port()}"
    row = jindr(
        "-r",
        address,
        "start",
        "--runtime",
        "process",
        "-d",
        str(tmp_path / "cache"),
        "--proxy",
        f"http://{registry.address}",
    ).rows[0]
    assert (row.mode, row.upstream) == ("proxy", f"http://{registry.address}")
    try:
        with RegistryClient(address) as cache:
            verify_pull(cache, "team/app", "v1", pushed)
            with pytest.raises(RegistryError):
                cache.upload_blob("team/other", b"x", "sha256:" + __import__("hashlib").sha256(b"x").hexdigest())
        listed = jindr("-r", address, "lsi").rows
        assert [(r.repository, r.tag, r.digest) for r in listed] == [("team/app", "v1", pushed.digest)]
        assert {(r.mode, r.upstream) for r in jindr("info").rows if r.registry == address} == {
            ("proxy", f"http://{registry.address}")
        }
    finally:
        jindr("-r", address, "stop", "-G")


def test_auto_falls_back_to_the_binary_when_docker_cannot_pull(
    docker_engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("JINDR_REGISTRY_IMAGE", "localhost/jindr-test/does-not-exist:1")
    address = f"localhost:{free_port()}"
    result = jindr("-r", address, "start", "-d", str(tmp_path / "s"))
    try:
        assert result.rows[0].runtime == "process" and "Docker cannot pull" in result.message
        with pytest.raises(RuntimeFailure, match="could not pull"):
            jindr("-r", f"localhost:{free_port()}", "start", "--runtime", "docker", "-d", str(tmp_path / "t"))
    finally:
        jindr("-r", address, "stop", "-G")


def test_same_storage_under_either_runtime(docker_engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, image = docker_engine
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    address, storage = f"localhost:{free_port()}", tmp_path / "shared-storage"
    jindr("-r", address, "start", "--runtime", "docker", "--image", image, "-d", str(storage))
    try:
        with RegistryClient(address) as client:
            pushed = ImageFactory(client, seed=31).index("moves", "v1")
    finally:
        jindr("-r", address, "stop", "-G")
    jindr("-r", address, "start", "--runtime", "process", "-d", str(storage))
    try:
        with RegistryClient(address) as client:
            verify_pull(client, "moves", "v1", pushed)  # pushed under docker, served by the binary
    finally:
        jindr("-r", address, "stop", "-G")


def test_dir_size_counts_the_blocks_of_every_file_and_follows_no_link(tmp_path: Path) -> None:
    """`status`'s size: the blocks of each file under the storage (one lstat each, counted here by
    os.walk), nested deeply; a link to a directory elsewhere is not followed (its big file is not
    counted), a link to a file or one that loops counts as the link; a missing path is 0."""
    import os

    root = tmp_path / "storage"
    for depth in range(6):
        leaf = root.joinpath(*[f"d{i}" for i in range(depth)])
        leaf.mkdir(parents=True, exist_ok=True)
        (leaf / "data").write_bytes(os.urandom(5000 * (depth + 1)))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big").write_bytes(os.urandom(1 << 20))
    (root / "d0" / "elsewhere").symlink_to(outside)
    (root / "d0" / "file-link").symlink_to(outside / "big")
    loop = root / "d0" / ("loop-" + "x" * 100)  # a link to itself, long enough to take a block
    loop.symlink_to(loop)
    expected = 0
    for top, _dirs, files in os.walk(root):
        expected += sum(os.lstat(os.path.join(top, name)).st_blocks * 512 for name in files)
    assert dir_size(root) == expected
    assert 6 * 4096 <= expected < (1 << 20)  # the six files, not the big one behind the link
    assert dir_size(tmp_path / "missing") == 0
