"""rmi / rmr never delete what was not asked for — on any registry, with images real clients made.

Registries: the real binary in its default configuration (deletes disabled) and with deletes on;
images from the test factory (OCI index with attestations, Docker manifest list), `podman manifest
push --all` in OCI and v2s2 formats, and `skopeo copy --all`. Faults real parts cannot produce (a
DELETE failing after the placeholder PUT went through) come from tests/faultproxy.py, a fake named
as such. After every case, every surviving tag must pull whole (`skopeo copy --all`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from clients import Podman, need_tool, pulls_whole, raw_manifest, skopeo_copy_all
from faultproxy import FaultProxy, Rule
from jindr_run import jindr
from rig import ImageFactory, LocalRegistry, start_registry, write_counts

from jindr_nb.client import RegistryClient
from jindr_nb.errors import NotFound, Refused, Unsupported
from jindr_nb.models import INDEX_TYPES

CASES: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _write_counts():
    yield
    write_counts("safety_delete", safety_cases=len(CASES), cases=CASES)


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    need_tool("podman", "podman")
    need_tool("skopeo", "skopeo")
    return Podman(tmp_path_factory.mktemp("podman-store")).build()


def tree_hash(root: Path) -> str:
    """Every path and file content under a registry's storage: equal hashes mean nothing changed."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        h.update(str(path.relative_to(root)).encode())
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def tag_map(client: RegistryClient) -> dict[str, str]:
    """repo:tag -> digest for every tag in the registry."""
    found = {}
    for repo in client.catalog():
        try:
            tags = client.tags(repo)
        except NotFound:
            continue
        for tag in tags:
            head = client.head_manifest(repo, tag)
            if head is not None:
                found[f"{repo}:{tag}"] = head[0]
    return found


def assert_every_tag_pulls(address: str, tmp_path: Path) -> int:
    """`skopeo copy --all` of every tag in the registry succeeds: no tag points at a broken graph."""
    with RegistryClient(address) as client:
        tags = sorted(tag_map(client))
    for n, ref in enumerate(tags):
        done = pulls_whole(f"{address}/{ref}", tmp_path / f"pull-{n}")
        assert done.returncode == 0, f"{ref} no longer pulls: {done.stderr.strip()[-400:]}"
    return len(tags)


# ---- kinds of index, each as a real client leaves it ----------------------------------------------

KINDS = ("factory-oci", "factory-list", "podman-oci", "podman-v2s2", "podman-then-skopeo-all")


def push_kind(kind: str, registry: LocalRegistry, podman_store: Podman | None) -> tuple[str, list[str]]:
    """Push one two-platform image of `kind` as REPO:latest and REPO:1.0; return (repo, tags)."""
    repo = f"k/{kind}"
    tags = ["latest", "1.0"]
    if kind.startswith("factory"):
        with RegistryClient(registry.address) as c:
            ImageFactory(c, seed=len(kind)).index(repo, tags, oci=kind == "factory-oci")
        return repo, tags
    assert podman_store is not None
    if kind == "podman-then-skopeo-all":
        podman_store.push(registry.address, "src/podman", "latest", "oci")
        for tag in tags:
            skopeo_copy_all(f"{registry.address}/src/podman:latest", f"{registry.address}/{repo}:{tag}")
        return repo, tags
    for tag in tags:
        podman_store.push(registry.address, repo, tag, kind.removeprefix("podman-"))
    return repo, tags


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest, registry: LocalRegistry) -> tuple[str, str, list[str]]:
    """A fresh registry holding one image of the kind, plus a bystander image that must survive."""
    podman_store = None if request.param.startswith("factory") else request.getfixturevalue("podman")
    repo, tags = push_kind(request.param, registry, podman_store)
    with RegistryClient(registry.address) as c:
        ImageFactory(c, seed=99).index("bystander", "keep")
    return request.param, repo, tags


def _count(registry: LocalRegistry) -> int:
    with RegistryClient(registry.address) as c:
        return len(tag_map(c))


def children(address: str, repo: str, tag: str) -> list[dict]:
    doc = raw_manifest(f"{address}/{repo}:{tag}")
    assert doc.get("mediaType") in INDEX_TYPES or "manifests" in doc, doc
    return doc["manifests"]


