"""Manifests and configs through the content cache: by digest once, from memory or disk after."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..client import ManifestBytes, RegistryClient
from ..errors import IntegrityError, NotFound, RegistryError, Unsupported
from ..models import INDEX_TYPES, Descriptor, Index, Manifest, Platform, config_created, parse_manifest
from .cache import ContentCache

__all__ = ["ConfigInfo", "Fetcher", "child_label"]


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
    try:
        return parse_manifest(got.raw, got.media_type, got.digest)
    except RegistryError as exc:
        sep = "@" if ":" in reference else ":"
        raise type(exc)(f"{registry} sent {repository}{sep}{reference}, but {exc}", registry=registry) from None


class Fetcher:
    """Reads manifests and configs of one registry, caching what is addressed by digest."""

    def __init__(self, client: RegistryClient, cache: ContentCache | None = None) -> None:
        self.client = client
        self.cache = cache if cache is not None else ContentCache()
        #: Reading the registry's own storage on this machine (a StorageReader), not its API.
        self.local = hasattr(client, "resolve_tag")
        # Content read from a local registry's own storage is on this disk already: copying it into
        # the cache directory would only cost writes. Derived summaries are still kept.
        self.persist = not self.local

    def manifest(self, repository: str, reference: str) -> Manifest | Index:
        """A parsed manifest; by digest from the cache when we have it, by tag always asked (on
        local storage the tag's link names the digest, and the cache answers for that)."""
        digest = reference if reference.startswith("sha256:") else self.resolve(repository, reference)
        if digest is not None:
            kept = self.cache.parsed(digest)
            if isinstance(kept, Manifest | Index):
                return kept
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
        that usually follows."""
        has_manifest = getattr(self.client, "has_manifest", None)
        if has_manifest is not None:
            return bool(has_manifest(repository, digest))
        if self.cache.parsed(digest) is None and self.cache.get(digest, disk=self.persist) is None:
            try:
                self.manifest(repository, digest)
            except NotFound:
                return False
            except (Unsupported, IntegrityError):
                return True  # there, but not a manifest jindr reads: the caller's own read says so
            return True
        return self.client.head_manifest(repository, digest) is not None

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
            if desc.media_type in INDEX_TYPES:
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
        resolve_tag = getattr(self.client, "resolve_tag", None)
        return resolve_tag(repository, reference) if resolve_tag is not None else None

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
