"""The registry as data: `layers`, `history`, `config` and `diff` against the real registry.

Images come from the test factory (histories with empty-layer steps and legacy Docker quirks, layers
shared on purpose), from `docker build` + `docker push`, and from Podman. Every layer digest, size
and created_by is checked against the manifest and config bytes the registry serves.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from clients import Podman, need_tool
from jindr_run import jindr
from rig import ImageFactory, LocalRegistry, make_layer, start_registry, write_counts

from jindr_nb.client import RegistryClient
from jindr_nb.commands import Session, build_parser, run
from jindr_nb.errors import CommandLineError, JindrError
from jindr_nb.frames import to_frame
from jindr_nb.models import INDEX_TYPES, OCI_INDEX, OCI_MANIFEST, GcRow

CASES: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _write_counts():
    yield
    write_counts("data_layers", data_cases=len(CASES), cases=CASES)


def _frame(result):
    return to_frame(result.rows, result.row_type)


def images_of(client: RegistryClient, repository: str, reference: str) -> list[tuple[str, dict, dict]]:
    """(platform manifest digest, manifest JSON, config JSON) of every non-attestation image a tag
    reaches, read as raw bytes from the registry — the oracle the rows are checked against."""
    got = client.get_manifest(repository, reference)
    doc = json.loads(got.raw)
    if got.media_type in INDEX_TYPES:
        children = [
            m["digest"]
            for m in doc["manifests"]
            if (m.get("annotations") or {}).get("vnd.docker.reference.type") != "attestation-manifest"
        ]
    else:
        children = [got.digest]
    found = []
    for digest in children:
        manifest = json.loads(client.get_manifest(repository, digest).raw)
        config = json.loads(client.get_blob(repository, manifest["config"]["digest"]))
        found.append((digest, manifest, config))
    return found


def made_by(config: dict, layers: int) -> list[str]:
    """created_by of each layer from the config bytes: the history entries not marked empty."""
    steps = [h for h in config.get("history", []) if h.get("empty_layer") is not True]
    return [h.get("created_by", "") for h in steps] if len(steps) == layers else [""] * layers


def check_against_bytes(client: RegistryClient, rows: list, repository: str, tag: str) -> int:
    """Every layer row of repository:tag equals what its manifest and config say; returns the count."""
    mine = [r for r in rows if r.repository == repository and r.tag == tag]
    expected = []
    for digest, manifest, config in images_of(client, repository, tag):
        names = made_by(config, len(manifest["layers"]))
        for position, layer in enumerate(manifest["layers"]):
            expected.append((digest, position, layer["digest"], layer["mediaType"], layer["size"], names[position]))
    got = [(r.manifest_digest, r.position, r.layer_digest, r.media_type, r.size, r.created_by) for r in mine]
    assert got == expected
    return len(got)


QUIRKY = [
    {"created": "2015-01-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:5d6a in / "},
    {"created": "2015-01-01T00:00:01Z", "created_by": '/bin/sh -c #(nop)  CMD ["/bin/sh"]', "empty_layer": True},
    {"created": "2015-01-01T00:00:02Z", "created_by": "/bin/sh -c apt-get update", "empty_layer": False},
    {"created": "2015-01-01T00:00:03Z", "author": "someone", "comment": "imported from a tarball"},  # no created_by
    {"created_by": "/bin/sh -c #(nop)  ENV PATH=/usr/bin", "empty_layer": True},  # no created time
    {"created": "2015-01-01T00:00:05Z", "created_by": "COPY app /app # buildkit", "comment": "buildkit.dockerfile.v0"},
    {"created": "2015-01-01T00:00:06Z", "created_by": "/bin/sh -c #(nop)  LABEL a=b", "empty_layer": True},
]
QUIRKY_LAYERS = [0, 2, 3, 5]  # the entries that made a layer


@pytest.mark.parametrize("oci,legacy", [(True, False), (False, True)], ids=["oci", "docker-legacy"])
def test_layers_and_history_line_up_with_the_bytes(registry: LocalRegistry, factory: ImageFactory, oci, legacy) -> None:
    pushed = factory.image_with_history("quirks", "1", QUIRKY, oci=oci, legacy=legacy)
    result = jindr("-r", registry.address, "layers", "quirks:1")
    CASES.append(f"history quirks ({'oci' if oci else 'docker legacy'})")
    assert check_against_bytes(factory.client, result.rows, "quirks", "1") == 4
    assert [r.created_by for r in result.rows] == [QUIRKY[i].get("created_by", "") for i in QUIRKY_LAYERS]
    assert {r.manifest_digest for r in result.rows} == {pushed.digest} and result.message == ""
    history = jindr("-r", registry.address, "history", "quirks:1").rows
    assert [h.step for h in history] == list(range(len(QUIRKY)))
    assert [h.empty_layer for h in history] == [i not in QUIRKY_LAYERS for i in range(len(QUIRKY))]
    assert [h.created_by for h in history] == [e.get("created_by", "") for e in QUIRKY]
    assert history[3].comment == "imported from a tarball" and history[4].created is None
    assert history[0].created.isoformat() == "2015-01-01T00:00:00+00:00"
    layer_of = {QUIRKY_LAYERS[r.position]: r for r in result.rows}
    for h in history:
        if h.step in layer_of:
            assert (h.layer_digest, h.size) == (layer_of[h.step].layer_digest, layer_of[h.step].size)
        else:
            assert (h.layer_digest, h.size) == ("", None)
    frame = _frame(jindr("-r", registry.address, "history", "quirks:1"))
    assert str(frame["size"].dtype) == "Int64" and frame["size"].isna().sum() == 3


def test_a_history_that_does_not_line_up_names_no_layer(registry: LocalRegistry, factory: ImageFactory) -> None:
    rng = factory.rng
    three = [make_layer(500, rng) for _ in range(3)]  # three layers, but only two steps made one
    factory.image_with_history("odd", "1", QUIRKY[:3], layers=three)
    rows = jindr("-r", registry.address, "layers", "odd").rows
    CASES.append("history not lining up")
    assert check_against_bytes(factory.client, rows, "odd", "1") == 3
    assert [r.created_by for r in rows] == ["", "", ""]
    history = jindr("-r", registry.address, "history", "odd:1").rows
    assert len(history) == 3 and all(h.layer_digest == "" and h.size is None for h in history)


def _hand_count(client: RegistryClient, scope: list[tuple[str, str]]) -> dict[str, int]:
    """Distinct platform manifests per layer blob over the (repo, tag)s in scope, from raw bytes."""
    users: dict[str, set[str]] = {}
    for repository, tag in scope:
        for digest, manifest, _ in images_of(client, repository, tag):
            for layer in manifest["layers"]:
                users.setdefault(layer["digest"], set()).add(digest)
    return {blob: len(d) for blob, d in users.items()}


def test_shared_by_and_first_seen(registry: LocalRegistry, factory: ImageFactory) -> None:
    rng = factory.rng
    base, one, two, three = (make_layer(800, rng) for _ in range(4))
    steps = [{"created_by": "base"}, {"created_by": "own"}]
    factory.image_with_history("a", ["1", "latest"], steps, layers=[base, one], created="2026-01-01T00:00:00Z")
    factory.image_with_history("b", "1", steps, layers=[base, two], created="2025-06-01T00:00:00Z")
    factory.image_with_history(
        "c",
        "multi",
        steps,
        layers=[base, three],
        platforms=(("linux", "amd64", ""), ("linux", "arm64", "")),
        created="2026-05-01T00:00:00Z",
    )
    digest = {
        name: "sha256:" + hashlib.sha256(blob).hexdigest()
        for name, (blob, _) in {"base": base, "one": one, "two": two, "three": three}.items()
    }
    everything = [("a", "1"), ("a", "latest"), ("b", "1"), ("c", "multi")]
    rows = jindr("-r", registry.address, "layers").rows
    CASES.append("shared_by over the registry")
    counted = _hand_count(factory.client, everything)
    assert {r.layer_digest: r.shared_by for r in rows} == counted
    # By construction: base in a (one manifest, two tags), b, and both platforms of c.
    assert counted[digest["base"]] == 4 and counted[digest["one"]] == 1 and counted[digest["three"]] == 2
    first = {r.layer_digest: r.first_seen for r in rows}
    assert first[digest["base"]] == "b:1"  # the oldest config
    assert first[digest["one"]] == "a:1"  # two tags, one image, same time: by name
    assert first[digest["three"]] == "c:multi"
    assert {(r.repository, r.tag, r.platform) for r in rows if r.layer_digest == digest["three"]} == {
        ("c", "multi", "linux/amd64"),
        ("c", "multi", "linux/arm64"),
    }
    scoped = jindr("-r", registry.address, "layers", "a:1", "b").rows
    CASES.append("shared_by in a narrower scope")
    assert {r.layer_digest: r.shared_by for r in scoped} == _hand_count(factory.client, [("a", "1"), ("b", "1")])
    assert {r.layer_digest: r.shared_by for r in scoped}[digest["base"]] == 2
    assert {r.tag for r in scoped if r.repository == "a"} == {"1"}


RUNTIME = {
    "Env": ["PATH=/usr/local/bin:/usr/bin", "MODE=fast"],
    "Labels": {"org.opencontainers.image.version": "1.0", "team": "data"},
    "Entrypoint": ["/app"],
    "Cmd": ["--serve"],
    "User": "1000:1000",
    "WorkingDir": "/srv",
    "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
}


def test_config_rows_per_platform(registry: LocalRegistry, factory: ImageFactory) -> None:
    platforms = (("linux", "amd64", ""), ("linux", "arm64", "v8"), ("linux", "arm", "v7"))
    factory.image_with_history("cfg", "1", QUIRKY, platforms=platforms, config=RUNTIME)
    result = jindr("-r", registry.address, "config", "cfg:1")
    CASES.append("config per platform")
    raw = images_of(factory.client, "cfg", "1")
    assert [r.platform for r in result.rows] == ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]
    for row, (_, manifest, config) in zip(result.rows, raw, strict=True):
        run_cfg = config["config"]
        assert (row.os, row.architecture, row.variant) == (
            config["os"],
            config["architecture"],
            config.get("variant", ""),
        )
        assert row.env == run_cfg["Env"] and row.labels == run_cfg["Labels"]
        assert row.entrypoint == run_cfg["Entrypoint"] and row.cmd == run_cfg["Cmd"]
        assert (row.user, row.working_dir) == (run_cfg["User"], run_cfg["WorkingDir"])
        assert row.exposed_ports == sorted(run_cfg["ExposedPorts"]) == ["53/udp", "8080/tcp"]
        assert row.config_digest == manifest["config"]["digest"]
    layers = jindr("-r", registry.address, "layers", "cfg:1").rows
    CASES.append("layers per platform")
    assert check_against_bytes(factory.client, layers, "cfg", "1") == 3 * len(QUIRKY_LAYERS)
    history = jindr("-r", registry.address, "history", "cfg:1").rows
    assert [h.platform for h in history] == [r.platform for r in result.rows for _ in QUIRKY]


def test_diff_of_a_rebuild_names_exactly_the_changed_layer(registry: LocalRegistry, factory: ImageFactory) -> None:
    rng = factory.rng
    bottom, middle, changed, top = (make_layer(4000, rng) for _ in range(4))
    steps = [
        {"created_by": "ADD base"},
        {"created_by": "ENV", "empty_layer": True},
        {"created_by": "COPY app"},
        {"created_by": "COPY conf"},
    ]
    two = (("linux", "amd64", ""), ("linux", "arm64", ""))
    factory.image_with_history("app", "1", steps, layers=[bottom, middle, top], config=RUNTIME, platforms=two)
    rebuilt = {**RUNTIME, "Env": ["PATH=/opt/bin", "MODE=fast"], "Labels": {**RUNTIME["Labels"], "new": "yes"}}
    factory.image_with_history("app", "2", steps, layers=[bottom, changed, top], config=rebuilt, platforms=two[:1])
    result = jindr("-r", registry.address, "diff", "app:1", "app:2")
    CASES.append("diff of a rebuild")
    sha = {
        n: "sha256:" + hashlib.sha256(b).hexdigest()
        for n, (b, _) in {"bottom": bottom, "middle": middle, "changed": changed, "top": top}.items()
    }
    amd = [r for r in result.rows if r.platform == "linux/amd64"]
    by_change = {
        c: [r.key for r in amd if r.what == "layer" and r.change == c] for c in ("shared", "only in A", "only in B")
    }
    assert by_change == {
        "shared": [sha["bottom"], sha["top"]],
        "only in A": [sha["middle"]],
        "only in B": [sha["changed"]],
    }
    only_b = next(r for r in amd if r.change == "only in B")
    assert (only_b.a, only_b.b, only_b.size, only_b.created_by) == (None, len(changed[0]), len(changed[0]), "COPY app")
    config = {(r.key, r.change, r.a, r.b) for r in amd if r.what == "config"}
    assert config == {
        ("ENV PATH", "changed", "/usr/local/bin:/usr/bin", "/opt/bin"),
        ("LABEL new", "only in B", None, "yes"),
    }
    platform = [r for r in result.rows if r.what == "platform"]
    assert [(p.platform, p.change) for p in platform] == [("linux/arm64", "only in A")]
    size = GcRow.binary(len(changed[0]))
    assert result.message.startswith(
        f"linux/amd64: B adds 1 layer ({size}), removes 1 ({GcRow.binary(len(middle[0]))})"
    )
    assert "changes ENV PATH, LABEL new" in result.message and "only A has linux/arm64" in result.message
    assert "\n" not in result.message
    # B in another registry: a full reference; the same answer.
    other = start_registry(registry.workdir.parent / "other")
    try:
        with RegistryClient(other.address) as c:
            ImageFactory(c).image_with_history("copy", "2", steps, layers=[bottom, changed, top], config=rebuilt)
        across = jindr("-r", registry.address, "diff", "app:1", f"localhost:{other.port}/copy:2")
        CASES.append("diff across registries")
        assert [(r.platform, r.what, r.change, r.key) for r in across.rows] == [
            (r.platform, r.what, r.change, r.key) for r in result.rows
        ]
        assert across.message == result.message
    finally:
        other.stop()


def test_a_broken_index_is_reported_not_skipped(registry: LocalRegistry, factory: ImageFactory) -> None:
    pushed = factory.image_with_history(
        "app", "latest", QUIRKY[:3], platforms=(("linux", "amd64", ""), ("linux", "arm64", ""))
    )
    factory.image_with_history("fine", "1", QUIRKY[:3])
    factory.client.delete_manifest("app", pushed.platforms["linux/arm64"])  # behind jindr's back
    for argv in (["layers"], ["layers", "app"], ["history", "app"], ["config", "app"], ["diff", "app", "fine:1"]):
        result = jindr("-r", registry.address, *argv)
        CASES.append(f"broken index: {' '.join(argv)}")
        assert "1 broken tag (app:latest)" in result.message and "\n" not in result.message, argv
        compared = [r for r in result.rows if not getattr(r, "change", "").startswith("missing in")]
        platforms = {r.platform for r in compared if getattr(r, "repository", "app") == "app"}
        assert "linux/amd64" in platforms and "linux/arm64" not in platforms, argv


def test_diff_of_a_broken_index_says_what_it_lost(registry: LocalRegistry, factory: ImageFactory) -> None:
    two = (("linux", "amd64", ""), ("linux", "arm64", ""))
    base = make_layer(600, factory.rng)
    broken = factory.image_with_history("app", "1", QUIRKY[:1], layers=[base], platforms=two)
    whole = factory.image_with_history(
        "app", "2", QUIRKY[:1], layers=[base], platforms=two, created="2026-04-01T00:00:00Z"
    )  # a config of its own: its children are other manifests
    lost = broken.platforms["linux/arm64"]
    factory.client.delete_manifest("app", lost)
    for a, b, side in (("app:1", "app:2", "A"), ("app:2", "app:1", "B")):
        result = jindr("-r", registry.address, "diff", a, b)
        CASES.append(f"diff with a broken {side}")
        rows = [(r.platform, r.what, r.change, r.key) for r in result.rows if r.what == "platform"]
        assert rows == [("linux/arm64", "platform", f"missing in {side}", lost)]
        row = next(r for r in result.rows if r.what == "platform")
        assert (row.a, row.b) == (
            (None, whole.platforms["linux/arm64"]) if side == "A" else (whole.platforms["linux/arm64"], None)
        )
        assert f"{side} has lost linux/arm64" in result.message and "only" not in result.message
        assert "1 broken tag (app:1)" in result.message and "\n" not in result.message


def _push_index(client: RegistryClient, repository: str, tag: str, entries: list[tuple[str, dict]]) -> str:
    """An OCI index over (manifest digest, platform) entries, pushed under `tag`."""
    children = []
    for digest, platform in entries:
        got = client.get_manifest(repository, digest)
        children.append({"mediaType": got.media_type, "digest": digest, "size": len(got.raw), "platform": platform})
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}).encode()
    return client.put_manifest(repository, tag, raw, OCI_INDEX)


def _plat(os_: str, arch: str, variant: str = "", **more: str) -> dict:
    return {"os": os_, "architecture": arch, **({"variant": variant} if variant else {}), **more}


def test_one_image_listed_under_two_platforms_is_two_listings(registry: LocalRegistry, factory: ImageFactory) -> None:
    client = factory.client
    arm = factory.image_with_history("same", "arm", [{"created_by": "ADD arm"}], platforms=(("linux", "arm", "v6"),))
    amd = factory.image_with_history("same", "amd", [{"created_by": "ADD amd"}])
    amd64, v6, v7 = _plat("linux", "amd64"), _plat("linux", "arm", "v6"), _plat("linux", "arm", "v7")
    _push_index(client, "same", "a", [(amd.digest, amd64), (arm.digest, v6), (arm.digest, v7)])
    _push_index(client, "same", "b", [(amd.digest, amd64), (arm.digest, v7)])
    listed = ["linux/amd64", "linux/arm/v6", "linux/arm/v7"]
    layers = jindr("-r", registry.address, "layers", "same:a").rows
    CASES.append("one manifest under two platforms: layers")
    assert check_against_bytes(client, layers, "same", "a") == 3
    assert [(r.platform, r.manifest_digest) for r in layers] == list(
        zip(listed, [amd.digest, arm.digest, arm.digest], strict=True)
    )
    assert [r.platform for r in jindr("-r", registry.address, "config", "same:a").rows] == listed
    assert [r.platform for r in jindr("-r", registry.address, "history", "same:a").rows] == listed
    diff = jindr("-r", registry.address, "diff", "same:a", "same:b")
    CASES.append("one manifest under two platforms: diff")
    assert [(r.platform, r.change) for r in diff.rows if r.what == "platform"] == [("linux/arm/v6", "only in A")]
    assert {(r.platform, r.change) for r in diff.rows if r.what == "layer"} == {
        ("linux/amd64", "shared"),
        ("linux/arm/v7", "shared"),
    }
    assert diff.message == (
        "linux/amd64: same layers and config; only A has linux/arm/v6; linux/arm/v7: same layers and config"
    )


def test_a_layer_repeated_in_one_image_is_diffed_as_two(registry: LocalRegistry, factory: ImageFactory) -> None:
    rng = factory.rng
    base, copied = make_layer(700, rng), make_layer(900, rng)
    twice = [{"created_by": "ADD base"}, {"created_by": "COPY f.txt /f.txt"}, {"created_by": "COPY f.txt /f.txt #2"}]
    legacy = {"oci": False, "legacy": True}
    factory.image_with_history("dup", "3", twice, layers=[base, copied, copied], **legacy)
    factory.image_with_history("dup", "2", twice[:2], layers=[base, copied], **legacy)
    digest = {n: "sha256:" + hashlib.sha256(b).hexdigest() for n, (b, _) in {"base": base, "f": copied}.items()}
    size = GcRow.binary(len(copied[0]))
    for a, b, change, verb in (("dup:3", "dup:2", "only in A", "removes"), ("dup:2", "dup:3", "only in B", "adds")):
        result = jindr("-r", registry.address, "diff", a, b)
        CASES.append(f"diff with a layer repeated in {a if change == 'only in A' else b}")
        got = [(r.change, r.key, r.created_by) for r in result.rows if r.what == "layer"]
        assert got == [
            ("shared", digest["base"], "ADD base"),
            ("shared", digest["f"], "COPY f.txt /f.txt"),
            (change, digest["f"], "COPY f.txt /f.txt #2"),
        ]
        assert result.message == f"B {verb} 1 layer ({size})"


def test_platforms_pair_as_containerd_matches_them(registry: LocalRegistry, factory: ImageFactory) -> None:
    client = factory.client
    one = [make_layer(500, factory.rng)]
    written = (("linux", "amd64", ""), ("linux", "arm64", "v8"), ("linux", "arm", ""))
    normal = (("linux", "amd64", ""), ("linux", "arm64", ""), ("linux", "arm", "v7"))
    factory.image_with_history("plat", "a", QUIRKY[:1], layers=one, platforms=written)
    factory.image_with_history("plat", "b", QUIRKY[:1], layers=one, platforms=normal)
    factory.image_with_history("plat", "c", QUIRKY[:1], layers=one, platforms=(("linux", "arm", "v6"),) + normal[:1])
    same = jindr("-r", registry.address, "diff", "plat:a", "plat:b")
    CASES.append("diff pairs linux/arm64/v8 with linux/arm64 and linux/arm with linux/arm/v7")
    assert [r for r in same.rows if r.what != "layer"] == [] and {r.change for r in same.rows} == {"shared"}
    assert same.message == "; ".join(
        f"{p}: same layers and config" for p in ("linux/amd64", "linux/arm64/v8", "linux/arm")
    )
    apart = jindr("-r", registry.address, "diff", "plat:a", "plat:c")
    CASES.append("diff keeps linux/arm/v6 apart from linux/arm (v7)")
    assert [(r.platform, r.change) for r in apart.rows if r.what == "platform"] == [
        ("linux/arm64/v8", "only in A"),
        ("linux/arm", "only in A"),
        ("linux/arm/v6", "only in B"),
    ]
    # Two images of one platform key (Windows builds differ in os.version only): both compared.
    builds = {}
    for version in ("1809", "2022"):
        pushed = factory.image_with_history("win", version, QUIRKY[:1], config={"Env": [f"V={version}"]})
        builds[version] = pushed.digest
    entries = [(builds[v], _plat("windows", "amd64", **{"os.version": f"10.0.{v}"})) for v in ("1809", "2022")]
    _push_index(client, "win", "multi", entries)
    _push_index(client, "win", "reversed", entries[::-1])
    both = jindr("-r", registry.address, "diff", "win:multi", "win:reversed")
    CASES.append("diff of two images with one platform key: paired in index order, none dropped")
    config = [(r.platform, r.key, r.a, r.b) for r in both.rows if r.what == "config"]
    assert config == [
        ("windows/amd64 #1", "ENV V", "1809", "2022"),
        ("windows/amd64 #2", "ENV V", "2022", "1809"),
    ]
    assert both.message.startswith("windows/amd64 #1: B adds 1 layer") and "windows/amd64 #2: B adds" in both.message
    # An image without a platform is named by its digest.
    blob = factory.blob("art", b"\x00not json")
    payload = factory.blob("art", b"payload")
    artifact = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/x-test",
        "config": {"mediaType": "application/x-test-config", "digest": blob, "size": 9},
        "layers": [{"mediaType": "application/x-test", "digest": payload, "size": 7}],
    }
    art = client.put_manifest("art", "v1", json.dumps(artifact).encode(), OCI_MANIFEST)
    odd = jindr("-r", registry.address, "diff", "plat:c", "art:v1")
    CASES.append("diff with an image without a platform: named by its digest")
    assert [(r.platform, r.change, r.key) for r in odd.rows if r.what == "platform"][-1] == (
        art[:19],
        "only in B",
        art,
    )
    assert odd.message.endswith(f"only B has {art[:19]}")


def test_config_and_diff_show_label_values_alike(registry: LocalRegistry, factory: ImageFactory) -> None:
    labels = {"n": 5, "s": "x", "nul": None, "obj": {"k": [1, 2]}, "yes": True}
    factory.image_with_history("lbl", "odd", QUIRKY[:1], config={"Labels": labels})
    factory.image_with_history("lbl", "none", QUIRKY[:1])
    config = jindr("-r", registry.address, "config", "lbl:odd").rows[0].labels
    CASES.append("config and diff show non-text label values alike")
    assert config == {k: v if isinstance(v, str) else json.dumps(v) for k, v in labels.items()}
    diff = jindr("-r", registry.address, "diff", "lbl:odd", "lbl:none").rows
    assert {r.key.removeprefix("LABEL "): r.a for r in diff if r.key.startswith("LABEL ")} == config


def test_storage_and_api_agree_cell_for_cell(process_registry: str) -> None:
    address = process_registry
    with RegistryClient(address) as client:
        f = ImageFactory(client, seed=5)
        rng = f.rng
        base = make_layer(700, rng)
        f.image_with_history(
            "s/one", ["1", "2"], QUIRKY, config=RUNTIME, layers=[base, *(make_layer(90, rng) for _ in range(3))]
        )
        f.image_with_history(
            "s/two",
            "x",
            QUIRKY[:3],
            oci=False,
            legacy=True,
            layers=[base, make_layer(50, rng)],
            platforms=(("linux", "amd64", ""), ("linux", "arm", "v7")),
        )
        f.index("s/att", "latest")  # with attestations
        f.single("plain", "latest")
    commands = [
        ["layers"],
        ["layers", "--attestations"],
        ["layers", "s/one", "plain:latest"],
        ["history", "s/one:1", "s/two:x"],
        ["config", "s/one:2", "s/two:x", "s/att"],
        ["diff", "s/one:1", "s/two:x"],
    ]
    session = Session(address)  # one warm session: its second runs come from the caches
    try:
        for argv in commands:
            local = _frame(jindr("-r", address, *argv))
            api = _frame(jindr("-r", address, argv[0], "--no-local", *argv[1:]))
            warm = _frame(run(session, build_parser().parse_args(["-r", address, *argv])))
            again = _frame(run(session, build_parser().parse_args(["-r", address, *argv])))
            CASES.append(f"storage = API: {' '.join(argv)}")
            assert len(local) > 0
            pd.testing.assert_frame_equal(local, api)
            pd.testing.assert_frame_equal(local, warm)
            pd.testing.assert_frame_equal(local, again)
    finally:
        session.close()


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["layers", "nosuch:1"], "nosuch"),
        (["layers", "nosuch"], "nosuch"),
        (["layers", "app:nosuch"], "nosuch"),
        (["history", "nosuch"], "nosuch"),
        (["history"], "IMAGE"),
        (["config", "app@sha256:" + "0" * 64], "sha256:0000"),
        (["diff", "app:1"], "diff needs two images"),
        (["diff"], "diff needs two images"),
        (["diff", "app:1", "app:1", "app:2"], "unrecognized arguments"),
        (["diff", "app:1", "nosuch:1"], "nosuch"),
        (["diff", "app:1", "Bad Name"], "Bad Name"),
        (["layers", "-j", "0"], "1-64"),
    ],
)
def test_bad_input_is_one_clear_line(registry: LocalRegistry, factory: ImageFactory, argv, needle) -> None:
    factory.image_with_history("app", "1", QUIRKY[:1])
    before = sorted(p.stat().st_mtime_ns for p in registry.storage.rglob("*"))
    with pytest.raises((JindrError, CommandLineError)) as caught:
        jindr("-r", registry.address, *argv)
    CASES.append(f"bad input: {' '.join(argv)}")
    message = str(caught.value)
    assert needle in message and "\n" not in message.strip()
    assert sorted(p.stat().st_mtime_ns for p in registry.storage.rglob("*")) == before


def _docker(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert done.returncode == 0, f"docker {' '.join(args[:2])}: {done.stderr[-800:]}"
    return done.stdout


def test_docker_build_and_push(docker_engine, registry: LocalRegistry, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "a.txt").write_text("the same in both builds\n")
    name = f"{registry.address}/built"
    built = []
    try:
        for n, (greeting, b_text) in enumerate([("hello", "first b\n"), ("bonjour", "second b, longer\n")], 1):
            (context / "b.txt").write_text(b_text)
            (context / "Dockerfile").write_text(
                f"FROM scratch\nCOPY a.txt /a.txt\nENV GREETING={greeting}\nLABEL org.example.build={n}\n"
                "COPY b.txt /b.txt\n"
            )
            _docker("build", "-q", "-t", f"{name}:{n}", str(context))
            _docker("push", "-q", f"{name}:{n}")
            built.append(f"{name}:{n}")
        with RegistryClient(registry.address) as client:
            for tag in ("1", "2"):
                rows = jindr("-r", registry.address, "layers", f"built:{tag}").rows
                CASES.append(f"docker build + push: layers built:{tag}")
                assert check_against_bytes(client, rows, "built", tag) == 2
                assert "/a.txt" in rows[0].created_by and "/b.txt" in rows[1].created_by
                history = jindr("-r", registry.address, "history", f"built:{tag}").rows
                assert [h.empty_layer for h in history] == [False, True, True, False]
                assert "GREETING" in history[1].created_by and history[3].layer_digest == rows[1].layer_digest
            one = jindr("-r", registry.address, "layers", "built:1").rows
            two = jindr("-r", registry.address, "layers", "built:2").rows
        diff = jindr("-r", registry.address, "diff", "built:1", "built:2")
        CASES.append("docker build + push: diff of a rebuild")
        layer = {
            c: [r.key for r in diff.rows if r.what == "layer" and r.change == c]
            for c in ("shared", "only in A", "only in B")
        }
        assert layer == {
            "shared": [one[0].layer_digest],
            "only in A": [one[1].layer_digest],
            "only in B": [two[1].layer_digest],
        }
        changed = {(r.key, r.a, r.b) for r in diff.rows if r.what == "config"}
        assert changed == {("ENV GREETING", "hello", "bonjour"), ("LABEL org.example.build", "1", "2")}
        assert diff.message.startswith("B adds 1 layer") and "ENV GREETING" in diff.message
        config = jindr("-r", registry.address, "config", "built:1", "built:2").rows
        assert [r.labels["org.example.build"] for r in config] == ["1", "2"]
        assert "GREETING=hello" in config[0].env and config[0].platform == "linux/amd64"
    finally:
        subprocess.run(["docker", "rmi", "-f", *built], capture_output=True)


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    need_tool("podman", "podman")
    need_tool("skopeo", "skopeo")
    return Podman(tmp_path_factory.mktemp("podman-store")).build()  # a short path: Podman wants one


@pytest.mark.parametrize("fmt", ["oci", "v2s2"])
def test_podman_multi_platform(registry: LocalRegistry, podman: Podman, fmt: str) -> None:
    podman.push(registry.address, "pod", "multi", fmt)
    rows = jindr("-r", registry.address, "layers", "pod:multi").rows
    CASES.append(f"podman manifest push --all ({fmt})")
    with RegistryClient(registry.address) as client:
        assert check_against_bytes(client, rows, "pod", "multi") == 2
    assert [r.platform for r in rows] == ["linux/amd64", "linux/arm64"]
    assert all("arch.txt" in r.created_by for r in rows) and len({r.layer_digest for r in rows}) == 2
    config = jindr("-r", registry.address, "config", "pod:multi").rows
    assert [r.architecture for r in config] == ["amd64", "arm64"]
    history = jindr("-r", registry.address, "history", "pod:multi").rows
    assert {h.platform for h in history} == {"linux/amd64", "linux/arm64"}
    assert [h.layer_digest for h in history if not h.empty_layer] == [r.layer_digest for r in rows]
    diff = jindr("-r", registry.address, "diff", "pod:multi", "pod:multi")
    assert diff.message.startswith("A and B are the same image")


def test_the_cli_prints_layers(
    registry: LocalRegistry, factory: ImageFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    from jindr_nb import cli

    factory.image_with_history("app", "1", QUIRKY[:1])
    capsys.readouterr()
    assert cli.main(["-r", registry.address, "--json", "layers"]) == 0
    records = json.loads(capsys.readouterr().out)
    CASES.append("CLI --json layers")
    assert [list(r) for r in records] == [
        [
            "registry",
            "repository",
            "tag",
            "platform",
            "position",
            "layer_digest",
            "media_type",
            "size",
            "created_by",
            "shared_by",
            "first_seen",
            "manifest_digest",
        ]
    ]


def test_layers_names_torn_and_unreadable_tags(process_registry: str) -> None:
    address = process_registry
    storage = Path(jindr("-r", address, "status").rows[0].storage)
    with RegistryClient(address) as client:
        f = ImageFactory(client, seed=31)
        good = f.image_with_history("t/torn", "good", QUIRKY[:1])
        torn = f.image_with_history("t/torn", "torn", QUIRKY[:1], created="2026-04-01T00:00:00Z")
        new = f.image_with_history("t/s1", "new", QUIRKY[:1], created="2026-05-01T00:00:00Z")
        f.schema1_in_storage(storage, "t/s1", "old")
        f.schema1_in_storage(storage, "t/s1", "v1")
        sizeless = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"digest": new.digest}]}
        client.put_manifest("t/s1", "odd", json.dumps(sizeless).encode(), OCI_INDEX)  # stored, but malformed
    revisions = storage / "docker/registry/v2/repositories/t/torn/_manifests/revisions/sha256"
    shutil.rmtree(revisions / torn.digest[7:])  # listed, manifest gone: what lsi calls torn
    lsi = jindr("-r", address, "lsi", "t/torn")
    assert "1 torn tag (t/torn:torn)" in lsi.message
    listed = {("good", good.digest), ("new", new.digest)}
    for local in ([], ["--no-local"]):
        for scope in ([], ["t/torn", "t/s1"]):
            result = jindr("-r", address, "layers", *local, *scope)
            CASES.append(f"layers {' '.join(local + scope)}: torn and schema 1 tags named, the rest listed")
            assert {(r.tag, r.manifest_digest) for r in result.rows} == listed
            assert result.message.startswith(lsi.message + "; ")  # the same notice lsi gives, then ...
            unreadable = result.message.removeprefix(lsi.message + "; ")
            skipped = "t/s1:odd (malformed), t/s1:old (Docker schema 1), t/s1:v1 (Docker schema 1)"
            assert unreadable.startswith(f"warning: 3 tags skipped, not a manifest jindr reads: {skipped} — re-push")
            assert "`rmi` the tag" in unreadable and "\n" not in result.message
        with pytest.raises(JindrError) as caught:
            jindr("-r", address, "layers", *local, "t/s1:v1")  # named by the user: an error, not a notice
        CASES.append(f"layers {' '.join(local)} of a schema 1 tag named: one line with what to do")
        message = str(caught.value)
        assert "schema 1" in message and "t/s1:v1" in message and "re-push" in message and "\n" not in message
        with pytest.raises(JindrError) as caught:
            jindr("-r", address, "layers", *local, "t/s1:odd")
        message = str(caught.value)
        assert "malformed descriptor" in message and "\n" not in message
        assert message.endswith("`layers` cannot read t/s1:odd: re-push it with a current client, or `rmi` it")


def test_storage_reports_a_child_lost_after_a_warm_read(process_registry: str) -> None:
    """A kernel's session holds every manifest of a first `layers` parsed; a platform image and an
    attestation deleted afterwards are still reported from storage, as over the API."""
    from jindr_nb.ops.layers import resolve
    from jindr_nb.refs import parse_ref

    address = process_registry
    with RegistryClient(address) as client:
        f = ImageFactory(client, seed=41)
        pushed = f.index("w/app", "latest")  # two platforms, with attestations
        f.index("w/fine", "1")
    session = Session(address)
    try:
        first = run(session, build_parser().parse_args(["-r", address, "layers"]))
        assert not first.message
        assert {r.platform for r in first.rows if r.repository == "w/app"} == {"linux/amd64", "linux/arm64"}
        with RegistryClient(address) as client:
            client.delete_manifest("w/app", pushed.platforms["linux/arm64"])
            client.delete_manifest("w/app", pushed.attestations[0])  # the linux/amd64 image's
        ref = parse_ref(f"{address}/w/app:latest")
        for how, result, fetcher in (
            ("warm session, storage", run(session, build_parser().parse_args(["-r", address, "layers"])), None),
            ("cold CLI, storage", jindr("-r", address, "layers"), session.fetcher(address)),
            ("cold CLI, API", jindr("-r", address, "layers", "--no-local"), session.fetcher(address, local=False)),
        ):
            CASES.append(f"child lost after a warm read: {how}")
            assert "1 broken tag (w/app:latest)" in result.message and "\n" not in result.message, how
            assert {r.platform for r in result.rows if r.repository == "w/app"} == {"linux/amd64"}, how
            assert {r.repository for r in result.rows} == {"w/app", "w/fine"}, how
            if fetcher is not None:  # the same warm cache, each reader asked afresh
                assert resolve(fetcher, ref).missing == ["linux/arm64", "attestation (linux/amd64)"], how
    finally:
        session.close()


def test_storage_reports_a_child_rewritten_after_a_warm_read(
    process_registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel's session re-reads a manifest it holds parsed only while the blob's file is the one it
    verified (its stamp: device, inode, size, mtime, ctime). A platform image's bytes rewritten in
    place afterwards no longer match its digest: storage declines them, and the registry, asked
    instead, fails on them — `layers` says so naming the manifest, from the warm session as from a
    cold CLI, never lists the image from what it held. Put back, the image is listed again."""
    from jindr_nb.client import storage as storage_module
    from jindr_nb.client.storage import StorageLayout

    monkeypatch.setattr(storage_module, "_SETTLED_NS", 0)  # stamps count at once (else for files 2 s old)
    address = process_registry
    root = Path(jindr("-r", address, "status").rows[0].storage).resolve()
    with RegistryClient(address) as client:
        f = ImageFactory(client, seed=43)
        pushed = f.index("r/app", "latest")
        f.index("r/fine", "1")
    child = pushed.platforms["linux/arm64"]
    session = Session(address)
    try:
        for _ in range(2):  # the second read takes the parsed manifests, their stamps checked
            result = run(session, build_parser().parse_args(["-r", address, "layers"]))
            assert not result.message
            assert {r.platform for r in result.rows if r.repository == "r/app"} == {"linux/amd64", "linux/arm64"}
        assert session.fetcher(address).unchanged(child)
        blob = Path(StorageLayout(root).blob_path(child))
        original = blob.read_bytes()
        tampered = bytearray(original)
        tampered[30] = ord("X") if tampered[30] != ord("X") else ord("Y")
        blob.write_bytes(bytes(tampered))
        for how, command in (
            ("warm session, storage", lambda: run(session, build_parser().parse_args(["-r", address, "layers"]))),
            ("cold CLI, storage", lambda: jindr("-r", address, "layers")),
        ):
            CASES.append(f"child rewritten after a warm read: {how}")
            with pytest.raises(JindrError, match=f"r/app@{child}") as caught:
                command()
            assert "\n" not in str(caught.value), how
        blob.write_bytes(original)
        again = run(session, build_parser().parse_args(["-r", address, "layers"]))
        assert not again.message
        assert {r.platform for r in again.rows if r.repository == "r/app"} == {"linux/amd64", "linux/arm64"}
    finally:
        session.close()


