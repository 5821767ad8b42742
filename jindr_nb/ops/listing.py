"""`ls` and `lsi`: repositories and tags as rows, fetched concurrently over the pooled client."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import nullcontext
from datetime import datetime
from typing import Any, Protocol

from ..errors import IntegrityError, NotFound, Unsupported
from ..models import ImageRow, Index, LongImageRow, Manifest, RepoRow, parse_manifest
from ..refs import Ref
from .fetch import Fetcher
from .pool import paused_gc, workers

__all__ = ["DEFAULT_JOBS", "TORN", "Listed", "list_images", "list_repositories", "image_row"]

#: `missing` of a torn tag: listed by the registry, its manifest gone.
TORN = "manifest (torn tag)"

DEFAULT_JOBS = 8
Progress = Callable[[int, int], None]
#: A row of `lsi` (`LongImageRow` with `long`).
Listed = ImageRow | LongImageRow


def list_repositories(fetcher: Fetcher, patterns: Sequence[str] = ()) -> list[RepoRow]:
    """Every repository in the registry, sorted; with `patterns` (shell-style, case-sensitive), only
    those matching one of them."""
    from fnmatch import fnmatchcase

    registry = fetcher.client.registry
    names = sorted(fetcher.client.catalog())
    if patterns:
        names = [name for name in names if any(fnmatchcase(name, pattern) for pattern in patterns)]
    return [RepoRow(registry, name) for name in names]


def list_images(
    fetcher: Fetcher,
    selection: Sequence[Ref] = (),
    *,
    long: bool = False,
    jobs: int = DEFAULT_JOBS,
    progress: Progress | None = None,
    unreadable: list[tuple[str, str]] | None = None,
) -> list[Listed]:
    """One row per tag of the selected repositories (all when `selection` is empty).

    A `Ref` with a tag or digest selects just that image; without, every tag of its repository.
    A listed tag whose manifest jindr cannot read (Docker schema 1, not a manifest) does not stop
    the listing: it is left out and, when `unreadable` is given, added to it as (repo:tag, why).
    """
    client = fetcher.client
    # From the registry's storage each row is a few small file reads: Python-bound work that
    # threads only slow down (the GIL, plus a future per tag), measured 2.4x slower at 2,500 tags.
    with nullcontext() if fetcher.local else workers(jobs, "jindr-list") as pool, paused_gc():
        run: Callable[..., Iterable[Any]] = map if pool is None else pool.map
        if selection:
            wanted: list[tuple[str, str, bool]] = []
            whole = [ref.repository for ref in selection if not (ref.tag or ref.digest)]
            for repo, tags in zip(whole, run(client.tags, whole), strict=True):
                wanted.extend((repo, tag, False) for tag in tags)
            wanted.extend((ref.repository, ref.reference, True) for ref in selection if ref.tag or ref.digest)
        else:
            repos = sorted(client.catalog())
            wanted = [
                (repo, tag, False)
                for repo, tags in zip(repos, run(_tags_or_none(client), repos), strict=True)
                for tag in tags
            ]
        total = len(wanted)
        done = 0

        def one(item: tuple[str, str, bool]) -> Listed | None:
            repo, reference, explicit = item
            try:
                return image_row(fetcher, repo, reference, long=long)
            except NotFound:
                if explicit:
                    raise
                if reference not in client.tags(repo):
                    return None  # deleted between the tag list and now: not part of the listing
                # Still listed, manifest gone: a torn tag (what a registry killed in its own delete
                # leaves). Shown, not dropped: it does not pull.
                registry = client.registry
                if long:
                    return LongImageRow(registry, repo, reference, "", "", "", [], 0, None, [TORN])
                return ImageRow(registry, repo, reference, "", "", "", [], [TORN])
            except (Unsupported, IntegrityError) as exc:
                if explicit or unreadable is None:
                    raise
                unreadable.append((f"{repo}:{reference}", str(exc)))
                return None

        rows: list[Listed] = []
        try:
            todo = _dedupe(wanted)
            if fetcher.storage is not None:
                rows, todo = _from_storage(fetcher, todo, long=long)
                done = len(rows)
                if progress is not None and done:
                    progress(done, total)
            for row in run(one, todo):
                done += 1
                if progress is not None:
                    progress(done, total)
                if row is not None:
                    rows.append(row)
        finally:
            fetcher.cache.flush()  # the summaries this listing made, for the next process
    rows.sort(key=lambda r: (r.repository, r.tag))
    return rows


def image_row(fetcher: Fetcher, repository: str, reference: str, *, long: bool = False) -> Listed:
    """The listing row of one tag (or digest). An index's children are checked on every listing
    (never taken from the cache): a child the registry lost makes the row's `missing` say so."""
    registry = fetcher.client.registry
    tag = "" if reference.startswith("sha256:") else reference
    if fetcher.storage is not None:
        known = fetcher.resolve(repository, reference)
        row = _stored_row(fetcher, repository, reference, known, long=long) if known is not None else None
        if row is not None:
            return row
        manifest = fetcher.manifest(repository, reference, resolved=known)
    elif long:
        # Most of a repeated long listing over the API: the manifest's bytes, then the cached
        # summary by their digest — no parsing.
        digest, media_type, raw = fetcher.head(repository, reference)
        cached = fetcher.cache.get_summary(digest)
        if cached is not None and _whole(fetcher, repository, cached):
            return _from_summary(registry, repository, tag, digest, media_type, cached)
        fetcher.cache.put(digest, media_type, raw, persist=fetcher.persist)
        manifest = parse_manifest(raw, media_type, digest)
    else:
        manifest = fetcher.manifest(repository, reference)
    gone = fetcher.missing_children(repository, manifest) if isinstance(manifest, Index) else []
    missing = [label for _, label in gone]
    if isinstance(manifest, Index) and not long:
        platforms = sorted({str(d.platform) for d in manifest.images if d.platform is not None})
        size, created = 0, None
    else:
        platforms, size, created = _summary(fetcher, repository, manifest, {d.digest for d, _ in gone})
    if fetcher.storage is not None and not gone and fetcher.cache.get_summary(manifest.digest) is not None:
        # The next process answers this tag from its summary and the blob's stamp (`_stored_row`).
        fetcher.cache.keep_stamp(manifest.digest)
    base = (
        registry,
        repository,
        tag,
        manifest.digest,
        manifest.digest.partition(":")[2][:12],
        manifest.media_type,
        platforms,
    )
    if long:
        return LongImageRow(*base, size=size, created=created, missing=missing)
    return ImageRow(*base, missing=missing)