def test_a_platform_child_of_a_tagged_index_is_refused(kind, registry, tmp_path: Path) -> None:
    name, repo, tags = kind
    before = tree_hash(registry.storage)
    total = _count(registry)
    kids = children(registry.address, repo, "latest")
    attestations = [c for c in kids if c.get("annotations", {}).get("vnd.docker.reference.type")]
    targets = [kids[-1 - len(attestations)]] + attestations[:1]  # the last platform image, and an attestation
    for child in targets:
        for argv in (["rmi", f"{repo}@{child['digest']}"], ["rmi", "--dry-run", f"{repo}@{child['digest']}"]):
            with pytest.raises(Refused) as info:
                jindr("-r", registry.address, *argv)
            text = str(info.value)
            CASES.append(f"{name}: {' '.join(argv[:-1])} child refused")
            assert "\n" not in text and "nothing was deleted" in text and "--with-index" in text
            for tag in tags:
                assert f"{repo}:{tag}" in text
            role = "attestation" if child in attestations else child["platform"]["architecture"]
            assert role in text
    assert tree_hash(registry.storage) == before
    assert assert_every_tag_pulls(registry.address, tmp_path) == total


def test_with_index_deletes_what_the_plan_listed(kind, registry, tmp_path: Path) -> None:
    name, repo, tags = kind
    total = _count(registry)
    with RegistryClient(registry.address) as c:
        index_digest = c.head_manifest(repo, "latest")[0]
    child = children(registry.address, repo, "latest")[0]["digest"]
    ref = f"{repo}@{child}"
    plan = jindr("-r", registry.address, "rmi", "--dry-run", "--with-index", ref)
    planned = {(r.tag, r.digest) for r in plan.rows}
    assert planned == {("", index_digest), ("", child)} | {(t, index_digest) for t in tags}
    assert {r.action for r in plan.rows} == {"would delete"}
    done = jindr("-r", registry.address, "rmi", "--with-index", ref)
    CASES.append(f"{name}: rmi --with-index child")
    assert done.ok and {(r.tag, r.digest) for r in done.rows} == planned
    assert {r.action for r in done.rows} == {"deleted"}
    with RegistryClient(registry.address) as c:
        assert c.head_manifest(repo, index_digest) is None and c.head_manifest(repo, child) is None
        assert all(c.head_manifest(repo, t) is None for t in tags)
    assert assert_every_tag_pulls(registry.address, tmp_path) == total - len(tags)


def test_an_index_digest_goes_with_its_tags_only(kind, registry, tmp_path: Path) -> None:
    name, repo, tags = kind
    total = _count(registry)
    with RegistryClient(registry.address) as c:
        index_digest = c.head_manifest(repo, "latest")[0]
    done = jindr("-r", registry.address, "rmi", f"{repo}@{index_digest}")
    CASES.append(f"{name}: rmi index digest")
    assert [(r.tag, r.action) for r in done.rows] == [("", "deleted")] + [(t, "deleted") for t in sorted(tags)]
    assert assert_every_tag_pulls(registry.address, tmp_path) == total - len(tags)


def test_a_tag_shared_with_another_keeps_the_other_whole(kind, registry, tmp_path: Path) -> None:
    name, repo, tags = kind
    total = _count(registry)
    done = jindr("-r", registry.address, "rmi", f"{repo}:latest")
    CASES.append(f"{name}: rmi shared tag")
    assert [(r.tag, r.action) for r in done.rows] == [("latest", "deleted"), ("1.0", "kept")]
    assert assert_every_tag_pulls(registry.address, tmp_path) == total - 1


def test_a_child_may_go_when_every_tag_of_its_index_goes_too(registry, tmp_path: Path) -> None:
    with RegistryClient(registry.address) as c:
        pushed = ImageFactory(c).index("app", ["a", "b"])
        ImageFactory(c, seed=3).single("other", "x")
    child = pushed.platforms["linux/arm64"]
    with pytest.raises(Refused, match="app:b"):
        jindr("-r", registry.address, "rmi", "app:a", f"app@{child}")  # app:b would still need it
    done = jindr("-r", registry.address, "rmi", "app:a", "app:b", f"app@{child}")
    CASES.append("factory: child with every tag of its index")
    assert {(r.tag, r.action) for r in done.rows} == {("a", "deleted"), ("b", "deleted"), ("", "deleted")}
    assert assert_every_tag_pulls(registry.address, tmp_path) == 1


