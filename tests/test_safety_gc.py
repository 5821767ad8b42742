"""gc speaks one unit, and output into a closed pipe ends quietly.

gc: on registries jindr runs (the real binary, process runtime), `gc --dry-run` then `gc` on the
same state must report the same manifest and blob counts and the same `reclaimed_bytes`, with
`disk_freed` within a filesystem block per blob; and both must match this module's own walk of the
storage (blob files gone, their apparent sizes summed; blocks of files and directories) and the
blobs the deleted images' manifests name.

Pipes: the installed `jindr` executable through real shell pipelines (`| head -1`, `| head -c 100`)
and through a pipe whose reader closed before jindr started: no traceback, no "BrokenPipe", and
jindr's own exit status is what the same shell reports for a coreutils filter killed by SIGPIPE.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from jindr_run import jindr
from rig import ImageFactory, fill_storage, make_layer, write_counts

from jindr_nb.client import RegistryClient
from jindr_nb.models import DOCKER_MANIFEST, GcRow

CASES: list[str] = []
CLI = Path(sys.executable).parent / "jindr"
CLOSED_PIPE = 128 + signal.SIGPIPE
PIPE_CAPACITY = 65536  # Linux's default pipe buffer: output past twice this cannot all fit before `head` quits


@pytest.fixture(scope="module", autouse=True)
def _write_counts():
    yield
    write_counts("safety_gc", safety_cases=len(CASES), cases=CASES)


def _need(what: str, found: object) -> None:
    from conftest import _need as need

    if not found:
        need(what, f"{what} is not available")


# ---- the storage, walked independently of jindr ---------------------------------------------


def blob_files(storage: Path) -> dict[str, int]:
    """digest -> apparent size of every blob file in the store."""
    base = storage / "docker/registry/v2/blobs/sha256"
    return {f"sha256:{data.parent.name}": data.stat().st_size for data in base.glob("*/*/data")}


def revision_links(storage: Path) -> set[str]:
    base = storage / "docker/registry/v2/repositories"
    return {str(link.relative_to(base)) for link in base.glob("**/_manifests/revisions/sha256/*/link")}


def blocks(storage: Path) -> int:
    """Bytes of allocated blocks under the storage, the root, every directory and every file."""
    return sum(os.lstat(p).st_blocks * 512 for p in [storage, *storage.rglob("*")])


def referenced(client: RegistryClient, repository: str, digest: str) -> set[str]:
    """The manifest `digest` and every blob it reaches: children, configs, layers."""
    found = {digest}
    doc = json.loads(client.get_manifest(repository, digest).raw)
    for child in doc.get("manifests", []):
        found |= referenced(client, repository, child["digest"])
    for desc in [doc["config"], *doc["layers"]] if "config" in doc else []:
        found.add(desc["digest"])
    return found


def reachable(client: RegistryClient) -> set[str]:
    """Every manifest and blob some tag reaches."""
    found: set[str] = set()
    for repo in client.catalog():
        for tag in client.tags(repo):
            found |= referenced(client, repo, client.get_manifest(repo, tag).digest)
    return found


@dataclass
class Agreed:
    dry: GcRow
    run: GcRow
    before: dict[str, int]  # digest -> size of every blob file before
    gone: dict[str, int]  # digest -> size of the blob files the run removed

    def exactly_unreachable(self, client: RegistryClient, doomed: set[str]) -> None:
        """The run removed every blob no tag reaches (`doomed`, the deleted images' own, among them)."""
        assert doomed <= self.gone.keys()
        assert self.gone.keys() == self.before.keys() - reachable(client)


def dry_then_run(address: str, storage: Path) -> Agreed:
    """`gc --dry-run` then `gc`; asserts they agree with each other and with the storage walk."""
    blobs, revisions, disk = blob_files(storage), revision_links(storage), blocks(storage)
    dry = jindr("-r", address, "gc", "--dry-run").rows[0]
    assert (blob_files(storage), revision_links(storage), blocks(storage)) == (blobs, revisions, disk)
    assert dry.dry_run and dry.disk_before == disk and dry.disk_after == disk - dry.disk_freed
    run = jindr("-r", address, "gc").rows[0]
    after = blob_files(storage)
    assert after.keys() <= blobs.keys()
    gone = {d: blobs[d] for d in blobs.keys() - after.keys()}
    assert not run.dry_run
    assert run.manifests_deleted == dry.manifests_deleted == len(revisions - revision_links(storage))
    assert run.blobs_deleted == dry.blobs_deleted == len(gone)
    assert run.reclaimed_bytes == dry.reclaimed_bytes == sum(gone.values())
    assert (run.disk_before, run.disk_after) == (disk, blocks(storage))
    assert run.disk_freed == disk - blocks(storage)
    block = os.statvfs(storage).f_bsize
    assert abs(run.disk_freed - dry.disk_freed) <= block * run.blobs_deleted, (dry, run)
    return Agreed(dry, run, blobs, gone)


def nothing_left(address: str, storage: Path) -> None:
    """Right after a collection: both report zero in every measure, and nothing changes."""
    again = dry_then_run(address, storage)
    for row in (again.dry, again.run):
        assert (row.manifests_deleted, row.blobs_deleted, row.reclaimed_bytes, row.disk_freed) == (0, 0, 0, 0), row


def storage_of(address: str) -> Path:
    return Path(jindr("-r", address, "status").rows[0].storage)


# ---- gc: the dry run and the run agree -----------------------------------------------------


def test_rmi_of_an_index_tag_with_big_layers(process_registry: str) -> None:
    storage = storage_of(process_registry)
    with RegistryClient(process_registry) as client:
        f = ImageFactory(client, seed=21)
        big = f.index("big", "v1", layers=2, layer_size=300_000)
        keep = f.index("big", "v2")
        doomed = referenced(client, "big", big.digest) - referenced(client, "big", keep.digest)
        jindr("-r", process_registry, "rmi", "big:v1")
        agreed = dry_then_run(process_registry, storage)
        agreed.exactly_unreachable(client, doomed)
        assert agreed.run.manifests_deleted == 1 + len(big.platforms) + len(big.attestations)
        assert agreed.run.reclaimed_bytes > 4 * 300_000  # the two platforms' two big layers each
        assert [r.digest for r in jindr("-r", process_registry, "lsi", "big").rows] == [keep.digest]
    CASES.append("gc after rmi of an index tag with big layers: dry run = run = storage walk")
    nothing_left(process_registry, storage)
    CASES.append("gc right after gc: zero in every measure, storage unchanged")


def test_a_tag_moved_on(process_registry: str) -> None:
    storage = storage_of(process_registry)
    with RegistryClient(process_registry) as client:
        f = ImageFactory(client, seed=22)
        old = f.index("moving", "latest", layer_size=100_000, oci=False)
        new = f.index("moving", "latest", layer_size=1_000, oci=False)  # the old list is untagged now
        doomed = referenced(client, "moving", old.digest) - referenced(client, "moving", new.digest)
        agreed = dry_then_run(process_registry, storage)
        agreed.exactly_unreachable(client, doomed)
        assert agreed.run.manifests_deleted == 1 + len(old.platforms)
    CASES.append("gc after a Docker manifest list tag moved on: dry run = run = storage walk")


def test_deletions_by_digest(process_registry: str) -> None:
    storage = storage_of(process_registry)
    with RegistryClient(process_registry) as client:
        f = ImageFactory(client, seed=23)
        one = f.single("bydigest", "a", layer_size=80_000)
        two = f.single("bydigest", "b", layer_size=80_000)
        index = f.index("bydigest", ["c", "d"], layer_size=60_000)
        doomed = referenced(client, "bydigest", one.digest) | referenced(client, "bydigest", index.digest)
        doomed -= referenced(client, "bydigest", two.digest)
        deleted = jindr("-r", process_registry, "rmi", f"bydigest@{one.digest}", f"bydigest@{index.digest}")
        assert {r.action for r in deleted.rows} == {"deleted"}
        agreed = dry_then_run(process_registry, storage)
        agreed.exactly_unreachable(client, doomed)
        # The index's revision went through the API; its children and attestations go in the collection.
        assert agreed.run.manifests_deleted == len(index.platforms) + len(index.attestations)
        assert [r.tag for r in jindr("-r", process_registry, "lsi", "bydigest").rows] == ["b"]
    CASES.append("gc after deletions by digest (an image and an index): dry run = run = storage walk")


def test_shared_layers_between_repositories(process_registry: str) -> None:
    storage = storage_of(process_registry)
    shared = make_layer(250_000, random.Random(24))
    with RegistryClient(process_registry) as client:
        f = ImageFactory(client, seed=24)
        tops = {}
        for repo in ("team/alpha", "team/beta"):
            raw, digest, _, _ = f.image_manifest(repo, oci=False, layer_size=40_000, shared_layers=[shared])
            client.put_manifest(repo, "1", raw, DOCKER_MANIFEST)
            tops[repo] = digest
        doomed = referenced(client, "team/alpha", tops["team/alpha"])
        kept = referenced(client, "team/beta", tops["team/beta"])
        jindr("-r", process_registry, "rmi", "team/alpha:1")
        agreed = dry_then_run(process_registry, storage)
        agreed.exactly_unreachable(client, doomed - kept)
        assert doomed & kept and not (doomed & kept) & agreed.gone.keys()  # the shared layer stays
        assert kept <= blob_files(storage).keys()
        layers = json.loads(client.get_manifest("team/beta", "1").raw)["layers"]
        assert [len(client.get_blob("team/beta", d["digest"])) for d in layers] == [d["size"] for d in layers]
    CASES.append("gc with a layer shared between repositories: the shared layer stays, dry run = run")


def test_nothing_to_collect(process_registry: str) -> None:
    storage = storage_of(process_registry)
    nothing_left(process_registry, storage)  # empty storage: no repositories yet
    CASES.append("gc on an empty registry: zero in every measure")
    with RegistryClient(process_registry) as client:
        ImageFactory(client, seed=25).index("full", ["x", "y"])
    nothing_left(process_registry, storage)
    CASES.append("gc with every image tagged: zero in every measure, storage unchanged")


def test_rmr_says_what_it_reclaimed(process_registry: str) -> None:
    storage = storage_of(process_registry)
    with RegistryClient(process_registry) as client:
        f = ImageFactory(client, seed=26)
        f.index("gone/app", ["1", "2"], layer_size=90_000)
        f.single("stays", "1")
    before = blob_files(storage)
    result = jindr("-r", process_registry, "rmr", "gone/app")
    gone = sum(size for digest, size in before.items() if digest not in blob_files(storage))
    assert gone > 2 * 90_000
    assert f"reclaimed {GcRow.binary(gone)} in {len(before) - len(blob_files(storage))} blobs" in result.message
    assert " of disk" in result.message
    CASES.append("rmr on a registry jindr runs: the message says the reclaimed size the storage walk sees")


def test_a_tagged_schema_1_image_keeps_its_layers(process_registry: str) -> None:
    storage = storage_of(process_registry)
    with RegistryClient(process_registry) as client:
        f = ImageFactory(client, seed=27)
        manifest, layer = f.schema1_in_storage(storage, "old/s1", "v1", layer_size=50_000)
        gone = f.single("old/s1", "tmp", layer_size=30_000)
        doomed = referenced(client, "old/s1", gone.digest)
        jindr("-r", process_registry, "rmi", "old/s1:tmp")
        agreed = dry_then_run(process_registry, storage)
        # The registry marks a schema 1 manifest's fsLayers: its layer stays, and the dry run said so.
        assert {manifest, layer} <= blob_files(storage).keys() and not {manifest, layer} & agreed.gone.keys()
        assert doomed - {gone.digest} <= agreed.gone.keys()
    CASES.append("gc with a tagged Docker schema 1 image: its layers stay, dry run = run")
    nothing_left(process_registry, storage)


def test_a_child_deleted_from_under_its_index(process_registry: str) -> None:
    storage = storage_of(process_registry)
    with RegistryClient(process_registry) as client:
        f = ImageFactory(client, seed=28)
        broken = f.index("half", "v1", attestations=False, layer_size=70_000)
        lost = broken.platforms["linux/arm64"]
        blobs = referenced(client, "half", lost) - {lost}
        torn = f.single("half", "torn", layer_size=40_000)
        torn_blobs = referenced(client, "half", torn.digest)
        client.delete_manifest("half", lost)  # the revision link goes; its config and layers stay until gc
        revision = storage / "docker/registry/v2/repositories/half/_manifests/revisions/sha256" / torn.digest[7:]
        shutil.rmtree(revision)  # a torn tag: listed, its revision gone
        agreed = dry_then_run(process_registry, storage)
        # The registry marks only through revisions: the lost child's config and layers are swept (the
        # index still names the child, so its manifest blob is kept), and so is all of the torn tag.
        assert blobs <= agreed.gone.keys() and lost in blob_files(storage)
        assert torn_blobs <= agreed.gone.keys()
        assert agreed.run.manifests_deleted == 0
    CASES.append("gc with a child deleted from under its index and a torn tag: dry run = run")
    nothing_left(process_registry, storage)


# ---- output into a closed pipe ---------------------------------------------------------------


def _cli_env(buffered: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    return env


PIPELINE = '"$1" -r "$2" "${@:5}" 2>"$3" | $4 >/dev/null; echo "${PIPESTATUS[0]} ${PIPESTATUS[1]}"'


def _pipeline(env: dict[str, str], err: Path, reader: str, *argv: str) -> tuple[int, int, int]:
    """jindr's status, the reader's, and the pipeline's own (no pipefail: the reader's)."""
    done = subprocess.run(
        ["bash", "-c", PIPELINE, "bash", *argv[:2], str(err), reader, *argv[2:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    first, second = (int(n) for n in done.stdout.split())
    return first, second, done.returncode


def test_shell_pipelines_end_quietly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import _need_binary
    from rig import free_port

    _need_binary()
    _need("the jindr executable", CLI.exists())
    _need("bash and head", shutil.which("bash") and shutil.which("head") and shutil.which("yes"))
    storage = tmp_path / "storage"
    # Long names, so that even `ls` (one short line per repository) overflows the pipe's buffer.
    pushed = fill_storage(storage, 600, 1, prefix="pipe/" + "n" * 200)
    address = f"localhost:{free_port()}"
    jindr("-r", address, "start", "--runtime", "process", "-d", str(storage))
    try:
        reference = subprocess.run(
            ["bash", "-c", 'yes | head -1 >/dev/null; echo "${PIPESTATUS[0]}"'], capture_output=True, text=True
        )
        killed = int(reference.stdout)  # what this shell reports for a coreutils filter whose reader quit
        assert killed == CLOSED_PIPE
        for argv, reader in ((["lsi"], "head -1"), (["--json", "lsi", "-l"], "head -c 100"), (["ls"], "head -1")):
            for buffered in (True, False):
                env = _cli_env(buffered)
                full = subprocess.run([str(CLI), "-r", address, *argv], env=env, capture_output=True, timeout=120)
                assert full.returncode == 0 and full.stderr == b""
                assert len(full.stdout) > 2 * PIPE_CAPACITY, len(full.stdout)  # head must quit before the end
                if argv == ["lsi"]:
                    assert full.stdout.count(b"\n") == len(pushed) + 1
                err = tmp_path / "stderr"
                status, head, pipeline = _pipeline(env, err, reader, str(CLI), address, *argv)
                text = err.read_text()
                assert "Traceback" not in text and "BrokenPipe" not in text and text == "", text
                assert (status, head, pipeline) == (killed, 0, 0), (argv, buffered)
                CASES.append(
                    f"jindr {' '.join(argv)} | {reader} ({'buffered' if buffered else 'unbuffered'}):"
                    f" quiet, status {status} as `yes | head -1`"
                )
    finally:
        jindr("-r", address, "stop", "-G")


def _into_closed(argv: list[str], env: dict[str, str], *, stream: str = "stdout") -> tuple[int, str]:
    """Run jindr with stdout (or stderr) a pipe whose reader closed before it started."""
    read, write = os.pipe()
    os.close(read)
    try:
        if stream == "stdout":
            done = subprocess.run([str(CLI), *argv], stdout=write, stderr=subprocess.PIPE, env=env, timeout=60)
            return done.returncode, done.stderr.decode()
        done = subprocess.run([str(CLI), *argv], stdout=subprocess.PIPE, stderr=write, env=env, timeout=60)
        return done.returncode, done.stdout.decode()
    finally:
        os.close(write)


def test_closed_pipe_from_the_start(tmp_path: Path) -> None:
    from rig import free_port

    _need("the jindr executable", CLI.exists())
    nobody = f"localhost:{free_port()}"
    for buffered in (True, False):
        env = _cli_env(buffered)
        mode = "buffered" if buffered else "unbuffered"
        # A message that is the whole answer goes to stdout.
        normal = subprocess.run([str(CLI), "-r", nobody, "stop"], env=env, capture_output=True, timeout=60)
        assert normal.returncode == 0 and b"nothing to stop" in normal.stdout
        status, err = _into_closed(["-r", nobody, "stop"], env)
        assert (status, err) == (CLOSED_PIPE, ""), err
        CASES.append(f"a message on stdout into a closed pipe ({mode}): quiet, status {CLOSED_PIPE}")
        status, err = _into_closed(["--json", "info"], env)
        assert (status, err) == (CLOSED_PIPE, ""), err
        CASES.append(f"--json (a few bytes) into a closed pipe ({mode}): quiet, status {CLOSED_PIPE}")
        status, err = _into_closed(["--help"], env)
        # argparse itself drops a failed write of the help (unbuffered: 0); either way nothing is said.
        assert err == "" and status in (0, CLOSED_PIPE), (status, err)
        CASES.append(f"--help into a closed pipe ({mode}): quiet")
    # An error message into a closed stderr: the error's own status, not the pipe's.
    failed = subprocess.run([str(CLI), "-r", nobody, "lsi"], capture_output=True, timeout=60)
    assert failed.returncode == 1 and failed.stderr.startswith(b"jindr: ")
    status, out = _into_closed(["-r", nobody, "lsi"], _cli_env(True), stream="stderr")
    assert (status, out) == (failed.returncode, "")
    CASES.append("an error into a closed stderr: quiet, the error's own status")
