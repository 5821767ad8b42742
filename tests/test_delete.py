"""rmi / rmr: exactly what was asked, planned first, and the space really given back."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jindr_run import jindr
from rig import ImageFactory, free_port
from test_runtime import verify_pull

from jindr_nb.client import RegistryClient
from jindr_nb.errors import NotFound
from jindr_nb.runtime.base import dir_size


@pytest.fixture(params=["process", "docker"])
def managed(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A registry jindr runs (so gc and repository removal are available)."""
    address = f"localhost:{free_port()}"
    args = ["--runtime", "process"]
    if request.param == "docker":
        _, image = request.getfixturevalue("docker_engine")
        monkeypatch.delenv("DOCKER_HOST", raising=False)
        args = ["--runtime", "docker", "--image", image]
    jindr("-r", address, "start", "-d", str(tmp_path / "storage"), *args)
    yield address, tmp_path / "storage"
    jindr("-r", address, "stop", "-G")


def _actions(result) -> list[tuple[str, str, str]]:
    return [(r.repository, r.tag, r.action) for r in result.rows]


def test_tag_delete_keeps_sibling_tags(managed) -> None:
    address, _ = managed
    with RegistryClient(address) as client:
        pushed = ImageFactory(client).index("app", ["a", "b", "c"])
        other = ImageFactory(client, seed=2).single("app", "d")
        result = jindr("-r", address, "rmi", "app:a", "app:c")
        assert _actions(result) == [("app", "a", "deleted"), ("app", "c", "deleted"), ("app", "b", "kept")]
        assert all(r.digest == pushed.digest for r in result.rows)
        assert "gc" in result.rows[0].note
        assert sorted(client.tags("app")) == ["b", "d"]
        assert client.head_manifest("app", "b")[0] == pushed.digest
        assert client.head_manifest("app", "d")[0] == other.digest
        verify_pull(client, "app", "b", pushed)


def test_index_goes_children_wait_for_gc(managed) -> None:
    address, storage = managed
    with RegistryClient(address) as client:
        pushed = ImageFactory(client).index("multi", "v1", layer_size=200_000)
        keep = ImageFactory(client, seed=3).index("multi", "v2")
        assert [r.action for r in jindr("-r", address, "rmi", "multi:v1").rows] == ["deleted"]
        assert client.head_manifest("multi", "v1") is None
        untagged = [pushed.digest, *pushed.platforms.values(), *pushed.attestations]
        for digest in untagged:
            assert client.head_manifest("multi", digest) is not None  # untagged, still stored until gc
        before = dir_size(storage)
        gc = jindr("-r", address, "gc").rows[0]
        assert gc.manifests_deleted == 5 and gc.reclaimed_bytes > 400_000 and dir_size(storage) < before
        for child in untagged:
            assert client.head_manifest("multi", child) is None
        verify_pull(client, "multi", "v2", keep)


def test_digest_delete_reports_every_tag(registry) -> None:
    with RegistryClient(registry.address) as client:
        pushed = ImageFactory(client).index("app", ["x", "y"], oci=False)
        ImageFactory(client, seed=4).single("app", "z")
        result = jindr("-r", registry.address, "rmi", f"app@{pushed.digest}")
        assert [(r.tag, r.action, r.note.split(";")[0]) for r in result.rows] == [
            ("", "deleted", "manifest"),
            ("x", "deleted", "went with the digest"),
            ("y", "deleted", "went with the digest"),
        ]
        assert client.tags("app") == ["z"]


def test_docker_manifest_list_tag_delete_removes_the_list_not_a_child(registry) -> None:
    # jindr 1.5.0 deleted the amd64 child here, reported success, and left a broken tag.
    with RegistryClient(registry.address) as client:
        pushed = ImageFactory(client).index("dl", ["1.0", "latest"], oci=False)
        jindr("-r", registry.address, "rmi", "dl:1.0")
        assert client.head_manifest("dl", "1.0") is None
        assert client.head_manifest("dl", "latest")[0] == pushed.digest
        verify_pull(client, "dl", "latest", pushed)


def test_plan_first_a_bad_name_deletes_nothing(registry) -> None:
    with RegistryClient(registry.address) as client:
        ImageFactory(client).single("app", ["one", "two"])
        for bad in (["app:one", "app:nope", "app:two"], ["app:one", "ghost:x"], ["app:one", "Bad!"]):
            with pytest.raises(Exception) as info:
                jindr("-r", registry.address, "rmi", *bad)
            assert (
                "nothing was deleted" in str(info.value)
                or "not found" in str(info.value)
                or "invalid" in str(info.value)
            )
            assert sorted(client.tags("app")) == ["one", "two"]
        with pytest.raises(NotFound):
            jindr("-r", registry.address, "rmr", "app", "ghost")
        assert sorted(client.tags("app")) == ["one", "two"]


def test_dry_run_deletes_nothing(managed) -> None:
    address, storage = managed
    with RegistryClient(address) as client:
        ImageFactory(client).index("app", ["a", "b"])
        before = sorted(p.relative_to(storage) for p in storage.rglob("*"))
        plan = jindr("-r", address, "rmi", "--dry-run", "app:a")
        assert _actions(plan) == [("app", "a", "would delete"), ("app", "b", "kept")]
        repo_plan = jindr("-r", address, "rmr", "--dry-run", "app")
        assert {r.action for r in repo_plan.rows} == {"would delete"} and len(repo_plan.rows) == 2
        assert sorted(client.tags("app")) == ["a", "b"]
        assert sorted(p.relative_to(storage) for p in storage.rglob("*")) == before