# ---- a registry with deletes disabled (its own default) -------------------------------------------


def test_deletes_disabled_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import _need_binary

    _need_binary()
    reg = start_registry(tmp_path / "reg", deletes=False)
    try:
        with RegistryClient(reg.address) as c:
            pushed = ImageFactory(c).index("app", ["a", "b", "c"])
            ImageFactory(c, seed=5).single("other", "latest")
            tags_before = tag_map(c)
        before = tree_hash(reg.storage)
        for argv in (
            ["rmi", "app:a"],
            ["rmi", f"app@{pushed.digest}"],
            ["rmi", "app:a", "app:b", "other:latest"],
            ["rmi", "--dry-run", "app:a"],
            ["rmr", "app"],
            ["rmr", "app", "other"],
        ):
            with pytest.raises(Unsupported) as info:
                jindr("-r", reg.address, *argv)
            CASES.append(f"deletes disabled: {' '.join(argv)}")
            assert "deletes are disabled" in str(info.value) and "nothing was changed" in str(info.value)
            with RegistryClient(reg.address) as c:
                assert tag_map(c) == tags_before
            assert tree_hash(reg.storage) == before
        from jindr_nb import cli

        capsys.readouterr()
        assert cli.main(["-r", reg.address, "rmi", "-y", "app:a"]) == 1
        out, err = capsys.readouterr()
        assert out == "" and len(err.strip().splitlines()) == 1 and "deletes are disabled" in err
        CASES.append("deletes disabled: CLI one line")
    finally:
        reg.stop()


# ---- a step fails after a tag was re-pointed: put it back ---------------------------------------


def _probe_passes() -> Rule:
    """The deletes probe (a DELETE of a random digest) reaches the registry untouched."""
    return Rule("DELETE", r"/manifests/sha256:", "pass", times=1)


def test_failed_placeholder_delete_restores_the_tag(registry, tmp_path: Path) -> None:
    with RegistryClient(registry.address) as c:
        pushed = ImageFactory(c).index("app", ["a", "b", "c"])
        ImageFactory(c, seed=2).single("app", "d")
        before = tag_map(c)
    with FaultProxy(registry.address) as proxy:
        # The second placeholder DELETE fails (app:b); app:a went before it, app:c is not attempted.
        proxy.plan(
            _probe_passes(),
            Rule("DELETE", r"/manifests/sha256:", "pass", times=1),
            Rule("DELETE", r"/manifests/sha256:", "status", status=500),
        )
        result = jindr("-r", proxy.address, "rmi", "app:a", "app:b", "app:c")
    CASES.append("rollback: 500 on the second placeholder delete")
    assert not result.ok and "put back" in result.message and "not attempted" in result.message
    actions = {r.tag: (r.action, r.note) for r in result.rows}
    assert actions["a"][0] == "deleted"
    assert actions["b"][0] == "kept" and "put back" in actions["b"][1]
    assert actions["c"] == ("kept", "not attempted: an earlier delete failed")
    with RegistryClient(registry.address) as c:
        after = tag_map(c)
    assert after == {k: v for k, v in before.items() if k != "app:a"}
    assert after["app:b"] == pushed.digest
    assert assert_every_tag_pulls(registry.address, tmp_path) == 3


def test_a_registry_that_refuses_the_delete_after_the_put_gets_its_tag_back(tmp_path: Path) -> None:
    # Deletes disabled, behind a proxy that answers the probe 404 as some registries do whatever
    # their setting: the PUT of the placeholder succeeds, the DELETE is refused (405) for real.
    from conftest import _need_binary

    _need_binary()
    reg = start_registry(tmp_path / "reg", deletes=False)
    try:
        with RegistryClient(reg.address) as c:
            pushed = ImageFactory(c).index("app", ["a", "b"])
        with FaultProxy(reg.address) as proxy:
            proxy.plan(Rule("DELETE", r"/manifests/sha256:", "status", status=404, times=1))
            result = jindr("-r", proxy.address, "rmi", "app:a")
        CASES.append("rollback: 405 after the placeholder PUT")
        assert not result.ok and "deletion disabled" in result.message
        assert [(r.tag, r.action) for r in result.rows] == [("a", "kept"), ("b", "kept")]
        with RegistryClient(reg.address) as c:
            assert tag_map(c) == {"app:a": pushed.digest, "app:b": pushed.digest}
        assert assert_every_tag_pulls(reg.address, tmp_path) == 2
    finally:
        reg.stop()


