"""Garbage collection that never breaks a tagged image, run while nothing can write.

Registry 2.8's own `garbage-collect --delete-untagged` deletes the platform manifests of a
*tagged* multi-platform index (they carry no tag of their own), so the image no longer pulls
(distribution#3178, fixed in 3.0). jindr never passes that flag. Instead, with the registry
stopped, it removes only the manifests that are untagged *and* unreachable from any tag (through
index children and `subject` referrers), then runs the registry's `garbage-collect` without the
flag to sweep the blobs nothing references any more. Same code for 2.x and 3.x.

A dry run and a run report the same two measures: `reclaimed_bytes`, the apparent sizes of the
blobs that go (the run lists the blob store before and after the sweep and sums what is missing;
the dry run sums the plan), and `disk_freed`, the blocks the removed files and directories held
(measured by walking the storage around the run; estimated from the doomed paths for a dry run).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Protocol

from ..client.bucket import BucketLayout
from ..client.storage import StorageLayout
from ..errors import NotFound, RegistryError, RuntimeFailure
from ..models import OCI_INDEX, OCI_MANIFEST, Descriptor, GcRow, Index, InstanceRow, Manifest, parse_manifest
from ..runtime.base import RegistrySpec, Runtime
from .graph import walk

__all__ = ["BucketGcRow", "GcPlan", "Layout", "collect", "collect_at", "layout_of", "plan", "stop_registry"]


class Layout(Protocol):
    """What a plan reads, from a storage directory (`StorageLayout`) or a bucket (`BucketLayout`)."""

    def repositories(self) -> list[str]: ...

    def tags(self, repository: str) -> list[str] | None: ...

    def tag_digest(self, repository: str, tag: str) -> str | None: ...

    def revisions(self, repository: str) -> list[str]: ...

    def read_blob(self, digest: str, limit: int) -> bytes | None: ...

    def blobs(self) -> Iterator[tuple[str, int]]: ...


@dataclass(slots=True)
class BucketGcRow(GcRow):
    """A collection on object storage: `disk_*` are the bytes the bucket lists under the registry's
    tree (objects, not disk blocks), and the message says so."""

    def describe(self) -> str:
        blobs = "blob" if self.blobs_deleted == 1 else "blobs"
        size, freed = self.binary(self.reclaimed_bytes), self.binary(self.disk_freed)
        return f"{size} in {self.blobs_deleted} {blobs} ({freed} less in the bucket)"


def layout_of(spec: RegistrySpec) -> StorageLayout | BucketLayout:
    """The registry's tree: its bucket when it keeps it on object storage, else its storage directory."""
    if spec.bucket is not None:
        return BucketLayout(spec.bucket.client(), spec.bucket.location.bucket, spec.bucket.location.root)
    return StorageLayout(spec.storage)


@dataclass
class GcPlan:
    """What a collection removes: manifests by repository, and blobs nothing references."""

    manifests: dict[str, list[str]] = field(default_factory=dict)
    blobs: list[tuple[str, int]] = field(default_factory=list)

    @property
    def manifest_count(self) -> int:
        return sum(len(v) for v in self.manifests.values())


def plan(layout: Layout) -> GcPlan:
    """Read storage (registry stopped or not) and work out what would go."""
    result = GcPlan()
    marked: set[str] = set()
    for repo in layout.repositories():
        revisions = set(layout.revisions(repo))
        kept, marks = _reachable(layout, repo, revisions)
        doomed = sorted(revisions - kept)
        if doomed:
            result.manifests[repo] = doomed
        marked |= marks
    result.blobs = [(d, size) for d, size in layout.blobs() if d not in marked]
    return result


