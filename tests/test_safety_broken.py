"""A broken index — a child deleted behind jindr's back — is shown by every listing, never hidden.

The child is deleted with a raw DELETE by digest (what another tool, or jindr 1.5.0, does). Each
listing is tried through the registry's API and through the storage of a registry jindr runs, cold
and with a cache that saw the image whole: the cache may say what a digest held, never that it is
still there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jindr_run import jindr
from rig import ImageFactory, start_registry, write_counts

from jindr_nb.client import RegistryClient
from jindr_nb.commands import Session, build_parser, run

CASES: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _write_counts():
    yield
    write_counts("safety_broken", safety_cases=len(CASES), cases=CASES)


@pytest.fixture(params=["api", "storage"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(address, how): a plain registry read through its API, or one jindr runs, read from storage."""
    if request.param == "api":
        from conftest import _need_binary

        _need_binary()
        reg = start_registry(tmp_path / "reg")
        request.addfinalizer(reg.stop)
        STORAGE[reg.address] = reg.storage
        return reg.address, "api"
    address = request.getfixturevalue("process_registry")
    STORAGE[address] = tmp_path / "storage"  # where the process_registry fixture keeps it
    return address, "storage"


STORAGE: dict[str, Path] = {}


def _run(session: Session, *argv: str):
    return run(session, build_parser().parse_args(list(argv)))


def test_every_listing_names_the_broken_tag(where, tmp_path: Path) -> None:
    address, how = where
    with RegistryClient(address) as c:
        pushed = ImageFactory(c, seed=11).index("app", ["latest", "1.0"], layer_size=50_000)
        whole = ImageFactory(c, seed=12).index("other", "v1")
        child = pushed.platforms["linux/arm64"]
        doc = json.loads(c.get_manifest("app", child).raw)
        child_size = doc["config"]["size"] + sum(layer["size"] for layer in doc["layers"])
    warm = Session(address)
    try:
        before = {r.tag: r for r in _run(warm, "lsi", "-l", "app").rows}  # the cache sees app whole
        assert before["latest"].missing == [] and before["latest"].size == pushed.size
        _run(warm, "inspect", "app:latest")
        with RegistryClient(address) as c:
            c.delete_manifest("app", child)  # behind jindr's back
        for label, session in (("warm", warm), ("cold", None)):
            for argv in (["lsi", "app"], ["lsi", "-l", "app"], ["lsi"], ["lsi", "-l", "app:latest"]):
                result = _run(session, *argv) if session else jindr("-r", address, *argv)
                CASES.append(f"{how} {label}: {' '.join(argv)}")
                rows = {(r.repository, r.tag): r for r in result.rows}
                for tag in ["latest"] if argv[-1] == "app:latest" else ["latest", "1.0"]:
                    row = rows[("app", tag)]  # listed, not dropped
                    assert row.missing == ["linux/arm64"] and row.digest == pushed.digest
                    if "-l" in argv:
                        assert row.size == pushed.size - child_size  # what is there, not the cached whole
                assert "broken" in result.message and "app:latest" in result.message
                assert "\n" not in result.message
                if ("other", "v1") in rows:
                    assert rows[("other", "v1")].missing == [] and rows[("other", "v1")].digest == whole.digest
            inspected = _run(session, "inspect", "app:latest") if session else jindr("-r", address, "inspect", "app")
            CASES.append(f"{how} {label}: inspect")
            kinds = {r.digest: r.kind for r in inspected.rows}
            assert kinds[child] == "missing" and kinds[pushed.platforms["linux/amd64"]] == "image"
            missing = next(r for r in inspected.rows if r.kind == "missing")
            assert missing.platform == "linux/arm64" and missing.layers == 0
            assert "broken" in inspected.message
            du = _run(session, "du") if session else jindr("-r", address, "du")
            CASES.append(f"{how} {label}: du")
            by_repo = {r.repository: r for r in du.rows}
            assert by_repo["app"].broken == 2 and by_repo["other"].broken == 0
            assert "broken" in du.message and "app:1.0" in du.message
            total = (_run(session, "du", "--total") if session else jindr("-r", address, "du", "--total")).rows[0]
            assert total.broken == 2
    finally:
        warm.close()


def test_a_missing_attestation_is_named(where) -> None:
    address, how = where
    with RegistryClient(address) as c:
        pushed = ImageFactory(c, seed=13).index("att", "latest")
        c.delete_manifest("att", pushed.attestations[0])
    row = jindr("-r", address, "lsi", "att").rows[0]
    CASES.append(f"{how}: missing attestation")
    assert row.missing == ["attestation (linux/amd64)"]


