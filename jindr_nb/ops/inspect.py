"""`inspect`: one row for an index and one per child (platform image or attestation)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import partial

from ..models import Descriptor, Index, Manifest, PlatformRow
from ..refs import Ref
from .fetch import Fetcher
from .listing import DEFAULT_JOBS
from .pool import workers

__all__ = ["inspect_images"]


def inspect_images(fetcher: Fetcher, refs: Sequence[Ref], *, jobs: int = DEFAULT_JOBS) -> list[PlatformRow]:
    """Rows for every image in `refs`, in the order given; an unknown image raises NotFound."""
    with workers(jobs, "jindr-inspect") as pool:
        tops = list(pool.map(lambda ref: fetcher.manifest(ref.repository, ref.reference), refs))
        rows: list[PlatformRow] = []
        for ref, top in zip(refs, tops, strict=True):
            tag = ref.tag or ""
            if isinstance(top, Index):
                children = list(pool.map(partial(_child_row, fetcher, ref, tag), top.manifests))
                images = [r for r in children if r.kind == "image"]
                rows.append(_index_row(ref, tag, top, images))
                rows.extend(children)
                # A nested index shows as one row; what it lost below shows as rows of its own.
                direct = {d.digest for d in top.manifests}
                deeper = [d for d, _ in fetcher.missing_children(ref.repository, top) if d.digest not in direct]
                rows.extend(_missing_row(ref, tag, d) for d in deeper)
            else:
                rows.append(_image_row(fetcher, ref, tag, top, None))
    return rows


def _index_row(ref: Ref, tag: str, index: Index, images: list[PlatformRow]) -> PlatformRow:
    """An index's own row: platform columns empty, size and layers summed over its platform images."""
    created = max((r.created for r in images if r.created), default=None)
    return PlatformRow(
        ref.registry,
        ref.repository,
        tag,
        "index",
        "",
        "",
        "",
        "",
        index.digest,
        index.media_type,
        sum(r.size for r in images),
        sum(r.layers for r in images),
        created,
        "",
    )


def _child_row(fetcher: Fetcher, ref: Ref, tag: str, desc: Descriptor) -> PlatformRow:
    if not fetcher.exists(ref.repository, desc.digest):  # asked every time: the cache cannot know
        return _missing_row(ref, tag, desc)
    manifest = fetcher.manifest(ref.repository, desc.digest)
    if not isinstance(manifest, Manifest):
        # A nested index: show it as such, without descending further.
        return _index_row(ref, tag, manifest, [])
    return _image_row(fetcher, ref, tag, manifest, desc)


def _image_row(fetcher: Fetcher, ref: Ref, tag: str, manifest: Manifest, desc: Descriptor | None) -> PlatformRow:
    info = fetcher.config(ref.repository, manifest.config.digest)
    attestation = desc is not None and desc.is_attestation
    platform = desc.platform if desc is not None and desc.platform is not None else info.platform
    created = info.created if isinstance(info.created, datetime) else None
    return PlatformRow(
        ref.registry,
        ref.repository,
        tag,
        "attestation" if attestation else "image",
        "" if attestation else str(platform),
        platform.os,
        platform.architecture,
        platform.variant,
        manifest.digest,
        manifest.media_type,
        manifest.size,
        len(manifest.layers),
        created,
        manifest.config.digest,
    )


def _missing_row(ref: Ref, tag: str, desc: Descriptor) -> PlatformRow:
    """A child the index lists but the registry no longer has: what the index says of it."""
    platform = desc.platform if desc.platform is not None and not desc.is_attestation else None
    return PlatformRow(
        ref.registry,
        ref.repository,
        tag,
        "missing",
        "attestation" if desc.is_attestation else str(platform or ""),
        platform.os if platform else "",
        platform.architecture if platform else "",
        platform.variant if platform else "",
        desc.digest,
        desc.media_type,
        desc.size,
        0,
        None,
        "",
    )
