"""`du`: where the space goes — per repository, with shared layers counted honestly, and totals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import NotFound
from ..models import DuRow, DuTotalRow, Index, Manifest
from .fetch import Fetcher
from .pool import workers

__all__ = ["Usage", "disk_usage"]


@dataclass
class _Content:
    """What a repository's tags reach: tags, manifest digests, blob digest -> size, broken tags."""

    tags: list[str] = field(default_factory=list)
    manifests: set[str] = field(default_factory=set)
    blobs: dict[str, int] = field(default_factory=dict)
    broken: list[str] = field(default_factory=list)


@dataclass
class Usage:
    """`du`'s answer: one row per repository asked for, the registry's totals, and broken tags."""

    rows: list[DuRow]
    total: DuTotalRow
    broken: list[str]  # repo:tag


def _repo_content(fetcher: Fetcher, repository: str) -> _Content:
    content = _Content()
    try:
        content.tags = fetcher.client.tags(repository)
    except NotFound:
        return content

    whole_by_digest: dict[str, bool] = {}

    def visit(reference: str) -> bool:
        """Walk a manifest and what it references; False when part of it is gone."""
        try:
            manifest = fetcher.manifest(repository, reference)
        except NotFound:
            return False
        if manifest.digest in content.manifests:
            return whole_by_digest.get(manifest.digest, True)
        content.manifests.add(manifest.digest)
        whole = True
        if isinstance(manifest, Index):
            for child in manifest.manifests:
                # Asked every time: a cached child may be gone from the registry.
                if not fetcher.exists(repository, child.digest):
                    whole = False
                    continue
                whole = visit(child.digest) and whole
        elif isinstance(manifest, Manifest):
            for blob in (manifest.config, *manifest.layers):
                content.blobs[blob.digest] = blob.size
        whole_by_digest[manifest.digest] = whole
        return whole

    for tag in content.tags:
        if not visit(tag):
            content.broken.append(tag)
    return content


def disk_usage(fetcher: Fetcher, repositories: Sequence[str] = (), *, jobs: int = 8) -> Usage:
    """One row per repository: distinct blobs it references, those only it references, and the rest;
    and the registry's totals, distinct across repositories.

    Sharing is judged against every repository of the registry, also when only some are shown.
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
    broken = [f"{name}:{tag}" for name in wanted for tag in contents[name].broken]
    return Usage(rows, total, broken)
