"""Faults in the middle of work: the registry killed during cp, load, rmr and gc; Ctrl-C during a
copy and a listing.

After each kill: no tag points at an incomplete image, the registry's own
`garbage-collect --dry-run` runs clean on the storage, and running the same command again
finishes the job. After each interrupt: the command stops promptly, its worker threads are gone,
and the next command in the same session works. Cases are counted into tests/.counts/kill.json.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from jindr_run import jindr
from rig import ImageFactory, LocalRegistry, registry_binary, start_registry, write_counts

from jindr_nb.client import RegistryClient
from jindr_nb.commands import Session, build_parser, run
from jindr_nb.errors import JindrError, NotFound
from jindr_nb.models import Index, parse_manifest
from jindr_nb.ops.listing import list_images

CASES: list[str] = []
MIB = 1024 * 1024


def _count(case: str) -> None:
    CASES.append(case)
    write_counts("kill", fault_cases=len(CASES), cases=CASES)


# ---- checks ----------------------------------------------------------------------------------


def assert_every_tag_complete(address: str, torn: list[str] | None = None) -> dict[str, str]:
    """Every tag of every repository resolves to a manifest whose whole graph is present.

    `torn` given: a listed tag whose manifest is gone is collected there instead of failing. The
    registry's own delete is not atomic (2.8 removes the manifest's revision, then its tags), so
    killed in between it leaves a tag that lists but resolves to nothing — not an incomplete image.
    """
    tagged = {}
    with RegistryClient(address) as c:
        for repo in c.catalog():
            try:
                tags = c.tags(repo)
            except NotFound:
                continue  # blobs only: a repository with no manifest yet
            for tag in tags:
                try:
                    got = c.get_manifest(repo, tag)
                except NotFound:
                    if torn is None:
                        raise
                    torn.append(f"{repo}:{tag}")
                    continue
                pending = [parse_manifest(got.raw, got.media_type, got.digest)]
                while pending:
                    manifest = pending.pop()
                    if isinstance(manifest, Index):
                        for child in manifest.manifests:
                            sub = c.get_manifest(repo, child.digest)
                            pending.append(parse_manifest(sub.raw, sub.media_type, sub.digest))
                    else:
                        for blob in (manifest.config, *manifest.layers):
                            assert c.head_blob(repo, blob.digest) is not None, f"{repo}:{tag} lacks {blob.digest}"
                tagged[f"{repo}:{tag}"] = got.digest
    return tagged


def assert_storage_consistent(storage: Path, workdir: Path) -> None:
    """The registry's own garbage collector, dry run, reads the whole storage without an error.

    A registry killed before its first blob was complete has no blobs directory at all, which its
    collector reports as an error: then nothing may point at a blob (no manifest revision, no
    layer link) — the storage is empty but for unfinished uploads.
    """
    if not (storage / "docker/registry/v2/blobs").exists():
        links = [p for p in storage.rglob("link") if "_uploads" not in p.parts]
        assert links == [], f"links to blobs that do not exist: {links[:5]}"
        return
    config = workdir / "gc-check.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {storage}\n")
    binary = registry_binary()
    assert binary is not None
    proc = subprocess.run([binary, "garbage-collect", "--dry-run", str(config)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    assert "level=error" not in proc.stderr and "panic" not in proc.stderr, proc.stderr[-2000:]


def kill(reg: LocalRegistry) -> None:
    assert reg.proc is not None
    reg.proc.send_signal(signal.SIGKILL)
    reg.proc.wait(10)
    reg.proc = None


def restart(reg: LocalRegistry) -> None:
    reg.start()  # same port, same storage


def with_progress(argv: list[str], on_progress: Callable[[int, int], None]) -> object:
    """Run a command line in-process with a progress callback, as the notebook's bars get it."""
    session = Session()
    session.progress = lambda name: on_progress
    try:
        return run(session, build_parser().parse_args(argv))
    finally:
        session.close()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory):
    """A registry with a 48 MiB image (three incompressible layers) to copy from."""
    reg = start_registry(tmp_path_factory.mktemp("kill-source"))
    with RegistryClient(reg.address) as c:
        pushed = ImageFactory(c, seed=5).single("big", ["v1"], layers=3, layer_size=16 * MIB)
    yield reg, pushed
    reg.stop()


# ---- the registry killed in the middle -----------------------------------------------------


