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
from jindr_nb.commands import Session, build_parser, run
from jindr_nb.frames import to_frame
from jindr_nb.ops.listing import TORN


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


def _flip_byte(path, at: int = 20) -> bytes:
    """Rewrite a file in place with one byte changed (same length, same inode): what a bad disk or a
    hand edit leaves. Returns the bytes it held."""
    data = path.read_bytes()
    tampered = bytearray(data)
    tampered[at] = ord("X") if tampered[at] != ord("X") else ord("Y")
    path.write_bytes(bytes(tampered))
    return data


def test_tampered_manifest_bytes_in_storage_are_reported_after_a_verified_listing(
    process_registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A repeated listing from storage skips re-reading a manifest whose blob file is unchanged since
    its bytes were verified (the file's stamp: device, inode, size, mtime, ctime). Rewriting the
    bytes in place changes the stamp: the listing reads them again and reports the tag — in a warm
    kernel (parsed manifests in memory), in a fresh CLI (stamps and summaries on disk), for `lsi`
    and `lsi -l`. Put back, the bytes verify again and the tag is listed whole."""
    from pathlib import Path

    from jindr_nb.client import storage as storage_module
    from jindr_nb.client.storage import StorageLayout
    from jindr_nb.ops.fetch import Fetcher

    monkeypatch.setattr(storage_module, "_SETTLED_NS", 0)  # stamps count at once (else for files 2 s old)
    address = process_registry
    root = Path(jindr("-r", address, "status").rows[0].storage).resolve()
    with RegistryClient(address) as client:
        victim = ImageFactory(client, seed=47).single("tamper/app", "v1")
        kept = ImageFactory(client, seed=48).single("tamper/app", "ok")
        index = ImageFactory(client, seed=49).index("tamper/idx", "v1")
    blob = Path(StorageLayout(root).blob_path(victim.digest))
    warm = Session(address)
    try:
        for argv in (["lsi", "tamper/app"], ["lsi", "-l", "tamper/app"], ["lsi", "-l", "tamper/idx"]):
            for _ in range(2):  # the second listing takes the stamped path
                rows = {r.tag: r for r in run(warm, build_parser().parse_args(argv)).rows}
                assert all(r.missing == [] for r in rows.values()), argv
        fetcher = warm.fetcher()
        assert isinstance(fetcher, Fetcher) and fetcher.unchanged(victim.digest)  # recorded: reads are skipped
        assert fetcher.unchanged(index.digest)
        original = _flip_byte(blob)
        assert not fetcher.unchanged(victim.digest)
        for session in (warm, None):
            for argv in (["lsi", "tamper/app"], ["lsi", "-l", "tamper/app"]):
                result = run(session, build_parser().parse_args(argv)) if session else jindr("-r", address, *argv)
                assert [r.tag for r in result.rows] == ["ok"], (argv, session)
                assert result.rows[0].digest == kept.digest
                assert "1 tag left out (tamper/app:v1)" in result.message, result.message
                assert "does not match its digest" in result.message
        with pytest.raises(Exception, match="does not match its digest"):
            jindr("-r", address, "lsi", "tamper/app:v1")  # named: an error, not a row
        blob.write_bytes(original)  # a new ctime: read and verified once more, then stamped again
        for argv in (["lsi", "tamper/app"], ["lsi", "-l", "tamper/app"]):
            rows = {r.tag: r for r in run(warm, build_parser().parse_args(argv)).rows}
            assert sorted(rows) == ["ok", "v1"] and rows["v1"].digest == victim.digest
        assert warm.fetcher().unchanged(victim.digest)
    finally:
        warm.close()


def test_a_manifest_blob_gone_from_storage_is_not_listed_from_the_cache(
    process_registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The revision link stays, the blob's file is gone (a hand-made or half-restored tree): the
    cache knows what the digest held, but the registry cannot serve it — the tag is shown torn,
    also by a warm kernel and after a stamped listing."""
    from pathlib import Path

    from jindr_nb.client import storage as storage_module
    from jindr_nb.client.storage import StorageLayout

    monkeypatch.setattr(storage_module, "_SETTLED_NS", 0)
    address = process_registry
    root = Path(jindr("-r", address, "status").rows[0].storage).resolve()
    with RegistryClient(address) as client:
        victim = ImageFactory(client, seed=50).single("gone/app", "v1")
    warm = Session(address)
    try:
        for argv in (["lsi", "gone/app"], ["lsi", "-l", "gone/app"]):
            for _ in range(2):
                assert run(warm, build_parser().parse_args(argv)).rows[0].missing == []
        blob = Path(StorageLayout(root).blob_path(victim.digest))
        blob.unlink()
        jindr("-r", address, "stop")
        jindr("-r", address, "start", "--runtime", "process", "-d", str(root))  # its own cache forgets the blob
        for session in (warm, None):
            for argv in (["lsi", "gone/app"], ["lsi", "-l", "gone/app"]):
                result = run(session, build_parser().parse_args(argv)) if session else jindr("-r", address, *argv)
                assert [(r.tag, r.missing) for r in result.rows] == [("v1", [TORN])], (argv, session)
    finally:
        warm.close()


def test_a_stamped_listing_reads_no_manifest_and_still_names_a_child_deleted_since(
    process_registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once its tags are stamped, a listing from storage answers them a repository at a time from
    the links, the stamps and the summaries, reading no manifest (counted); a child deleted through
    the API after that (its revision link goes) is still named, in a warm kernel and a fresh CLI;
    and a tag moved to another image lists the new digest."""
    from jindr_nb.client import storage as storage_module
    from jindr_nb.client.storage import StorageLayout

    monkeypatch.setattr(storage_module, "_SETTLED_NS", 0)
    address = process_registry
    with RegistryClient(address) as client:
        index = ImageFactory(client, seed=61).index("stamped/idx", ["v1", "v2"])
        single = ImageFactory(client, seed=62).single("stamped/app", "v1")
        other = ImageFactory(client, seed=63).single("stamped/other", "x")
    reads: list[str] = []
    original = StorageLayout.read_blob_stamped

    def counted(self: StorageLayout, digest: str, limit: int):  # type: ignore[no-untyped-def]
        reads.append(digest)
        return original(self, digest, limit)

    monkeypatch.setattr(StorageLayout, "read_blob_stamped", counted)
    warm = Session(address)
    try:
        for argv in (["lsi", "stamped/idx", "stamped/app"], ["lsi", "-l", "stamped/idx", "stamped/app"]):
            run(warm, build_parser().parse_args(argv))  # reads and stamps
            reads.clear()
            rows = {(r.repository, r.tag): r for r in run(warm, build_parser().parse_args(argv)).rows}
            assert reads == [], argv  # answered from links, stamps and summaries
            assert rows[("stamped/idx", "v1")].digest == index.digest and rows[("stamped/idx", "v1")].missing == []
            assert rows[("stamped/app", "v1")].digest == single.digest
        child = sorted(index.platforms.items())[0]
        with RegistryClient(address) as client:
            client.delete_manifest("stamped/idx", child[1])
            # moved: the tag's link now names another manifest, pushed to this repository
            moved = ImageFactory(client, seed=64).single("stamped/app", "v1")
        assert moved.digest != single.digest and other.digest != moved.digest
        for session in (warm, None):
            for argv in (["lsi", "stamped/idx", "stamped/app"], ["lsi", "-l", "stamped/idx", "stamped/app"]):
                result = run(session, build_parser().parse_args(argv)) if session else jindr("-r", address, *argv)
                rows = {(r.repository, r.tag): r for r in result.rows}
                for tag in ("v1", "v2"):
                    assert rows[("stamped/idx", tag)].missing == [child[0]], (argv, session, rows)
                assert rows[("stamped/app", "v1")].digest == moved.digest, (argv, session)
    finally:
        warm.close()


def test_stamps_count_only_for_files_that_have_settled(process_registry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file changed within the last moments gets no stamp (a second write in the same tick of the
    file system's clock could leave every field alike): it is read and verified every time until
    it has settled. The stamp is that of the file the bytes came from."""
    from pathlib import Path

    from jindr_nb.client import storage as storage_module
    from jindr_nb.client.storage import StorageLayout

    address = process_registry
    root = Path(jindr("-r", address, "status").rows[0].storage).resolve()
    with RegistryClient(address) as client:
        pushed = ImageFactory(client, seed=51).single("fresh/app", "v1")
    layout = StorageLayout(root)
    read = layout.read_blob_stamped(pushed.digest, 1 << 20)
    assert read is not None and read[1] is None  # written just now: no stamp yet
    monkeypatch.setattr(storage_module, "_SETTLED_NS", 0)
    read = layout.read_blob_stamped(pushed.digest, 1 << 20)
    assert read is not None and read[1] is not None and read[1] == layout.blob_stamp(pushed.digest)
    assert layout.blob_stamp("sha256:" + "0" * 64) is None  # no such file: no stamp


def test_the_summaries_file_reads_back_whole_records_around_a_torn_line(tmp_path) -> None:
    """The summaries file is read in one parse when every line is a whole record, line by line when
    one is torn (a full disk, a killed writer): the torn line is a miss, and never runs into the
    records around it. Stamps kept on disk read back as the very stamp, and no other."""
    from jindr_nb.ops.cache import ContentCache

    cache = ContentCache(tmp_path)
    cache.put_summary("sha256:" + "a" * 64, {"p": ["linux/amd64"], "s": 1, "m": "x"})
    cache.put_stamp("sha256:" + "b" * 64, (1, 2, 3, 4, 5))
    cache.keep_stamp("sha256:" + "b" * 64)
    cache.close()
    whole = ContentCache(tmp_path)
    assert whole.get_summary("sha256:" + "a" * 64) == {"p": ["linux/amd64"], "s": 1, "m": "x"}
    assert whole.verified("sha256:" + "b" * 64, (1, 2, 3, 4, 5))
    assert not whole.verified("sha256:" + "b" * 64, (1, 2, 3, 4, 6)) and not whole.verified("sha256:" + "b" * 64, None)
    path = tmp_path / "summaries-v3.jsonl"
    with path.open("ab") as fh:
        fh.write(b'{"d":"sha256:' + b"c" * 64 + b'","p":["linux/a\n')  # torn inside a string
        fh.write(b'{"d":"sha256:' + b"e" * 64 + b'","p":[],"s":2,"m":"y"}\n')
        fh.write(b"[1, 2]\n")  # foreign: not a record
        fh.write(b'{"d":"sha256:' + b"f" * 64 + b'","s":3},{"d":"sha256:' + b"9" * 64 + b'","s":4}\n')  # two in one
    again = ContentCache(tmp_path)
    assert again.get_summary("sha256:" + "c" * 64) is None
    assert again.get_summary("sha256:" + "f" * 64) is None and again.get_summary("sha256:" + "9" * 64) is None
    assert again.get_summary("sha256:" + "e" * 64) == {"p": [], "s": 2, "m": "y"}
    assert again.get_summary("sha256:" + "a" * 64) == {"p": ["linux/amd64"], "s": 1, "m": "x"}
    assert again.verified("sha256:" + "b" * 64, (1, 2, 3, 4, 5))
    # Every line starts and ends like a record, one holds two: the one parse finds a record too
    # many, and the file is read line by line (that line is a miss).
    other = tmp_path / "other"
    other.mkdir()
    (other / "summaries-v3.jsonl").write_bytes(
        b'{"d":"sha256:' + b"a" * 64 + b'","s":1}\n'
        b'{"d":"sha256:' + b"f" * 64 + b'","s":3},{"d":"sha256:' + b"9" * 64 + b'","s":4}\n'
    )
    mixed = ContentCache(other)
    assert mixed.get_summary("sha256:" + "a" * 64) == {"s": 1}
    assert mixed.get_summary("sha256:" + "f" * 64) is None and mixed.get_summary("sha256:" + "9" * 64) is None


def test_a_stamp_from_the_summaries_file_never_displaces_one_this_process_verified(tmp_path) -> None:
    """One manifest in two registries jindr runs (copied from one to the other): one stamp per
    storage. A listing of B answered through B's stamp on disk must not make this process forget
    the stamp it verified in A (kept in the file after the records were loaded): A's next listing
    would read and hash every shared manifest again, and write its stamp once more each time."""
    from jindr_nb.ops.cache import ContentCache

    digest, in_a, in_b = "sha256:" + "d" * 64, (1, 10, 100, 1000, 1001), (2, 20, 200, 2000, 2001)
    first = ContentCache(tmp_path)
    first.put_summary(digest, {"p": ["linux/amd64"], "m": "application/vnd.oci.image.manifest.v1+json", "k": []})
    first.put_stamp(digest, in_b)
    first.keep_stamp(digest)
    first.close()
    kernel = ContentCache(tmp_path)
    assert kernel.stored_summary(digest, in_a) is None  # not verified in A yet
    kernel.put_stamp(digest, in_a)  # A's bytes read and verified
    kernel.keep_stamp(digest)
    kernel.flush()
    lines = (tmp_path / "summaries-v3.jsonl").read_bytes().count(b"\n")
    for _ in range(3):  # B and A in turn, as two listings in one kernel
        assert kernel.stored_summary(digest, in_b) is not None
        assert kernel.stored_summary(digest, in_a) is not None and kernel.verified(digest, in_a)
        kernel.keep_stamp(digest)
    kernel.flush()
    assert (tmp_path / "summaries-v3.jsonl").read_bytes().count(b"\n") == lines  # nothing written again
    assert kernel.stored_summary(digest, (3, 30, 300, 3000, 3001)) is None  # a stamp no one verified


def test_named_images_that_are_not_there_are_reported_in_the_order_given(process_registry: str) -> None:
    """`lsi A B` from storage, neither there: the error names A, the first asked for, whatever
    kind of reference each is (a tag, a digest) — also when a tag found in storage comes between."""
    address = process_registry
    with RegistryClient(address) as client:
        ImageFactory(client, seed=71).single("order/app", "v1")
    absent = "sha256:" + "0" * 64
    for argv in (
        ["order/app:gone", f"order/other@{absent}"],
        ["order/app:v1", "order/app:gone", f"order/app@{absent}"],
        [f"order/app@{absent}", "order/app:gone"],
    ):
        first = next(a for a in argv if not a.endswith(":v1"))
        with pytest.raises(Exception, match=f"manifest {first} not found"):
            jindr("-r", address, "lsi", *argv)