def test_failed_child_delete_puts_the_index_back(registry, tmp_path: Path) -> None:
    with RegistryClient(registry.address) as c:
        pushed = ImageFactory(c).index("app", ["a", "b"])
    child = pushed.platforms["linux/amd64"]
    with FaultProxy(registry.address) as proxy:
        proxy.plan(_probe_passes(), Rule("DELETE", child, "status", status=500))
        result = jindr("-r", proxy.address, "rmi", "--with-index", f"app@{child}")
    CASES.append("rollback: child delete fails after its index went")
    assert not result.ok and {r.action for r in result.rows} == {"kept"}
    with RegistryClient(registry.address) as c:
        assert tag_map(c) == {"app:a": pushed.digest, "app:b": pushed.digest}
        assert c.head_manifest("app", child) is not None
    assert assert_every_tag_pulls(registry.address, tmp_path) == 2


def test_nothing_to_put_back_is_said_loudly(registry) -> None:
    """When the rollback itself fails, the row says the tag is broken and what to push."""
    with RegistryClient(registry.address) as c:
        ImageFactory(c).single("app", ["a"])
    with FaultProxy(registry.address) as proxy:
        proxy.plan(
            _probe_passes(),
            Rule("DELETE", r"/manifests/sha256:", "status", status=500),
            Rule("PUT", r"/manifests/a$", "pass", times=1),  # the placeholder goes in ...
            Rule("PUT", r"/manifests/a$", "status", status=500),  # ... the original cannot come back
        )
        result = jindr("-r", proxy.address, "rmi", "app:a")
    CASES.append("rollback fails: reported")
    assert not result.ok
    assert [r.action for r in result.rows] == ["failed"]
    assert "push that image again" in result.rows[0].note and "app:a" in result.message


def test_rmr_through_the_api_keeps_other_repositories_whole(registry, podman, tmp_path: Path) -> None:
    podman.push(registry.address, "pm/app", "latest", "oci")
    podman.push(registry.address, "pm/keep", "latest", "v2s2")
    done = jindr("-r", registry.address, "rmr", "pm/app")
    CASES.append("rmr via API beside a podman image")
    assert [(r.tag, r.action) for r in done.rows] == [("latest", "deleted")]
    assert assert_every_tag_pulls(registry.address, tmp_path) == 1


# ---- found in review: the registry did it but the answer was lost; the plan went stale ----------


def test_an_index_asked_for_beside_its_child_goes_first(registry, tmp_path: Path) -> None:
    """`rmi app@CHILD app@INDEX`: CHILD is allowed only because INDEX goes; INDEX is deleted first,
    so when that fails CHILD is not attempted and app:a still pulls."""
    with RegistryClient(registry.address) as c:
        pushed = ImageFactory(c).index("app", "a")
    child = pushed.platforms["linux/amd64"]
    with FaultProxy(registry.address) as proxy:
        proxy.plan(_probe_passes(), Rule("DELETE", pushed.digest, "status", status=500))
        result = jindr("-r", proxy.address, "rmi", f"app@{child}", f"app@{pushed.digest}")
    CASES.append("order: an index before its child, the index delete fails")
    assert not result.ok and {r.action for r in result.rows} == {"kept"}
    with RegistryClient(registry.address) as c:
        assert c.head_manifest("app", child) is not None
    assert assert_every_tag_pulls(registry.address, tmp_path) == 1


def test_a_placeholder_put_that_landed_but_answered_504_is_rolled_back(registry, tmp_path: Path) -> None:
    with RegistryClient(registry.address) as c:
        pushed = ImageFactory(c).index("app", ["a", "b"])
    with FaultProxy(registry.address) as proxy:
        # Every attempt of the placeholder PUT lands and answers 504 (the client's whole retry
        # budget); the PUT that puts the original back goes through.
        landed = Rule("PUT", r"/manifests/a$", "applied", status=504, times=4)
        proxy.plan(_probe_passes(), landed)
        result = jindr("-r", proxy.address, "rmi", "app:a")
    CASES.append("rollback: placeholder PUT landed, answer lost")
    assert landed.faulted == 4 and landed.seen == 5  # four lost answers, then the original went back
    assert not result.ok and [(r.tag, r.action) for r in result.rows] == [("a", "kept"), ("b", "kept")]
    with RegistryClient(registry.address) as c:
        assert tag_map(c) == {"app:a": pushed.digest, "app:b": pushed.digest}
    assert assert_every_tag_pulls(registry.address, tmp_path) == 2


