"""`du`: where the space goes — per repository, with shared layers counted honestly, and totals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import NotFound
from ..models import DuRow, DuTotalRow, GcRow
from .fetch import Fetcher
from .graph import Graph, walk
from .notices import broken_notice
from .pool import workers

if TYPE_CHECKING:
    from ..client.bucket import BucketLayout

__all__ = ["Usage", "disk_usage"]


@dataclass
class _Content:
    """What a repository's tags reach: tags, manifest digests, blob digest -> size, broken tags."""

    tags: list[str] = field(default_factory=list)
    manifests: set[str] = field(default_factory=set)
    blobs: dict[str, int] = field(default_factory=dict)
    broken: list[str] = field(default_factory=list)
    torn: list[str] = field(default_factory=list)  # the broken tags whose own manifest is gone


@dataclass
class Usage:
    """`du`'s answer: one row per repository asked for, the registry's totals, and broken tags."""

    rows: list[DuRow]
    total: DuTotalRow
    broken: list[str]  # repo:tag, torn ones included
    torn: list[str] = field(default_factory=list)  # repo:tag listed with no manifest at all
    where: str = "on disk"  # where `disk_bytes` was counted ("in the bucket" for object storage)

    def notice(self, *, total: bool = False) -> str:
        """The line beside the rows: broken tags, and (per repository, not `total`) the registry's totals."""
        notes = [broken_notice(self.broken, self.torn)] if self.broken else []
        if total:
            return "; ".join(notes)
        t = self.total
        line = (
            f"registry total: {t.repositories} repositories, {t.manifests} manifests, {t.blobs} blobs, "
            f"{GcRow.binary(t.size)}"
        )
        if t.disk_bytes is not None:
            line += f"; {GcRow.binary(t.disk_bytes)} {self.where}, gc would reclaim {GcRow.binary(t.gc_bytes or 0)} now"
        return "; ".join([*notes, line + " (`du --total` as a table)"])


def _repo_content(fetcher: Fetcher, repository: str) -> _Content:
    content = _Content()
    try:
        content.tags = fetcher.client.tags(repository)
    except NotFound:
        return content

    get = partial(fetcher.manifest, repository)
    # Asked for every child, every time: a cached child may be gone from the registry.
    exists = partial(fetcher.exists, repository)
    graphs: dict[str, Graph] = {}  # tags on one digest: walked once
    for tag in content.tags:
        try:
            top = get(tag)
        except NotFound:
            content.torn.append(tag)  # listed, manifest gone: does not pull either
            content.broken.append(tag)
            continue
        if top.digest not in graphs:
            graphs[top.digest] = walk(get, top, exists=exists)
        graph = graphs[top.digest]
        content.manifests |= graph.digests
        content.blobs.update((digest, blob.size) for digest, blob in graph.blobs.items())
        if graph.broken:
            content.broken.append(tag)
    return content


def disk_usage(
    fetcher: Fetcher, repositories: Sequence[str] = (), *, storage: Path | None = None, jobs: int = 8
) -> Usage:
    """One row per repository: distinct blobs it references, those only it references, and the rest;
    and the registry's totals, distinct across repositories.

    Sharing is judged against every repository of the registry, also when only some are shown.
    With the registry's `storage` directory (a registry jindr runs here), the totals also say the
    disk it takes and what `gc` would remove now; for a registry jindr runs on object storage, the
    bytes its bucket lists under the registry's tree and what `gc` would remove now.
    """
    everything = sorted(fetcher.client.catalog())
    wanted = list(repositories) or everything
    for name in wanted:
        if name not in everything:
            fetcher.client.tags(name)  # raises the registry's own NotFound for an unknown repository
    with workers(jobs, "jindr-du") as pool:
        contents = dict(zip(everything, pool.map(lambda r: _repo_content(fetcher, r), everything), strict=True))
    users: dict[str, int] = {}
    for content in contents.values():
        for digest in content.blobs:
            users[digest] = users.get(digest, 0) + 1
    rows = []
    registry = fetcher.client.registry
    for name in wanted:
        c = contents[name]
        size = sum(c.blobs.values())
        unique = sum(size for digest, size in c.blobs.items() if users[digest] == 1)
        rows.append(
            DuRow(
                registry, name, len(c.tags), len(c.manifests), len(c.blobs), size, unique, size - unique, len(c.broken)
            )
        )
    every_blob = {d: s for c in contents.values() for d, s in c.blobs.items()}
    total = DuTotalRow(
        registry,
        repositories=len(contents),
        tags=sum(len(c.tags) for c in contents.values()),
        manifests=len(set().union(*(c.manifests for c in contents.values()))),
        blobs=len(every_blob),
        size=sum(every_blob.values()),
        broken=sum(len(c.broken) for c in contents.values()),
        disk_bytes=None,
        gc_blobs=None,
        gc_bytes=None,
    )
    where = "on disk"
    # A registry jindr runs on object storage has no storage directory: its bucket says the same.
    bucket = _bucket_layout(fetcher) if storage is None or fetcher.local else None
    if bucket is not None:
        _add_bucket(total, bucket)
        where = "in the bucket"
    elif storage is not None:
        _add_disk(total, storage)
    broken = [f"{name}:{tag}" for name in wanted for tag in contents[name].broken]
    torn = [f"{name}:{tag}" for name in wanted for tag in contents[name].torn]
    return Usage(rows, total, broken, torn, where)


def _bucket_layout(fetcher: Fetcher) -> BucketLayout | None:
    """The bucket of a registry jindr runs on object storage (the reader's own when it reads it), else None."""
    from ..client.bucket import BucketLayout, BucketReader

    if isinstance(fetcher.client, BucketReader):
        reader = fetcher.client.bucket_layout  # a new layout: the reader's lists no blobs, and listed earlier
        return BucketLayout(reader.s3, reader.bucket, reader.root)
    from ..runtime import managed_bucket

    bucket = managed_bucket(fetcher.client.registry)
    if bucket is None:
        return None
    return BucketLayout(bucket.client(), bucket.location.bucket, bucket.location.root)


def _add_bucket(total: DuTotalRow, layout: BucketLayout) -> None:
    """The bytes the bucket lists under the registry's tree, and the blobs gc would remove now."""
    from .gc import plan

    would = plan(layout)
    total.disk_bytes = layout.bytes_listed()
    total.gc_blobs = len(would.blobs)
    total.gc_bytes = sum(size for _, size in would.blobs)


def _add_disk(total: DuTotalRow, storage: Path) -> None:
    """The disk blocks under `storage`, and the blobs (count, apparent bytes) gc would remove now."""
    from ..client.storage import StorageLayout
    from ..runtime.base import dir_size
    from .gc import plan

    would = plan(StorageLayout(storage))
    total.disk_bytes = dir_size(storage)
    total.gc_blobs = len(would.blobs)
    total.gc_bytes = sum(size for _, size in would.blobs)
