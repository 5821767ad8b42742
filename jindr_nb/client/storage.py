"""Reading a registry's filesystem storage directly: the same answers as the API, at disk speed.

For registries jindr runs here (it knows their storage directory). Read-only. The layout is the
distribution registry's own (`docker/registry/v2/`): repositories hold link files pointing into a
content-addressed blob store. A link being rewritten by a push can read empty or torn for an
instant; anything that is not a valid digest makes this reader ask the registry's API instead.

Names become paths only when they are what the registry itself would take: a digest, a tag of the
distribution grammar, a repository of its grammar (`StorageReader`, which answers names from users
and from manifests); `StorageLayout`, which also serves names read from the storage's own
directories (`gc`), refuses any that would leave its directory (`..`, absolute, empty parts).
"""

from __future__ import annotations

import functools
import json
import os
import re
import stat
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import NotFound
from ..models import MAX_MANIFEST_BYTES, is_tag, stored_media_type, verify_digest
from .registry import ManifestBytes, RegistryClient

__all__ = ["Stamp", "StorageLayout", "StorageReader"]

#: What identifies a file's bytes without reading them: (device, inode, size, mtime_ns, ctime_ns).
#: Any write to the file changes its ctime, which no one can set back (`touch` sets mtime only).
Stamp = tuple[int, int, int, int, int]
#: A stamp counts only for a file last changed this long before it was read: a write within the
#: same tick of the file system's clock as the one before it could leave every field alike
#: (git's "racy clean" rule, with a margin for a clock that is coarse or a little behind).
_SETTLED_NS = 2_000_000_000
#: How long a link file is: `sha256:` and 64 hex digits, as the registry writes it (nothing else).
_LINK_SIZE = len("sha256:") + 64

_DIGEST = re.compile(r"sha256:[a-f0-9]{64}\Z")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
#: A repository name as the distribution registry takes one (at most 255 characters).
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*\Z")


def _repository_ok(name: str) -> bool:
    """`name` is a repository by the registry's grammar (so no part of it is `..` or empty)."""
    return len(name) <= 255 and _grammar_ok(name)


@functools.lru_cache(maxsize=1 << 16)
def _grammar_ok(name: str) -> bool:
    """Remembered: a listing asks it of the same few names for every tag and child."""
    return _REPOSITORY.match(name) is not None