def test_a_delete_that_went_through_but_answered_502_counts_as_done(registry, tmp_path: Path) -> None:
    with RegistryClient(registry.address) as c:
        pushed = ImageFactory(c).index("app", ["a", "b"])
        ImageFactory(c, seed=4).single("other", "x")
    child = pushed.platforms["linux/amd64"]
    with FaultProxy(registry.address) as proxy:
        proxy.plan(_probe_passes(), Rule("DELETE", pushed.digest, "applied", status=502, times=1))
        result = jindr("-r", proxy.address, "rmi", "--with-index", f"app@{child}")
    CASES.append("lost answer of an index DELETE that went through")
    assert result.ok and {r.action for r in result.rows} == {"deleted"}
    with RegistryClient(registry.address) as c:
        assert c.head_manifest("app", child) is None and "app:a" not in tag_map(c)
    assert assert_every_tag_pulls(registry.address, tmp_path) == 1


@pytest.mark.parametrize("change", ["tag moved", "index now holds the digest"])
def test_a_registry_that_changed_while_the_user_was_asked_is_not_touched(registry, change: str) -> None:
    from jindr_nb.commands import Session, build_parser, run
    from jindr_nb.errors import Refused as RefusedError

    with RegistryClient(registry.address) as c:
        f = ImageFactory(c, seed=21)
        old = f.single("web", "prod")
        lone = f.single("app", "c", platform=("linux", "arm64", ""))

    def meanwhile(question: str) -> bool:
        with RegistryClient(registry.address) as c:
            g = ImageFactory(c, seed=22)
            if change == "tag moved":
                g.single("web", "prod")  # CI re-pushes prod while the user reads the question
            else:
                raw = c.get_manifest("app", lone.digest)
                index = {
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": [
                        {
                            "mediaType": raw.media_type,
                            "digest": lone.digest,
                            "size": len(raw.raw),
                            "platform": {"os": "linux", "architecture": "arm64"},
                        }
                    ],
                }
                import json as _json

                body = _json.dumps(index).encode()
                c.put_manifest("app", "latest", body, "application/vnd.oci.image.index.v1+json")
        return True

    argv = ["rmi", "web:prod"] if change == "tag moved" else ["rmi", f"app@{lone.digest}"]
    session = Session(registry.address, confirm=meanwhile)
    with RegistryClient(registry.address) as c:
        try:
            before = tag_map(c)
            with pytest.raises(RefusedError, match="changed since the plan|would break that tag"):
                run(session, build_parser().parse_args(argv))
            after = tag_map(c)
        finally:
            session.close()
    CASES.append(f"stale plan: {change}")
    changed = {k: v for k, v in after.items() if before.get(k) != v}
    assert set(changed) == ({"web:prod"} if change == "tag moved" else {"app:latest"})  # only the push
    assert after.get("app:c") == lone.digest and (change != "tag moved" or after["web:prod"] != old.digest)


def test_rmr_through_the_api_says_what_went_when_a_delete_fails(registry) -> None:
    with RegistryClient(registry.address) as c:
        index = ImageFactory(c).index("app", "i")
        single = ImageFactory(c, seed=8).single("app", "s")
    with FaultProxy(registry.address) as proxy:
        proxy.plan(_probe_passes(), Rule("DELETE", single.digest, "status", status=500))
        result = jindr("-r", proxy.address, "rmr", "app")
    CASES.append("rmr via API: a delete fails")
    assert not result.ok and "not attempted" in result.message
    rows = {r.tag: (r.action, r.digest) for r in result.rows}
    assert rows["i"] == ("deleted", index.digest)  # the index first
    assert rows["s"][0] == "kept"
    with RegistryClient(registry.address) as c:
        assert tag_map(c) == {"app:s": single.digest}
