"""cp: whole graphs between real registries, byte-identical, resumable, verified."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from authrig import basic_auth_config, docker_config, htpasswd
from clients import need_tool
from jindr_run import jindr
from rig import ImageFactory, LocalRegistry, start_registry
from test_runtime import verify_pull

from jindr_nb.client import RegistryClient
from jindr_nb.errors import IntegrityError, RegistryUnreachable, Unauthorized
from jindr_nb.models import OCI_MANIFEST
from jindr_nb.ops.copy import copy_image
from jindr_nb.refs import parse_ref


@pytest.fixture()
def two(tmp_path: Path):
    src = start_registry(tmp_path / "src")
    dst = start_registry(tmp_path / "dst")
    yield src, dst
    src.stop()
    dst.stop()


def _raw(address: str, repo: str, ref: str) -> bytes:
    with RegistryClient(address) as c:
        return c.get_manifest(repo, ref).raw


@pytest.mark.parametrize("kind", ["oci-index", "docker-list", "single"])
def test_copy_is_byte_identical_and_second_copy_moves_nothing(two, kind: str, blob_path: str) -> None:
    src, dst = two
    with RegistryClient(src.address) as c:
        f = ImageFactory(c, seed=13)
        pushed = {
            "oci-index": lambda: f.index("app", ["v1", "v2"], layers=(1, 3), layer_size=100_000),
            "docker-list": lambda: f.index("app", ["v1", "v2"], oci=False),
            "single": lambda: f.single("app", ["v1", "v2"]),
        }[kind]()
    first = jindr("-r", src.address, "cp", "app:v1", dst.address, "v2").rows
    assert [(r.source.rsplit(":", 1)[1], r.destination.rsplit(":", 1)[1]) for r in first] == [
        ("v1", "v1"),
        ("v2", "v2"),
    ]
    assert all(r.digest == pushed.digest for r in first)
    assert first[0].blobs_copied > 0 and first[0].bytes_copied > 0 and first[1].bytes_copied == 0
    for tag in ("v1", "v2"):
        assert _raw(dst.address, "app", tag) == _raw(src.address, "app", tag)
    with RegistryClient(dst.address) as c:
        if kind != "single":
            verify_pull(c, "app", "v1", pushed)
        for digest in [*pushed.platforms.values(), *pushed.attestations]:
            assert c.get_manifest("app", digest).raw == _raw(src.address, "app", digest)
    again = jindr("-r", src.address, "cp", "app:v1", dst.address).rows[0]
    assert again.bytes_copied == 0 and again.blobs_copied == 0 and again.blobs_skipped == first[0].blobs_copied
    # Another client reads the copy byte for byte. Last, so that without skopeo (a skip outside CI,
    # a failure under CI=1) every check above has already run.
    skopeo = need_tool("skopeo", "skopeo")
    got = subprocess.run(
        [skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{dst.address}/app:v1"],
        capture_output=True,
        timeout=60,
    )
    assert got.returncode == 0, got.stderr
    assert hashlib.sha256(got.stdout).hexdigest() == pushed.digest.split(":")[1]


def _copy_watching(src: LocalRegistry, dst: LocalRegistry, image: str) -> tuple[object, list[tuple[int, int]], int]:
    """copy_image in-process: its row, every progress report, and how many blobs were relayed."""
    seen: list[tuple[int, int]] = []
    with RegistryClient(src.address) as s, RegistryClient(dst.address) as d:
        row = copy_image(
            s,
            parse_ref(image, src.address),
            d,
            parse_ref(image, dst.address),
            progress=lambda done, total: seen.append((done, total)),
        )
        return row, seen, d.blobs_relayed


def test_large_blobs_go_up_in_chunks(two, blob_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blobs over CHUNKED_ABOVE go up as PATCH chunks (made small here): both paths, digests equal."""
    import jindr_nb.ops.copy as engine

    monkeypatch.setattr(engine, "CHUNKED_ABOVE", 1024 * 1024)
    monkeypatch.setattr(engine, "CHUNK", 700 * 1024)
    src, dst = two
    with RegistryClient(src.address) as c:
        pushed = ImageFactory(c, seed=29).index("big", "v1", layers=2, layer_size=2_500_000)
    row, seen, relayed = _copy_watching(src, dst, "big:v1")
    with RegistryClient(dst.address) as d:
        verify_pull(d, "big", "v1", pushed)
    assert relayed == (row.blobs_copied if blob_path == "splice" else 0) and row.blobs_copied > 4
    assert row.digest == pushed.digest and row.bytes_copied == seen[-1][0] == seen[-1][1] > 5_000_000