def _from_storage(
    fetcher: Fetcher, items: list[tuple[str, str, bool]], *, long: bool
) -> tuple[list[Listed], list[tuple[str, str, bool]]]:
    """The rows `_stored_row` gives, for every tag it can answer, a repository at a time (a listing
    of thousands of tags from storage is mostly this; one call per tag cost half its time): the
    tag's link and revision, the stamp of its manifest's blob, the summary verified by that stamp,
    every child still there. The rest — digests, a miss, anything storage cannot answer at once —
    is returned, to go through `image_row` one by one."""
    storage = fetcher.storage
    assert storage is not None
    registry = fetcher.client.registry
    summary_of = fetcher.cache.stored_summary
    rows: list[Listed] = []
    rest: list[int] = []  # positions in `items`: what is left goes in the selection's order
    groups: dict[str, list[int]] = {}
    for at, (repository, reference, _) in enumerate(items):
        if reference.startswith("sha256:"):
            rest.append(at)
        else:
            groups.setdefault(repository, []).append(at)
    for repository, group in groups.items():
        found = storage.stored_tags(repository, [items[at][1] for at in group])
        for at, hit in zip(group, found, strict=True):
            cached = None if hit is None else summary_of(*hit)
            if hit is None or cached is None or not _whole(fetcher, repository, cached):
                rest.append(at)
                continue
            rows.append(_summary_row(registry, repository, items[at][1], hit[0], cached, long=long))
    return rows, [items[at] for at in sorted(rest)]


