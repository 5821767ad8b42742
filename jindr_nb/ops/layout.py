"""`load` and `save`: images in and out of the registry as files, without Docker.

Reads `docker save` tarballs (the classic `manifest.json` format, and the OCI layout that newer
Docker writes) and OCI image layouts (a directory, or a tar of one); writes OCI image layouts.
Blobs are streamed, skipped when the registry has them, and manifests keep their exact bytes, so
`save` then `load` gives back identical digests.

`load` never collapses images: an archive holding several different images goes to one IMAGE only
when `name` picks one of them, and all of them only when asked (`all_images`), each under its own
name. What goes where is decided, and refused when ambiguous, before the first blob is pushed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO

from ..client import RegistryClient
from ..errors import IntegrityError, InvalidReference, NotFound
from ..models import (
    DOCKER_CONFIG,
    DOCKER_MANIFEST,
    OCI_INDEX,
    CopyRow,
    Index,
    Manifest,
    config_platform,
    parse_manifest,
)
from ..refs import Ref, parse_ref
from .copy import current_digest, tag_action
from .fetch import blob_present, fetch_manifest
from .graph import walk

__all__ = ["archive_path", "load", "save"]

REF_NAME = "org.opencontainers.image.ref.name"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
READ = 1024 * 1024
SHOWN = 8  # images an error line lists before "and N more"


class _Source:
    """Files of an image archive: a directory or a tar, read by relative path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tar: tarfile.TarFile | None = None
        self.members: dict[str, tarfile.TarInfo] = {}
        if path.is_dir():
            return
        try:
            self.tar = tarfile.open(path)
        except (tarfile.TarError, OSError) as exc:
            raise InvalidReference(f"cannot read {path}: not a directory or a tar archive ({exc})") from None
        for member in self.tar.getmembers():
            if member.isfile():
                self.members[os.path.normpath(member.name).lstrip("./")] = member

    def exists(self, name: str) -> bool:
        if self.tar is None:
            return (self.path / name).is_file()
        return os.path.normpath(name) in self.members

    def size(self, name: str) -> int:
        if self.tar is None:
            return (self.path / name).stat().st_size
        return self.members[os.path.normpath(name)].size

    def open(self, name: str) -> BinaryIO:
        if self.tar is None:
            return open(self.path / name, "rb")
        handle = self.tar.extractfile(self.members[os.path.normpath(name)])
        assert handle is not None
        return handle  # type: ignore[return-value]

    def read(self, name: str) -> bytes:
        with self.open(name) as fh:
            return fh.read()

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()


@dataclass
class _Image:
    """One named entry of an archive: its top manifest, its name, and where each blob comes from.

    `name` is what it is pushed as without IMAGE (a full reference, or a bare tag as skopeo and
    umoci write); `aliases` are every spelling `--name` accepts for it.
    """

    top: Manifest | Index
    children: list[Manifest]
    name: str
    blobs: dict[str, tuple[str, int]]  # digest -> (file in the archive, size)
    aliases: frozenset[str] = frozenset()


def _chunks(handle: BinaryIO, progress: Callable[[int], None]) -> Iterator[bytes]:
    while True:
        chunk = handle.read(READ)
        if not chunk:
            return
        progress(len(chunk))
        yield chunk


def archive_path(text: str) -> tuple[Path, str | None]:
    """`PATH` or `PATH:NAME` (skopeo's `oci:DIR:NAME` spelling) → (path, NAME or None).

    A path that exists is taken whole, so paths with ':' keep working. Otherwise it splits at the
    one ':' whose left side exists (names may hold ':' themselves, e.g. `app:1.0`); when no left
    side exists the path is reported missing, and when two do the user is asked for `--name`.
    """
    whole = Path(text).expanduser()
    if whole.exists() or ":" not in text:
        return whole, None
    found = [
        (Path(text[:i]).expanduser(), text[i + 1 :])
        for i, char in enumerate(text)
        if char == ":" and i and Path(text[:i]).expanduser().exists()
    ]
    if not found:
        return whole, None
    if len(found) > 1:
        raise InvalidReference(
            f"{text!r} is ambiguous: both {found[0][0]} and {found[1][0]} exist; give the path alone "
            "and the image with --name NAME"
        )
    path, name = found[0]
    if not name:
        raise InvalidReference(f"{text!r} has nothing after ':'; give PATH alone, or PATH:NAME to pick one image")
    return path, name


