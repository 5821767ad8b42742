"""Listing a registry jindr runs by reading its storage: identical to the API, safe during pushes."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest
from jindr_run import jindr
from rig import ImageFactory

from jindr_nb.client import RegistryClient
from jindr_nb.client.storage import StorageReader
from jindr_nb.commands import Session
from jindr_nb.frames import to_frame


@pytest.fixture()
def managed(process_registry: str):
    address = process_registry
    with RegistryClient(address) as client:
        f = ImageFactory(client, seed=3)
        f.index("multi/oci", ["latest", "v1", "v2"], layers=(1, 3))
        f.index("multi/docker", ["1.0"], oci=False)
        f.index("deep/a/b/c", "x", platforms=(("linux", "arm", "v7"), ("linux", "s390x", ""), ("windows", "amd64", "")))
        f.single("plain", ["latest", "old"])
        f.single("ocisingle", "1", oci=True, platform=("linux", "arm64", "v8"))
        for i in range(30):
            f.single(f"many/r{i:02d}", "t")
        # Untagged content and a repository with only layers: neither is a tag, both exist on disk.
        f.image_manifest("multi/oci")
        f.blob("layers-only", b"just a blob")
    yield address


def _frame(result):
    return to_frame(result.rows, result.row_type)


@pytest.mark.parametrize(
    "command",
    [
        ["ls"],
        ["lsi"],
        ["lsi", "-l"],
        ["lsi", "multi/oci", "plain:old"],
        ["inspect", "multi/oci:v1", "multi/docker:1.0", "deep/a/b/c:x", "plain", "ocisingle:1"],
        ["layers"],
        ["layers", "--attestations", "multi/oci", "deep/a/b/c:x"],
    ],
)
def test_storage_and_api_agree_cell_by_cell(managed: str, command: list[str]) -> None:
    session = Session(managed)
    assert isinstance(session.fetcher().client, StorageReader)  # the local path is really taken
    local = _frame(jindr("-r", managed, *command))
    api = _frame(jindr("-r", managed, *command[:1], "--no-local", *command[1:]))
    assert len(local) > 0
    pd.testing.assert_frame_equal(local, api)


def test_local_listing_is_consistent_while_pushes_rewrite_tags(managed: str) -> None:
    with RegistryClient(managed) as client:
        f = ImageFactory(client, seed=9)
        first = f.single("race", "hot")
        second = f.single("race", "hot")  # "hot" now points here; both manifests exist
        raw = {d: client.get_manifest("race", d) for d in (first.digest, second.digest)}
        stop = threading.Event()
        pushes = [0]

        def flip() -> None:
            while not stop.is_set():
                for d in (first.digest, second.digest):
                    client.put_manifest("race", "hot", raw[d].raw, raw[d].media_type)
                    pushes[0] += 1

        writer = threading.Thread(target=flip)
        writer.start()
        try:
            seen = set()
            listings = 0
            # At least 40 listings, and on until the writer has flipped the tag a dozen times (a loaded
            # machine may give it few turns): the race is exercised, not just hoped for.
            deadline = time.monotonic() + 120
            while (listings < 40 or pushes[0] <= 12) and time.monotonic() < deadline:
                rows = jindr("-r", managed, "lsi", "race").rows
                assert [r.tag for r in rows] == ["hot"]
                seen.add(rows[0].digest)
                listings += 1
        finally:
            stop.set()
            writer.join()
    assert seen <= {first.digest, second.digest} and pushes[0] > 12 and listings >= 40


def test_no_local_for_registries_jindr_does_not_run(populated: dict) -> None:
    session = Session(populated["registry"].address)
    assert isinstance(session.fetcher().client, RegistryClient)


def test_storage_reads_only_names_the_registry_takes(process_registry: str, tmp_path) -> None:
    """A tag or repository outside the registry's grammar never becomes a path: `v1/../v1` is not
    read as the tag v1, and a name climbing out of storage reads nothing there — storage declines
    (None), and what the API says stands."""
    import os
    from pathlib import Path

    from jindr_nb.client.storage import StorageLayout

    address = process_registry
    storage = Path(jindr("-r", address, "status").rows[0].storage).resolve()
    with RegistryClient(address) as client:
        pushed = ImageFactory(client, seed=45).single("s/app", "v1")
        outside = (tmp_path / "outside").resolve()
        (outside / "current").mkdir(parents=True)
        (outside / "current" / "link").write_text(pushed.digest)
        climb = "v1/" + "../" * 40 + str(outside).lstrip("/")
        reader = StorageReader(storage, client)
        assert reader.resolve_tag("s/app", "v1") == pushed.digest  # the real tag still reads
        for tag in ("v1/../v1", climb, "..", ".", "-v1", "x" * 129):
            assert reader.resolve_tag("s/app", tag) is None, tag
            assert reader.read_manifest("s/app", tag) is None, tag
        for repository in ("s/app/../app", "s/../s/app", "/" + str(storage).lstrip("/"), "S/App", "s//app"):
            assert reader.resolve_tag(repository, "v1") is None, repository
            assert reader.read_manifest(repository, pushed.digest) is None, repository
        layout = StorageLayout(storage)
        assert layout.tag_digest("s/app", "v1/../v1") is None
        assert layout.tag_digest("s/app", climb) is None
        assert layout.tag_digest("s/app/../app", "v1") is None
        assert layout.revisions("s/../s/app") == [] and layout.tags("s/../s/app") is None
        with pytest.raises(ValueError, match="leave the storage"):
            layout.repo_dir("s/" + "../" * 3 + "etc")
        assert os.path.exists(storage / "docker/registry/v2/repositories/s/app/_manifests/tags/v1/current/link")


def test_a_fifo_in_storage_does_not_hang_a_read(process_registry: str) -> None:
    """A FIFO where a link file or a blob should be is not a regular file: read as missing at once
    (storage declines: the caller asks the API), never waited on for a writer."""
    import os
    from pathlib import Path

    from jindr_nb.client.storage import StorageLayout

    address = process_registry
    storage = Path(jindr("-r", address, "status").rows[0].storage).resolve()
    with RegistryClient(address) as client:
        pushed = ImageFactory(client, seed=46).single("f/app", ["v1", "v2"])
    v2 = storage / "docker" / "registry" / "v2"
    link = v2 / "repositories" / "f/app" / "_manifests" / "tags" / "v2" / "current" / "link"
    link.unlink()
    os.mkfifo(link)
    layout = StorageLayout(storage)
    answers: list[object] = []
    reader = threading.Thread(target=lambda: answers.append(layout.tag_digest("f/app", "v2")), daemon=True)
    reader.start()
    reader.join(timeout=5)
    hung = reader.is_alive()
    if hung:  # let the reader go: a writer opening the FIFO ends its wait
        os.close(os.open(link, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=5)
    assert not hung, "reading a FIFO as a link file waited for a writer"
    assert answers == [None]
    assert layout.tag_digest("f/app", "v1") == pushed.digest
    blob = Path(layout.blob_path(pushed.digest))
    blob.unlink()
    os.mkfifo(blob)
    assert layout.read_blob(pushed.digest, 1 << 20) is None  # at once, not after a writer