def test_cp_between_local_registries_never_imports_httpx(two) -> None:
    """The relay and the lean path carry a whole copy: a fresh process never loads httpx (~0.2 s)."""
    import sys

    src, dst = two
    with RegistryClient(src.address) as c:
        pushed = ImageFactory(c, seed=31).index("app", "v1")
    env = {k: v for k, v in os.environ.items() if k != "JINDR_SPLICE"}
    code = (
        "import sys\n"
        "from jindr_nb import cli\n"
        f"code = cli.main(['-r', '{src.address}', 'cp', 'app:v1', '{dst.address}'])\n"
        "print('httpx' in sys.modules, code)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False 0", done.stdout
    assert _raw(dst.address, "app", "v1") == _raw(src.address, "app", "v1")
    with RegistryClient(dst.address) as c:
        verify_pull(c, "app", "v1", pushed)


def test_copy_within_one_registry_mounts(two) -> None:
    src, _ = two
    with RegistryClient(src.address) as c:
        pushed = ImageFactory(c).index("app", "v1")
    row = jindr("-r", src.address, "cp", "app:v1", src.address, "--to", "mirror/app").rows[0]
    assert row.blobs_mounted > 0 and row.blobs_copied == 0 and row.bytes_copied == 0
    assert row.destination == f"{src.address}/mirror/app:v1"
    with RegistryClient(src.address) as c:
        verify_pull(c, "mirror/app", "v1", pushed)


def test_referrers_by_tag_schema_travel_along(two) -> None:
    src, dst = two
    with RegistryClient(src.address) as c:
        f = ImageFactory(c)
        pushed = f.index("app", "v1")
        config = f.blob("app", b"{}")
        sbom = f.blob("app", b'{"spdxVersion": "SPDX-2.3"}')
        artifact = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/spdx+json",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
            "layers": [{"mediaType": "application/spdx+json", "digest": sbom, "size": 27}],
            "subject": {"mediaType": pushed.media_type, "digest": pushed.digest, "size": 1},
        }
        raw = json.dumps(artifact).encode()
        schema_tag = pushed.digest.replace(":", "-")
        c.put_manifest("app", schema_tag, raw, OCI_MANIFEST)
    jindr("-r", src.address, "cp", "app:v1", dst.address)
    assert _raw(dst.address, "app", schema_tag) == raw


def test_destination_with_basic_auth(two, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, _ = two
    secured = start_registry(
        tmp_path / "secured", extra_config=basic_auth_config(htpasswd(tmp_path / "htpasswd", "ci", "pa55-word"))
    )
    try:
        with RegistryClient(src.address) as c:
            pushed = ImageFactory(c).index("app", "v1")
        monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path / "wrong", secured.address, "ci", "nope")))
        with pytest.raises(Unauthorized) as info:
            jindr("-r", src.address, "cp", "app:v1", secured.address)
        assert "nope" not in str(info.value)
        monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path / "right", secured.address, "ci", "pa55-word")))
        assert jindr("-r", src.address, "cp", "app:v1", secured.address).rows[0].digest == pushed.digest
    finally:
        secured.stop()


def test_destination_dies_mid_copy_then_a_rerun_finishes(two, blob_path: str) -> None:
    src, dst = two
    with RegistryClient(src.address) as c:
        pushed = ImageFactory(c, seed=17).index("big", "v1", layers=3, layer_size=8 * 1024 * 1024)
    killed = {"done": False}

    def kill_halfway(done: int, total: int) -> None:
        if not killed["done"] and total and done > total * 0.6:
            killed["done"] = True
            dst.proc.kill()

    with RegistryClient(src.address) as s, RegistryClient(dst.address, retries=0) as d:
        with pytest.raises((RegistryUnreachable, IntegrityError)):
            copy_image(
                s, parse_ref("big:v1", src.address), d, parse_ref("big:v1", dst.address), progress=kill_halfway, jobs=1
            )
    assert killed["done"]
    dst.proc.wait()
    restarted = LocalRegistry(dst.workdir, port=dst.port).start()
    try:
        with RegistryClient(dst.address) as d:
            assert d.head_manifest("big", "v1") is None  # no tag on an incomplete image
        row = jindr("-r", src.address, "cp", "big:v1", dst.address).rows[0]
        assert row.blobs_skipped > 0 and row.bytes_copied < pushed.size  # only what was missing moved
        with RegistryClient(dst.address) as d:
            verify_pull(d, "big", "v1", pushed)
    finally:
        restarted.stop()


def test_source_blob_that_does_not_match_its_digest(two, blob_path: str) -> None:
    src, dst = two
    with RegistryClient(src.address) as c:
        pushed = ImageFactory(c).index("bad", "v1", layer_size=50_000)
        layer = json.loads(c.get_manifest("bad", pushed.platforms["linux/arm64"]).raw)["layers"][0]["digest"]
    # The real registry serves what its storage holds: corrupt it there.
    data = src.storage / "docker/registry/v2/blobs/sha256" / layer[7:9] / layer[7:] / "data"
    corrupted = bytearray(data.read_bytes())
    corrupted[100] ^= 0xFF
    data.write_bytes(bytes(corrupted))
    with pytest.raises(IntegrityError, match=f"blob {layer} .*does not match its digest"):
        jindr("-r", src.address, "cp", "bad:v1", dst.address)
    with RegistryClient(dst.address) as d:
        assert d.head_manifest("bad", "v1") is None
        assert d.head_blob("bad", layer) is None


def test_progress_reports_bytes(two) -> None:
    src, dst = two
    with RegistryClient(src.address) as c:
        pushed = ImageFactory(c).index("app", "v1", layer_size=300_000)
    row, seen, _ = _copy_watching(src, dst, "app:v1")
    # Every blob of the graph: platform images (pushed.size) plus the attestations' small blobs.
    assert seen[0][0] == 0 and seen[-1][0] == seen[-1][1] == row.bytes_copied
    assert pushed.size < row.bytes_copied < pushed.size + 4096
