"""`load` never collapses images, and every copy row says whether it moved a tag.

Layouts with several images made by the real tools (umoci's own layouts, `skopeo copy` twice into
one `oci:DIR:NAME`), `docker save` tarballs written by `skopeo copy docker-archive:`, pushed into
the real registry binary. An ambiguous load is refused in one line and leaves the registry's
storage tree byte-identical; a chosen image arrives alone, with its layout digest.

Every case tried is counted into `tests/.counts/safety_load.json` for the README.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from clients import need_tool
from IPython.core.interactiveshell import InteractiveShell
from jindr_run import jindr
from rig import ImageFactory, LocalRegistry, start_registry, write_counts

from jindr_nb.client import RegistryClient
from jindr_nb.errors import CommandLineError, InvalidReference, JindrError

CASES: list[str] = []
CLI = str(Path(sys.executable).parent / "jindr")


def case(name: str) -> None:
    CASES.append(name)


@pytest.fixture(scope="module", autouse=True)
def _write_counts():
    yield
    write_counts("safety_load", safety_cases=len(CASES), cases=CASES)


def _run(*argv: str) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (argv, done.stderr)


# ---- what is in a layout, and what is in the registry ------------------------------------------


@dataclass
class Layout:
    path: Path
    names: dict[str, str]  # org.opencontainers.image.ref.name -> descriptor digest

    def blob(self, digest: str) -> Path:
        return self.path / "blobs" / "sha256" / digest.partition(":")[2]

    def closure(self, digest: str) -> set[str]:
        """The digests `digest` stands for in this layout: itself, present children, configs, layers."""
        found = {digest}
        doc = json.loads(self.blob(digest).read_bytes())
        for child in doc.get("manifests") or []:
            if self.blob(child["digest"]).exists():
                found |= self.closure(child["digest"])
        for blob in [doc["config"], *doc.get("layers", [])] if "config" in doc else []:
            found.add(blob["digest"])
        return found


def _layout(path: Path) -> Layout:
    index = json.loads((path / "index.json").read_text())
    names = {d["annotations"]["org.opencontainers.image.ref.name"]: d["digest"] for d in index["manifests"]}
    return Layout(path, names)


def _tree(root: Path) -> str:
    """One hash of a storage tree: every path (directories too) and every file's bytes."""
    hasher = hashlib.sha256()
    for item in sorted(root.rglob("*")):
        hasher.update(str(item.relative_to(root)).encode() + b"\0")
        if item.is_file():
            hasher.update(item.read_bytes())
    return hasher.hexdigest()


def _stored_blobs(registry: LocalRegistry) -> set[str]:
    """Every blob (manifests included) in the registry's storage."""
    blobs = registry.storage / "docker" / "registry" / "v2" / "blobs" / "sha256"
    return {"sha256:" + data.parent.name for data in blobs.glob("*/*/data")}


def _tags(registry: LocalRegistry) -> dict[str, str]:
    """{"repo:tag": digest} for the whole registry, through its API."""
    found = {}
    with RegistryClient(registry.address) as c:
        for repository in c.catalog():
            for tag in c.tags(repository):
                found[f"{repository}:{tag}"] = c.get_manifest(repository, tag).digest
    return found


def _refused(registry: LocalRegistry, *argv: str, error: type[JindrError] = InvalidReference) -> str:
    """`load ...` is refused with `error` in one line and the storage tree is byte-identical."""
    before = _tree(registry.storage)
    with pytest.raises(error) as caught:
        jindr("-r", registry.address, "load", *argv)
    message = str(caught.value)
    assert "\n" not in message and len(message) > 20, message
    assert _tree(registry.storage) == before, f"load {argv} changed the registry's storage"
    return message


def _loaded(registry: LocalRegistry, *argv: str) -> list:
    return jindr("-r", registry.address, "load", *argv).rows


# ---- the layouts, made by the real tools -------------------------------------------------------