def load(
    client: RegistryClient,
    path: Path,
    target: Ref | None = None,
    *,
    name: str | None = None,
    all_images: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[CopyRow]:
    """Push the images in the archive at `path`; one row per tag pushed.

    `target` (IMAGE) names one image; an archive with several different images needs `name` (its
    ref.name, RepoTag or digest) to pick one, or `all_images` to push each under its own name (in
    `target`'s repository when given). Without `target`, every image goes under its own name. The
    plan is checked whole before anything is pushed: an ambiguous or unnamed image changes nothing.
    """
    started = time.perf_counter()
    if not path.exists():
        raise InvalidReference(f"{path} does not exist")
    if name is not None and all_images:
        raise InvalidReference("--name picks one image and --all takes every one: give only one of them")
    if target is not None and target.digest:
        raise InvalidReference(
            f"load tags what it pushes: give IMAGE as repo or repo:tag, not a digest ({target}); "
            "to pick an image by digest use --name DIGEST"
        )
    source = _Source(path)
    try:
        if source.exists("index.json") and source.exists("oci-layout"):
            images = _oci_images(source)
        elif source.exists("manifest.json"):
            images = _docker_save_images(source)
        else:
            raise InvalidReference(f"{path} is neither an OCI image layout nor a `docker save` archive")
        plan = _plan(images, target, name=name, all_images=all_images, registry=client.registry, label=str(path))
        return [_push(client, source, image, ref, started, progress) for image, ref in plan]
    finally:
        source.close()


def _short(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:12]}"


def _distinct(images: list[_Image]) -> dict[str, list[_Image]]:
    """Entries grouped by their top digest, in archive order: one group per different image."""
    groups: dict[str, list[_Image]] = {}
    for image in images:
        groups.setdefault(image.top.digest, []).append(image)
    return groups


def _listing(groups: dict[str, list[_Image]]) -> str:
    """`one=sha256:b88ccc89b156, two=sha256:3e18d99df600`: each image's names and short digest, one line."""
    parts = []
    for digest, entries in list(groups.items())[:SHOWN]:
        names = "+".join(dict.fromkeys(e.name for e in entries if e.name)) or "(no name)"
        parts.append(f"{names}={_short(digest)}")
    if len(groups) > SHOWN:
        parts.append(f"and {len(groups) - SHOWN} more")
    return ", ".join(parts)


def _select(images: list[_Image], name: str, label: str) -> list[_Image]:
    """The entries `--name` picks: by ref.name / RepoTag, else by digest (a prefix of 12+ hex digits)."""
    chosen = [image for image in images if name in image.aliases]
    if not chosen and name.startswith("sha256:") and len(name) >= len("sha256:") + 12:
        chosen = [image for image in images if image.top.digest.startswith(name)]
    groups = _distinct(chosen)
    if not groups:
        raise InvalidReference(
            f"{label} has no image named {name!r}; its images are {_listing(_distinct(images))}: give one of "
            "these names, or a digest, to --name"
        )
    if len(groups) > 1:
        raise InvalidReference(
            f"{name!r} matches {len(groups)} different images in {label} ({_listing(groups)}): "
            "give a name or a longer digest to --name"
        )
    return chosen