def test_destination_killed_during_cp(source: tuple[LocalRegistry, object], registry: LocalRegistry) -> None:
    src, pushed = source
    killed = threading.Event()

    def on_progress(done: int, total: int) -> None:
        if done > 8 * MIB and not killed.is_set():
            killed.set()
            kill(registry)

    with pytest.raises(JindrError) as caught:
        with_progress(["-r", src.address, "cp", "big:v1", registry.address], on_progress)
    assert killed.is_set()
    assert registry.address in str(caught.value) and "\n" not in str(caught.value)
    restart(registry)
    assert "big:v1" not in assert_every_tag_complete(registry.address)
    assert_storage_consistent(registry.storage, registry.workdir)
    row = jindr("-r", src.address, "cp", "big:v1", registry.address).rows[0]
    assert row.digest == pushed.digest and row.bytes_copied > 0
    assert assert_every_tag_complete(registry.address) == {"big:v1": pushed.digest}
    _count("registry killed during cp: no tag, storage consistent, re-run completes")


def test_registry_killed_during_load(
    source: tuple[LocalRegistry, object], registry: LocalRegistry, tmp_path: Path
) -> None:
    src, pushed = source
    layout = tmp_path / "big-layout"
    jindr("-r", src.address, "save", "big:v1", str(layout))
    killed = threading.Event()

    def on_progress(done: int, total: int) -> None:
        if done > 8 * MIB and not killed.is_set():
            killed.set()
            kill(registry)

    with pytest.raises(JindrError):
        with_progress(["-r", registry.address, "load", str(layout), "big:v1"], on_progress)
    assert killed.is_set()
    restart(registry)
    assert "big:v1" not in assert_every_tag_complete(registry.address)
    assert_storage_consistent(registry.storage, registry.workdir)
    jindr("-r", registry.address, "load", str(layout), "big:v1")
    assert assert_every_tag_complete(registry.address) == {"big:v1": pushed.digest}
    _count("registry killed during load: no tag, storage consistent, re-run completes")


def test_registry_killed_during_rmr(registry: LocalRegistry, factory: ImageFactory) -> None:
    keep = factory.single("keep", ["1.0"])
    for i in range(150):
        factory.single("many", [f"t{i}"], layer_size=64)
    tags_dir = registry.storage / "docker/registry/v2/repositories/many/_manifests/tags"
    killed = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(list(tags_dir.iterdir())) <= 140:
                kill(registry)
                killed.set()
                return
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    # The registry dies under it: rmr stops, says so, and its rows say what went and what stayed.
    stopped = jindr("-r", registry.address, "rmr", "-y", "many")
    watcher.join()
    assert killed.is_set()
    assert not stopped.ok and "not attempted" in stopped.message
    went = {r.tag for r in stopped.rows if r.action == "deleted"}
    assert went and {r.action for r in stopped.rows} == {"deleted", "kept"}
    restart(registry)
    torn: list[str] = []
    left = assert_every_tag_complete(registry.address, torn)
    assert left["keep:1.0"] == keep.digest
    assert 0 < len([t for t in left if t.startswith("many:")]) < 150  # it really stopped half-way
    # rmr deletes one manifest at a time: at most the one in flight can be torn by the kill.
    assert len(torn) <= 1 and all(t.startswith("many:") for t in torn), torn
    assert_storage_consistent(registry.storage, registry.workdir)
    jindr("-r", registry.address, "rmr", "-y", "many")
    after: list[str] = []
    assert assert_every_tag_complete(registry.address, after) == {"keep:1.0": keep.digest}
    assert after == torn  # nothing new torn; a torn tag only the registry's operator can remove
    _count("registry killed during rmr: surviving tags complete, other repos kept, re-run completes")


