"""Reading (and, for gc and rmr, deleting in) a registry's tree on S3: the answers `storage.py` gives
for a directory, from a bucket.

For registries jindr runs on object storage. The tree is the registry's own
(`{root}docker/registry/v2/...`); one paginated ListObjectsV2 of it gives every key and size (a
registry of 600 tags is a few thousand keys: a few pages, where a request per "directory" would be
thousands), and the small files (links, manifests, configs) are fetched with GetObject in a thread
pool (one boto3 client, which is thread-safe). Blob sizes come from the listing.

S3 writes whole objects, so a link is there whole or not at all; a link whose listed size is not
that of a digest (a torn copy of a filesystem tree) is read as the filesystem reader reads a torn
link: not there. Names are checked as `storage.py` checks them, and a name never leaves its
prefix: every prefix jindr lists or deletes ends with `/` (`a/` never takes `ab/`).

boto3's errors become one-line `RuntimeFailure`s here: the layers above do not know boto3.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..errors import NotFound, RuntimeFailure
from ..models import MAX_MANIFEST_BYTES, is_tag, verify_digest
from .registry import RegistryClient
from .storage import _DIGEST, StorageReader, _inside, _repository_ok

__all__ = ["BucketLayout", "BucketReader"]

_LINK_SIZE = len("sha256:") + 64
_BLOB_KEY = re.compile(r"blobs/sha256/[^/]+/([^/]+)/data\Z")
_JOBS = 16
_BATCH = 1000  # DeleteObjects takes at most 1,000 keys a request
_WARM_DEPTH = 4  # tag -> index -> (nested index ->) image: rounds of manifests read ahead
_KEEP_LIMIT = 64 * 1024  # keys up to this size are read and kept before a delete, to put back
T = TypeVar("T")


def _fail(action: str, exc: Exception) -> RuntimeFailure:
    """One line for a boto3 error: what failed and what S3 said (no credentials are in either)."""
    text = " ".join(str(exc).split())
    return RuntimeFailure(f"{action} failed: {text}; check the S3 endpoint and credentials, then try again")


class BucketLayout:
    """Keys and raw reads of one registry tree in a bucket (no API, no fallback): `StorageLayout`'s
    methods, over a listing taken at first use (taken again after a delete through this layout;
    `blobs()` lists the blob store afresh every time, as gc measures around the registry's sweep)."""

    def __init__(self, s3: Any, bucket: str, root: str = "", *, blob_listing: bool = True) -> None:
        self.s3 = s3
        self.bucket = bucket
        #: False (a reader): the blob store is not listed — a blob is there when its GET answers (the
        #: blob store is the bulk of the keys, and a listing reads only manifests and configs of it).
        self.blob_listing = blob_listing
        #: "" or "PREFIX/": where `docker/registry/v2/` starts in the bucket.
        self.root = root
        self.v2 = f"{root}docker/registry/v2/"
        self.repositories_prefix = f"{self.v2}repositories/"
        self.blobs_prefix = f"{self.v2}blobs/"
        self._lock = threading.Lock()
        self._keys: dict[str, int] | None = None  # key under repositories/ (relative) -> size
        self._by_repository: dict[str, list[tuple[str, int]]] | None = None  # those keys by repository
        self._blobs: dict[str, int] | None = None  # blob digest -> size
        self._bodies: dict[str, bytes | None] = {}  # full key -> bytes read (None: missing)

    def __repr__(self) -> str:
        return f"BucketLayout('s3://{self.bucket}/{self.root}')"

    # listing

    def list_keys(self, prefix: str) -> dict[str, int]:
        """Every key under `prefix` (a full key prefix) with its size: one paginated ListObjectsV2."""
        import botocore.exceptions

        found: dict[str, int] = {}
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    found[item["Key"]] = int(item["Size"])
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise _fail(f"listing s3://{self.bucket}/{prefix}", exc) from None
        return found

    def _tree(self) -> dict[str, int]:
        with self._lock:
            if self._keys is None:
                start = len(self.repositories_prefix)
                self._keys = {k[start:]: size for k, size in self.list_keys(self.repositories_prefix).items()}
            return self._keys

    def _blob_sizes(self) -> dict[str, int]:
        with self._lock:
            if self._blobs is None:
                self._blobs = self._list_blobs()
            return self._blobs

    def _list_blobs(self) -> dict[str, int]:
        start = len(self.v2)
        sizes: dict[str, int] = {}
        for key, size in self.list_keys(self.blobs_prefix).items():
            if matched := _BLOB_KEY.match(key[start:]):
                sizes[f"sha256:{matched.group(1)}"] = size
        return sizes

    def forget(self) -> None:
        """Drop the listing and what was read: the next question lists the bucket again."""
        with self._lock:
            self._keys = self._blobs = self._by_repository = None
            self._bodies.clear()

    def holds_repositories(self) -> bool:
        """Any key under `repositories/` (the path the registry's collector starts from)."""
        return bool(self._tree())

    def bytes_listed(self) -> int:
        """Bytes of every object under the registry's tree, as the bucket lists them now."""
        return sum(self.list_keys(self.v2).values())

    # StorageLayout's questions

    def repositories(self) -> list[str]:
        """Repository names, as the registry's catalog lists them: any "directory" holding a `_...`
        one (`_manifests`, `_layers` or `_uploads`)."""
        names = set()
        for key in self._tree():
            parts = key.split("/")
            for i, part in enumerate(parts[:-1]):
                if part.startswith("_"):
                    if i:
                        names.add("/".join(parts[:i]))
                    break
        return sorted(names)

    def repo_prefix(self, repository: str) -> str:
        """The repository's full key prefix, ending with `/` (ValueError for a name that would leave it)."""
        if not _inside(repository, parts=True):
            raise ValueError(f"repository {repository!r} would leave the registry's prefix")
        return f"{self.repositories_prefix}{repository}/"

    def _under(self, relative: str) -> Iterator[tuple[str, int]]:
        """(rest of the key, size) of every listed key under `relative` (a prefix ending with `/`):
        from the keys of its repository (the part before the first `_...` component), not all of them."""
        start = len(relative)
        owner, found, _ = relative.partition("/_")
        # Every key under "OWNER/_..." is in OWNER's group, whatever follows.
        keys = self._groups().get(owner, ()) if found else self._tree().items()
        for key, size in keys:
            if key.startswith(relative):
                yield key[start:], size

    def _groups(self) -> dict[str, list[tuple[str, int]]]:
        """The listed keys by repository (the part of the key before its first `_...` component)."""
        tree = self._tree()
        with self._lock:
            if self._by_repository is None:
                groups: dict[str, list[tuple[str, int]]] = {}
                for key, size in tree.items():
                    owner, found, _ = key.partition("/_")
                    if found:
                        groups.setdefault(owner, []).append((key, size))
                self._by_repository = groups
            return self._by_repository

    def _tag_index(self, repository: str, tag: str) -> list[str]:
        """The digests (hex) a tag's index lists: every manifest it has pointed at."""
        found = []
        for rest, _ in self._under(f"{repository}/_manifests/tags/{tag}/index/sha256/"):
            hexpart, _, tail = rest.partition("/")
            if tail == "link":
                found.append(hexpart)
        return found

    def tags(self, repository: str) -> list[str] | None:
        """Tag names, or None when the repository does not exist."""
        if not _inside(repository, parts=True):
            return None
        if next(self._under(f"{repository}/_manifests/"), None) is None:
            return None
        return sorted(
            {rest.split("/", 1)[0] for rest, _ in self._under(f"{repository}/_manifests/tags/") if "/" in rest}
        )

    def tag_link_key(self, repository: str, tag: str) -> str:
        return f"{self.repositories_prefix}{repository}/_manifests/tags/{tag}/current/link"

    def tag_digest(self, repository: str, tag: str) -> str | None:
        """The digest a tag points at, or None when missing or not a digest."""
        if not (_inside(repository, parts=True) and _inside(tag, parts=False)):
            return None
        return self.tag_digest_listed(repository, tag) or self._link(self.tag_link_key(repository, tag))

    def tag_digest_listed(self, repository: str, tag: str) -> str | None:
        """The tag's digest from the listing alone, when it tells: a whole `current/link` and one
        entry in the tag's index. The registry writes the index entry before the current link, so a
        tag that only ever pointed at one manifest points at that one (a GET saved per tag)."""
        if self._tree().get(f"{repository}/_manifests/tags/{tag}/current/link") != _LINK_SIZE:
            return None
        only = self._tag_index(repository, tag)
        return f"sha256:{only[0]}" if len(only) == 1 and _DIGEST.match(f"sha256:{only[0]}") else None

    def revisions(self, repository: str) -> list[str]:
        """Every manifest digest stored in the repository (tagged or not)."""
        if not _inside(repository, parts=True):
            return []
        found = []
        for rest, _ in self._under(f"{repository}/_manifests/revisions/sha256/"):
            hexpart, _, tail = rest.partition("/")
            if tail == "link":
                found.append(f"sha256:{hexpart}")
        return found

    def has_revision(self, repository: str, digest: str) -> bool:
        if not (_DIGEST.match(digest) and _inside(repository, parts=True)):
            return False
        _, _, hexpart = digest.partition(":")
        return self._tree().get(f"{repository}/_manifests/revisions/sha256/{hexpart}/link") == _LINK_SIZE

    def revision_linked(self, repository: str, digest: str) -> bool:
        """`has_revision` (from the listing alone, as `StorageLayout.revision_linked` from a stat)."""
        return self.has_revision(repository, digest)

    def has_layer_link(self, repository: str, digest: str) -> bool:
        if not (_DIGEST.match(digest) and _inside(repository, parts=True)):
            return False
        _, _, hexpart = digest.partition(":")
        return f"{repository}/_layers/sha256/{hexpart}/link" in self._tree()

    def blob_key(self, digest: str) -> str:
        _, _, hexpart = digest.partition(":")
        return f"{self.blobs_prefix}sha256/{hexpart[:2]}/{hexpart}/data"

    def has_blob(self, digest: str) -> bool:
        """The blob is in the store: listed, or (without the blob listing) read — a manifest's GET,
        which a listing makes anyway, is the proof."""
        if self.blob_listing:
            return digest in self._blob_sizes()
        return _DIGEST.match(digest) is not None and self.read(self.blob_key(digest)) is not None

    def listed_size(self, digest: str) -> int:
        """The blob's size in the listing (-1 when it is not listed; 0 without the blob listing)."""
        return self._blob_sizes().get(digest, -1) if self.blob_listing else 0

    def read_blob(self, digest: str, limit: int) -> bytes | None:
        """A blob's bytes, or None when it is missing or larger than `limit` (its listed size says)."""
        if not _DIGEST.match(digest):
            return None
        if self.blob_listing:
            size = self._blob_sizes().get(digest)
            if size is None or size > limit:
                return None
        return self.read(self.blob_key(digest), limit)

    def blobs(self) -> Iterator[tuple[str, int]]:
        """(digest, bytes) of every blob in the store, listed now."""
        sizes = self._list_blobs()
        with self._lock:
            self._blobs = sizes
        yield from sizes.items()

    # reads

    def read(self, key: str, limit: int = MAX_MANIFEST_BYTES) -> bytes | None:
        """An object's bytes (remembered), None when missing or over `limit`."""
        if key in self._bodies:
            kept = self._bodies[key]
            return kept if kept is None or len(kept) <= limit else None
        import botocore.exceptions

        try:
            got = self.s3.get_object(Bucket=self.bucket, Key=key)
            body = got["Body"].read(limit + 1)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                body = None
            else:
                raise _fail(f"reading s3://{self.bucket}/{key}", exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise _fail(f"reading s3://{self.bucket}/{key}", exc) from None
        if body is not None and len(body) > limit:
            return None  # not remembered: a read with a larger limit may want it
        self._bodies[key] = body
        return body

    def prefetch(self, keys: Sequence[str]) -> None:
        """Read the objects at `keys` into memory, many at a time (one client, a thread pool)."""
        wanted = [k for k in dict.fromkeys(keys) if k not in self._bodies]
        if len(wanted) > 1:
            _in_pool(lambda key: self.read(key), wanted)
        elif wanted:
            self.read(wanted[0])

    def _link(self, key: str) -> str | None:
        raw = self.read(key, 200)
        try:
            text = raw.decode("ascii").strip() if raw is not None else ""
        except UnicodeDecodeError:
            return None
        return text if _DIGEST.match(text) else None

    # deletes (gc and rmr, with every replica paused)

    def manifest_keys(self, repository: str, digests: Sequence[str]) -> list[str]:
        """The keys that hold the manifests' links in the repository: the revision and any tag's index entry."""
        base = f"{repository}/_manifests/"
        hexes = {d.partition(":")[2] for d in digests if _DIGEST.match(d)}
        keys = []
        for key in self._tree():
            if not key.startswith(base):
                continue
            parts = key[len(base) :].split("/")
            revision = len(parts) == 4 and parts[:2] == ["revisions", "sha256"] and parts[2] in hexes
            indexed = len(parts) == 6 and parts[0] == "tags" and parts[2:4] == ["index", "sha256"] and parts[4] in hexes
            if revision or indexed:
                keys.append(self.repositories_prefix + key)
        return keys

    def keys_under(self, prefix: str) -> dict[str, int]:
        """Every key under `prefix`, which must be inside this registry's tree and end with `/`."""
        if not (prefix.startswith(self.v2) and prefix.endswith("/")):
            raise RuntimeFailure(
                f"refusing to touch s3://{self.bucket}/{prefix}: not a prefix inside the registry's tree"
            )
        return self.list_keys(prefix)

    def snapshot(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The bytes of `keys` (small link files), kept to put back should a delete fail half-way."""
        self.prefetch(keys)
        kept = {}
        for key in keys:
            body = self.read(key, _KEEP_LIMIT)
            if body is None:
                raise RuntimeFailure(
                    f"s3://{self.bucket}/{key} cannot be read to keep a copy; nothing was deleted — try again"
                )
            kept[key] = body
        return kept

    def delete_keys(self, keys: Sequence[str]) -> list[str]:
        """Delete `keys` in batches of 1,000; the keys deleted. A batch whose answer names errors (or
        a request that fails) stops it with a `PartialDelete` that carries what went."""
        import botocore.exceptions

        gone: list[str] = []
        for start in range(0, len(keys), _BATCH):
            batch = list(keys[start : start + _BATCH])
            try:
                answer = self.s3.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                raise PartialDelete(gone, _fail(f"deleting in s3://{self.bucket}", exc).args[0]) from None
            errors = answer.get("Errors") or []
            failed = {e.get("Key") for e in errors}
            gone.extend(k for k in batch if k not in failed)
            if errors:
                first = errors[0]
                raise PartialDelete(
                    gone,
                    f"S3 refused to delete {len(errors)} of {len(batch)} keys in s3://{self.bucket} "
                    f"({first.get('Code', '')}: {first.get('Message', '')} for {first.get('Key', '')})",
                )
        self.forget()
        return gone

    def put_back(self, kept: dict[str, bytes]) -> list[str]:
        """Write `kept` back (after a failed delete); the keys that could not be written."""
        import botocore.exceptions

        def put(item: tuple[str, bytes]) -> str:
            try:
                self.s3.put_object(Bucket=self.bucket, Key=item[0], Body=item[1])
                return ""
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
                return item[0]

        failed = [key for key in _in_pool(put, list(kept.items())) if key]
        self.forget()
        return failed

    def remove(self, keys: Sequence[str] | dict[str, int]) -> int:
        """Delete `keys`: the small ones (links: all a repository holds but abandoned uploads) all or
        none — on a failure what went is put back and the error says so; then the large ones (an
        upload's scratch data, which no one could resume while the registry is paused)."""
        sizes = keys if isinstance(keys, dict) else {k: 0 for k in keys}
        kept = self.snapshot([k for k, size in sizes.items() if size <= _KEEP_LIMIT])
        try:
            gone = len(self.delete_keys(list(kept)))
        except PartialDelete as exc:
            lost = self.put_back({k: kept[k] for k in exc.gone})
            if lost:
                raise RuntimeFailure(f"{exc}; {len(lost)} keys could not be put back (first: {lost[0]})") from None
            raise RuntimeFailure(
                f"{exc}; the {len(exc.gone)} keys deleted before it were put back, nothing changed"
            ) from None
        return gone + len(self.delete_keys([k for k, size in sizes.items() if size > _KEEP_LIMIT]))

    def remove_prefix(self, prefix: str) -> int:
        """Delete every key under `prefix` (inside the tree, ending with `/`), all or none (`remove`)."""
        return self.remove(dict(sorted(self.keys_under(prefix).items())))


class PartialDelete(RuntimeFailure):
    """A delete that stopped part-way; `gone` are the keys it deleted before the failure."""

    def __init__(self, gone: list[str], message: str) -> None:
        super().__init__(message)
        self.gone = gone


def _in_pool(work: Callable[[Any], T], items: Sequence[Any]) -> list[T]:
    if not items:
        return []
    with ThreadPoolExecutor(min(_JOBS, len(items)), thread_name_prefix="jindr-s3") as pool:
        return list(pool.map(work, items))


class BucketReader(StorageReader):
    """`StorageReader`'s reads (catalog, tags, manifests, blobs) served from the bucket; anything the
    bucket cannot answer cleanly goes to `api`, the registry's own client.

    A repository's tag links and manifests are read in one parallel round the first time it is asked
    about (a listing asks about every tag of it next), configs when a manifest is read."""

    local = True

    def __init__(self, layout: BucketLayout, api: RegistryClient) -> None:
        self.layout = layout  # type: ignore[assignment]
        self.bucket_layout = layout
        self.api = api
        self.registry = api.registry
        self._revisions: set[tuple[str, str]] = set()
        self._warm: set[str] = set()
        self._warm_lock = threading.Lock()
        self._everything: list[str] = []

    def __repr__(self) -> str:
        return f"BucketReader('s3://{self.bucket_layout.bucket}/{self.bucket_layout.root}', {self.registry!r})"

    def _warm_up(self, repository: str) -> None:
        """Read what a listing of `repository` reads next, in a few parallel rounds: its tag links,
        the manifests they name, their children (attestations aside) and the images' configs. After
        `catalog()` (a listing of everything), every repository is warmed in the same rounds."""
        with self._warm_lock:
            if repository in self._warm:
                return
            repositories = [r for r in self._everything if r not in self._warm] or [repository]
            if repository not in repositories:
                repositories.append(repository)
            self._warm.update(repositories)
            self._warming(repositories)

    def _warming(self, repositories: Sequence[str]) -> None:
        layout = self.bucket_layout
        tags = [(r, t) for r in repositories if _repository_ok(r) for t in layout.tags(r) or [] if is_tag(t)]
        layout.prefetch([layout.tag_link_key(r, t) for r, t in tags if not layout.tag_digest_listed(r, t)])
        wanted = {(r, d) for r, t in tags if (d := layout.tag_digest(r, t))}
        seen: set[tuple[str, str]] = set()
        for _ in range(_WARM_DEPTH):
            wanted = {(r, d) for r, d in wanted - seen if self._has_revision(r, d)}
            if not wanted:
                return
            seen |= wanted
            layout.prefetch([layout.blob_key(d) for _, d in wanted if layout.listed_size(d) <= MAX_MANIFEST_BYTES])
            following: set[tuple[str, str]] = set()
            configs = []
            for r, d in wanted:
                children, config = _named_by(layout.read_blob(d, MAX_MANIFEST_BYTES))
                following.update((r, child) for child in children)
                if config and layout.has_layer_link(r, config) and layout.listed_size(config) <= MAX_MANIFEST_BYTES:
                    configs.append(layout.blob_key(config))
            layout.prefetch(configs)
            wanted = following

    def _has_revision(self, repository: str, digest: str) -> bool:
        if (repository, digest) in self._revisions:
            return True
        if not _repository_ok(repository):
            return False
        if self.bucket_layout.has_revision(repository, digest):
            self._revisions.add((repository, digest))
            return True
        return False

    def catalog(self) -> list[str]:
        names = self.bucket_layout.repositories()
        self._everything = names  # a listing of every repository follows: warm them all at once
        return names

    def tags(self, repository: str) -> list[str]:
        tags = self.bucket_layout.tags(repository) if _repository_ok(repository) else None
        if tags is None:
            return self.api.tags(repository)
        return tags

    def resolve_tag(self, repository: str, tag: str) -> str | None:
        """The digest a tag points at, when the repository still holds that manifest's revision."""
        if not (is_tag(tag) and _repository_ok(repository)):
            return None
        self._warm_up(repository)
        digest = self.bucket_layout.tag_digest(repository, tag)
        return digest if digest is not None and self._has_revision(repository, digest) else None

    def read_manifest(self, repository: str, reference: str) -> tuple[str, bytes] | None:
        """(digest, verified bytes) of a manifest the repository holds, from the bucket alone; None
        when it cannot answer cleanly (ask `get_manifest`)."""
        if not _repository_ok(repository):
            return None
        self._warm_up(repository)
        digest = self._linked_digest(repository, reference)
        if digest is None:
            return None
        raw = self.bucket_layout.read_blob(digest, MAX_MANIFEST_BYTES)
        if raw is None:
            return None
        try:
            verify_digest(raw, digest, "manifest")
        except Exception:  # noqa: BLE001 - not what the link names: the API knows better
            return None
        return digest, raw

    def get_blob(self, repository: str, digest: str, *, limit: int = 64 * 1024 * 1024) -> bytes:
        layout = self.bucket_layout
        if _DIGEST.match(digest) and _repository_ok(repository) and layout.has_layer_link(repository, digest):
            data = layout.read_blob(digest, limit)
            if data is not None:
                try:
                    verify_digest(data, digest, "blob")
                    return data
                except Exception:  # noqa: BLE001 - corrupt: let the API answer
                    pass
        return self.api.get_blob(repository, digest, limit=limit)

    def has_manifest(self, repository: str, digest: str) -> bool:
        """True when the repository holds the manifest (revision link and blob listed); a miss asks the API."""
        if (
            _DIGEST.match(digest)
            and _repository_ok(repository)
            and self._has_revision(repository, digest)
            and self.bucket_layout.has_blob(digest)
        ):
            return True
        return self.api.head_manifest(repository, digest) is not None

    def head_manifest(self, repository: str, reference: str) -> tuple[str, str, int] | None:
        try:
            got = self.get_manifest(repository, reference)
        except NotFound:
            return None
        return got.digest, got.media_type, len(got.raw)


def _named_by(raw: bytes | None) -> tuple[list[str], str]:
    """The child manifests an index names (attestations aside: a listing does not read them) and the
    config an image manifest names ("" for none)."""
    import json

    try:
        doc = json.loads(raw) if raw is not None else None
    except ValueError:
        return [], ""
    if not isinstance(doc, dict):
        return [], ""
    children = []
    for entry in doc.get("manifests") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
            continue
        annotations = entry.get("annotations")
        if isinstance(annotations, dict) and annotations.get("vnd.docker.reference.type") == "attestation-manifest":
            continue
        if _DIGEST.match(entry["digest"]):
            children.append(entry["digest"])
    config = doc.get("config")
    digest = config.get("digest") if isinstance(config, dict) else None
    return children, digest if isinstance(digest, str) and _DIGEST.match(digest) else ""
