"""load / save / du against real registries, docker save archives and skopeo's OCI layouts."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from jindr_run import jindr
from rig import ImageFactory, free_port
from test_runtime import verify_pull

from jindr_nb.client import RegistryClient
from jindr_nb.errors import InvalidReference

DATA = Path(__file__).resolve().parent.parent / "notebooks" / "data"


def test_samples_are_small_and_reproducible(tmp_path: Path) -> None:
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file() and p.suffix != ".py")
    assert total < 1024 * 1024
    copy = tmp_path / "data"
    shutil.copytree(DATA, copy)
    subprocess.run(["python3", str(copy / "make_samples.py")], check=True, capture_output=True)
    for layout in ("archy", "tools", "webapp", "releases"):
        assert (copy / layout / "index.json").read_bytes() == (DATA / layout / "index.json").read_bytes()
    index = json.loads((DATA / "archy" / "index.json").read_text())
    top = json.loads((DATA / "archy" / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_text())
    assert sorted(m["platform"]["architecture"] for m in top["manifests"]) == ["amd64", "arm64", "unknown", "unknown"]


def test_load_samples_then_save_and_load_back_with_identical_digests(registry, tmp_path: Path) -> None:
    rows = jindr("-r", registry.address, "load", str(DATA / "archy")).rows
    assert [(r.destination, r.platforms) for r in rows] == [
        (f"{registry.address}/archy:latest", ["linux/amd64", "linux/arm64"])
    ]
    digest = rows[0].digest
    assert (rows[0].action, rows[0].previous_digest) == ("pushed", "")
    again = jindr("-r", registry.address, "load", str(DATA / "archy")).rows[0]
    assert again.bytes_copied == 0 and again.blobs_skipped > 0
    assert (again.action, again.previous_digest) == ("unchanged", digest)
    listed = jindr("-r", registry.address, "inspect", "archy").rows
    assert [r.kind for r in listed] == ["index", "image", "image", "attestation", "attestation"]
    for target in (tmp_path / "out-dir", tmp_path / "out.tar"):
        saved = jindr("-r", registry.address, "save", "archy:latest", str(target)).rows[0]
        assert saved.digest == digest
        jindr("-r", registry.address, "load", str(target), "copies/archy:back")
        with RegistryClient(registry.address) as c:
            assert c.get_manifest("copies/archy", "back").digest == digest
    with tarfile.open(tmp_path / "out.tar") as tar:
        assert "oci-layout" in tar.getnames() and "index.json" in tar.getnames()
    with pytest.raises(InvalidReference, match="already exists"):
        jindr("-r", registry.address, "save", "archy", str(tmp_path / "out.tar"))


def test_load_names_and_bad_archives(registry, tmp_path: Path) -> None:
    rows = jindr("-r", registry.address, "load", str(DATA / "tools")).rows
    assert sorted(r.destination.rsplit("/", 1)[1] for r in rows) == ["tools:1.0", "tools:latest"]
    renamed = jindr("-r", registry.address, "load", str(DATA / "webapp"), "team/web").rows[0]
    assert renamed.destination == f"{registry.address}/team/web:2.0"
    (tmp_path / "junk").write_text("not an archive")
    with pytest.raises(InvalidReference, match="not a directory or a tar"):
        jindr("-r", registry.address, "load", str(tmp_path / "junk"))
    with pytest.raises(InvalidReference, match="does not exist"):
        jindr("-r", registry.address, "load", str(tmp_path / "missing"))
    assert sorted(r.repository for r in jindr("-r", registry.address, "ls").rows) == ["team/web", "tools"]


def test_skopeo_oci_layouts_round_trip(registry, tmp_path: Path) -> None:
    if not shutil.which("skopeo"):
        message = "skopeo is not installed (apt-get install skopeo; make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with RegistryClient(registry.address) as c:
        pushed = ImageFactory(c).index("src/app", "v1")
    layout = tmp_path / "skopeo-layout"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--all",
            "--src-tls-verify=false",
            f"docker://{registry.address}/src/app:v1",
            f"oci:{layout}:v1",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with pytest.raises(InvalidReference, match="only names the tag 'v1'"):
        jindr("-r", registry.address, "load", str(layout))
    row = jindr("-r", registry.address, "load", str(layout), "from/skopeo").rows[0]
    assert row.destination.endswith("from/skopeo:v1")
    with RegistryClient(registry.address) as c:
        got = c.get_manifest("from/skopeo", "v1")
        if got.digest == pushed.digest:
            verify_pull(c, "from/skopeo", "v1", pushed)
    ours = tmp_path / "ours"
    jindr("-r", registry.address, "save", "src/app:v1", str(ours))
    copied = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{ours}:src/app:v1"], capture_output=True, timeout=60)
    assert copied.returncode == 0 and hashlib.sha256(copied.stdout).hexdigest() == pushed.digest[7:]


def test_docker_save_archives(docker_engine, registry, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "hello.txt").write_text("loaded without docker push\n")
    (context / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    tag = f"jindr-load-test:{free_port()}"
    subprocess.run(["docker", "build", "-q", "-t", tag, str(context)], check=True, capture_output=True)
    try:
        archive = tmp_path / "saved.tar"
        subprocess.run(["docker", "save", "-o", str(archive), tag], check=True, capture_output=True)
        row = jindr("-r", registry.address, "load", str(archive)).rows[0]
        assert row.destination == f"{registry.address}/{tag}" and row.blobs_copied == 2
        pulled = subprocess.run(["docker", "pull", f"{registry.address}/{tag}"], capture_output=True, text=True)
        assert pulled.returncode == 0, pulled.stderr
        image = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Id}}", tag], capture_output=True, text=True
        ).stdout.strip()
        loaded = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Id}}", f"{registry.address}/{tag}"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        assert image == loaded  # same config, so the same image id
    finally:
        subprocess.run(["docker", "rmi", "-f", tag, f"{registry.address}/{tag}"], capture_output=True)


def test_du_counts_shared_layers_honestly(tmp_path: Path) -> None:
    address = f"localhost:{free_port()}"
    jindr("-r", address, "start", "--runtime", "process", "-d", str(tmp_path / "s"))
    try:
        for sample in ("archy", "webapp", "tools"):
            jindr("-r", address, "load", str(DATA / sample))
        result = jindr("-r", address, "du")
        rows = {r.repository: r for r in result.rows}
        assert sorted(rows) == ["archy", "tools", "webapp"]  # repository rows only
        archy, web, tools = rows["archy"], rows["webapp"], rows["tools"]
        assert archy.tags == 1 and archy.manifests == 5 and tools.tags == 2 and tools.manifests == 1
        assert archy.shared_size > 0 and archy.shared_size == web.shared_size  # the shared base layers
        assert tools.shared_size == 0 and tools.unique_size == tools.size
        assert archy.size == archy.unique_size + archy.shared_size
        total = jindr("-r", address, "du", "--total").rows[0]
        assert total.repositories == 3 and total.tags == sum(r.tags for r in rows.values())
        # Distinct across repositories: the shared base layers count once.
        assert total.size == sum(r.unique_size for r in rows.values()) + archy.shared_size
        assert total.size < sum(r.size for r in rows.values())
        assert total.disk_bytes > 0 and total.gc_blobs == 0 and total.gc_bytes == 0  # nothing to reclaim yet
        assert "registry total: 3 repositories" in result.message
        # The totals match a walk of the storage: after loading, every blob file is a manifest or a
        # blob some tag reaches.
        blobs = {p.parent.name: p.stat().st_size for p in (tmp_path / "s").rglob("blobs/sha256/*/*/data")}
        assert len(blobs) == total.manifests + total.blobs
        jindr("-r", address, "rmi", "tools:1.0", "tools:latest")
        after = jindr("-r", address, "du", "--total").rows[0]
        assert after.gc_bytes >= tools.unique_size and after.gc_blobs >= tools.blobs  # gc would reclaim it
        only = jindr("-r", address, "du", "archy").rows
        assert [r.repository for r in only] == ["archy"] and only[0].shared_size == archy.shared_size
    finally:
        jindr("-r", address, "stop", "-G")