def _plan(
    images: list[_Image], target: Ref | None, *, name: str | None, all_images: bool, registry: str, label: str
) -> list[tuple[_Image, Ref]]:
    """Where each image goes, or an error before anything is pushed: never two images to one tag."""
    if not images:
        raise InvalidReference(f"{label} holds no image")
    if name is not None:
        images = _select(images, name, label)
    groups = _distinct(images)
    several = len(groups) > 1
    if all_images:
        if target is not None and target.tag:
            raise InvalidReference(
                f"--all pushes each image under its own tag, so IMAGE must be a repository without a tag "
                f"(not {target}); or pick one image with --name NAME"
            )
        unnamed = {d: e for d, e in groups.items() if not any(i.name for i in e)}
        if unnamed:
            raise InvalidReference(
                f"--all needs a name for every image, but {len(unnamed)} in {label} have no {REF_NAME} "
                f"({_listing(unnamed)}): load each of those with --name DIGEST and IMAGE"
            )
    elif several and target is not None and target.tag:
        raise InvalidReference(
            f"{label} holds {len(groups)} different images ({_listing(groups)}) and IMAGE {target} can take "
            "only one: pick it with --name NAME (or PATH:NAME), or give IMAGE as a repository with --all "
            "to push each under its own tag"
        )
    elif several and target is not None:
        raise InvalidReference(
            f"{label} holds {len(groups)} different images ({_listing(groups)}): pick one for {target} with "
            f"--name NAME (or PATH:NAME), or add --all to push each under its own tag in {target}"
        )
    plan: list[tuple[_Image, Ref]] = []
    unnamed_bare: list[_Image] = []
    seen: dict[str, str] = {}  # destination -> digest
    for image in images:
        ref = _name(image, target, registry, several=several)
        if ref is None:
            unnamed_bare.append(image)
            continue
        key = str(ref)
        if key in seen:
            if seen[key] != image.top.digest:
                raise InvalidReference(
                    f"two different images in {label} would both be pushed as {key} "
                    f"({_short(seen[key])} and {_short(image.top.digest)}): pick one with --name NAME and IMAGE"
                )
            continue  # the same image under the same name twice: push it once
        seen[key] = image.top.digest
        plan.append((image, ref))
    planned = {image.top.digest for image, _ in plan}
    unnamed_bare = [image for image in unnamed_bare if image.top.digest not in planned]  # named elsewhere
    if unnamed_bare:
        if len(groups) == 1:
            only = unnamed_bare[0].name
            hint = f" (it only names the tag {only!r})" if only else ""
            raise InvalidReference(f"the archive does not name its image{hint}: give one, e.g. `load PATH myimage`")
        raise InvalidReference(
            f"{label} holds {len(groups)} images, and {len(_distinct(unnamed_bare))} are not named as "
            f"repository:tag ({_listing(_distinct(unnamed_bare))}): give a repository and --all "
            "(`load PATH REPO --all`), or pick one with --name NAME and give IMAGE"
        )
    return plan


def _name(image: _Image, target: Ref | None, registry: str, *, several: bool = False) -> Ref | None:
    """The reference an archived image is pushed as: IMAGE when given, else the archive's own name.

    OCI layouts may name an image by a bare tag (`1.0`, as skopeo writes) or a full reference;
    `docker save` names it by repository:tag. None when the archive does not name the repository
    and no IMAGE does either.
    """
    name = image.name
    full = "/" in name or ":" in name
    own_tag = name.rpartition(":")[2] if full and ":" in name.rpartition("/")[2] else ("" if full else name)
    if target is not None:
        if target.tag and not several:
            return target
        return target.with_tag(own_tag or "latest")
    if not full:
        return None
    return parse_ref(_strip_registry(name), registry)


