"""Manifests and configs through the content cache: by digest once, from memory or disk after."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..client import ManifestBytes, RegistryClient
from ..client.storage import StorageReader
from ..errors import IntegrityError, NotFound, RegistryError, Unsupported
from ..models import (
    INDEX_TYPES,
    Descriptor,
    Index,
    Manifest,
    Platform,
    config_created,
    is_digest,
    is_tag,
    parse_manifest,
    parse_stored_manifest,
)
from .cache import ContentCache

__all__ = ["ConfigInfo", "Fetcher", "ManifestSource", "child_label"]


class ManifestSource(Protocol):
    """What a `Fetcher` reads from: a registry's API (`RegistryClient`) or its storage on this
    machine (`client.storage.StorageReader`) — the reads both answer alike."""

    @property
    def local(self) -> bool:
        """True when this reads the registry's own storage on this disk, False over its API."""
        ...

    registry: str

    def catalog(self) -> list[str]: ...

    def tags(self, repository: str) -> list[str]: ...

    def get_manifest(self, repository: str, reference: str) -> ManifestBytes: ...

    def head_manifest(self, repository: str, reference: str) -> tuple[str, str, int] | None: ...

    def get_blob(self, repository: str, digest: str, *, limit: int = ...) -> bytes: ...


def child_label(index: Index, desc: Descriptor) -> str:
    """How a child of an index is named to a user: its platform, or `attestation (PLATFORM)`."""
    if desc.is_attestation:
        subject = desc.annotations.get("vnd.docker.reference.digest", "")
        attested = next((d.platform for d in index.images if d.digest == subject and d.platform), None)
        return f"attestation ({attested})" if attested is not None else "attestation"
    text = str(desc.platform) if desc.platform is not None else ""
    return text or desc.digest[:19]


@dataclass(frozen=True, slots=True)
class ConfigInfo:
    """What listing needs from an image config blob."""

    platform: Platform
    created: object  # datetime | None


def blob_present(client: RegistryClient, repository: str, digest: str) -> bool:
    """True when the registry already holds the blob in `repository`.

    A registry that fails to answer (5xx after retries; seen after a full disk left a torn link
    file) counts as not having it: uploading again rewrites what it stored, where skipping would
    leave an image that cannot be pulled.
    """
    try:
        return client.head_blob(repository, digest) is not None
    except RegistryError as exc:
        if exc.status is not None and exc.status >= 500:
            return False
        raise


def fetch_manifest(client: RegistryClient, repository: str, reference: str) -> Manifest | Index:
    """A manifest from the registry API, parsed (no cache)."""
    return parse_fetched(client.registry, repository, reference, client.get_manifest(repository, reference))


def parse_fetched(registry: str, repository: str, reference: str, got: ManifestBytes) -> Manifest | Index:
    """Parse what a registry sent for a manifest; an error says where it came from (a server that
    is not a registry can answer 200 with anything)."""
    return _parsed_from(registry, repository, reference, lambda: parse_manifest(got.raw, got.media_type, got.digest))


def _parsed_from(
    registry: str, repository: str, reference: str, parse: Callable[[], Manifest | Index]
) -> Manifest | Index:
    try:
        return parse()
    except RegistryError as exc:
        sep = "@" if ":" in reference else ":"
        raise type(exc)(f"{registry} sent {repository}{sep}{reference}, but {exc}", registry=registry) from None