def _reachable(layout: Layout, repo: str, revisions: set[str]) -> tuple[set[str], set[str]]:
    """The manifests `repo`'s tags reach (through index children and `subject` referrers), and what the
    registry's own collection then marks: those manifests and every digest they reference.

    Only the repository's revisions are followed, as the registry marks only revisions: a manifest
    whose revision link is gone (a child deleted from under its index) is kept as the index's
    reference, but its config and layers are swept unless something else uses them."""
    read = cache(lambda digest: layout.read_blob(digest, _DOC_LIMIT))

    def get(digest: str) -> Manifest | Index | None:
        if digest not in revisions:
            raise NotFound(f"{repo}@{digest} is not a revision of the repository")
        return _manifest(digest, read(digest))

    # Referrers (signatures, SBOMs) point at their subject: keep them while the subject is kept.
    referrers: dict[str, list[tuple[str, str]]] = {}
    for digest in revisions:
        if subject := _subject(read(digest)):
            referrers.setdefault(subject, []).append(("", digest))
    # The tags as the children of one index: a single walk keeps what any tag reaches.
    tagged = [d for tag in layout.tags(repo) or [] if (d := layout.tag_digest(repo, tag))]
    tags = Index(OCI_INDEX, _TAGS, b"", tuple(Descriptor("", d, 0) for d in tagged))
    graph = walk(get, tags, referrers=lambda d: referrers.get(d, []))
    # Never a reason to delete: what cannot be read (opaque) or is not there (missing) is kept.
    reached = graph.digests - {_TAGS}
    kept = reached | {desc.digest for _, desc in graph.missing}
    # A lost child an index lists is marked as the index's reference; a torn tag's digest is not
    # (the registry does not read tags when it marks).
    listed = {desc.digest for parent, desc in graph.missing if parent != _TAGS}
    return kept, reached | listed | set(graph.blobs)


def remove_manifests(layout: StorageLayout | BucketLayout, gc_plan: GcPlan) -> None:
    """Unlink the planned manifests from their repositories (only while the registry is stopped); in
    a bucket all or none (what went is put back when a delete fails)."""
    if isinstance(layout, BucketLayout):
        layout.remove([k for repo, digests in gc_plan.manifests.items() for k in layout.manifest_keys(repo, digests)])
        return
    for path in _manifest_paths(layout, gc_plan):
        shutil.rmtree(path, ignore_errors=True)


def _manifest_paths(layout: StorageLayout, gc_plan: GcPlan) -> list[Path]:
    """The directories that hold the planned manifests' links: the revision and any tag history entry."""
    paths: list[Path] = []
    for repo, digests in gc_plan.manifests.items():
        base = layout.repo_dir(repo) / "_manifests"
        tags = [t for t in (base / "tags").iterdir() if t.is_dir()] if (base / "tags").is_dir() else []
        for digest in digests:
            algorithm, _, hexpart = digest.partition(":")
            paths.append(base / "revisions" / algorithm / hexpart)
            paths.extend(tag / "index" / algorithm / hexpart for tag in tags)
    return paths


def _allocated(path: Path | str) -> int:
    """Bytes of disk blocks held by `path` and everything under it, files and directories alike (what
    `du -s --block-size=1` reports for a tree without hard links); 0 when missing."""
    try:
        total = os.lstat(path).st_blocks * 512
    except OSError:
        return 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def _estimate_freed(layout: StorageLayout, gc_plan: GcPlan) -> int:
    """Disk blocks a collection of `gc_plan` frees: each swept blob's directory (the registry removes
    `blobs/sha256/xx/<hex>/` whole) and each removed manifest's link directories."""
    doomed = [Path(layout.blob_path(digest)).parent for digest, _ in gc_plan.blobs]
    return sum(_allocated(path) for path in doomed + _manifest_paths(layout, gc_plan))


def _revisions(layout: Layout) -> set[tuple[str, str]]:
    return {(repo, digest) for repo in layout.repositories() for digest in layout.revisions(repo)}