def test_rmr_local_registry_leaves_catalog_and_keeps_shared_layers(managed) -> None:
    address, storage = managed
    with RegistryClient(address) as client:
        f = ImageFactory(client, seed=5)
        first = f.index("team/one", ["1", "2"], layer_size=300_000)
        # team/two shares team/one's layers: built from the same blobs.
        raw = client.get_manifest("team/one", first.platforms["linux/amd64"])
        import json as _json

        manifest = _json.loads(raw.raw)
        for desc in [manifest["config"], *manifest["layers"]]:
            assert client.mount_blob("team/two", desc["digest"], "team/one")
        client.put_manifest("team/two", "shared", raw.raw, raw.media_type)
        other = f.index("keep", "v1")
        before = dir_size(storage)
        result = jindr("-r", address, "rmr", "team/one")
        assert {r.tag for r in result.rows} == {"1", "2"} and {r.action for r in result.rows} == {"deleted"}
        assert "reclaimed" in result.message
        assert [r.repository for r in jindr("-r", address, "ls").rows] == ["keep", "team/two"]
        assert dir_size(storage) < before - 300_000
        shared = client.get_manifest("team/two", "shared")
        for desc in [manifest["config"], *manifest["layers"]]:
            assert len(client.get_blob("team/two", desc["digest"])) == desc["size"]
        assert shared.digest == raw.digest
        verify_pull(client, "keep", "v1", other)


def test_rmr_on_a_registry_jindr_does_not_run(registry) -> None:
    with RegistryClient(registry.address) as client:
        ImageFactory(client).index("gone", ["1", "2"])
        ImageFactory(client, seed=6).single("stays", "1")
        result = jindr("-r", registry.address, "rmr", "gone")
        assert "stay in the catalog" in result.message
        assert client.tags("gone") == [] and client.tags("stays") == ["1"]


def test_cli_asks_on_a_terminal(registry) -> None:
    with RegistryClient(registry.address) as client:
        ImageFactory(client).single("app", ["a", "b"])
    exe = str(Path(sys.executable).parent / "jindr")

    def run_in_pty(answer: bytes, *args: str) -> str:
        master, slave = pty.openpty()
        proc = subprocess.Popen([exe, "-r", registry.address, *args], stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        out = b""
        deadline = time.monotonic() + 30
        answered = False
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
                if b"[y/N]" in out and not answered:
                    os.write(master, answer)
                    answered = True
            elif proc.poll() is not None:
                break
        proc.wait(10)
        os.close(master)
        return out.decode(errors="replace")

    shown = run_in_pty(b"n\n", "rmi", "app:a")
    assert "delete app:a?" in shown and "nothing deleted" in shown
    with RegistryClient(registry.address) as client:
        assert sorted(client.tags("app")) == ["a", "b"]
    run_in_pty(b"y\n", "rmi", "app:a")
    with RegistryClient(registry.address) as client:
        assert client.tags("app") == ["b"]
    assert "[y/N]" not in run_in_pty(b"", "rmi", "-y", "app:b")


def _tear(storage: Path, repository: str, digest: str) -> None:
    """What the registry's own delete leaves when killed half-way: the manifest's revision is gone,
    the tag pointing at it is not."""
    revision = storage / "docker/registry/v2/repositories" / repository / "_manifests/revisions/sha256" / digest[7:]
    assert revision.is_dir()
    for part in sorted(revision.rglob("*"), reverse=True):
        part.unlink() if part.is_file() else part.rmdir()
    revision.rmdir()


def test_rmr_names_a_torn_tag_it_cannot_remove(registry) -> None:
    with RegistryClient(registry.address) as client:
        kept = ImageFactory(client).single("torn", "ok")
        broken = ImageFactory(client, seed=9).single("torn", "half")
    _tear(registry.storage, "torn", broken.digest)
    registry.stop()
    registry.start()  # the registry's in-memory cache forgets the revision
    with RegistryClient(registry.address) as client:
        assert sorted(client.tags("torn")) == ["half", "ok"] and client.head_manifest("torn", "half") is None
        rows = {r.tag: r for r in jindr("-r", registry.address, "rmr", "torn").rows}
        assert rows["ok"].action == "deleted" and rows["ok"].digest == kept.digest
        assert rows["half"].action == "not found" and rows["half"].digest == ""
        assert "manifest is gone" in rows["half"].note and "operator" in rows["half"].note
        assert client.tags("torn") == ["half"]  # the API cannot remove it, as the row says


def test_rmr_on_a_registry_jindr_runs_removes_a_torn_tag(managed) -> None:
    address, storage = managed
    with RegistryClient(address) as client:
        ImageFactory(client).single("torn", "ok")
        broken = ImageFactory(client, seed=9).single("torn", "half")
        ImageFactory(client, seed=10).single("other", "v1")
    _tear(storage, "torn", broken.digest)
    jindr("-r", address, "restart")
    with RegistryClient(address) as client:
        assert client.head_manifest("torn", "half") is None
    planned = {r.tag: r.action for r in jindr("-r", address, "rmr", "--dry-run", "torn").rows}
    assert planned == {"ok": "would delete", "half": "would delete"}
    rows = {r.tag: r for r in jindr("-r", address, "rmr", "torn").rows}
    assert rows["half"].action == "deleted" and "manifest is gone" in rows["half"].note
    assert [r.repository for r in jindr("-r", address, "ls").rows] == ["other"]