def test_the_cli_prints_one_notice_line(where, capsys: pytest.CaptureFixture[str]) -> None:
    from jindr_nb import cli

    address, how = where
    with RegistryClient(address) as c:
        pushed = ImageFactory(c, seed=14).index("app", "latest")
        c.delete_manifest("app", pushed.platforms["linux/amd64"])
    capsys.readouterr()
    assert cli.main(["-r", address, "lsi"]) == 0
    out, err = capsys.readouterr()
    CASES.append(f"{how}: CLI notice")
    assert "linux/amd64" in out.splitlines()[1]  # the missing column
    assert len(err.strip().splitlines()) == 1 and "1 broken tag (app:latest)" in err


def test_a_lost_grandchild_of_a_nested_index_is_named(where) -> None:
    """outer index → inner index → platform images; a platform image goes behind jindr's back."""
    from jindr_nb.models import OCI_INDEX

    address, how = where
    with RegistryClient(address) as c:
        f = ImageFactory(c, seed=15)
        kids = []
        for arch in ("amd64", "arm64"):
            raw, digest, _, _ = f.image_manifest("nest", ("linux", arch, ""))
            kids.append(
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest,
                    "size": len(raw),
                    "platform": {"os": "linux", "architecture": arch},
                }
            )
        inner = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": kids}).encode()
        inner_digest = c.put_manifest(
            "nest", "sha256:" + __import__("hashlib").sha256(inner).hexdigest(), inner, OCI_INDEX
        )
        outer = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [{"mediaType": OCI_INDEX, "digest": inner_digest, "size": len(inner)}],
            }
        ).encode()
        c.put_manifest("nest", "outer", outer, OCI_INDEX)
    warm = Session(address)
    try:
        assert _run(warm, "lsi", "-l", "nest").rows[0].missing == []  # seen whole first
        with RegistryClient(address) as c:
            c.delete_manifest("nest", kids[1]["digest"])
        for session in (warm, None):
            for argv in (["lsi", "nest"], ["lsi", "-l", "nest"]):
                result = _run(session, *argv) if session else jindr("-r", address, *argv)
                CASES.append(f"{how}: nested {' '.join(argv)}")
                assert result.rows[0].missing == ["linux/arm64"] and "nest:outer" in result.message
            inspected = (
                _run(session, "inspect", "nest:outer") if session else jindr("-r", address, "inspect", "nest:outer")
            )
            CASES.append(f"{how}: nested inspect")
            missing = [r for r in inspected.rows if r.kind == "missing"]
            assert [r.digest for r in missing] == [kids[1]["digest"]] and missing[0].platform == "linux/arm64"
    finally:
        warm.close()


def test_a_torn_tag_is_listed_and_named(where) -> None:
    """Listed by the registry, its manifest's revision gone (a registry killed in its own delete)."""
    from test_delete import _tear

    address, how = where
    with RegistryClient(address) as c:
        ImageFactory(c, seed=16).single("torn", "ok")
        half = ImageFactory(c, seed=17).single("torn", "half")
    _tear(STORAGE[address], "torn", half.digest)
    result = jindr("-r", address, "lsi", "torn")
    CASES.append(f"{how}: torn tag in lsi")
    rows = {r.tag: r for r in result.rows}
    assert rows["half"].missing == ["manifest (torn tag)"] and rows["half"].digest == ""
    assert rows["ok"].missing == []
    assert "torn tag (torn:half)" in result.message and "`rmr`" in result.message
    du = jindr("-r", address, "du")
    CASES.append(f"{how}: torn tag in du")
    assert "torn tag (torn:half)" in du.message and "broken" not in du.message


def test_a_schema_1_tag_does_not_stop_a_listing(where) -> None:
    """An old registry's schema 1 image among the tags: left out with one line, the rest listed."""
    address, how = where
    with RegistryClient(address) as c:
        f = ImageFactory(c, seed=18)
        good = f.single("mixed", "new")
        f.schema1_in_storage(STORAGE[address], "mixed", "old")
    for argv in (["lsi"], ["lsi", "-l", "mixed"]):
        result = jindr("-r", address, *argv)
        CASES.append(f"{how}: schema 1 tag in {' '.join(argv)}")
        assert [(r.tag, r.digest) for r in result.rows if r.repository == "mixed"] == [("new", good.digest)]
        assert "1 tag left out (mixed:old)" in result.message and "schema 1" in result.message
        assert "\n" not in result.message
    with pytest.raises(Exception, match="schema 1"):
        jindr("-r", address, "lsi", "mixed:old")  # named by the user: said, not skipped
