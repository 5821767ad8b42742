"""Reading a registry's filesystem storage directly: the same answers as the API, at disk speed.

For registries jindr runs here (it knows their storage directory). Read-only. The layout is the
distribution registry's own (`docker/registry/v2/`): repositories hold link files pointing into a
content-addressed blob store. A link being rewritten by a push can read empty or torn for an
instant; anything that is not a valid digest makes this reader ask the registry's API instead.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from ..errors import NotFound
from ..models import MAX_MANIFEST_BYTES, OCI_INDEX, OCI_MANIFEST, verify_digest
from .registry import ManifestBytes, RegistryClient

__all__ = ["StorageLayout", "StorageReader"]

_DIGEST = re.compile(r"sha256:[a-f0-9]{64}\Z")


class StorageLayout:
    """Paths and raw reads in one registry storage root (no API, no fallback)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.v2 = self.root / "docker" / "registry" / "v2"
        self.repositories_dir = self.v2 / "repositories"
        self.blobs_dir = self.v2 / "blobs"
        self._repos = str(self.repositories_dir)
        self._blobs = str(self.blobs_dir)

    def repositories(self) -> list[str]:
        """Repository names, as the registry's catalog lists them: any directory holding a `_...` one
        (`_manifests`, `_layers` or `_uploads`: a repository with only an upload is listed too)."""
        names: list[str] = []
        if not self.repositories_dir.is_dir():
            return names
        for dirpath, dirnames, _ in os.walk(self.repositories_dir):
            if any(d.startswith("_") for d in dirnames):
                names.append(os.path.relpath(dirpath, self.repositories_dir).replace(os.sep, "/"))
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]
        return sorted(names)

    def repo_dir(self, repository: str) -> Path:
        return self.repositories_dir / repository

    def tags(self, repository: str) -> list[str] | None:
        """Tag names, or None when the repository does not exist."""
        tags_dir = self.repo_dir(repository) / "_manifests" / "tags"
        if not (self.repo_dir(repository) / "_manifests").is_dir():
            return None
        try:
            return sorted(entry.name for entry in os.scandir(tags_dir) if entry.is_dir())
        except FileNotFoundError:
            return []

    def tag_digest(self, repository: str, tag: str) -> str | None:
        """The digest a tag points at, or None when missing or unreadable (mid-write)."""
        # Plain strings, not pathlib: this runs once per tag in every listing.
        return _read_link(f"{self._repos}/{repository}/_manifests/tags/{tag}/current/link")

    def revisions(self, repository: str) -> list[str]:
        """Every manifest digest stored in the repository (tagged or not)."""
        base = self.repo_dir(repository) / "_manifests" / "revisions" / "sha256"
        try:
            return [f"sha256:{e.name}" for e in os.scandir(base) if e.is_dir() and (Path(e.path) / "link").exists()]
        except FileNotFoundError:
            return []

    def has_revision(self, repository: str, digest: str) -> bool:
        algorithm, _, hexpart = digest.partition(":")
        return _read_link(f"{self._repos}/{repository}/_manifests/revisions/{algorithm}/{hexpart}/link") == digest

    def has_layer_link(self, repository: str, digest: str) -> bool:
        algorithm, _, hexpart = digest.partition(":")
        return _read_link(f"{self._repos}/{repository}/_layers/{algorithm}/{hexpart}/link") == digest

    def blob_path(self, digest: str) -> str:
        algorithm, _, hexpart = digest.partition(":")
        return f"{self._blobs}/{algorithm}/{hexpart[:2]}/{hexpart}/data"

    def read_blob(self, digest: str, limit: int) -> bytes | None:
        try:
            with open(self.blob_path(digest), "rb") as fh:
                data = fh.read(limit + 1)
        except OSError:
            return None
        return data if len(data) <= limit else None

    def blobs(self) -> Iterator[tuple[str, int]]:
        """(digest, bytes) of every blob in the store."""
        base = self.blobs_dir / "sha256"
        if not base.is_dir():
            return
        for prefix in os.scandir(base):
            if not prefix.is_dir():
                continue
            for entry in os.scandir(prefix.path):
                data = Path(entry.path) / "data"
                try:
                    yield f"sha256:{entry.name}", data.stat().st_size
                except OSError:
                    continue