def collect(
    runtime: Runtime,
    registry: str,
    *,
    dry_run: bool = False,
    bring_back: bool = True,
    remove_repositories: Sequence[str] = (),
    replicas: Sequence[tuple[Runtime, str]] | None = None,
) -> GcRow:
    """Pause the registry and every replica on its storage, collect, and resume them all exactly as
    they were (with `bring_back=False`, all but `registry` itself).

    `remove_repositories` are deleted from storage first, while nothing can write (the registry
    API has no call for that, distribution#2747). With `dry_run` nothing stops and nothing
    changes: the plan is computed from storage. `replicas` are the other registries on the same
    storage, each with its runtime (default: the ones jindr runs, `runtime.replicas`); a push to
    any of them during the sweep would lose layers, so all stop, or none does and nothing changes.
    """
    spec = runtime.spec_of(registry)
    if spec is None:
        raise RuntimeFailure(f"jindr does not run a registry at {registry}; `info` lists the ones it runs")
    layout = layout_of(spec)
    if dry_run:
        return _dry_run(spec, layout)
    others = list(replicas) if replicas is not None else _replicas_of(registry)
    paused = _pause_all([(runtime, registry), *others])
    # Resuming also clears each registry's in-memory blob cache, which would otherwise claim that
    # swept blobs still exist and make a re-push skip them (distribution#1803). The replicas come
    # back even when this registry stays stopped (`stop` collects first).
    back = paused if bring_back else paused[1:]
    try:
        if isinstance(layout, BucketLayout):
            row: GcRow = _collect_bucket(runtime, registry, layout, remove_repositories)
        else:
            row = _collect_directory(runtime, registry, spec, layout, remove_repositories)
    except RuntimeFailure as exc:
        problems = _resume_all(back, quiet=True)
        if problems:
            raise RuntimeFailure(f"{exc}; {problems}") from None
        raise
    except BaseException:
        _resume_all(back, quiet=True)
        raise
    _resume_all(back)
    return row


def _dry_run(spec: RegistrySpec, layout: StorageLayout | BucketLayout) -> GcRow:
    """What a collection would remove, measured as the run measures it; nothing changes."""
    would = plan(layout)
    reclaimed = sum(size for _, size in would.blobs)
    if isinstance(layout, BucketLayout):
        before = layout.bytes_listed()
        listed = layout.list_keys(layout.v2)
        doomed = [layout.blob_key(d) for d, _ in would.blobs]
        doomed += [k for repo, digests in would.manifests.items() for k in layout.manifest_keys(repo, digests)]
        freed = sum(listed.get(k, 0) for k in doomed)
        row = (spec.registry, True, would.manifest_count, len(would.blobs), reclaimed, before, before - freed, freed)
        return BucketGcRow(*row)
    before = _allocated(spec.storage)
    freed = min(before, _estimate_freed(layout, would))
    return GcRow(spec.registry, True, would.manifest_count, len(would.blobs), reclaimed, before, before - freed, freed)


def _collect_directory(
    runtime: Runtime, registry: str, spec: RegistrySpec, layout: StorageLayout, remove_repositories: Sequence[str]
) -> GcRow:
    # Measured while nothing can write: what is missing afterwards is what this collection removed.
    blobs_before = dict(layout.blobs())
    revisions_before = _revisions(layout)
    before = _allocated(spec.storage)
    for repository in remove_repositories:
        target = (layout.repositories_dir / repository).resolve()
        if layout.repositories_dir.resolve() not in target.parents:
            raise RuntimeFailure(f"refusing to remove {target}: not inside the registry's storage")
        # Only the repository's own `_manifests`, `_layers` and `_uploads`: a repository nested
        # under it (`a/b` under `a`) is another repository, which nobody asked to delete.
        for own in _own_parts(target):
            shutil.rmtree(own, ignore_errors=True)
        _prune_empty_parents(target, layout.repositories_dir.resolve())
    remove_manifests(layout, plan(layout))
    # An empty storage has nothing to sweep (and the registry's gc fails on a missing tree).
    if layout.repositories_dir.is_dir():
        runtime.garbage_collect(registry, dry_run=False)
    swept = blobs_before.keys() - dict(layout.blobs()).keys()
    manifests = len(revisions_before - _revisions(layout))
    after = _allocated(spec.storage)
    reclaimed = sum(blobs_before[digest] for digest in swept)
    return GcRow(registry, False, manifests, len(swept), reclaimed, before, after, max(0, before - after))


