"""Listing a registry jindr runs by reading its storage: identical to the API, safe during pushes."""

from __future__ import annotations

import threading

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
            for _ in range(40):
                rows = jindr("-r", managed, "lsi", "race").rows
                assert [r.tag for r in rows] == ["hot"]
                seen.add(rows[0].digest)
        finally:
            stop.set()
            writer.join()
    assert seen <= {first.digest, second.digest} and pushes[0] > 10


def test_no_local_for_registries_jindr_does_not_run(populated: dict) -> None:
    session = Session(populated["registry"].address)
    assert isinstance(session.fetcher().client, RegistryClient)