@pytest.fixture()
def umoci_layout(tmp_path: Path) -> Layout:
    """A three-image umoci layout; each image gets its own file, so its own layer and digest."""
    need_tool("umoci", "umoci")
    path = tmp_path / "umoci"
    _run("umoci", "init", "--layout", str(path))
    for name in ("one", "two", "three"):
        content = tmp_path / f"{name}.txt"
        content.write_text(f"the {name} image, {os.getpid()}\n")
        _run("umoci", "new", "--image", f"{path}:{name}")
        _run("umoci", "insert", "--rootless", "--image", f"{path}:{name}", str(content), f"/data/{name}.txt")
    _run("umoci", "gc", "--layout", str(path))
    layout = _layout(path)
    assert sorted(layout.names) == ["one", "three", "two"] and len(set(layout.names.values())) == 3
    return layout


@pytest.fixture()
def source(registry: LocalRegistry, tmp_path: Path) -> LocalRegistry:
    """A second real registry, the one skopeo and cp copy from (so the target only gets what jindr pushes)."""
    reg = start_registry(tmp_path / "source")
    yield reg
    reg.stop()


@pytest.fixture()
def skopeo_layout(source: LocalRegistry, tmp_path: Path) -> Layout:
    """`skopeo copy` twice into one layout: a multi-platform index (with --all) and a single image."""
    need_tool("skopeo", "skopeo")
    with RegistryClient(source.address) as c:
        factory = ImageFactory(c, seed=11)
        factory.index("src/alpha", "1")
        factory.single("src/beta", "2", oci=True)
    path = tmp_path / "skopeo"
    for image, name, extra in (("src/alpha:1", "sk/alpha:1", ["--all"]), ("src/beta:2", "sk/beta:2", [])):
        _run(
            "skopeo",
            "copy",
            *extra,
            "--src-tls-verify=false",
            f"docker://{source.address}/{image}",
            f"oci:{path}:{name}",
        )
    layout = _layout(path)
    assert sorted(layout.names) == ["sk/alpha:1", "sk/beta:2"] and len(set(layout.names.values())) == 2
    return layout


def _short(digest: str) -> str:
    return digest[: len("sha256:") + 12]


# ---- umoci: three images, named by bare tags ---------------------------------------------------


def test_umoci_layout_with_one_target_is_refused_and_changes_nothing(registry, umoci_layout: Layout) -> None:
    layout = umoci_layout
    for target in ("dst/app:1", "dst/app"):
        message = _refused(registry, str(layout.path), target)
        for name, digest in layout.names.items():
            assert name in message and _short(digest) in message, message
        assert "--name" in message and "--all" in message, message
        case(f"umoci 3-image layout to one IMAGE ({target}): refused in one line, storage unchanged")
    message = _refused(registry, str(layout.path))
    assert all(name in message for name in layout.names) and "--all" in message, message
    case("umoci layout without IMAGE (bare ref.names): refused, names listed, storage unchanged")
    message = _refused(registry, str(layout.path), "dst/app:1", "--name", "four")
    assert "'four'" in message and all(name in message for name in layout.names), message
    case("--name matching no image: refused listing the names there are")
    message = _refused(registry, f"{layout.path}:four", "dst/app:1")
    assert "'four'" in message, message
    case("PATH:NAME matching no image: refused")
    message = _refused(registry, str(layout.path), "dst/app:1", "--all")
    assert "repository without a tag" in message, message
    case("--all with IMAGE repo:tag: refused")
    message = _refused(registry, f"{layout.path}:one", "--name", "two", error=CommandLineError)
    assert "'one'" in message and "'two'" in message, message
    case("PATH:NAME and a different --name: refused")
    message = _refused(registry, f"{layout.path}:three")
    assert "only names the tag 'three'" in message, message
    case("PATH:NAME with a bare tag and no IMAGE: refused, asks for IMAGE")
    with pytest.raises(CommandLineError, match="not allowed with"):
        jindr("-r", registry.address, "load", str(layout.path), "dst/app", "--name", "one", "--all")
    case("--name with --all: usage error")
    digest = layout.names["one"]
    message = _refused(registry, str(layout.path), f"dst/app@{digest}")
    assert "--name DIGEST" in message, message
    case("IMAGE given by digest: refused, points at --name")
    assert _tags(registry) == {} and _stored_blobs(registry) == set()