def _collect_bucket(runtime: Runtime, registry: str, layout: BucketLayout, remove_repositories: Sequence[str]) -> GcRow:
    """The bucket's collection: the repositories' prefixes and the unreachable manifests' links go
    (each step all or none), then the registry's own sweep with its S3 config; measured from the
    bucket's listing before and after."""
    blobs_before = dict(layout.blobs())
    revisions_before = _revisions(layout)
    before = layout.bytes_listed()
    if remove_repositories:
        doomed: dict[str, int] = {}
        for repository in remove_repositories:
            prefix = layout.repo_prefix(repository)
            # The repository's own `_...` parts only, never a repository nested under it (`a/b`).
            doomed.update(
                (key, size) for key, size in layout.keys_under(prefix).items() if key[len(prefix) :].startswith("_")
            )
        layout.remove(doomed)
    remove_manifests(layout, plan(layout))
    layout.forget()
    if layout.holds_repositories():
        runtime.garbage_collect(registry, dry_run=False)
    else:
        # No repository left: nothing is marked, so every blob goes — what the registry's own sweep
        # does, which it cannot start on S3 without the `repositories/` path ("Path not found").
        layout.delete_keys([layout.blob_key(digest) for digest in blobs_before])
    swept = blobs_before.keys() - dict(layout.blobs()).keys()
    manifests = len(revisions_before - _revisions(layout))
    after = layout.bytes_listed()
    reclaimed = sum(blobs_before[digest] for digest in swept)
    return BucketGcRow(registry, False, manifests, len(swept), reclaimed, before, after, max(0, before - after))


def _replicas_of(registry: str) -> list[tuple[Runtime, str]]:
    """The other registries jindr runs on `registry`'s storage, each with its own runtime."""
    from ..runtime import find_managed, replicas

    found = []
    for other in replicas(registry)[1:]:
        managed = find_managed(other)
        if managed is None:
            raise RuntimeFailure(f"replica {other} of {registry} is not found any more; nothing changed — run `info`")
        if managed[1].status != "running":
            continue  # stopped (or crashed) before gc: it cannot write, and gc does not start it
        found.append((managed[0], other))
    return found


def _pause_all(registries: Sequence[tuple[Runtime, str]]) -> list[tuple[Runtime, str]]:
    """Pause each registry; when one cannot be, resume those already paused and say so (nothing changed)."""
    paused: list[tuple[Runtime, str]] = []
    for runtime, registry in registries:
        try:
            runtime.pause(registry)
        except RuntimeFailure as exc:
            problems = _resume_all(paused, quiet=True)
            tail = f"; {problems}" if problems else f"; {len(paused)} already paused resumed"
            raise RuntimeFailure(f"{registry} could not be made read-only ({exc}); nothing changed{tail}") from None
        except BaseException:
            # An engine's own error, or an interrupt, in the middle of pausing: the ones already
            # paused come back before it goes on (nothing was collected).
            _resume_all(paused, quiet=True)
            raise
        paused.append((runtime, registry))
    return paused


def _resume_all(paused: Sequence[tuple[Runtime, str]], *, quiet: bool = False) -> str:
    """Resume every paused registry, even when one fails; what failed ("" for nothing), raised unless `quiet`."""
    failed = []
    for runtime, registry in paused:
        try:
            runtime.resume(registry)
        except Exception as exc:  # noqa: BLE001 - whatever one does, the others still come back
            failed.append(f"{registry} did not come back ({exc}; `restart` it)")
    if failed and not quiet:
        raise RuntimeFailure("; ".join(failed))
    return "; ".join(failed)