def _inside(name: str, *, parts: bool) -> bool:
    """`name` stays inside the directory it is joined to: not empty nor absolute, no `..` or empty
    part, no NUL (with `parts` False: one part, not `.`)."""
    if not name or "\0" in name or name[0] == "/":
        return False
    if not parts:
        return "/" not in name and name not in (".", "..")
    split = name.split("/")
    return "" not in split and ".." not in split


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
        # os.walk's rule (a link to a directory counts as one, and is not descended into), with the
        # types scandir already has: os.walk asks `islink` of every directory, and the catalog of
        # thousands of repositories is the first step of a listing.
        pending = [("", self._repos)]
        while pending:
            name, path = pending.pop()
            try:
                with os.scandir(path) as entries:
                    dirs = [(e.name, e.is_symlink()) for e in entries if e.is_dir()]
            except OSError:
                continue
            if name and any(d.startswith("_") for d, _ in dirs):
                names.append(name)
            pending.extend(
                (f"{name}/{d}" if name else d, f"{path}/{d}") for d, link in dirs if not (link or d.startswith("_"))
            )
        return sorted(names)

    def repo_dir(self, repository: str) -> Path:
        """The repository's directory (ValueError for a name that would leave the storage)."""
        if not _inside(repository, parts=True):
            raise ValueError(f"repository {repository!r} would leave the storage directory")
        return self.repositories_dir / repository

    def tags(self, repository: str) -> list[str] | None:
        """Tag names, or None when the repository does not exist."""
        if not _inside(repository, parts=True):
            return None
        manifests = f"{self._repos}/{repository}/_manifests"
        try:  # one scandir per repository: a listing of thousands of them starts here
            return sorted(entry.name for entry in os.scandir(f"{manifests}/tags") if entry.is_dir())
        except (FileNotFoundError, NotADirectoryError):
            return [] if os.path.isdir(manifests) else None

    def tag_digest(self, repository: str, tag: str) -> str | None:
        """The digest a tag points at, or None when missing or unreadable (mid-write)."""
        # Plain strings, not pathlib: this runs once per tag in every listing.
        if not (_inside(repository, parts=True) and _inside(tag, parts=False)):
            return None
        return _read_link(f"{self._repos}/{repository}/_manifests/tags/{tag}/current/link")

    def revisions(self, repository: str) -> list[str]:
        """Every manifest digest stored in the repository (tagged or not)."""
        if not _inside(repository, parts=True):
            return []
        base = self.repo_dir(repository) / "_manifests" / "revisions" / "sha256"
        try:
            return [f"sha256:{e.name}" for e in os.scandir(base) if e.is_dir() and (Path(e.path) / "link").exists()]
        except FileNotFoundError:
            return []

    def has_revision(self, repository: str, digest: str) -> bool:
        if not (_DIGEST.match(digest) and _inside(repository, parts=True)):
            return False
        algorithm, _, hexpart = digest.partition(":")
        return _read_link(f"{self._repos}/{repository}/_manifests/revisions/{algorithm}/{hexpart}/link") == digest

    def revision_linked(self, repository: str, digest: str) -> bool:
        """The repository's revision link for `digest` is a regular file of a link's exact length: a
        stat, where `has_revision` reads it. The registry writes nothing but the digest its path
        names into it, so the length tells a whole link from one caught mid-write (empty)."""
        if not (_DIGEST.match(digest) and _inside(repository, parts=True)):
            return False
        algorithm, _, hexpart = digest.partition(":")
        return _whole_link(f"{self._repos}/{repository}/_manifests/revisions/{algorithm}/{hexpart}/link")

    def has_layer_link(self, repository: str, digest: str) -> bool:
        """The repository links the blob: its `_layers` link file is there. A stat, not a read: the
        link's path names the digest already, and a blob read through it is checked against that
        digest (a link caught mid-write only lets through bytes the push has finished writing)."""
        if not (_DIGEST.match(digest) and _inside(repository, parts=True)):
            return False
        algorithm, _, hexpart = digest.partition(":")
        return os.path.exists(f"{self._repos}/{repository}/_layers/{algorithm}/{hexpart}/link")

    def blob_path(self, digest: str) -> str:
        algorithm, _, hexpart = digest.partition(":")
        return f"{self._blobs}/{algorithm}/{hexpart[:2]}/{hexpart}/data"

    def read_blob(self, digest: str, limit: int) -> bytes | None:
        """A blob's bytes, or None when it is missing, unreadable or larger than `limit`."""
        if not _DIGEST.match(digest):
            return None
        return _read_file(self.blob_path(digest), limit)

    def read_blob_stamped(self, digest: str, limit: int) -> tuple[bytes, Stamp | None] | None:
        """`read_blob`, with the stamp of the file the bytes came from (taken before reading them;
        None while the file is too fresh to be told apart from a rewrite by its stamp)."""
        if not _DIGEST.match(digest):
            return None
        return _read_stamped(self.blob_path(digest), limit)

    def blob_stamp(self, digest: str) -> Stamp | None:
        """The stamp of a blob's file now (one stat; None when missing or not a regular file): equal
        to a stamp `read_blob_stamped` gave, the file holds the very bytes read then."""
        if not _DIGEST.match(digest):
            return None
        try:
            found = os.stat(self.blob_path(digest))
        except (OSError, ValueError):
            return None
        return _stamp(found) if stat.S_ISREG(found.st_mode) else None

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

    #: Reads the registry's storage on this machine, not its API (`ops.fetch.ManifestSource`).
    local = True

    def __init__(self, root: Path | str, api: RegistryClient) -> None:
        self.layout = StorageLayout(root)
        self.api = api
        self.registry = api.registry
        #: (repository, digest) whose revision this reader has seen: one command asks for a child's
        #: presence, then reads it — the second look at its link would only repeat the first.
        self._revisions: set[tuple[str, str]] = set()

    def _has_revision(self, repository: str, digest: str) -> bool:
        """The repository holds the revision: its link is there, whole (a stat: see
        `StorageLayout.revision_linked`). Remembered for the reader's life (one command)."""
        if (repository, digest) in self._revisions:
            return True
        if not (_repository_ok(repository) and _DIGEST.match(digest)):
            return False
        # Both names checked: the path is the layout's `revision_linked` without its checks.
        algorithm, _, hexpart = digest.partition(":")
        if _whole_link(f"{self.layout._repos}/{repository}/_manifests/revisions/{algorithm}/{hexpart}/link"):
            self._revisions.add((repository, digest))
            return True
        return False

    def __repr__(self) -> str:
        return f"StorageReader({str(self.layout.root)!r}, {self.registry!r})"

    def catalog(self) -> list[str]:
        return self.layout.repositories()

    def tags(self, repository: str) -> list[str]:
        tags = self.layout.tags(repository) if _repository_ok(repository) else None
        if tags is None:
            return self.api.tags(repository)  # raises the API's own NotFound
        return tags

    def resolve_tag(self, repository: str, tag: str) -> str | None:
        """The digest a tag points at, read from its link file (None: ask `get_manifest`) — only when
        the repository still holds that manifest's revision, as the registry requires to serve it
        (a torn tag, whose revision a killed delete removed, is not served). Only a tag and a
        repository of the registry's grammar are looked up (`v1/../v1` is no tag)."""
        if not (is_tag(tag) and _repository_ok(repository)):
            return None
        # Both names checked by the grammar: the path is the layout's `tag_digest` without its checks.
        digest = _read_link(f"{self.layout._repos}/{repository}/_manifests/tags/{tag}/current/link")
        return digest if digest is not None and self._has_revision(repository, digest) else None

    def stored_tags(self, repository: str, tags: Sequence[str]) -> list[tuple[str, Stamp] | None]:
        """`resolve_tag` and `manifest_stamp` for many tags of one repository, for a listing: per tag,
        (the digest its link names, the stamp of that manifest's blob file now) when the repository
        holds the revision whole and the blob is a regular file; None where storage cannot say so
        at once (ask one by one). The names are checked once per repository, not once per step."""
        found: list[tuple[str, Stamp] | None] = [None] * len(tags)
        if not isinstance(self.layout, StorageLayout) or not _repository_ok(repository):
            return found  # a bucket has no stamps; a name outside the grammar is not looked up
        base = f"{self.layout._repos}/{repository}/_manifests"
        blobs = f"{self.layout._blobs}/sha256"
        seen = self._revisions
        for i, tag in enumerate(tags):
            if not is_tag(tag):
                continue
            digest = _read_link(f"{base}/tags/{tag}/current/link")  # only a sha256 digest, or None
            if digest is None:
                continue
            hexpart = digest[7:]
            if (repository, digest) not in seen:
                if not _whole_link(f"{base}/revisions/sha256/{hexpart}/link"):
                    continue
                seen.add((repository, digest))
            try:
                blob = os.stat(f"{blobs}/{hexpart[:2]}/{hexpart}/data")
            except (OSError, ValueError):
                continue
            if stat.S_ISREG(blob.st_mode):
                found[i] = (digest, _stamp(blob))
        return found

    def get_manifest(self, repository: str, reference: str) -> ManifestBytes:
        found = self.read_manifest(repository, reference)
        if found is None:
            return self.api.get_manifest(repository, reference)
        digest, raw = found
        return ManifestBytes(raw, _media_type(raw), digest)

    def read_manifest(self, repository: str, reference: str) -> tuple[str, bytes] | None:
        """(digest, verified bytes) of a manifest the repository holds, from storage alone; None
        when storage cannot answer cleanly (no revision link, a torn read): ask `get_manifest`.
        Reading it is the proof that the registry serves it: revision link and blob are there.
        A reference that is neither a digest nor a tag (nor a repository outside the grammar) is
        not looked up: None."""
        found = self._read_verified(repository, reference)
        return None if found is None else (found[0], found[1])

    def read_manifest_stamped(self, repository: str, reference: str) -> tuple[str, bytes, Stamp | None] | None:
        """`read_manifest`, with the stamp of the blob file whose bytes were verified (None when
        there is none to trust: a fresh file, or a reader whose layout is not a directory). While
        `manifest_stamp` gives that stamp again, the blob holds those verified bytes."""
        if not isinstance(self.layout, StorageLayout):  # a subclass reading elsewhere (a bucket)
            found = self.read_manifest(repository, reference)
            return None if found is None else (*found, None)
        return self._read_verified(repository, reference)

    def _linked_digest(self, repository: str, reference: str) -> str | None:
        """The manifest digest `reference` (a digest or a tag) names in the repository, when the
        repository holds that revision; None otherwise, or for names outside the grammar."""
        if not _repository_ok(repository):
            return None
        if _DIGEST.match(reference):
            return reference if self._has_revision(repository, reference) else None
        return self.resolve_tag(repository, reference)

    def _read_verified(self, repository: str, reference: str) -> tuple[str, bytes, Stamp | None] | None:
        digest = self._linked_digest(repository, reference)
        if digest is None:
            return None
        read = self.layout.read_blob_stamped(digest, MAX_MANIFEST_BYTES)
        if read is None:
            return None
        raw, stamp = read
        try:
            verify_digest(raw, digest, "manifest")
        except Exception:  # noqa: BLE001 - a torn read: the API knows better
            return None
        return digest, raw, stamp

    def manifest_stamp(self, digest: str) -> Stamp | None:
        """The stamp of the blob file of manifest `digest` now (one stat), None when it is missing,
        not a regular file, or the layout is not a directory. Says nothing of whether a repository
        links it: ask `resolve_tag` or `has_manifest` for that."""
        if not isinstance(self.layout, StorageLayout):
            return None
        return self.layout.blob_stamp(digest)

    def get_blob(self, repository: str, digest: str, *, limit: int = 64 * 1024 * 1024) -> bytes:
        # Only a well-formed digest becomes a path (a manifest's descriptor can say anything).
        if _DIGEST.match(digest) and _repository_ok(repository) and self.layout.has_layer_link(repository, digest):
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
        if (
            _DIGEST.match(digest)
            and self._has_revision(repository, digest)
            and os.path.exists(self.layout.blob_path(digest))
        ):
            return True
        return self.api.head_manifest(repository, digest) is not None

    def head_manifest(self, repository: str, reference: str) -> tuple[str, str, int] | None:
        try:
            got = self.get_manifest(repository, reference)
        except NotFound:
            return None
        return got.digest, got.media_type, len(got.raw)


