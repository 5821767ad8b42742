"""Media types, manifest views and the result rows that commands return. No I/O."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .errors import IntegrityError, Unsupported

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFEST_TYPES = INDEX_TYPES | IMAGE_TYPES
#: Sent as `Accept` on every manifest request: with anything narrower a registry may answer a
#: different document (an index's child) with a different digest.
ACCEPT_MANIFESTS = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])

ATTESTATION_ANNOTATION = "vnd.docker.reference.type"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
#: A digest as a registry takes one: a registered algorithm and its lower-case hex (go-digest's).
_DIGEST = re.compile(r"(?:sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})\Z")


def is_digest(text: str) -> bool:
    """True when `text` is a digest (`sha256:<64 hex>`, sha384, sha512) and nothing else: what a
    descriptor must name before it becomes a path or a URL (a document can say anything)."""
    return _DIGEST.match(text) is not None


#: A tag as the distribution spec allows one.
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")


def is_tag(text: str) -> bool:
    """True when `text` is a tag by the distribution grammar (never `.`, `..` nor holding `/`)."""
    return _TAG.match(text) is not None


def sha256_digest(data: bytes) -> str:
    """`sha256:<hex>` of `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def verify_digest(data: bytes, digest: str, what: str = "content") -> None:
    """Raise IntegrityError unless `data` hashes to `digest`."""
    algorithm, _, expected = digest.partition(":")
    if algorithm not in ("sha256", "sha512"):
        raise Unsupported(f"cannot verify {what}: digest algorithm {algorithm!r} is not supported")
    if hashlib.new(algorithm, data).hexdigest() != expected:
        raise IntegrityError(f"{what} does not match its digest {digest}")


@dataclass(frozen=True, slots=True)
class Platform:
    """`os/architecture[/variant]` of an image."""

    os: str = ""
    architecture: str = ""
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Platform:
        data = data or {}
        key = (str(data.get("os", "")), str(data.get("architecture", "")), str(data.get("variant", "")))
        if cls is not Platform:
            return cls(*key)
        # A registry's thousands of descriptors name a handful of platforms: one frozen value each.
        known = _PLATFORMS.get(key)
        if known is None:
            if len(_PLATFORMS) >= 1024:
                _PLATFORMS.clear()
            known = _PLATFORMS[key] = cls(*key)
        return known


_PLATFORMS: dict[tuple[str, str, str], Platform] = {}


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A pointer to content: media type, digest, size (+ platform and annotations in an index)."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def well_formed(self) -> bool:
        """The descriptor names a digest (see `is_digest`). One that does not cannot be pushed — the
        registry refuses the index that lists it — so such a child counts as missing, never read."""
        return _DIGEST.match(self.digest) is not None

    @property
    def is_attestation(self) -> bool:
        """BuildKit puts attestation manifests in an index as `unknown/unknown` with this annotation."""
        return self.annotations.get(ATTESTATION_ANNOTATION) == "attestation-manifest"

    @classmethod
    def from_json(cls, data: dict[str, Any], default_type: str = "") -> Descriptor:
        try:
            platform = Platform.from_json(data["platform"]) if "platform" in data else None
            return cls(
                media_type=str(data.get("mediaType") or default_type),
                digest=str(data["digest"]),
                size=int(data["size"]),
                platform=platform,
                annotations=dict(data.get("annotations") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"malformed descriptor in manifest: {exc}") from None


@dataclass(frozen=True, slots=True)
class Manifest:
    """A single-platform image manifest (OCI or Docker schema 2), with its exact bytes."""

    media_type: str
    digest: str
    raw: bytes
    config: Descriptor
    layers: tuple[Descriptor, ...]
    subject: Descriptor | None = None
    artifact_type: str = ""

    @property
    def size(self) -> int:
        """Compressed layers plus config: what a pull of this platform transfers (manifest aside)."""
        return self.config.size + sum(layer.size for layer in self.layers)


@dataclass(frozen=True, slots=True)
class Index:
    """A multi-platform index (OCI image index or Docker manifest list), with its exact bytes."""

    media_type: str
    digest: str
    raw: bytes
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None = None

    @property
    def images(self) -> tuple[Descriptor, ...]:
        """Children that are platform images (attestations left out)."""
        return tuple(m for m in self.manifests if not m.is_attestation)

    @property
    def attestations(self) -> tuple[Descriptor, ...]:
        return tuple(m for m in self.manifests if m.is_attestation)


def parse_manifest(raw: bytes, media_type: str, digest: str) -> Manifest | Index:
    """Read a manifest's bytes as an Index or Manifest; schema 1 and non-JSON raise."""
    base_type = (media_type or "").split(";")[0].strip()
    if base_type in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
        raise _schema1(digest)
    return _interpret(_json_document(raw, digest), raw, base_type, digest)


def parse_stored_manifest(raw: bytes, digest: str) -> Manifest | Index:
    """A manifest read from a registry's storage, typed as the registry serves it (see
    `stored_media_type`), with one JSON parse: the same result as `parse_manifest` given that type."""
    data = _json_document(raw, digest)
    base_type = stored_media_type(data).split(";")[0].strip()
    if base_type in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
        raise _schema1(digest)
    return _interpret(data, raw, base_type, digest)


def stored_media_type(data: Any) -> str:
    """What a registry sends as Content-Type for a stored manifest (parsed JSON): the manifest's own
    `mediaType`, else guessed as it does ("" for anything not a JSON object)."""
    if not isinstance(data, dict):
        return ""
    declared = data.get("mediaType")
    if declared:
        return str(declared)
    return OCI_INDEX if "manifests" in data else OCI_MANIFEST


def _schema1(digest: str) -> Unsupported:
    return Unsupported(f"{digest} is a Docker schema 1 manifest, which jindr does not support; re-push the image")


def _json_document(raw: bytes, digest: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise IntegrityError(f"manifest {digest} is not JSON") from None
    if not isinstance(data, dict):
        raise IntegrityError(f"manifest {digest} is not a JSON object")
    return data


def _interpret(data: dict[str, Any], raw: bytes, base_type: str, digest: str) -> Manifest | Index:
    declared = data.get("mediaType") or base_type
    if data.get("schemaVersion") == 1:
        raise _schema1(digest)
    subject = Descriptor.from_json(data["subject"]) if isinstance(data.get("subject"), dict) else None
    if declared in INDEX_TYPES or (not declared and "manifests" in data):
        children = tuple(Descriptor.from_json(m) for m in data.get("manifests") or [])
        return Index(declared or OCI_INDEX, digest, raw, children, subject)
    if declared in IMAGE_TYPES or (not declared and "config" in data):
        if not isinstance(data.get("config"), dict):
            raise IntegrityError(f"manifest {digest} has no config descriptor")
        config = Descriptor.from_json(data["config"])
        layers = tuple(Descriptor.from_json(layer) for layer in data.get("layers") or [])
        return Manifest(
            declared or OCI_MANIFEST, digest, raw, config, layers, subject, str(data.get("artifactType") or "")
        )
    raise Unsupported(f"manifest {digest} has media type {declared or 'unknown'!r}, which jindr does not support")


def config_platform(raw: bytes) -> str:
    """`os/arch[/variant]` of an image config blob ("" when it names none or is unreadable): what
    `lsi` shows for a single-platform image."""
    try:
        data = json.loads(raw)
    except ValueError:
        return ""
    return str(Platform.from_json(data)) if isinstance(data, dict) else ""


def config_created(raw: bytes) -> datetime | None:
    """The `created` time of an image config blob, tz-aware, or None when absent or unreadable."""
    try:
        value = json.loads(raw).get("created")
    except (ValueError, AttributeError):
        return None
    return parse_timestamp(value) if isinstance(value, str) else None


def parse_timestamp(value: str) -> datetime | None:
    """RFC 3339 (with nanoseconds, as Go writes them) → tz-aware datetime; None if unreadable."""
    match = _RFC3339.match(value.strip())
    if not match:
        return None
    head, fraction, zone = match.groups()
    text = head + (("." + fraction[:6]) if fraction else "") + ("+00:00" if zone in ("Z", "z") else zone)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)\Z")


# Result rows. Field order is the DataFrame's column order (frames.py reads it from here).


@dataclass(slots=True)
class RepoRow:
    """`ls`: one repository."""

    registry: str
    repository: str


@dataclass(slots=True)
class ImageRow:
    """`lsi`: one tag.

    `missing` is empty for a whole image. For a *broken* one — an index listing manifests the
    registry no longer has (deleted alone by another tool, or by a registry killed mid-delete) —
    it names each missing child: its platform (`linux/arm64`), or `attestation` (with the platform
    it attests). Such a tag does not pull.
    """

    registry: str
    repository: str
    tag: str
    digest: str
    image_id: str
    media_type: str
    platforms: list[str]
    missing: list[str] = field(default_factory=list)


@dataclass(slots=True)
class LongImageRow:
    """`lsi -l`: one tag, with size (all platforms present) and created (newest platform); `missing`
    as in `ImageRow`."""

    registry: str
    repository: str
    tag: str
    digest: str
    image_id: str
    media_type: str
    platforms: list[str]
    size: int
    created: datetime | None
    missing: list[str] = field(default_factory=list)


@dataclass(slots=True)
class PlatformRow:
    """`inspect`: the index, then one row per child (platform image or attestation).

    `kind` is `index`, `image`, `attestation`, or `missing`: a child the index lists but the
    registry no longer has (its platform, digest, media type and size are the index's descriptor;
    `layers` 0 and `created` empty).
    """

    registry: str
    repository: str
    tag: str
    kind: str
    platform: str
    os: str
    architecture: str
    variant: str
    digest: str
    media_type: str
    size: int
    layers: int
    created: datetime | None
    config_digest: str


@dataclass(slots=True)
class InstanceRow:
    """`info` / `status` / `start`: one registry that jindr runs on this machine."""

    registry: str
    runtime: str
    name: str
    status: str
    storage: str
    size: int
    image: str
    version: str
    mode: str
    upstream: str


@dataclass(slots=True)
class GcRow:
    """`gc`: what garbage collection removed (or would remove, with --dry-run), in two units.

    `manifests_deleted` counts manifest revisions unlinked from their repositories (with `rmr`, the
    removed repositories' too) and `blobs_deleted` the blobs swept from the blob store.
    `reclaimed_bytes` is the apparent size (`st_size`, the bytes a pull would transfer) of those
    blobs, summed. `disk_before`, `disk_after` and `disk_freed` are bytes of allocated disk blocks
    (`st_blocks` x 512, files and directories) under the storage directory: measured around the run;
    for a dry run `disk_freed` is an estimate from the blocks the doomed files and directories hold,
    and `disk_after` is `disk_before - disk_freed`. A dry run and a run on the same state report the
    same counts and `reclaimed_bytes`.
    """

    registry: str
    dry_run: bool
    manifests_deleted: int
    blobs_deleted: int
    reclaimed_bytes: int
    disk_before: int
    disk_after: int
    disk_freed: int

    def describe(self) -> str:
        """For messages, both units said: "395.7 KiB in 15 blobs (464.0 KiB of disk)" (1 KiB = 1024 B)."""
        blobs = "blob" if self.blobs_deleted == 1 else "blobs"
        size, disk = self.binary(self.reclaimed_bytes), self.binary(self.disk_freed)
        return f"{size} in {self.blobs_deleted} {blobs} ({disk} of disk)"

    @staticmethod
    def binary(n: int) -> str:
        """A byte count in binary units: 615 B, 12.3 KiB, 4.0 MiB."""
        value, unit = float(n), "B"
        for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
            if value < 1024 or unit == "TiB":
                break
            value /= 1024
        return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"


@dataclass(slots=True)
class ActionRow:
    """`rmi` / `rmr`: one tag or digest and what happened to it."""

    registry: str
    repository: str
    tag: str
    digest: str
    action: str  # deleted, kept, would delete, not found
    note: str


@dataclass(slots=True)
class CopyRow:
    """`cp` / `cpe` / `load` / `save`: one copied, loaded or saved image.

    `action` says what happened to the destination tag: `pushed` (it did not exist), `moved` (it
    pointed at another image, now at `digest`), `unchanged` (it already pointed at `digest`), or
    `saved` (`save` wrote a new file). `previous_digest` is the digest the tag had before ("" when
    it had none). A row with several tags (`cp --tag`) reports the first that moved, else the
    first that was new, else the destination's.
    """

    source: str
    destination: str
    digest: str
    action: str
    previous_digest: str
    platforms: list[str]
    blobs_copied: int
    blobs_skipped: int
    blobs_mounted: int
    bytes_copied: int
    seconds: float


@dataclass(slots=True)
class DuRow:
    """`du`: one repository. `manifests` and `blobs` count distinct digests reachable from its tags
    (blobs: configs and layers); `size` sums those blobs once each, `unique_size` the ones no other
    repository references (what deleting it frees after `gc`), `shared_size` the rest. `broken`:
    tags whose index lists a manifest the registry no longer has (see `ImageRow.missing`)."""

    registry: str
    repository: str
    tags: int
    manifests: int
    blobs: int
    size: int
    unique_size: int
    shared_size: int
    broken: int = 0


@dataclass(slots=True)
class DuTotalRow:
    """`du --total`: the whole registry, every count distinct across repositories.

    `manifests`/`blobs`/`size` as in `DuRow` but over all repositories (a layer three repositories
    share counts once). For a registry jindr runs here (else empty): `disk_bytes`, the disk blocks
    under its storage; `gc_blobs` and `gc_bytes`, what `gc` would remove now (apparent sizes, as
    `gc` reports `reclaimed_bytes`).
    """

    registry: str
    repositories: int
    tags: int
    manifests: int
    blobs: int
    size: int
    broken: int
    disk_bytes: int | None
    gc_blobs: int | None
    gc_bytes: int | None


@dataclass(slots=True)
class LayerRow:
    """`layers`: one layer of one platform image of one tag.

    `position` counts from 0, the base layer. `media_type` is the layer's full media type.
    `created_by` is the config history step that made the layer: history entries marked
    `"empty_layer": true` made none (Docker's rule); when the remaining entries do not line up one
    to one with the manifest's layers it is empty rather than a guess. `shared_by` counts the
    distinct platform manifests in the listed scope that use this blob (one manifest under two tags
    counts once); `first_seen` is `repo:tag` of the oldest of them by the config's `created` (ties:
    by name). `manifest_digest` is the platform manifest, not the index.
    """

    registry: str
    repository: str
    tag: str
    platform: str
    position: int
    layer_digest: str
    media_type: str
    size: int
    created_by: str
    shared_by: int
    first_seen: str
    manifest_digest: str


@dataclass(slots=True)
class HistoryRow:
    """`history`: one step of an image config's history, per platform, in order.

    `step` counts from 0. `layer_digest` and `size` are the layer the step produced (empty for an
    `empty_layer` step, and for every step when the history does not line up with the layers; see
    `LayerRow.created_by`).
    """

    registry: str
    repository: str
    tag: str
    platform: str
    step: int
    created: datetime | None
    created_by: str
    comment: str
    empty_layer: bool
    layer_digest: str
    size: int | None


@dataclass(slots=True)
class ConfigRow:
    """`config`: what one platform image runs, from its config blob — for side-by-side comparison.

    `entrypoint` and `cmd` are lists (empty when unset), `env` the config's `KEY=value` list in its
    order, `labels` a dict, `exposed_ports` sorted (`80/tcp`).
    """

    registry: str
    repository: str
    tag: str
    platform: str
    os: str
    architecture: str
    variant: str
    user: str
    working_dir: str
    entrypoint: list[str]
    cmd: list[str]
    env: list[str]
    labels: dict[str, str]
    exposed_ports: list[str]
    created: datetime | None
    config_digest: str


@dataclass(slots=True)
class DiffRow:
    """`diff A B`: one difference (or shared layer) between two images, per platform.

    `what` is `layer`, `config` or `platform`; `change` is `shared`, `only in A`, `only in B`,
    `changed`, or (platform rows) `missing in A` / `missing in B`: the index lists that platform
    but the registry lost its manifest. `key` is the layer digest, the config field as a
    Dockerfile would say it (`ENV PATH`, `LABEL version`, `USER`, `WORKDIR`, `ENTRYPOINT`, `CMD`,
    `EXPOSE`), or for `platform` rows the platform manifest's digest. `a` and `b` are the layer's
    size on each side (layer rows) or the value on each side (config rows: text, lists as JSON;
    None where unset), `size` the layer's size and `created_by` the history step that made it
    (see `LayerRow`).
    """

    platform: str
    what: str
    change: str
    key: str
    a: Any
    b: Any
    size: int | None
    created_by: str


@dataclass(slots=True)
class UserRow:
    """`user add` / `user remove` / `user list`: one user of a registry jindr runs with `--users`."""

    registry: str
    user: str
    action: str  # added, replaced, removed, listed


@dataclass(slots=True)
class TrustRow:
    """`trust`: what one client needs to trust a TLS registry jindr runs, and where it is.

    `client` is who reads it (`jindr` and Python through `SSL_CERT_FILE`, `docker` through its
    certs.d, `podman/skopeo` through `--cert-dir` or containers' certs.d); `path` the file or
    directory; `installed` whether this run wrote it where the client looks on its own.
    """

    registry: str
    client: str
    how: str
    path: str
    installed: bool
    fingerprint: str