def collect_at(registry: str, *, dry_run: bool = False) -> GcRow:
    """`gc`: collect the registry jindr runs at `registry` (see `collect`); refused for any other."""
    from ..runtime import find_managed

    found = find_managed(registry)
    if found is None:
        raise RuntimeFailure(
            f"jindr can only garbage-collect a registry it runs; none at {registry} (`info` lists them)"
        )
    return collect(found[0], registry, dry_run=dry_run)


def stop_registry(registry: str, *, gc: bool = True) -> tuple[list[InstanceRow], str]:
    """`stop`: garbage-collect (unless not `gc`) and stop the registry jindr runs at `registry`.

    Returns the stopped registry's row (measured; none when jindr ran none there) and what to tell
    the user. A collection that fails does not keep the registry running: it stops all the same,
    and the line says so and what to do.
    """
    from ..runtime import find_managed, measured

    found = find_managed(registry)
    if found is None:
        return [], f"no registry that jindr runs at {registry}; nothing to stop"
    runtime, _ = found
    message = ""
    if gc:
        try:
            message = f"garbage collection reclaimed {collect(runtime, registry, bring_back=False).describe()}"
        except RuntimeFailure as exc:
            message = f"{exc}; stopped without collecting (run `gc` after the next `start`)"
    row = runtime.stop(registry)
    return measured([row] if row else []), message


def _own_parts(repository_dir: Path) -> list[Path]:
    """A repository directory's own parts (`_manifests`, `_layers`, `_uploads`), not nested repositories."""
    try:
        return [repository_dir / e.name for e in os.scandir(repository_dir) if e.name.startswith("_")]
    except FileNotFoundError:
        return []


def _prune_empty_parents(directory: Path, stop: Path) -> None:
    # "a/b" removed: "a" goes too when nothing else lives there, or the catalog would still list it.
    while directory != stop and stop in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


_TAGS = "tags:"  # the digest of `_reachable`'s index of a repository's tags, which no manifest has
_DOC_LIMIT = 4 * 1024 * 1024


def _manifest(digest: str, raw: bytes | None) -> Manifest | Index | None:
    """A stored manifest for the walk; None (kept, not followed) when absent, too big or not JSON.

    A document jindr's parser refuses (a child without a size, an unknown media type, Docker schema
    1 with its `fsLayers[].blobSum`) is still followed through every entry that names a digest: a
    manifest jindr cannot read is never a reason to delete what it references, and the registry
    marks them too.
    """
    if raw is None:
        return None
    try:
        return parse_manifest(raw, "", digest)
    except RegistryError:
        pass
    doc = _doc(raw)
    if children := _named(doc.get("manifests")):
        return Index(OCI_INDEX, digest, raw, children)
    layers = doc.get("layers")
    blobs = _named([doc.get("config"), *(layers if isinstance(layers, list) else [])])
    if blobs := blobs or _named(doc.get("fsLayers"), key="blobSum"):
        return Manifest(OCI_MANIFEST, digest, raw, blobs[0], blobs[1:])
    return None


def _named(entries: object, key: str = "digest") -> tuple[Descriptor, ...]:
    """Descriptors for the entries of a JSON list that name a digest under `key` (size unknown: 0)."""
    items = entries if isinstance(entries, list) else []
    return tuple(Descriptor("", e[key], 0) for e in items if isinstance(e, dict) and isinstance(e.get(key), str))


def _subject(raw: bytes | None) -> str:
    """The digest a stored manifest names as its `subject`, "" for none."""
    subject = _doc(raw).get("subject")
    return subject["digest"] if isinstance(subject, dict) and isinstance(subject.get("digest"), str) else ""


def _doc(raw: bytes | None) -> dict:
    if raw is None:
        return {}
    try:
        doc = json.loads(raw)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}