class StorageReader:
    """The read half of `RegistryClient` (catalog, tags, manifests, blobs) served from storage.

    Anything storage cannot answer cleanly goes to `api`, the registry's own client.
    """

    def __init__(self, root: Path | str, api: RegistryClient) -> None:
        self.layout = StorageLayout(root)
        self.api = api
        self.registry = api.registry
        #: (repository, digest) whose revision this reader has seen: one command asks for a child's
        #: presence, then reads it — the second look at its link would only repeat the first.
        self._revisions: set[tuple[str, str]] = set()

    def _has_revision(self, repository: str, digest: str) -> bool:
        if (repository, digest) in self._revisions:
            return True
        if self.layout.has_revision(repository, digest):
            self._revisions.add((repository, digest))
            return True
        return False

    def _revision_linked(self, repository: str, digest: str) -> bool:
        """The revision's link file is there (a stat, not a read: enough to know the registry
        still lists the manifest in the repository; reading it is left to the read that follows)."""
        if (repository, digest) in self._revisions:
            return True
        algorithm, _, hexpart = digest.partition(":")
        return os.path.exists(f"{self.layout._repos}/{repository}/_manifests/revisions/{algorithm}/{hexpart}/link")

    def __repr__(self) -> str:
        return f"StorageReader({str(self.layout.root)!r}, {self.registry!r})"

    def catalog(self) -> list[str]:
        return self.layout.repositories()

    def tags(self, repository: str) -> list[str]:
        tags = self.layout.tags(repository)
        if tags is None:
            return self.api.tags(repository)  # raises the API's own NotFound
        return tags

    def resolve_tag(self, repository: str, tag: str) -> str | None:
        """The digest a tag points at, read from its link file (None: ask `get_manifest`) — only when
        the repository still holds that manifest's revision, as the registry requires to serve it
        (a torn tag, whose revision a killed delete removed, is not served)."""
        digest = self.layout.tag_digest(repository, tag)
        return digest if digest is not None and self._has_revision(repository, digest) else None

    def get_manifest(self, repository: str, reference: str) -> ManifestBytes:
        if _DIGEST.match(reference):
            digest: str | None = reference if self._has_revision(repository, reference) else None
        else:
            digest = self.resolve_tag(repository, reference)
        if digest is None:
            return self.api.get_manifest(repository, reference)
        raw = self.layout.read_blob(digest, MAX_MANIFEST_BYTES)
        if raw is None:
            return self.api.get_manifest(repository, reference)
        try:
            verify_digest(raw, digest, "manifest")
        except Exception:  # noqa: BLE001 - a torn read: the API knows better
            return self.api.get_manifest(repository, reference)
        return ManifestBytes(raw, _media_type(raw), digest)

    def get_blob(self, repository: str, digest: str, *, limit: int = 64 * 1024 * 1024) -> bytes:
        if self.layout.has_layer_link(repository, digest):
            data = self.layout.read_blob(digest, limit)
            if data is not None:
                try:
                    verify_digest(data, digest, "blob")
                    return data
                except Exception:  # noqa: BLE001 - torn or corrupt: let the API answer
                    pass
        return self.api.get_blob(repository, digest, limit=limit)

    def has_manifest(self, repository: str, digest: str) -> bool:
        """True when the repository holds the manifest: its revision link and its blob are on disk
        (what the registry checks); a miss asks the API, in case a link read torn."""
        if self._revision_linked(repository, digest) and os.path.exists(self.layout.blob_path(digest)):
            return True
        return self.api.head_manifest(repository, digest) is not None

    def head_manifest(self, repository: str, reference: str) -> tuple[str, str, int] | None:
        try:
            got = self.get_manifest(repository, reference)
        except NotFound:
            return None
        return got.digest, got.media_type, len(got.raw)


def _read_link(path: str | Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            text = fh.read(200).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if _DIGEST.match(text) else None


def _media_type(raw: bytes) -> str:
    """What the registry sends as Content-Type: the manifest's own mediaType, else guessed as it does."""
    try:
        data = json.loads(raw)
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    declared = data.get("mediaType")
    if declared:
        return str(declared)
    return OCI_INDEX if "manifests" in data else OCI_MANIFEST
