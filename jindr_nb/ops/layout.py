"""`load` and `save`: images in and out of the registry as files, without Docker.

Reads `docker save` tarballs (the classic `manifest.json` format, and the OCI layout that newer
Docker writes) and OCI image layouts (a directory, or a tar of one); writes OCI image layouts.
Blobs are streamed, skipped when the registry has them, and manifests keep their exact bytes, so
`save` then `load` gives back identical digests.
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
    parse_manifest,
)
from ..refs import Ref, parse_ref
from .fetch import blob_present, fetch_manifest

__all__ = ["load", "save"]

REF_NAME = "org.opencontainers.image.ref.name"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
READ = 1024 * 1024


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
    """One image to push: its top manifest, the tag it gets, and where each blob comes from."""

    top: Manifest | Index
    children: list[Manifest]
    tag: str
    blobs: dict[str, tuple[str, int]]  # digest -> (file in the archive, size)


def _chunks(handle: BinaryIO, progress: Callable[[int], None]) -> Iterator[bytes]:
    while True:
        chunk = handle.read(READ)
        if not chunk:
            return
        progress(len(chunk))
        yield chunk


def load(
    client: RegistryClient,
    path: Path,
    target: Ref | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> list[CopyRow]:
    """Push every image in the archive at `path`; `target` names it (else the archive's own tags)."""
    started = time.perf_counter()
    if not path.exists():
        raise InvalidReference(f"{path} does not exist")
    source = _Source(path)
    try:
        if source.exists("index.json") and source.exists("oci-layout"):
            images = _oci_images(source)
        elif source.exists("manifest.json"):
            images = _docker_save_images(source)
        else:
            raise InvalidReference(f"{path} is neither an OCI image layout nor a `docker save` archive")
        rows = []
        for image in images:
            ref = _name(image, target, client.registry)
            rows.append(_push(client, source, image, ref, started, progress))
        return rows
    finally:
        source.close()


def _name(image: _Image, target: Ref | None, registry: str) -> Ref:
    """The reference an archived image is pushed as: IMAGE when given, else the archive's own name.

    OCI layouts may name an image by a bare tag (`1.0`, as skopeo writes) or a full reference;
    `docker save` names it by repository:tag.
    """
    name = image.tag
    full = "/" in name or ":" in name
    own_tag = name.rpartition(":")[2] if full and ":" in name.rpartition("/")[2] else ("" if full else name)
    if target is not None:
        return target if target.tag or target.digest else target.with_tag(own_tag or "latest")
    if not full:
        hint = f" (it only names the tag {name!r})" if name else ""
        raise InvalidReference(f"the archive does not name its image{hint}: give one, e.g. `load PATH myimage`")
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
    for child in image.children:
        client.put_manifest(repo, child.digest, child.raw, child.media_type)
    client.put_manifest(repo, image.top.digest, image.top.raw, image.top.media_type)
    client.put_manifest(repo, ref.tag or "latest", image.top.raw, image.top.media_type)
    platforms = (
        sorted({str(d.platform) for d in image.top.images if d.platform}) if isinstance(image.top, Index) else []
    )
    return CopyRow(
        str(path_label(source)),
        str(ref.with_tag(ref.tag or "latest")),
        image.top.digest,
        platforms,
        copied,
        skipped,
        0,
        moved,
        round(time.perf_counter() - started, 3),
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
        name = annotations.get("io.containerd.image.name") or annotations.get(REF_NAME, "")
        images.append(_Image(top, children, name, blobs))
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
                for chunk in iter(lambda fh=fh: fh.read(READ), b""):
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
            images.append(_Image(top, [], _strip_registry(tag), blobs))
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
    top = fetch_manifest(client, ref.repository, ref.reference)
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

        def walk(manifest: Manifest | Index) -> None:
            put(manifest.digest, manifest.raw)
            if isinstance(manifest, Index):
                for child in manifest.manifests:
                    walk(fetch_manifest(client, ref.repository, child.digest))
            else:
                for blob in (manifest.config, *manifest.layers):
                    put(blob.digest)

        walk(top)
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
    platforms = sorted({str(d.platform) for d in top.images if d.platform}) if isinstance(top, Index) else []
    return CopyRow(
        str(ref), str(path), top.digest, platforms, count, 0, 0, moved, round(time.perf_counter() - started, 3)
    )