def _read_file(path: str, limit: int) -> bytes | None:
    """The bytes of a small file, None when it is missing, unreadable or over `limit` bytes.

    Plain `os` calls: a listing reads thousands of these, and a buffered file object per read
    costs more than the read. Read in steps, so a 4 MiB limit does not allocate 4 MiB per file.
    Only a regular file is read (see `_open`): a FIFO or device planted in storage cannot hang it."""
    read = _read_stamped(path, limit)
    return None if read is None else read[0]


def _read_stamped(path: str, limit: int) -> tuple[bytes, Stamp | None] | None:
    """`_read_file`, with the stamp of the file taken before its bytes were read (None when the
    file changed too recently for the stamp to tell a later rewrite apart, see `_SETTLED_NS`)."""
    opened = _open_stat(path)
    if opened is None:
        return None
    fd, found = opened
    try:
        data = os.read(fd, min(limit + 1, _STEP))
        if len(data) == _STEP:  # more may follow: read on until the end or past the limit
            parts = [data]
            size = len(data)
            while size <= limit:
                more = os.read(fd, min(limit + 1 - size, 16 * _STEP))
                if not more:
                    break
                parts.append(more)
                size += len(more)
            data = b"".join(parts)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) > limit:
        return None
    settled = found.st_ctime_ns < time.time_ns() - _SETTLED_NS
    return data, _stamp(found) if settled else None


