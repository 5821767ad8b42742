"""`rmi` and `rmr`: plan everything first, then delete exactly that.

The registry API deletes manifests by digest, which takes every tag on that digest with it. To
delete one tag and keep its siblings, registry 3 has `DELETE /manifests/<tag>`; for 2.x (and any
registry whose version jindr does not know) the tag is first pointed at a small throw-away
manifest of its own, whose digest is then deleted — only that tag goes, and no surviving tag ever
stops resolving (the way regclient's `regctl tag delete` does it). Digests are always resolved with
every manifest type in `Accept`, so an index is never confused with one of its children.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..client import RegistryClient
from ..errors import IntegrityError, NotFound
from ..models import OCI_MANIFEST, ActionRow
from ..refs import Ref

__all__ = ["DeletePlan", "RepoPlan", "delete_repositories", "delete_images", "plan_images", "plan_repositories"]

SPACE_NOTE = "space returns at the next gc or stop"
TORN_NOTE = "listed, but its manifest is gone (a delete the registry did not finish)"
TORN_ADVICE = f"{TORN_NOTE}; the API cannot remove it: `rmr` on a registry jindr runs does, else its operator"
EMPTY_CONFIG = b"{}"
EMPTY_CONFIG_TYPE = "application/vnd.oci.empty.v1+json"


@dataclass
class DeletePlan:
    """What `rmi` will do: tags to remove one by one, digests to remove whole, and what stays."""

    registry: str
    tag_deletes: list[tuple[str, str, str]] = field(default_factory=list)  # (repo, tag, digest)
    digest_deletes: list[tuple[str, str, list[str]]] = field(default_factory=list)  # (repo, digest, its tags)
    kept: list[tuple[str, str, str]] = field(default_factory=list)  # siblings: (repo, tag, digest)

    def rows(self, action: str) -> list[ActionRow]:
        rows: list[ActionRow] = []
        for repo, tag, digest in self.tag_deletes:
            rows.append(ActionRow(self.registry, repo, tag, digest, action, "tag only"))
        for repo, digest, tags in self.digest_deletes:
            rows.append(ActionRow(self.registry, repo, "", digest, action, "manifest"))
            rows.extend(ActionRow(self.registry, repo, t, digest, action, "went with the digest") for t in tags)
        for repo, tag, digest in self.kept:
            rows.append(ActionRow(self.registry, repo, tag, digest, "kept", "shares the digest of a deleted tag"))
        return rows


def _tag_map(client: RegistryClient, repository: str, cache: dict[str, dict[str, str]]) -> dict[str, str]:
    """tag → digest for every tag of a repository (resolved with the full Accept header)."""
    if repository not in cache:
        found: dict[str, str] = {}
        for tag in client.tags(repository):
            head = client.head_manifest(repository, tag)
            if head is not None and head[0]:
                found[tag] = head[0]
        cache[repository] = found
    return cache[repository]


def plan_images(client: RegistryClient, refs: Sequence[Ref]) -> DeletePlan:
    """Resolve every image first; an unknown repository, tag or digest raises and deletes nothing."""
    plan = DeletePlan(client.registry)
    tags_cache: dict[str, dict[str, str]] = {}
    doomed_tags: set[tuple[str, str]] = set()
    whole: dict[tuple[str, str], None] = {}
    for ref in refs:
        if ref.digest:
            if client.head_manifest(ref.repository, ref.digest) is None:
                raise NotFound(
                    f"{ref.repository}@{ref.digest} not found in {client.registry}; nothing was deleted",
                    registry=client.registry,
                )
            whole[(ref.repository, ref.digest)] = None
        else:
            assert ref.tag is not None
            head = client.head_manifest(ref.repository, ref.tag)
            if head is None:
                client.tags(ref.repository)  # an unknown repository says so
                raise NotFound(
                    f"{ref.repository}:{ref.tag} not found in {client.registry}; nothing was deleted",
                    registry=client.registry,
                )
            doomed_tags.add((ref.repository, ref.tag))
    for repo, digest in whole:
        tags = sorted(t for t, d in _tag_map(client, repo, tags_cache).items() if d == digest)
        plan.digest_deletes.append((repo, digest, tags))
        doomed_tags -= {(repo, t) for t in tags}
    for repo, tag in sorted(doomed_tags):
        mapping = _tag_map(client, repo, tags_cache)
        plan.tag_deletes.append((repo, tag, mapping[tag]))
    gone = {(r, t) for r, t, _ in plan.tag_deletes} | {(r, t) for r, _, ts in plan.digest_deletes for t in ts}
    touched = {(r, d) for r, _, d in plan.tag_deletes}
    for repo in sorted({r for r, _ in touched}):
        for tag, digest in sorted(_tag_map(client, repo, tags_cache).items()):
            if (repo, digest) in touched and (repo, tag) not in gone:
                plan.kept.append((repo, tag, digest))
    return plan


def delete_images(
    client: RegistryClient,
    plan: DeletePlan,
    *,
    tag_delete_api: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[ActionRow]:
    """Carry out a plan; afterwards every kept tag must still resolve to its digest."""
    total = len(plan.tag_deletes) + len(plan.digest_deletes)
    done = 0
    for repo, tag, _ in plan.tag_deletes:
        if tag_delete_api:
            client.delete_manifest(repo, tag)
        else:
            _delete_tag_by_placeholder(client, repo, tag)
        done += 1
        if progress:
            progress(done, total)
    for repo, digest, _ in plan.digest_deletes:
        client.delete_manifest(repo, digest)
        done += 1
        if progress:
            progress(done, total)
    for repo, tag, digest in plan.kept:
        head = client.head_manifest(repo, tag)
        if head is None or head[0] != digest:
            raise IntegrityError(
                f"{repo}:{tag} no longer resolves to {digest} after the delete; this is a bug — please report it",
                registry=client.registry,
            )
    rows = plan.rows("deleted")
    for row in rows:
        if row.action == "deleted" and not row.note.startswith("kept"):
            row.note = f"{row.note}; {SPACE_NOTE}"
    return rows


def _delete_tag_by_placeholder(client: RegistryClient, repository: str, tag: str) -> None:
    """Point `tag` at a throw-away manifest of its own, then delete that manifest's digest."""
    config_digest = "sha256:" + hashlib.sha256(EMPTY_CONFIG).hexdigest()
    if client.head_blob(repository, config_digest) is None:
        client.upload_blob(repository, EMPTY_CONFIG, config_digest)
    placeholder = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": EMPTY_CONFIG_TYPE, "digest": config_digest, "size": len(EMPTY_CONFIG)},
        "layers": [],
        # Unique per tag and per call, so the digest belongs to this tag alone.
        "annotations": {"org.jindr.delete": f"{repository}:{tag}:{os.urandom(8).hex()}"},
    }
    raw = json.dumps(placeholder, separators=(",", ":")).encode()
    digest = client.put_manifest(repository, tag, raw, OCI_MANIFEST)
    client.delete_manifest(repository, digest)