def test_the_refusal_is_one_line_in_both_faces(registry, umoci_layout: Layout) -> None:
    before = _tree(registry.storage)
    argv = ["-r", registry.address, "load", str(umoci_layout.path), "dst/app:1"]
    done = subprocess.run([CLI, *argv], capture_output=True, text=True, timeout=60)
    lines = done.stderr.rstrip("\n").split("\n")
    assert done.returncode == 1 and done.stdout == "" and len(lines) == 1, done.stderr
    assert lines[0].startswith("jindr: ") and "Traceback" not in done.stderr
    assert all(_short(d) in lines[0] for d in umoci_layout.names.values()), lines
    case("ambiguous load through the executable: exit 1, one line on stderr")
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "jindr_nb")
    # In a notebook jindr's own errors show as one line under their own name (not a UsageError).
    with pytest.raises(InvalidReference) as caught:
        shell.run_line_magic("jindr", " ".join(argv))
    shown = caught.value._render_traceback_()  # what IPython prints instead of a traceback
    assert len(shown) == 1 and shown[0].startswith("InvalidReference: ")
    assert all(name in shown[0] for name in umoci_layout.names)
    case("ambiguous load through %jindr: one line under jindr's own error name")
    assert _tree(registry.storage) == before


@pytest.mark.parametrize("spelling", ["--name", "PATH:NAME", "digest"])
def test_umoci_layout_one_named_image_arrives_alone(registry, umoci_layout: Layout, spelling: str) -> None:
    layout = umoci_layout
    digest = layout.names["two"]
    argv = {
        "--name": [str(layout.path), "dst/app:1", "--name", "two"],
        "PATH:NAME": [f"{layout.path}:two", "dst/app:1"],
        "digest": [str(layout.path), "dst/app:1", "--name", _short(digest)],
    }[spelling]
    rows = _loaded(registry, *argv)
    assert [(r.destination, r.digest, r.action, r.previous_digest) for r in rows] == [
        (f"{registry.address}/dst/app:1", digest, "pushed", "")
    ]
    assert _tags(registry) == {"dst/app:1": digest}
    assert _stored_blobs(registry) == layout.closure(digest)  # nothing of the other two
    case(f"umoci layout, one image picked by {spelling}: exactly it, with its layout digest")


def test_umoci_layout_all_into_a_repository(registry, umoci_layout: Layout) -> None:
    layout = umoci_layout
    rows = _loaded(registry, str(layout.path), "dst/app", "--all")
    assert sorted((r.destination, r.digest, r.action) for r in rows) == sorted(
        (f"{registry.address}/dst/app:{name}", digest, "pushed") for name, digest in layout.names.items()
    )
    assert _tags(registry) == {f"dst/app:{name}": digest for name, digest in layout.names.items()}
    assert _stored_blobs(registry) == set().union(*(layout.closure(d) for d in layout.names.values()))
    case("umoci layout --all into a repository: each under its ref.name tag, right digests")
    message = _refused(registry, str(layout.path), "--all")
    assert "repository:tag" in message, message
    case("--all without IMAGE on bare ref.names: refused, storage unchanged")


def test_all_refuses_images_without_a_name(registry, umoci_layout: Layout, tmp_path: Path) -> None:
    path = tmp_path / "unnamed"
    shutil.copytree(umoci_layout.path, path)
    index = json.loads((path / "index.json").read_text())
    del index["manifests"][1]["annotations"]  # as a hand-assembled layout may be
    (path / "index.json").write_text(json.dumps(index))
    unnamed = index["manifests"][1]["digest"]
    message = _refused(registry, str(path), "dst/app", "--all")
    assert _short(unnamed) in message and "--name DIGEST" in message, message
    case("--all with an image lacking ref.name: refused, naming it by digest")
    rows = _loaded(registry, str(path), "dst/app:x", "--name", unnamed)
    assert [r.digest for r in rows] == [unnamed] and _tags(registry) == {"dst/app:x": unnamed}
    case("the unnamed image picked by its full digest")


# ---- skopeo: two images, named by full references ----------------------------------------------


def test_skopeo_layout_with_one_target_is_refused(registry, skopeo_layout: Layout) -> None:
    message = _refused(registry, str(skopeo_layout.path), "dst/x:1")
    for name, digest in skopeo_layout.names.items():
        assert name in message and _short(digest) in message, message
    assert _tags(registry) == {} and _stored_blobs(registry) == set()
    case("skopeo 2-image layout to one IMAGE: refused in one line, storage unchanged")