_STEP = 64 * 1024


def _stamp(found: os.stat_result) -> Stamp:
    return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)


def _open(path: str) -> int | None:
    """A descriptor for reading the regular file at `path`, None for anything else or an error."""
    opened = _open_stat(path)
    return None if opened is None else opened[0]


def _open_stat(path: str) -> tuple[int, os.stat_result] | None:
    """(descriptor, its stat) for reading the regular file at `path`, None for anything else or an
    error.

    `O_NONBLOCK`: opening a FIFO does not wait for a writer (and is then refused as not a regular
    file); it changes nothing for a regular file. Symbolic links are followed, as the registry
    follows them: a storage tree may be laid out with them, and `gc` must read what it keeps."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except (OSError, ValueError):
        return None
    try:
        found = os.fstat(fd)
        if stat.S_ISREG(found.st_mode):
            return fd, found
    except OSError:
        pass
    os.close(fd)
    return None


def _whole_link(path: str) -> bool:
    """The link file at `path` is a regular file of a link's exact length (one stat)."""
    try:
        found = os.stat(path)
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(found.st_mode) and found.st_size == _LINK_SIZE


def _read_link(path: str) -> str | None:
    """The digest a link file names, None when missing, unreadable or not a digest (mid-write).

    No fstat for the file's type, as `_open` asks (a listing reads one link per tag): whatever is
    there answers at once — `O_NONBLOCK` makes a FIFO or terminal answer empty instead of waiting,
    a directory refuses the read — and at most 200 bytes are read, taken only if they are a digest."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except (OSError, ValueError):
        return None
    try:
        text = os.read(fd, 200).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    finally:
        os.close(fd)
    return text if _DIGEST.match(text) else None


def _media_type(raw: bytes) -> str:
    """What the registry sends as Content-Type: the manifest's own mediaType, else guessed as it does."""
    try:
        return stored_media_type(json.loads(raw))
    except ValueError:
        return ""