def _hostile_index_in_storage(storage: Path, repository: str, tag: str, children: list[dict]) -> str:
    """An index whose children's "digest"s are whatever `children` say, written straight into the
    registry's storage (its API refuses such an index on PUT) and tagged `tag`; its digest."""
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}).encode()
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    v2 = storage / "docker" / "registry" / "v2"
    blob = v2 / "blobs" / "sha256" / digest[7:9] / digest[7:] / "data"
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(raw)
    base = v2 / "repositories" / repository / "_manifests"
    for link in (
        base / "revisions" / "sha256" / digest[7:],
        base / "tags" / tag / "current",
        base / "tags" / tag / "index" / "sha256" / digest[7:],
    ):
        link.mkdir(parents=True, exist_ok=True)
        (link / "link").write_text(digest)
    return digest


def test_a_child_digest_that_is_a_path_is_missing_and_never_read(
    process_registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index child whose "digest" is `v1/../v1` (the tag v1, were it read as one) or climbs out of
    the storage directory is a broken child — the registry refuses such an index — from storage and
    over the API alike; no file outside the storage directory is opened for it."""
    import os

    from jindr_nb.ops.layers import resolve
    from jindr_nb.refs import parse_ref

    address = process_registry
    storage = Path(jindr("-r", address, "status").rows[0].storage).resolve()
    with RegistryClient(address) as client:
        f = ImageFactory(client, seed=44)
        lone = f.single("h/app", "v1")  # what `v1/../v1` would name as a tag
        raw, good, _, _ = f.image_manifest("h/app", ("linux", "amd64", ""))
    outside = (tmp_path / "outside").resolve()
    (outside / "current").mkdir(parents=True)
    (outside / "current" / "link").write_text(lone.digest)  # what the climb would read
    climb = "v1/" + "../" * 40 + str(outside).lstrip("/")
    children = [
        {"mediaType": OCI_MANIFEST, "digest": digest, "size": size, "platform": {"os": "linux", "architecture": arch}}
        for digest, size, arch in ((good, len(raw), "amd64"), ("v1/../v1", 10, "s390x"), (climb, 10, "ppc64le"))
    ]
    top = _hostile_index_in_storage(storage, "h/app", "bad", children)
    opened: list[str] = []
    real_open = os.open

    def spy(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - os.open's own signature
        opened.append(os.path.realpath(os.fsdecode(path)) if isinstance(path, str | bytes) else str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    session = Session(address)
    try:
        ref = parse_ref(f"{address}/h/app:bad")
        for how, argv in (("storage", ["layers", "h/app:bad"]), ("API", ["layers", "--no-local", "h/app:bad"])):
            CASES.append(f"child digest that is a path: {how}")
            found = resolve(session.fetcher(address, local=how == "storage"), ref)
            assert found.digest == top, how
            assert found.missing == ["linux/s390x", "linux/ppc64le"], how
            assert [image.manifest.digest for image in found.images] == [good], how
            result = jindr("-r", address, *argv)
            assert {r.platform for r in result.rows} == {"linux/amd64"}, how
            assert {r.manifest_digest for r in result.rows} == {good}, how
            assert "broken" in result.message and "h/app:bad" in result.message, how
            for command in ("history", "config"):
                rows = jindr("-r", address, command, *argv[1:]).rows
                assert {r.platform for r in rows} == {"linux/amd64"}, (how, command)
            local = argv[1:-1]
            diff = jindr("-r", address, "diff", *local, "h/app:bad", "h/app:v1")
            assert "A has lost linux/s390x; A has lost linux/ppc64le" in diff.message, how
            assert jindr("-r", address, "lsi", *local, "h/app:bad").rows[0].missing == found.missing, how
            kinds = [r.kind for r in jindr("-r", address, "inspect", *local, "h/app:bad").rows]
            assert kinds == ["index", "image", "missing", "missing"], how
        assert not [p for p in opened if p.startswith(str(outside))], "a file outside storage was opened"
    finally:
        session.close()
