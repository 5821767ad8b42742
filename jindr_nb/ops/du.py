"""`du`: where the space goes — per repository, with shared layers counted honestly."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import NotFound
from ..models import DuRow, Index, Manifest
from .fetch import Fetcher
from .pool import workers

__all__ = ["disk_usage"]


def _repo_content(fetcher: Fetcher, repository: str) -> tuple[int, set[str], dict[str, int]]:
    """(tags, manifest digests, blob digest -> size) reachable from the repository's tags."""
    client = fetcher.client
    try:
        tags = client.tags(repository)
    except NotFound:
        return 0, set(), {}
    manifests: set[str] = set()
    blobs: dict[str, int] = {}

    def visit(reference: str) -> None:
        try:
            manifest = fetcher.manifest(repository, reference)
        except NotFound:
            return
        if manifest.digest in manifests:
            return
        manifests.add(manifest.digest)
        if isinstance(manifest, Index):
            for child in manifest.manifests:
                visit(child.digest)
        elif isinstance(manifest, Manifest):
            for blob in (manifest.config, *manifest.layers):
                blobs[blob.digest] = blob.size

    for tag in tags:
        visit(tag)
    return len(tags), manifests, blobs


def disk_usage(fetcher: Fetcher, repositories: Sequence[str] = (), *, jobs: int = 8) -> list[DuRow]:
    """One row per repository: distinct blobs it references, those only it references, and the rest.

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
    for _, _, blobs in contents.values():
        for digest in blobs:
            users[digest] = users.get(digest, 0) + 1
    rows = []
    registry = fetcher.client.registry
    for name in wanted:
        tags, manifests, blobs = contents[name]
        size = sum(blobs.values())
        unique = sum(size for digest, size in blobs.items() if users[digest] == 1)
        rows.append(DuRow(registry, name, tags, len(manifests), len(blobs), size, unique, size - unique))
    return rows