@dataclass
class RepoPlan:
    """What `rmr` will do for one repository: every tagged digest, with its tags."""

    registry: str
    repository: str
    digests: dict[str, list[str]] = field(default_factory=dict)
    #: Tags the registry lists whose manifest is gone: what its own delete leaves when it is killed
    #: between removing a manifest and removing the tags on it. No API call can remove them.
    torn: list[str] = field(default_factory=list)

    def rows(self, action: str, note: str, *, torn_removed: bool = False) -> list[ActionRow]:
        """One row per tag; `torn_removed`: the repository's directory goes, torn tags with it."""
        rows = []
        for digest, tags in sorted(self.digests.items()):
            rows.extend(ActionRow(self.registry, self.repository, t, digest, action, note) for t in sorted(tags))
        for tag in sorted(self.torn):
            if torn_removed:
                detail = f"{TORN_NOTE}; {note}" if note else TORN_NOTE
                rows.append(ActionRow(self.registry, self.repository, tag, "", action, detail))
            else:
                rows.append(ActionRow(self.registry, self.repository, tag, "", "not found", TORN_ADVICE))
        return rows


def plan_repositories(client: RegistryClient, repositories: Sequence[str]) -> list[RepoPlan]:
    """Resolve every tag of every repository first; an unknown repository raises, deleting nothing."""
    plans = []
    for repo in repositories:
        plan = RepoPlan(client.registry, repo)
        for tag in client.tags(repo):
            head = client.head_manifest(repo, tag)
            if head is not None and head[0]:
                plan.digests.setdefault(head[0], []).append(tag)
            else:
                plan.torn.append(tag)
        plans.append(plan)
    return plans


def delete_repositories(client: RegistryClient, plans: Sequence[RepoPlan]) -> None:
    """Delete every tagged manifest of each planned repository through the API."""
    for plan in plans:
        for digest in plan.digests:
            try:
                client.delete_manifest(plan.repository, digest)
            except NotFound:
                pass  # deleted meanwhile: the goal is reached