def _push(
    client: RegistryClient,
    source: _Source,
    image: _Image,
    ref: Ref,
    started: float,
    progress: Callable[[int, int], None] | None,
) -> CopyRow:
    repo = ref.repository
    copied = skipped = moved = 0
    todo = []
    for digest, (name, size) in image.blobs.items():
        if blob_present(client, repo, digest):
            skipped += 1
        else:
            todo.append((digest, name, size))
    total = sum(size for _, _, size in todo)
    done = [0]

    def advance(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], total)

    if progress is not None:
        progress(0, total)
    for digest, name, size in todo:
        with source.open(name) as handle:
            client.upload_blob(repo, _chunks(handle, advance), digest, size=size)
        copied += 1
        moved += size
    tag = ref.tag or "latest"
    previous = current_digest(client, repo, tag)  # read before tagging: did this load move the tag?
    for child in image.children:
        client.put_manifest(repo, child.digest, child.raw, child.media_type)
    client.put_manifest(repo, image.top.digest, image.top.raw, image.top.media_type)
    client.put_manifest(repo, tag, image.top.raw, image.top.media_type)
    if isinstance(image.top, Index):
        platforms = sorted({str(d.platform) for d in image.top.images if d.platform})
    else:  # a single image: its config (in the archive) names the platform, as `lsi` shows it
        found = config_platform(source.read(image.blobs[image.top.config.digest][0]))
        platforms = [found] if found else []
    return CopyRow(
        source=path_label(source),
        destination=str(ref.with_tag(tag)),
        digest=image.top.digest,
        action=tag_action(previous, image.top.digest),
        previous_digest=previous,
        platforms=platforms,
        blobs_copied=copied,
        blobs_skipped=skipped,
        blobs_mounted=0,
        bytes_copied=moved,
        seconds=round(time.perf_counter() - started, 3),
    )


def path_label(source: _Source) -> str:
    return str(source.path)


def _blob_name(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    return f"blobs/{algorithm}/{hexpart}"


def _oci_images(source: _Source) -> list[_Image]:
    index = json.loads(source.read("index.json"))
    images = []
    for desc in index.get("manifests") or []:
        digest = desc["digest"]
        raw = source.read(_blob_name(digest))
        if "sha256:" + hashlib.sha256(raw).hexdigest() != digest:
            raise IntegrityError(f"{_blob_name(digest)} in {source.path} does not match its digest")
        top = parse_manifest(raw, desc.get("mediaType", ""), digest)
        children: list[Manifest] = []
        blobs: dict[str, tuple[str, int]] = {}
        manifests = [top]
        if isinstance(top, Index):
            for child in top.manifests:
                name = _blob_name(child.digest)
                if not source.exists(name):
                    continue  # a platform the layout does not carry (e.g. saved for one platform)
                parsed = parse_manifest(source.read(name), child.media_type, child.digest)
                if isinstance(parsed, Manifest):
                    children.append(parsed)
                    manifests.append(parsed)
        for manifest in manifests:
            if isinstance(manifest, Manifest):
                for blob in (manifest.config, *manifest.layers):
                    name = _blob_name(blob.digest)
                    if not source.exists(name):
                        raise NotFound(f"{source.path} lacks blob {blob.digest}")
                    blobs[blob.digest] = (name, source.size(name))
        annotations = desc.get("annotations") or {}
        # Docker's own OCI export puts the full name in io.containerd.image.name, the tag in ref.name.
        full = annotations.get("io.containerd.image.name", "")
        ref_name = annotations.get(REF_NAME, "")
        aliases = frozenset(a for a in (full, _strip_registry(full), ref_name) if a)
        images.append(_Image(top, children, full or ref_name, blobs, aliases))
    return images


def _docker_save_images(source: _Source) -> list[_Image]:
    entries = json.loads(source.read("manifest.json"))
    images = []
    for entry in entries:
        config_name = entry["Config"]
        config = source.read(config_name)
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        blobs = {config_digest: (config_name, len(config))}
        layers = []
        for layer_name in entry["Layers"]:
            hasher = hashlib.sha256()
            with source.open(layer_name) as fh:
                for chunk in iter(partial(fh.read, READ), b""):
                    hasher.update(chunk)
            digest = "sha256:" + hasher.hexdigest()
            size = source.size(layer_name)
            blobs[digest] = (layer_name, size)
            layers.append({"mediaType": DOCKER_LAYER_TAR, "digest": digest, "size": size})
        doc = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": layers,
        }
        raw = json.dumps(doc, separators=(",", ":")).encode()
        top = parse_manifest(raw, DOCKER_MANIFEST, "sha256:" + hashlib.sha256(raw).hexdigest())
        tags = entry.get("RepoTags") or [""]
        for tag in tags:
            aliases = frozenset(t for t in (tag, _strip_registry(tag)) if t)
            images.append(_Image(top, [], _strip_registry(tag), blobs, aliases))
    return images