def _stored_row(fetcher: Fetcher, repository: str, reference: str, known: str, *, long: bool) -> Listed | None:
    """The row of a tag read from storage without its manifest: the tag's link names the digest
    `known` (`Fetcher.resolve`: the repository's revision link checked), the cached summary of that
    digest says the rest — while the manifest's blob file is the one whose bytes were verified (a
    stat) and every child the summary lists is still there (asked, never cached). None: read the
    manifest."""
    cached = fetcher.cache.get_summary(known)
    if cached is None or not cached.get("m") or not fetcher.unchanged(known):
        return None
    if known == reference and not fetcher.exists(repository, known):
        return None  # asked for by digest: `resolve` has not looked at the repository
    if not _whole(fetcher, repository, cached):
        return None
    tag = "" if reference.startswith("sha256:") else reference
    return _summary_row(fetcher.client.registry, repository, tag, known, cached, long=long)


def _summary_row(registry: str, repository: str, tag: str, digest: str, cached: dict, *, long: bool) -> Listed:
    """The row a verified summary gives (`_stored_row`, `_from_storage`)."""
    if long:
        return _from_summary(registry, repository, tag, digest, cached["m"], cached)
    return ImageRow(registry, repository, tag, digest, digest[7:19], cached["m"], list(cached.get("p", [])))


def _whole(fetcher: Fetcher, repository: str, cached: dict) -> bool:
    """True when every child a cached summary lists is still in the registry (asked, not cached);
    False also for a summary without its children, so that it is worked out again."""
    children = cached.get("k")
    if children is None:
        return False
    for digest in children:
        if not fetcher.exists(repository, digest):
            return False
    return True


def _from_summary(registry: str, repository: str, tag: str, digest: str, media_type: str, cached: dict) -> LongImageRow:
    created = cached.get("c")
    return LongImageRow(
        registry,
        repository,
        tag,
        digest,
        digest.partition(":")[2][:12],
        media_type,
        list(cached.get("p", [])),
        int(cached.get("s", 0)),
        datetime.fromisoformat(created) if created else None,
    )


def _summary(
    fetcher: Fetcher, repository: str, manifest: Manifest | Index, missing: Collection[str] = ()
) -> tuple[list[str], int, datetime | None]:
    """Platforms, size and newest created of a manifest: derived from immutable content, so cached —
    unless children are `missing` (then from those present, and not cached)."""
    cached = fetcher.cache.get_summary(manifest.digest)
    if cached is not None and not missing:
        stamp = cached.get("c")
        return list(cached.get("p", [])), int(cached.get("s", 0)), datetime.fromisoformat(stamp) if stamp else None
    size = 0
    created: datetime | None = None
    children: list[str] = []
    if isinstance(manifest, Index):
        platforms = sorted({str(d.platform) for d in manifest.images if d.platform is not None})
        children = fetcher.descendants(repository, manifest)  # nested indexes' children too
        for child in manifest.images:
            if child.digest in missing:
                continue
            sub = fetcher.manifest(repository, child.digest)
            if isinstance(sub, Manifest):
                size += sub.size
                created = _newest(created, fetcher.config(repository, sub.config.digest).created)
    else:
        info = fetcher.config(repository, manifest.config.digest)
        platforms = [str(info.platform)] if str(info.platform) else []
        size = manifest.size
        created = _newest(None, info.created)
    if not missing:
        summary = {"p": platforms, "s": size, "c": created.isoformat() if created else None, "m": manifest.media_type}
        fetcher.cache.put_summary(manifest.digest, {**summary, "k": children})
    return platforms, size, created


def _newest(a: datetime | None, b: object) -> datetime | None:
    if not isinstance(b, datetime):
        return a
    return b if a is None or b > a else a


class _Tagged(Protocol):
    def tags(self, repository: str) -> list[str]: ...


def _tags_or_none(client: _Tagged) -> Callable[[str], list[str]]:
    def tags(repo: str) -> list[str]:
        try:
            return client.tags(repo)
        except NotFound:
            return []  # in the catalog but emptied or removed meanwhile

    return tags


def _dedupe(items: Iterable[tuple[str, str, bool]]) -> list[tuple[str, str, bool]]:
    seen: set[tuple[str, str]] = set()
    out = []
    for repo, ref, explicit in items:
        if (repo, ref) not in seen:
            seen.add((repo, ref))
            out.append((repo, ref, explicit))
    return out