class Fetcher:
    """Reads manifests and configs of one registry, caching what is addressed by digest."""

    def __init__(self, client: ManifestSource, cache: ContentCache | None = None) -> None:
        self.client = client
        self.cache = cache if cache is not None else ContentCache()
        #: Reading the registry's own storage on this machine, not its API.
        self.local = client.local
        #: The storage reader itself, when that is the source: its link files answer some
        #: questions (what a tag points at, whether a manifest is there) without reading manifests.
        self.storage = client if isinstance(client, StorageReader) else None
        # Content read from a local registry's own storage is on this disk already: copying it into
        # the cache directory would only cost writes. Derived summaries are still kept.
        self.persist = not self.local

    def manifest(self, repository: str, reference: str, *, resolved: str | None = None) -> Manifest | Index:
        """A parsed manifest; by digest from the cache when we have it, by tag always asked (on
        local storage the tag's link names the digest, and the cache answers for that). `resolved`:
        the digest `resolve` gave for `reference` just before (its link is not read twice)."""
        if not (is_tag(reference) or is_digest(reference)):
            # Neither (a child's "digest" that is a path, say): nothing a registry serves, and never
            # a path or a URL — `v1/../v1` would name the tag v1.
            raise NotFound(
                f"manifest {reference!r} is not in {repository}: not a tag nor a digest", registry=self.client.registry
            )
        digest = resolved or (reference if reference.startswith("sha256:") else self.resolve(repository, reference))
        if digest is not None and self.storage is not None:
            # From storage, what the cache holds counts only while the blob's file is the one
            # whose bytes were verified (a stat); else it is read and verified again.
            kept = self._kept(digest)
            if kept is not None:
                return kept
            stored = self._stored(repository, digest, reference)
            if stored is not None:
                return stored
        elif digest is not None:
            parsed_before = self.cache.parsed(digest)
            if isinstance(parsed_before, Manifest | Index):
                return parsed_before
            hit = self.cache.get(digest, disk=self.persist)
            if hit is not None:
                parsed = parse_manifest(hit[1], hit[0], digest)
                self.cache.keep_parsed(digest, parsed)
                return parsed
        # A tag resolved from local storage is read by its digest: its link is read once, not twice.
        got = self.client.get_manifest(repository, digest or reference)
        parsed = parse_fetched(self.client.registry, repository, reference, got)
        self.cache.put(got.digest, parsed.media_type, got.raw, persist=self.persist)
        self.cache.keep_parsed(got.digest, parsed)
        return parsed

    def exists(self, repository: str, digest: str) -> bool:
        """Whether the registry still has a manifest — always asked, never from the cache: the cache
        knows what a digest contained, not that it is still there.

        Over the API, a manifest the cache does not hold is fetched (one GET, as a HEAD would cost)
        rather than asked about: the answer proves it is there and fills the cache for the read
        that usually follows. Anything but a digest is not there (and never becomes a path or URL)."""
        if not is_digest(digest):
            return False
        if self.storage is not None:
            return self.storage.has_manifest(repository, digest)
        if self.cache.parsed(digest) is None and self.cache.get(digest, disk=self.persist) is None:
            try:
                self.manifest(repository, digest)
            except NotFound:
                return False
            except (Unsupported, IntegrityError):
                return True  # there, but not a manifest jindr reads: the caller's own read says so
            return True
        return self.client.head_manifest(repository, digest) is not None

    def present(self, repository: str, digest: str) -> Manifest | Index:
        """The manifest `digest`, which the registry must still have (NotFound when it has not):
        `exists` and then `manifest` in one step. From storage, the read that finds the manifest
        (revision link and blob) is the proof, and one a cached digest skips is still checked;
        over the API, `exists` asks as it always does. Anything but a digest is not there."""
        if not is_digest(digest):
            raise NotFound(f"manifest {digest} is not in {repository}: not a digest", registry=self.client.registry)
        if self.storage is not None:
            kept = self._kept(digest)
            if kept is not None:  # the very bytes verified before: is it still linked here?
                if self.storage.has_manifest(repository, digest):
                    return kept
                raise NotFound(f"manifest {digest} is gone from {repository}", registry=self.client.registry)
            stored = self._stored(repository, digest, digest)
            if stored is not None:
                return stored
            # Storage cannot answer cleanly: the API says whether it is there (NotFound when not).
        if not self.exists(repository, digest):
            raise NotFound(f"manifest {digest} is gone from {repository}", registry=self.client.registry)
        return self.manifest(repository, digest)

    def unchanged(self, digest: str) -> bool:
        """From storage: the blob file of manifest `digest` is the one whose bytes were read and
        verified against `digest` before (in this process or an earlier one: its stamp, one stat, is
        recorded in the cache). False over the API, for a file changed since, and for one too fresh
        for its stamp to count. Says nothing of whether a repository links it."""
        return self.storage is not None and self.cache.verified(digest, self.storage.manifest_stamp(digest))

    def _kept(self, digest: str) -> Manifest | Index | None:
        """The parsed manifest the cache keeps for `digest`, when storage still holds those bytes."""
        kept = self.cache.parsed(digest)
        return kept if isinstance(kept, Manifest | Index) and self.unchanged(digest) else None

    def _stored(self, repository: str, digest: str, reference: str) -> Manifest | Index | None:
        """The manifest `digest` (asked for as `reference`) read and parsed from storage with one
        JSON parse, kept in memory; None when storage cannot answer cleanly (ask the API). Only a
        digest is looked up: `read_manifest` would take anything else for a tag."""
        if self.storage is None or not is_digest(digest):
            return None
        found = self.storage.read_manifest_stamped(repository, digest)
        if found is None:
            return None
        _, raw, stamp = found
        parsed = _parsed_from(self.client.registry, repository, reference, lambda: parse_stored_manifest(raw, digest))
        self.cache.keep_parsed(digest, parsed)
        if stamp is not None:
            self.cache.put_stamp(digest, stamp)
        return parsed

    def missing_children(self, repository: str, index: Index) -> list[tuple[Descriptor, str]]:
        """The manifests under an index that the registry no longer has, each with its label — through
        nested indexes too (a lost grandchild breaks the top index as much as a lost child)."""
        gone: list[tuple[Descriptor, str]] = []
        for desc in index.manifests:
            if not self.exists(repository, desc.digest):
                gone.append((desc, child_label(index, desc)))
            elif desc.media_type in INDEX_TYPES:
                nested = self.manifest(repository, desc.digest)
                if isinstance(nested, Index) and nested.digest != index.digest:
                    gone.extend(self.missing_children(repository, nested))
        return gone

    def descendants(self, repository: str, index: Index) -> list[str]:
        """Digests of every manifest under an index, nested indexes included (from the cache when it
        has them: what a digest holds never changes)."""
        found: list[str] = []
        for desc in index.manifests:
            found.append(desc.digest)
            if desc.media_type in INDEX_TYPES and desc.well_formed:
                try:
                    nested = self.manifest(repository, desc.digest)
                except NotFound:
                    continue
                if isinstance(nested, Index) and nested.digest != index.digest:
                    found.extend(self.descendants(repository, nested))
        return found

    def resolve(self, repository: str, reference: str) -> str | None:
        """A tag's digest when it is cheap to know without the manifest (local storage), else None."""
        if reference.startswith("sha256:"):
            return reference
        return self.storage.resolve_tag(repository, reference) if self.storage is not None else None

    def head(self, repository: str, reference: str) -> tuple[str, str, bytes]:
        """(digest, media type, bytes) of a manifest, without parsing it (for summary-cache hits)."""
        if reference.startswith("sha256:"):
            hit = self.cache.get(reference, disk=self.persist)
            if hit is not None:
                return reference, hit[0], hit[1]
        got = self.client.get_manifest(repository, reference)
        return got.digest, got.media_type, got.raw

    def config(self, repository: str, digest: str) -> ConfigInfo:
        """Platform and created time of a config blob."""
        raw = self._config_raw(repository, digest)
        return ConfigInfo(Platform.from_json(_json_object(raw)), config_created(raw))

    def config_json(self, repository: str, digest: str) -> dict:
        """A config blob parsed as JSON, through the same cache as `config` ({} when it is not a
        JSON object: such an image has nothing to show, which is not an error of the listing)."""
        return _json_object(self._config_raw(repository, digest))

    def _config_raw(self, repository: str, digest: str) -> bytes:
        """A config blob's bytes, by digest from the cache when it has them."""
        hit = self.cache.get(digest, disk=self.persist)
        if hit is not None:
            return hit[1]
        raw = self.client.get_blob(repository, digest, limit=16 * 1024 * 1024)
        self.cache.put(digest, "", raw, persist=self.persist)
        return raw


def _json_object(raw: bytes) -> dict:
    """`raw` parsed as a JSON object; {} for anything else."""
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
