"""Garbage collection that never breaks a tagged image, run while nothing can write.

Registry 2.8's own `garbage-collect --delete-untagged` deletes the platform manifests of a
*tagged* multi-platform index (they carry no tag of their own), so the image no longer pulls
(distribution#3178, fixed in 3.0). jindr never passes that flag. Instead, with the registry
stopped, it removes only the manifests that are untagged *and* unreachable from any tag (through
index children and `subject` referrers), then runs the registry's `garbage-collect` without the
flag to sweep the blobs nothing references any more. Same code for 2.x and 3.x.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..client.storage import StorageLayout
from ..errors import RuntimeFailure
from ..models import GcRow
from ..runtime.base import Runtime, dir_size

__all__ = ["GcPlan", "collect", "plan"]

# The registry's last line: "30 blobs marked, 3 blobs and 0 manifests eligible for deletion".
_SUMMARY = re.compile(r"(\d+) blobs and \d+ manifests eligible for deletion")


@dataclass
class GcPlan:
    """What a collection removes: manifests by repository, and blobs nothing references."""

    manifests: dict[str, list[str]] = field(default_factory=dict)
    blobs: list[tuple[str, int]] = field(default_factory=list)

    @property
    def manifest_count(self) -> int:
        return sum(len(v) for v in self.manifests.values())


def plan(layout: StorageLayout) -> GcPlan:
    """Read storage (registry stopped or not) and work out what would go."""
    result = GcPlan()
    marked: set[str] = set()
    for repo in layout.repositories():
        revisions = set(layout.revisions(repo))
        docs = {d: _manifest_doc(layout, d) for d in revisions}
        kept: set[str] = set()
        stack = [d for tag in layout.tags(repo) or [] if (d := layout.tag_digest(repo, tag))]
        # Referrers (signatures, SBOMs) point at their subject: keep them while the subject is kept.
        referrers: dict[str, list[str]] = {}
        for digest, doc in docs.items():
            subject = doc.get("subject") if isinstance(doc.get("subject"), dict) else None
            if subject and isinstance(subject.get("digest"), str):
                referrers.setdefault(subject["digest"], []).append(digest)
        while stack:
            digest = stack.pop()
            if digest in kept:
                continue
            kept.add(digest)
            doc = docs.get(digest) or _manifest_doc(layout, digest)
            for child in doc.get("manifests") or []:
                if isinstance(child, dict) and isinstance(child.get("digest"), str):
                    stack.append(child["digest"])
            stack.extend(referrers.get(digest, []))
        doomed = sorted(revisions - kept)
        if doomed:
            result.manifests[repo] = doomed
        for digest in kept:
            marked.add(digest)
            doc = docs.get(digest) or _manifest_doc(layout, digest)
            config = doc.get("config")
            if isinstance(config, dict) and isinstance(config.get("digest"), str):
                marked.add(config["digest"])
            for layer in doc.get("layers") or []:
                if isinstance(layer, dict) and isinstance(layer.get("digest"), str):
                    marked.add(layer["digest"])
    result.blobs = [(d, size) for d, size in layout.blobs() if d not in marked]
    return result


def remove_manifests(layout: StorageLayout, gc_plan: GcPlan) -> None:
    """Unlink the planned manifests from their repositories (only while the registry is stopped)."""
    for repo, digests in gc_plan.manifests.items():
        base = layout.repo_dir(repo) / "_manifests"
        for digest in digests:
            algorithm, _, hexpart = digest.partition(":")
            shutil.rmtree(base / "revisions" / algorithm / hexpart, ignore_errors=True)
            tags_dir = base / "tags"
            if tags_dir.is_dir():
                for tag in tags_dir.iterdir():
                    shutil.rmtree(tag / "index" / algorithm / hexpart, ignore_errors=True)


def collect(
    runtime: Runtime,
    registry: str,
    *,
    dry_run: bool = False,
    bring_back: bool = True,
    remove_repositories: Sequence[str] = (),
) -> GcRow:
    """Pause the registry, collect, and (unless `bring_back=False`) resume it exactly as it was.

    `remove_repositories` are deleted from storage first, while nothing can write (the registry
    API has no call for that, distribution#2747). With `dry_run` nothing stops and nothing
    changes: the plan is computed from storage.
    """
    spec = runtime.spec_of(registry)
    if spec is None:
        raise RuntimeFailure(f"jindr does not run a registry at {registry}; `info` lists the ones it runs")
    layout = StorageLayout(spec.storage)
    before = dir_size(spec.storage)
    if dry_run:
        would = plan(layout)
        freed = sum(size for _, size in would.blobs)
        return GcRow(registry, True, would.manifest_count, len(would.blobs), before, max(0, before - freed), freed)
    runtime.pause(registry)
    try:
        for repository in remove_repositories:
            target = (layout.repositories_dir / repository).resolve()
            if layout.repositories_dir.resolve() not in target.parents:
                raise RuntimeFailure(f"refusing to remove {target}: not inside the registry's storage")
            shutil.rmtree(target, ignore_errors=True)
            _prune_empty_parents(target.parent, layout.repositories_dir.resolve())
        doomed = plan(layout)
        remove_manifests(layout, doomed)
        # An empty storage has nothing to sweep (and the registry's gc fails on a missing tree).
        output = runtime.garbage_collect(registry, dry_run=False) if layout.repositories_dir.is_dir() else ""
    finally:
        if bring_back:
            # Also clears the registry's in-memory blob cache, which would otherwise claim that
            # swept blobs still exist and make a re-push skip them (distribution#1803).
            runtime.resume(registry)
    counted = _SUMMARY.search(output)
    blobs = int(counted.group(1)) if counted else 0
    after = dir_size(spec.storage)
    return GcRow(registry, False, doomed.manifest_count, blobs, before, after, max(0, before - after))


def _prune_empty_parents(directory: Path, stop: Path) -> None:
    # "a/b" removed: "a" goes too when nothing else lives there, or the catalog would still list it.
    while directory != stop and stop in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def _manifest_doc(layout: StorageLayout, digest: str) -> dict:
    raw = layout.read_blob(digest, 4 * 1024 * 1024)
    if raw is None:
        return {}
    try:
        doc = json.loads(raw)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}