@pytest.mark.parametrize("spelling", ["--name", "PATH:NAME"])
def test_skopeo_layout_one_named_image_arrives_alone(registry, skopeo_layout: Layout, spelling: str) -> None:
    layout = skopeo_layout
    for name in layout.names:  # the index (with its platforms) and the single image, one per round
        digest = layout.names[name]
        repo = "dst/" + name.partition(":")[0].rpartition("/")[2]
        argv = (
            [str(layout.path), f"{repo}:v", "--name", name]
            if spelling == "--name"
            else [f"{layout.path}:{name}", f"{repo}:v"]
        )
        before = _stored_blobs(registry)
        rows = _loaded(registry, *argv)
        assert [(r.destination, r.digest) for r in rows] == [(f"{registry.address}/{repo}:v", digest)]
        assert _stored_blobs(registry) - before == layout.closure(digest) - before
        assert _stored_blobs(registry) <= before | layout.closure(digest)
    assert _tags(registry) == {f"dst/{n.partition(':')[0].rpartition('/')[2]}:v": d for n, d in layout.names.items()}
    case(f"skopeo layout, each image picked by {spelling} (a name holding ':'): exactly it")


def test_skopeo_layout_all_and_default(registry, skopeo_layout: Layout) -> None:
    layout = skopeo_layout
    rows = _loaded(registry, str(layout.path))
    assert sorted((r.destination, r.digest, r.action) for r in rows) == sorted(
        (f"{registry.address}/{name}", digest, "pushed") for name, digest in layout.names.items()
    )
    assert _tags(registry) == layout.names
    case("skopeo layout without IMAGE: each image under its own full ref.name")
    rows = _loaded(registry, str(layout.path), "--all")
    assert sorted((r.destination, r.action, r.previous_digest) for r in rows) == sorted(
        (f"{registry.address}/{name}", "unchanged", digest) for name, digest in layout.names.items()
    )
    assert all(r.bytes_copied == 0 for r in rows)
    case("the same layout again with --all: every row unchanged, nothing moved")
    rows = _loaded(registry, str(layout.path), "dst/x", "--all")
    assert sorted((r.destination, r.digest) for r in rows) == sorted(
        (f"{registry.address}/dst/x:{name.rpartition(':')[2]}", digest) for name, digest in layout.names.items()
    )
    case("skopeo layout --all into a repository: each ref.name's tag there")


# ---- paths with ':' ----------------------------------------------------------------------------


def test_paths_with_colons(registry, umoci_layout: Layout, tmp_path: Path) -> None:
    odd = tmp_path / "lay:out"
    shutil.copytree(umoci_layout.path, odd)
    rows = _loaded(registry, str(odd), "dst/odd:1", "--name", "one")
    assert [r.digest for r in rows] == [umoci_layout.names["one"]]
    case("a layout whose path holds ':' is taken whole")
    rows = _loaded(registry, f"{odd}:three", "dst/odd:3")
    assert [r.digest for r in rows] == [umoci_layout.names["three"]]
    case("PATH:NAME where PATH itself holds ':'")
    message = _refused(registry, f"{odd}:")
    assert "nothing after ':'" in message, message
    case("PATH: with an empty NAME: refused")
    (tmp_path / "lay").mkdir()
    (tmp_path / "lay" / "out:two").mkdir()
    message = _refused(registry, f"{tmp_path / 'lay'}:out:two")
    assert "ambiguous" in message and "--name" in message, message
    case("PATH:NAME that two existing paths could split: refused, asks for --name")


# ---- moved tags --------------------------------------------------------------------------------


def test_layout_load_that_moves_a_tag_says_so(registry, umoci_layout: Layout) -> None:
    one, two = umoci_layout.names["one"], umoci_layout.names["two"]
    first = _loaded(registry, str(umoci_layout.path), "dst/m:v", "--name", "one")[0]
    assert (first.action, first.previous_digest, first.digest) == ("pushed", "", one)
    moved = _loaded(registry, f"{umoci_layout.path}:two", "dst/m:v")[0]
    assert (moved.action, moved.previous_digest, moved.digest) == ("moved", one, two)
    assert _tags(registry) == {"dst/m:v": two}
    case("layout load over an existing tag: moved, with the old digest")
    again = _loaded(registry, f"{umoci_layout.path}:two", "dst/m:v")[0]
    assert (again.action, again.previous_digest, again.bytes_copied) == ("unchanged", two, 0)
    case("the same layout load again: unchanged")