def test_garbage_collector_killed_during_gc(process_registry: str, tmp_path: Path) -> None:
    """gc stops the registry and runs its collector; kill the collector: the registry comes back."""
    with RegistryClient(process_registry) as c:
        factory = ImageFactory(c, seed=3)
        kept = factory.single("kept", ["v1"])
        for i in range(2500):  # untagged blobs for the collector to sweep: enough to take a while
            factory.blob("junk", f"junk blob {i}".encode())
    killed = threading.Event()
    # Only this test's collector: a child of this process, run on the config of the registry this
    # test started (under its own state directory) — never another run's on the same machine.
    state_dir = os.fsencode(os.environ["JINDR_STATE_DIR"])
    here = os.getpid()

    def ours(pid: str) -> bool:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            ppid = int(Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            return False  # gone already, or not readable
        collector = argv[1:2] == [b"garbage-collect"] and b"--dry-run" not in argv
        return ppid == here and collector and len(argv) > 2 and argv[2].startswith(state_dir)

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed.is_set():
            for pid in os.listdir("/proc"):
                if pid.isdigit() and ours(pid):
                    os.kill(int(pid), signal.SIGKILL)
                    killed.set()
                    return
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    with pytest.raises(JindrError) as caught:
        jindr("-r", process_registry, "gc")
    watcher.join()
    assert killed.is_set()
    assert "\n" not in str(caught.value)
    status = jindr("-r", process_registry, "status").rows[0]
    assert status.status == "running", status  # brought back as it was
    assert assert_every_tag_complete(process_registry) == {"kept:v1": kept.digest}
    storage = Path(status.storage)
    assert_storage_consistent(storage, tmp_path)
    row = jindr("-r", process_registry, "gc").rows[0]
    assert row.blobs_deleted >= 2500 and row.reclaimed_bytes > 0, row
    assert assert_every_tag_complete(process_registry) == {"kept:v1": kept.digest}
    _count("collector killed during gc: registry back, storage consistent, re-run completes")


# ---- Ctrl-C (the notebook's stop button) -----------------------------------------------------


@pytest.fixture()
def python_sigint():
    """SIGINT raising KeyboardInterrupt, as Python (and an IPython kernel) sets it up at start.

    Whatever an earlier test's libraries did to the process's SIGINT handler, this test sees the
    handler a user's process has; the one found is put back afterwards.
    """
    found = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, found)


def _interrupt_when(condition: threading.Event) -> tuple[threading.Thread, list[float]]:
    when: list[float] = []

    def fire() -> None:
        if condition.wait(60):
            when.append(time.monotonic())
            # What the kernel's interrupt (the stop button) sends, aimed at the main thread as a signal
            # from outside usually lands: sent to the whole process from this thread, the kernel may
            # deliver it here, leaving the main thread asleep in a lock until the work is done.
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    thread = threading.Thread(target=fire, daemon=True)
    thread.start()
    return thread, when


def _workers(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def test_ctrl_c_during_a_copy(
    source: tuple[LocalRegistry, object], registry: LocalRegistry, python_sigint: None
) -> None:
    src, pushed = source
    moving = threading.Event()
    session = Session()
    session.progress = lambda name: lambda done, total: moving.set() if done > 4 * MIB else None
    try:
        thread, when = _interrupt_when(moving)
        with pytest.raises(KeyboardInterrupt):
            run(session, build_parser().parse_args(["-r", src.address, "cp", "big:v1", registry.address]))
        stopped = time.monotonic()
        thread.join(5)
        assert when and stopped - when[0] < 3.0, "the copy did not stop promptly"
        assert _workers("jindr-copy") == []
        assert "big:v1" not in assert_every_tag_complete(registry.address)
        # The same session (the kernel's) goes on working: the copy again, to the end.
        session.progress = lambda name: None
        result = run(session, build_parser().parse_args(["-r", src.address, "cp", "big:v1", registry.address]))
        assert result.rows[0].digest == pushed.digest
    finally:
        session.close()
    assert assert_every_tag_complete(registry.address) == {"big:v1": pushed.digest}
    _count(f"Ctrl-C during cp: stopped in {stopped - when[0]:.2f} s, no tag, next command works")


def test_ctrl_c_during_a_listing(registry: LocalRegistry, factory: ImageFactory, python_sigint: None) -> None:
    for i in range(400):
        factory.single(f"r{i % 20}", [f"t{i}"], layer_size=64)
    started = threading.Event()
    seen: list[int] = []

    def on_progress(done: int, total: int) -> None:
        seen.append(done)
        if done >= 20:
            started.set()

    session = Session()
    try:
        fetcher = session.fetcher(registry.address, local=False)  # over HTTP: one request per tag
        thread, when = _interrupt_when(started)
        with pytest.raises(KeyboardInterrupt):
            list_images(fetcher, [], long=True, progress=on_progress)
        stopped = time.monotonic()
        thread.join(5)
        assert when and stopped - when[0] < 2.0
        assert max(seen) < 400, "the listing ran to the end instead of stopping"
        assert _workers("jindr-list") == []
        argv = ["-r", registry.address, "lsi", "-l", "--no-local"]
        assert len(run(session, build_parser().parse_args(argv)).rows) == 400
    finally:
        session.close()
    _count(f"Ctrl-C during lsi -l: stopped after {max(seen)} of 400 tags, next command works")