def _strip_registry(tag: str) -> str:
    """`localhost:5001/archy:latest` → `archy:latest` (loaded into the current registry)."""
    if not tag:
        return ""
    first, sep, rest = tag.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return rest
    return tag


def save(client: RegistryClient, ref: Ref, path: Path) -> CopyRow:
    """Write `ref` (every platform, attestations included) as an OCI image layout: a directory, or a tar."""
    started = time.perf_counter()
    as_tar = path.suffix == ".tar"
    if path.exists() and (as_tar or any(path.iterdir())):
        raise InvalidReference(f"{path} already exists; choose a new path")
    graph = walk(partial(fetch_manifest, client, ref.repository), ref.reference)
    graph.require_whole(str(ref), client.registry)
    top = graph.root
    work = Path(tempfile.mkdtemp(prefix="jindr-save-", dir=path.parent if as_tar else None)) if as_tar else path
    try:
        blobs_dir = work / "blobs" / "sha256"
        blobs_dir.mkdir(parents=True, exist_ok=True)
        count = moved = 0

        def put(digest: str, data: bytes | None = None) -> None:
            nonlocal count, moved
            target = blobs_dir / digest.partition(":")[2]
            if target.exists():
                return
            if data is None:
                with client.open_blob(ref.repository, digest) as resp, open(target, "wb") as out:
                    hasher = hashlib.sha256()
                    for chunk in resp.iter_bytes(READ):
                        hasher.update(chunk)
                        out.write(chunk)
                if "sha256:" + hasher.hexdigest() != digest:
                    target.unlink()
                    raise IntegrityError(f"blob {digest} from {client.registry} does not match its digest")
            else:
                target.write_bytes(data)
            count += 1
            moved += target.stat().st_size

        for manifest in graph.manifests:
            put(manifest.digest, manifest.raw)
        for digest in graph.blobs:
            put(digest)
        (work / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        name = f"{ref.repository}:{ref.tag}" if ref.tag else ref.repository
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": top.media_type,
                    "digest": top.digest,
                    "size": len(top.raw),
                    "annotations": {REF_NAME: name},
                }
            ],
        }
        (work / "index.json").write_text(json.dumps(index, separators=(",", ":")))
        if as_tar:
            with tarfile.open(path, "w") as tar:
                for item in sorted(work.rglob("*")):
                    tar.add(item, arcname=str(item.relative_to(work)), recursive=False)
    finally:
        if as_tar:
            shutil.rmtree(work, ignore_errors=True)
    if isinstance(top, Index):
        platforms = sorted({str(d.platform) for d in top.images if d.platform})
    else:  # a single image: its config names the platform, as `lsi` shows it
        found = config_platform(client.get_blob(ref.repository, top.config.digest, limit=16 * 1024 * 1024))
        platforms = [found] if found else []
    return CopyRow(
        source=str(ref),
        destination=str(path),
        digest=top.digest,
        action="saved",
        previous_digest="",
        platforms=platforms,
        blobs_copied=count,
        blobs_skipped=0,
        blobs_mounted=0,
        bytes_copied=moved,
        seconds=round(time.perf_counter() - started, 3),
    )