def test_tarball_load_that_moves_a_tag_says_so(registry, source: LocalRegistry, tmp_path: Path) -> None:
    need_tool("skopeo", "skopeo")
    with RegistryClient(source.address) as c:
        factory = ImageFactory(c, seed=23)
        factory.single("src/x", "1")
        factory.single("src/y", "1")
    tarballs = {}
    for name in ("x", "y"):  # `docker save` archives, both naming their image tb/app:1
        tarballs[name] = tmp_path / f"{name}.tar"
        _run(
            "skopeo",
            "copy",
            "--src-tls-verify=false",
            f"docker://{source.address}/src/{name}:1",
            f"docker-archive:{tarballs[name]}:tb/app:1",
        )
    first = _loaded(registry, str(tarballs["x"]))[0]
    assert (first.destination, first.action, first.previous_digest) == (f"{registry.address}/tb/app:1", "pushed", "")
    moved = _loaded(registry, str(tarballs["y"]))[0]
    assert (moved.action, moved.previous_digest) == ("moved", first.digest) and moved.digest != first.digest
    assert _tags(registry) == {"tb/app:1": moved.digest}
    case("docker save tarball over an existing tag: moved, with the old digest")
    again = _loaded(registry, str(tarballs["y"]))[0]
    assert (again.action, again.previous_digest, again.digest, again.bytes_copied) == (
        "unchanged",
        moved.digest,
        moved.digest,
        0,
    )
    case("the same tarball again: unchanged")
    both = tmp_path / "both.tar"  # one image under two names is one image, not an ambiguity
    _run(
        "skopeo",
        "copy",
        "--src-tls-verify=false",
        "--additional-tag",
        "tb/app:2",
        f"docker://{source.address}/src/x:1",
        f"docker-archive:{both}:tb/app:1",
    )
    rows = _loaded(registry, str(both), "tb/other:1")
    assert [(r.destination, r.digest, r.action) for r in rows] == [
        (f"{registry.address}/tb/other:1", first.digest, "pushed")
    ]
    case("a tarball naming one image twice, to one IMAGE: loaded once, not refused")


def test_cp_rows_say_moved_and_unchanged(registry, source: LocalRegistry) -> None:
    with RegistryClient(source.address) as c:
        factory = ImageFactory(c, seed=31)
        a = factory.single("src/a", "1")
        b = factory.single("src/b", "1")
    argv = ["-r", source.address, "cp"]
    first = jindr(*argv, "src/a:1", registry.address, "--to", "c", "--tag", "stable").rows[0]
    assert (first.action, first.previous_digest, first.digest) == ("pushed", "", a.digest)
    moved = jindr(*argv, "src/b:1", registry.address, "--to", "c", "--tag", "stable").rows[0]
    assert (moved.action, moved.previous_digest, moved.digest) == ("moved", a.digest, b.digest)
    assert _tags(registry) == {"c:1": b.digest, "c:stable": b.digest}
    case("cp over an existing tag: moved, with the old digest")
    again = jindr(*argv, "src/b:1", registry.address, "--to", "c", "--tag", "stable").rows[0]
    assert (again.action, again.previous_digest) == ("unchanged", b.digest)
    case("the same cp again: unchanged")
    jindr(*argv, "src/a:1", registry.address, "--to", "d")
    extra = jindr(*argv, "src/a:1", registry.address, "--to", "d", "--tag", "stable").rows[0]
    assert (extra.action, extra.previous_digest) == ("pushed", "")  # d:1 unchanged, d:stable new
    case("cp whose extra --tag is new: pushed")
    pinned = f"src/b@{b.digest}"
    rows = [jindr(*argv, pinned, registry.address, "--to", "e").rows[0] for _ in range(2)]
    assert [(r.action, r.previous_digest) for r in rows] == [("pushed", ""), ("unchanged", b.digest)]
    case("cp by digest: pushed, then unchanged")
