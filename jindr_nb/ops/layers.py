"""`layers`, `history`, `config`: what images are made of, as rows — through the one graph walker.

Each reference is walked with `graph.walk` (an index down to its platform images); a child the
registry lost is named in `Resolved.missing`, never skipped in silence. Layers are matched to the
config history steps that made them by Docker's rule: every history entry not marked
`"empty_layer": true` made one layer, in order. When those entries and the manifest's layers do
not line up one to one (hand-made or rewritten images), no layer is attributed rather than a wrong
one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import IntegrityError, NotFound, Unsupported
from ..models import ConfigRow, Descriptor, HistoryRow, Index, LayerRow, Manifest, Platform, parse_timestamp
from ..refs import Ref
from .fetch import Fetcher, ManifestSource, child_label
from .graph import Node, walk
from .pool import paused_gc, workers

__all__ = [
    "DEFAULT_JOBS",
    "Image",
    "Resolved",
    "Scan",
    "config_rows",
    "history_rows",
    "image_layers",
    "layer_rows",
    "line_up",
    "resolve",
    "scan",
    "text_mapping",
]

DEFAULT_JOBS = 8
#: Prefix of the per-manifest records this module keeps in the summary cache (listing keeps its
#: own records under the bare digest).
_SUMMARY = "layers-v1:"
_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """One layer of an image with the history step that made it ("" / None when unknown)."""

    digest: str
    media_type: str
    size: int
    created_by: str
    step: int | None


@dataclass
class Image:
    """One platform image (or, when asked for, attestation) reached from a reference."""

    fetcher: Fetcher
    ref: Ref
    platform: str
    manifest: Manifest
    created: datetime | None = None
    layers: list[LayerInfo] = field(default_factory=list)

    @property
    def name(self) -> str:
        return ref_name(self.ref)

    def config(self) -> dict[str, Any]:
        return self.fetcher.config_json(self.ref.repository, self.manifest.config.digest)


@dataclass
class Resolved:
    """What one reference reaches: its platform images in index order, and the children it lost."""

    ref: Ref
    #: The manifest the reference points at (an index, or the image itself).
    digest: str
    images: list[Image]
    missing: list[str]
    #: (label, descriptor) of each child the registry lost, as `missing` names them.
    lost: list[tuple[str, Descriptor]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return ref_name(self.ref)


@dataclass
class Scan:
    """What `scan` found: the tags it walked, and those it could not."""

    found: list[Resolved] = field(default_factory=list)
    #: `repo:tag` of tags still listed whose own manifest is gone.
    torn: list[str] = field(default_factory=list)
    #: (`repo:tag`, why) of tags whose manifest jindr cannot read (schema 1, malformed).
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    def unreadable_notice(self) -> str:
        """One line naming the tags skipped as unreadable, with why and what to do ("" for none)."""
        if not self.unreadable:
            return ""
        count = len(self.unreadable)
        named = ", ".join(f"{name} ({why})" for name, why in self.unreadable[:3])
        more = f" and {count - 3} more" if count > 3 else ""
        return (
            f"warning: {count} {'tag' if count == 1 else 'tags'} skipped, not a manifest jindr reads: {named}{more}"
            " — re-push the image with a current client (`skopeo copy` converts schema 1), or `rmi` the tag"
        )


def ref_name(ref: Ref) -> str:
    """`repo:tag`, or `repo@digest` for a reference by digest."""
    return f"{ref.repository}:{ref.tag}" if ref.tag else f"{ref.repository}@{ref.digest}"


def line_up(history: Any, layers: int) -> list[int] | None:
    """The history step of each layer, in order; None when the steps that made layers (every entry
    not marked `"empty_layer": true`) are not exactly as many as the layers."""
    if not isinstance(history, list):
        history = []
    steps = [i for i, entry in enumerate(history) if not _empty(entry)]
    return steps if len(steps) == layers else None


def _empty(entry: Any) -> bool:
    return isinstance(entry, dict) and entry.get("empty_layer") is True


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def resolve(fetcher: Fetcher, ref: Ref, *, attestations: bool = False) -> Resolved:
    """Walk `ref` (an unknown image raises the registry's NotFound) to its platform images."""
    repository = ref.repository
    top = fetcher.manifest(repository, ref.reference)

    def get(reference: str) -> Manifest | Index | None:
        try:
            return fetcher.manifest(repository, reference)
        except Unsupported:
            return None  # schema 1 or a foreign document: kept opaque, not descended

    def present(digest: str) -> Manifest | Index | None:
        try:
            return fetcher.present(repository, digest)
        except Unsupported:
            return None

    graph = walk(
        get,
        top,
        exists=lambda digest: fetcher.exists(repository, digest),
        # Attestations not asked for are only checked, not read.
        follow=None if attestations else (lambda desc: not desc.is_attestation),
        present=present,
    )
    indexes = {n.digest: n.manifest for n in graph.nodes if isinstance(n.manifest, Index)}
    images = []
    for node in graph.images(attestations=attestations):
        manifest = _image_manifest(node, fetcher)
        images.append(Image(fetcher, ref, _platform(fetcher, repository, node, manifest, indexes), manifest))
    lost = [(child_label(indexes[parent], desc), desc) for parent, desc in graph.missing]
    return Resolved(ref, top.digest, images, [label for label, _ in lost], lost)


def _image_manifest(node: Node, fetcher: Fetcher) -> Manifest:
    """The node's image manifest (`Graph.images` yields nothing else; an error, not a crash, if it did)."""
    if not isinstance(node.manifest, Manifest):
        raise IntegrityError(
            f"{node.digest} was walked as a platform image but is an index", registry=fetcher.client.registry
        )
    return node.manifest


def _platform(fetcher: Fetcher, repository: str, node: Node, manifest: Manifest, indexes: dict[str, Index]) -> str:
    """The platform an index lists the image with; for a lone manifest, its config's."""
    via = node.via
    if via is not None and via.is_attestation:
        return child_label(indexes[node.parent], via)
    if via is not None and via.platform is not None and str(via.platform):
        return str(via.platform)
    return str(fetcher.config(repository, manifest.config.digest).platform)


def image_layers(image: Image) -> Image:
    """Fill in `created` and `layers` (with the history step of each), from a per-manifest record
    in the summary cache when there is one: manifest and config never change under a digest."""
    manifest = image.manifest
    key = _SUMMARY + manifest.digest
    cache = image.fetcher.cache
    record = cache.get_summary(key)
    if record is None:
        config = image.config()
        history = config.get("history")
        history = history if isinstance(history, list) else []
        steps = line_up(history, len(manifest.layers))
        created_value = config.get("created")
        record = {
            "c": created_value if isinstance(created_value, str) else None,
            "s": steps,
            "b": [_text(history[i].get("created_by")) if isinstance(history[i], dict) else "" for i in steps]
            if steps is not None
            else None,
        }
        cache.put_summary(key, record)
    image.created = parse_timestamp(record["c"]) if record.get("c") else None
    steps, made_by = record.get("s"), record.get("b")
    image.layers = [
        LayerInfo(
            desc.digest,
            desc.media_type,
            desc.size,
            made_by[i] if made_by is not None else "",
            steps[i] if steps is not None else None,
        )
        for i, desc in enumerate(manifest.layers)
    ]
    return image


def scan(
    fetcher: Fetcher,
    selection: Sequence[Ref] = (),
    *,
    attestations: bool = False,
    jobs: int = DEFAULT_JOBS,
) -> Scan:
    """Every tag of the selected repositories (all when `selection` is empty) walked, with its
    images' layers; a `Ref` with a tag or digest selects that image. Sorted by repository, tag.

    A listed tag whose manifest is gone (torn) or cannot be read (schema 1, malformed) is not
    walked but named in the result; one the user named raises."""
    client = fetcher.client
    torn: list[str] = []
    unreadable: list[tuple[str, str]] = []
    with nullcontext() if fetcher.local else workers(jobs, "jindr-layers") as pool, paused_gc():
        run: Callable[..., Any] = map if pool is None else pool.map  # storage reads: threads only cost
        whole = [r.repository for r in selection if not (r.tag or r.digest)]
        if not selection:
            whole = sorted(client.catalog())
        wanted: list[tuple[Ref, bool]] = []
        for repository, tags in zip(whole, run(_tags(client, explicit=bool(selection)), whole), strict=True):
            wanted.extend((Ref(client.registry, repository, tag), False) for tag in tags)
        wanted.extend((r, True) for r in selection if r.tag or r.digest)
        unique = list({(r.repository, r.tag, r.digest): (r, e) for r, e in wanted}.values())

        def one(item: tuple[Ref, bool]) -> Resolved | None:
            ref, explicit = item
            try:
                found = resolve(fetcher, ref, attestations=attestations)
            except NotFound:
                if explicit:
                    raise
                if ref.tag in client.tags(ref.repository):
                    torn.append(ref_name(ref))  # still listed, manifest gone: it does not pull
                return None  # else deleted between the tag list and now: not part of the listing
            except (Unsupported, IntegrityError) as exc:
                if explicit and "re-push" in str(exc):
                    raise  # the parser's message already says what to do
                if explicit:
                    raise type(exc)(
                        f"{exc}; `layers` cannot read {ref_name(ref)}: re-push it with a current client, or `rmi` it",
                        registry=client.registry,
                    ) from None
                unreadable.append((ref_name(ref), _why(exc)))
                return None
            for image in found.images:
                image_layers(image)
            return found

        try:
            results = [r for r in run(one, unique) if r is not None]
        finally:
            fetcher.cache.flush()  # the records this scan made, for the next process
    results.sort(key=lambda r: (r.ref.repository, r.ref.tag or "", r.ref.digest or ""))
    return Scan(results, sorted(torn), sorted(unreadable))


def _why(exc: Exception) -> str:
    """A few words for why a manifest cannot be read (the parser's own message says which)."""
    if isinstance(exc, Unsupported):
        return "Docker schema 1" if "schema 1" in str(exc) else "a media type jindr does not read"
    return "malformed"


def _tags(client: ManifestSource, *, explicit: bool) -> Callable[[str], list[str]]:
    def tags(repository: str) -> list[str]:
        try:
            return list(client.tags(repository))
        except NotFound:
            if explicit:
                raise  # a repository the user named: say it is unknown
            return []  # in the catalog but emptied or removed meanwhile

    return tags


def layer_rows(found: Sequence[Resolved]) -> list[LayerRow]:
    """One row per (tag, platform, layer) with `shared_by` and `first_seen` over all of `found`."""
    images = [image for r in found for image in r.images]
    users: dict[str, set[str]] = {}
    first: dict[str, tuple[bool, datetime, str]] = {}
    for image in images:
        # An image without a created time is never the oldest; ties go by name.
        rank = (image.created is None, image.created or _NEVER, image.name)
        for layer in image.layers:
            users.setdefault(layer.digest, set()).add(image.manifest.digest)
            if layer.digest not in first or rank < first[layer.digest]:
                first[layer.digest] = rank
    return [
        LayerRow(
            image.ref.registry,
            image.ref.repository,
            image.ref.tag or "",
            image.platform,
            position,
            layer.digest,
            layer.media_type,
            layer.size,
            layer.created_by,
            len(users[layer.digest]),
            first[layer.digest][2],
            image.manifest.digest,
        )
        for image in images
        for position, layer in enumerate(image.layers)
    ]


def history_rows(found: Resolved) -> list[HistoryRow]:
    """The config history of each platform image, step by step, with the layer each step made."""
    rows = []
    for image in found.images:
        image_layers(image)
        history = image.config().get("history")
        made = {layer.step: layer for layer in image.layers if layer.step is not None}
        for step, entry in enumerate(history if isinstance(history, list) else []):
            entry = entry if isinstance(entry, dict) else {}
            layer = made.get(step)
            created = entry.get("created")
            rows.append(
                HistoryRow(
                    image.ref.registry,
                    image.ref.repository,
                    image.ref.tag or "",
                    image.platform,
                    step,
                    parse_timestamp(created) if isinstance(created, str) else None,
                    _text(entry.get("created_by")),
                    _text(entry.get("comment")),
                    _empty(entry),
                    layer.digest if layer else "",
                    layer.size if layer else None,
                )
            )
    return rows


def config_rows(found: Resolved) -> list[ConfigRow]:
    """One row per platform image: what it runs and how it is labelled."""
    rows = []
    for image in found.images:
        data = image.config()
        run = runtime_config(data)
        platform = Platform.from_json(data)
        created = data.get("created")
        rows.append(
            ConfigRow(
                image.ref.registry,
                image.ref.repository,
                image.ref.tag or "",
                image.platform,
                platform.os,
                platform.architecture,
                platform.variant,
                _text(run.get("User")),
                _text(run.get("WorkingDir")),
                _strings(run.get("Entrypoint")),
                _strings(run.get("Cmd")),
                _strings(run.get("Env")),
                text_mapping(run.get("Labels")),
                sorted(str(p) for p in run.get("ExposedPorts") or {})
                if isinstance(run.get("ExposedPorts"), dict)
                else [],
                parse_timestamp(created) if isinstance(created, str) else None,
                image.manifest.config.digest,
            )
        )
    return rows


def runtime_config(data: dict[str, Any]) -> dict[str, Any]:
    """The config's `config` section (what a container runs), {} when absent or not an object."""
    run = data.get("config")
    return run if isinstance(run, dict) else {}


def text_mapping(value: Any) -> dict[str, str]:
    """A JSON object's keys and text values ({} when it is not an object; non-text values as JSON) —
    how `config` and `diff` both show labels."""
    if not isinstance(value, dict):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


def _strings(value: Any) -> list[str]:
    """A JSON string list as given (a lone string, as some legacy tools write Cmd, as one item)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v if isinstance(v, str) else str(v) for v in value]
    return []
