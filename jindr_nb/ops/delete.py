"""`rmi` and `rmr`: plan everything first, prove the registry will accept it, then delete exactly that.

The registry API deletes manifests by digest, which takes every tag on that digest with it. To
delete one tag and keep its siblings, registry 3 has `DELETE /manifests/<tag>`; for 2.x (and any
registry whose version jindr does not know) the tag is first pointed at a small throw-away
manifest of its own, whose digest is then deleted — only that tag goes, and no surviving tag ever
stops resolving (the way regclient's `regctl tag delete` does it). Digests are always resolved with
every manifest type in `Accept`, so an index is never confused with one of its children.

Three rules keep a delete from destroying what nobody asked to delete:

- **Probe before the first write.** A DELETE of a digest nothing has (random, so it cannot hit
  anything) answers 404 where deletes work and 405 `UNSUPPORTED` where they are disabled — the
  registry's own default. The plan stops there, before the placeholder touches a user's tag.
- **A digest a tagged index needs is refused** (a platform image or an attestation of `app:latest`
  deleted alone breaks `app:latest`): the error names the tags; `with_index` deletes the indexes
  (and their tags) too, and the plan lists them.
- **Put back what was moved.** If a step fails after a tag was re-pointed (or an index deleted
  for `with_index`), the original manifest bytes are PUT back under every tag they had and their
  digests checked before the error is reported.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..client import RegistryClient
from ..errors import IntegrityError, JindrError, NotFound, Refused, RestoreFailed, Unauthorized, Unsupported
from ..models import INDEX_TYPES, OCI_MANIFEST, ActionRow, Descriptor, Index, parse_manifest, sha256_digest
from ..refs import Ref

if TYPE_CHECKING:
    from ..runtime import Runtime

__all__ = [
    "Changed",
    "DeletePlan",
    "DeleteOutcome",
    "ImageDeletion",
    "RepoPlan",
    "RepoRemoval",
    "check_deletes",
    "delete_all",
    "delete_images",
    "delete_repositories",
    "plan_deletion",
    "plan_images",
    "plan_removal",
    "plan_repositories",
]

SPACE_NOTE = "space returns at the next gc or stop"
TORN_NOTE = "listed, but its manifest is gone (a delete the registry did not finish)"
TORN_ADVICE = f"{TORN_NOTE}; the API cannot remove it: `rmr` on a registry jindr runs does, else its operator"
NOT_ATTEMPTED = "not attempted: an earlier delete failed"
EMPTY_CONFIG = b"{}"
EMPTY_CONFIG_TYPE = "application/vnd.oci.empty.v1+json"
WITH_INDEX = "--with-index"


class Changed(Refused):
    """The registry changed between the plan and the delete: that item is not deleted."""


@dataclass
class Original:
    """A manifest as it was before the delete: what a rollback PUTs back, under which tags."""

    digest: str
    media_type: str
    raw: bytes
    tags: list[str] = field(default_factory=list)


@dataclass
class TagDelete:
    """`repo:tag`: that tag only."""

    repository: str
    tag: str
    original: Original


@dataclass
class DigestDelete:
    """`repo@digest`: the manifest with every tag on it, and (`with_index`) the indexes that need it."""

    repository: str
    digest: str
    tags: list[str]
    #: Indexes that reference the digest (directly or through a nested index), outermost first.
    indexes: list[Original] = field(default_factory=list)
    #: How the digest sits in the index: "the linux/arm64 image", "an attestation manifest".
    role: str = ""
    #: Indexes above it in the repository, whether they go or not: items run shallowest first, so a
    #: child allowed because an index of the same command goes is only deleted once that index went.
    depth: int = 0


@dataclass
class DeletePlan:
    """What `rmi` will do: tags to remove one by one, digests to remove whole, and what stays."""

    registry: str
    tag_deletes: list[TagDelete] = field(default_factory=list)
    digest_deletes: list[DigestDelete] = field(default_factory=list)
    kept: list[tuple[str, str, str]] = field(default_factory=list)  # siblings: (repo, tag, digest)

    def signature(self) -> tuple:
        """What the plan touches, to tell whether the registry changed between two plans."""
        return (
            tuple((t.repository, t.tag, t.original.digest) for t in self.tag_deletes),
            tuple(
                (d.repository, d.digest, tuple(d.tags), tuple((i.digest, tuple(i.tags)) for i in d.indexes))
                for d in self.digest_deletes
            ),
            tuple(self.kept),
        )

    @property
    def items(self) -> list[TagDelete | DigestDelete]:
        """Every requested item: the tag deletes, then the digest deletes (shallowest first)."""
        return [*self.tag_deletes, *self.digest_deletes]

    @property
    def repositories(self) -> list[str]:
        names = [t.repository for t in self.tag_deletes] + [d.repository for d in self.digest_deletes]
        return list(dict.fromkeys(names))

    def item_rows(self, item: TagDelete | DigestDelete, action: str, note: str = "") -> list[ActionRow]:
        """The rows of one requested item; `note` (when given) replaces the description."""
        reg = self.registry
        if isinstance(item, TagDelete):
            return [ActionRow(reg, item.repository, item.tag, item.original.digest, action, note or "tag only")]
        rows: list[ActionRow] = []
        for index in item.indexes:
            what = f"index that holds {item.digest[:19]}… ({item.role})"
            rows.append(ActionRow(reg, item.repository, "", index.digest, action, note or what))
            rows.extend(
                ActionRow(reg, item.repository, t, index.digest, action, note or "went with the index")
                for t in index.tags
            )
        described = "manifest" + (f" ({item.role} of the index above)" if item.indexes else "")
        rows.append(ActionRow(reg, item.repository, "", item.digest, action, note or described))
        rows.extend(
            ActionRow(reg, item.repository, t, item.digest, action, note or "went with the digest") for t in item.tags
        )
        return rows

    def kept_rows(self) -> list[ActionRow]:
        return [
            ActionRow(self.registry, repo, tag, digest, "kept", "shares the digest of a deleted tag")
            for repo, tag, digest in self.kept
        ]

    def rows(self, action: str) -> list[ActionRow]:
        rows: list[ActionRow] = []
        for item in self.items:
            rows.extend(self.item_rows(item, action))
        return rows + self.kept_rows()


@dataclass
class DeleteOutcome:
    """Rows for every requested item (deleted, or kept and why), and the error that stopped the run."""

    rows: list[ActionRow]
    error: str = ""
    #: What to tell the user when nothing failed ("" for nothing); with an error, the error says it.
    message: str = ""


@dataclass
class _Repo:
    """One repository as the plan sees it: tag → (digest, media type), and who references what."""

    tags: dict[str, tuple[str, str]]
    #: child digest → [(parent index digest, the child's descriptor)], over every index a tag reaches.
    parents: dict[str, list[tuple[str, Descriptor]]]
    indexes: dict[str, Index]


def _repo_view(client: RegistryClient, repository: str, cache: dict[str, _Repo]) -> _Repo:
    """Every tag of a repository with its digest, and every index reachable from a tag, parsed."""
    if repository in cache:
        return cache[repository]
    tags: dict[str, tuple[str, str]] = {}
    for tag in client.tags(repository):
        head = client.head_manifest(repository, tag)
        if head is not None and head[0]:
            tags[tag] = (head[0], head[1])
    parents: dict[str, list[tuple[str, Descriptor]]] = {}
    indexes: dict[str, Index] = {}
    pending = sorted({d for d, media_type in tags.values() if media_type in INDEX_TYPES or not media_type})
    while pending:
        digest = pending.pop()
        if digest in indexes:
            continue
        try:
            got = client.get_manifest(repository, digest)
        except NotFound:
            continue  # a torn tag: its manifest is gone; nothing it holds can be needed
        parsed = parse_manifest(got.raw, got.media_type, got.digest)
        if not isinstance(parsed, Index):
            continue
        indexes[digest] = parsed
        for child in parsed.manifests:
            parents.setdefault(child.digest, []).append((digest, child))
            if child.media_type in INDEX_TYPES:
                pending.append(child.digest)
    cache[repository] = _Repo(tags, parents, indexes)
    return cache[repository]


def _role(desc: Descriptor) -> str:
    if desc.is_attestation:
        return "an attestation manifest"
    if desc.media_type in INDEX_TYPES:
        return "a nested index"
    return f"the {desc.platform} image" if desc.platform is not None and str(desc.platform) else "a child manifest"


def _ancestors(view: _Repo, digest: str) -> tuple[list[str], str]:
    """Indexes that reference `digest`, directly or through nested indexes (outermost first), and the
    role the digest plays in the nearest one."""
    found: list[str] = []
    role = ""
    frontier = [digest]
    while frontier:
        current = frontier.pop()
        for parent, desc in view.parents.get(current, []):
            if current == digest and not role:
                role = _role(desc)
            if parent not in found:
                found.append(parent)
                frontier.append(parent)
    return list(reversed(found)), role


def _original(client: RegistryClient, repository: str, reference: str, tags: list[str]) -> Original:
    got = client.get_manifest(repository, reference)
    return Original(got.digest, got.media_type, got.raw, tags)


def plan_images(
    client: RegistryClient, refs: Sequence[Ref], *, with_index: bool = False, probe: bool = True
) -> DeletePlan:
    """Resolve every image first; an unknown image, a digest a kept index needs, or a registry that
    will not delete (`probe`, see `check_deletes`) raises and deletes nothing."""
    plan = DeletePlan(client.registry)
    views: dict[str, _Repo] = {}
    doomed_tags: dict[tuple[str, str], None] = {}
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
            doomed_tags[(ref.repository, ref.tag)] = None
    # Tags going with a digest delete are that item's, not tag deletes of their own.
    going: set[tuple[str, str]] = set(doomed_tags)
    digest_items: list[DigestDelete] = []
    for repo, digest in whole:
        view = _repo_view(client, repo, views)
        tags = sorted(t for t, (d, _) in view.tags.items() if d == digest)
        item = DigestDelete(repo, digest, tags)
        ancestors, item.role = _ancestors(view, digest)
        item.depth = len(ancestors)
        for index_digest in ancestors:
            index_tags = sorted(t for t, (d, _) in view.tags.items() if d == index_digest)
            item.indexes.append(Original(index_digest, view.indexes[index_digest].media_type, b"", index_tags))
        digest_items.append(item)
        going |= {(repo, t) for t in tags}
        if with_index:
            going |= {(repo, t) for index in item.indexes for t in index.tags}
    for item in digest_items:
        needed_by = [
            f"{item.repository}:{t}" for i in item.indexes for t in i.tags if (item.repository, t) not in going
        ]
        if needed_by:
            raise Refused(
                f"{item.repository}@{item.digest[:19]}… is {item.role} of {', '.join(needed_by)}: deleting it alone "
                f"would break {'those tags' if len(needed_by) > 1 else 'that tag'} — delete the tag(s) instead, "
                f"or pass {WITH_INDEX} to delete the index too; nothing was deleted"
            )
        if not with_index or not any(i.tags for i in item.indexes):
            item.indexes = []  # untagged (or going) indexes: left for gc, as any untagged manifest
        else:
            item.indexes = [_original(client, item.repository, i.digest, i.tags) for i in item.indexes]
    plan.digest_deletes = sorted(digest_items, key=lambda d: d.depth)  # indexes before what they hold
    claimed = {(d.repository, t) for d in digest_items for t in d.tags}
    claimed |= {(d.repository, t) for d in digest_items for i in d.indexes for t in i.tags}
    for repo, tag in sorted(doomed_tags):
        if (repo, tag) in claimed:
            continue
        view = _repo_view(client, repo, views)
        plan.tag_deletes.append(TagDelete(repo, tag, _original(client, repo, tag, [tag])))
        if plan.tag_deletes[-1].original.digest != view.tags.get(tag, ("",))[0]:
            raise IntegrityError(
                f"{repo}:{tag} changed while the delete was being planned; nothing was deleted — run it again",
                registry=client.registry,
            )
    gone = going | claimed
    touched = {(t.repository, t.original.digest) for t in plan.tag_deletes}
    for repo in sorted({r for r, _ in touched}):
        for tag, (digest, _) in sorted(_repo_view(client, repo, views).tags.items()):
            if (repo, digest) in touched and (repo, tag) not in gone:
                plan.kept.append((repo, tag, digest))
    if probe:
        check_deletes(client, plan.repositories)
    return plan


def check_deletes(client: RegistryClient, repositories: Sequence[str]) -> None:
    """Prove, without writing anything, that the registry accepts manifest deletes in each repository.

    A DELETE of a random digest answers 404 where deletes work and 405 `UNSUPPORTED` where they are
    disabled (the registry's default: `storage.delete.enabled` is false unless set); 401/403 where
    the credentials may not delete. Anything else is left to the delete itself (and its rollback).
    """
    for repository in repositories:
        probe = "sha256:" + hashlib.sha256(b"jindr delete probe " + os.urandom(16)).hexdigest()
        try:
            client.delete_manifest(repository, probe)
        except NotFound:
            continue
        except (Unsupported, Unauthorized) as exc:
            if isinstance(exc, Unsupported):
                why = (
                    f"deletes are disabled on {client.registry} (405 UNSUPPORTED; a pull-through cache takes none "
                    "either) — nothing was changed; a registry jindr starts without --proxy has them on, and an "
                    "operator can set REGISTRY_STORAGE_DELETE_ENABLED=true"
                )
            else:
                why = (
                    f"{client.registry} does not let these credentials delete in {repository} — nothing was changed "
                    "(check `docker login` or the registry's permissions)"
                )
            raise type(exc)(why, registry=client.registry, status=exc.status, codes=exc.codes) from None


def delete_images(
    client: RegistryClient,
    plan: DeletePlan,
    *,
    tag_delete_api: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> DeleteOutcome:
    """Carry out a plan, item by item; an item that fails is put back as it was and the rest is
    not attempted. Afterwards every kept tag must still resolve to its digest."""
    items: list[TagDelete | DigestDelete] = [*plan.tag_deletes, *plan.digest_deletes]
    rows: list[ActionRow] = []
    error = ""
    deleted: set[tuple[str, str]] = set()  # (repo, digest) gone in this run: shared indexes go once
    for done, item in enumerate(items, 1):
        if error:
            rows.extend(plan.item_rows(item, "kept", NOT_ATTEMPTED))
            continue
        try:
            if isinstance(item, TagDelete):
                _delete_tag(client, item, tag_delete_api)
            else:
                _delete_digest(client, item, deleted)
        except RestoreFailed as exc:
            error = str(exc)
            rows.extend(plan.item_rows(item, "failed", str(exc)))
            continue
        except JindrError as exc:
            error = f"{exc} — that item was put back as it was" + (
                "; the rest was not attempted" if done < len(items) else ""
            )
            rows.extend(plan.item_rows(item, "kept", f"delete failed, put back as it was: {exc}"))
            continue
        rows.extend(plan.item_rows(item, "deleted"))
        if progress:
            progress(done, len(items))
    for row in rows:
        if row.action == "deleted":
            row.note = f"{row.note}; {SPACE_NOTE}"
    kept = plan.kept_rows()
    for row in kept:  # the siblings must still resolve as they did: jindr's deletes never touch them
        head = client.head_manifest(row.repository, row.tag)
        if head is None or head[0] != row.digest:
            now = f"now {head[0]}" if head else "now gone"
            row.note = f"{row.note}; {now}: changed by someone else during the delete (jindr did not touch it)"
            error = error or f"{row.repository}:{row.tag} changed during the delete ({now}), not by jindr"
    return DeleteOutcome(rows + kept, error)


def _delete_tag(client: RegistryClient, item: TagDelete, tag_delete_api: bool) -> None:
    repo, tag = item.repository, item.tag
    now = client.head_manifest(repo, tag)
    if now is None or now[0] != item.original.digest:
        raise Changed(
            f"{repo}:{tag} changed since the plan (now {now[0] if now else 'gone'}); it was not deleted — run it again"
        )
    if tag_delete_api:
        _delete_checked(client, repo, tag)
        return
    placeholder = _placeholder(client, repo, tag)
    placeholder_digest = sha256_digest(placeholder)
    try:
        # Inside the try: a PUT the registry stored but whose answer was lost (a proxy's 504) has
        # moved the tag just the same.
        client.put_manifest(repo, tag, placeholder, OCI_MANIFEST)
        _delete_checked(client, repo, placeholder_digest)
    except JindrError:
        _put_tag_back(client, item, placeholder_digest)
        raise


def _put_tag_back(client: RegistryClient, item: TagDelete, placeholder_digest: str) -> None:
    """After a failed step: put the original back where the tag is on our placeholder or gone —
    never over an image someone else pushed meanwhile."""
    repo, tag = item.repository, item.tag
    try:
        now = client.head_manifest(repo, tag)
    except JindrError:
        now = None  # cannot tell: putting the original back is the safe side
    if now is not None and now[0] == item.original.digest:
        return  # the tag never left its image
    if now is not None and now[0] != placeholder_digest:
        raise RestoreFailed(f"{repo}:{tag} was pushed by someone else during the delete (now {now[0]}); left as it is")
    _restore(client, repo, item.original)


def _delete_checked(client: RegistryClient, repository: str, reference: str) -> None:
    """DELETE a manifest; when the answer is an error, ask whether it is gone anyway (a DELETE the
    registry carried out but whose answer was lost) before calling it a failure."""
    try:
        client.delete_manifest(repository, reference)
    except JindrError:
        try:
            gone = client.head_manifest(repository, reference) is None
        except JindrError:
            gone = False
        if not gone:
            raise


def _delete_digest(client: RegistryClient, item: DigestDelete, deleted: set[tuple[str, str]]) -> None:
    gone: list[Original] = []
    try:
        for index in item.indexes:
            if (item.repository, index.digest) in deleted:
                continue  # the index of an earlier item of this run
            _delete_checked(client, item.repository, index.digest)
            gone.append(index)
        _delete_checked(client, item.repository, item.digest)
        deleted.update((item.repository, d) for d in [item.digest, *(i.digest for i in gone)])
    except JindrError:
        for index in reversed(gone):  # innermost first: an index PUT needs its children present
            _restore(client, item.repository, index)
        raise


def _restore(client: RegistryClient, repository: str, original: Original) -> None:
    """PUT a manifest's original bytes back under each of its tags (by digest when it had none) and
    check that each resolves to the original digest again."""
    try:
        for reference in original.tags or [original.digest]:
            put = client.put_manifest(repository, reference, original.raw, original.media_type)
            head = client.head_manifest(repository, reference)
            if put != original.digest or head is None or head[0] != original.digest:
                raise IntegrityError(f"{repository}:{reference} resolves to {head[0] if head else 'nothing'}")
    except JindrError as exc:
        names = ", ".join(f"{repository}:{t}" for t in original.tags) or f"{repository}@{original.digest}"
        raise RestoreFailed(
            f"the delete failed and putting back {names} ({original.digest}) failed too: {exc} — push that image again",
            registry=client.registry,
        ) from None


def _placeholder(client: RegistryClient, repository: str, tag: str) -> bytes:
    """A throw-away manifest of this tag's own (its digest belongs to no other tag)."""
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
    return json.dumps(placeholder, separators=(",", ":")).encode()


def delete_all(
    plans: Sequence[tuple[RegistryClient, DeletePlan]],
    *,
    tag_delete_api: Callable[[str], bool] = lambda registry: False,
    replan: Callable[[RegistryClient, DeletePlan], DeletePlan] | None = None,
) -> DeleteOutcome:
    """Carry out the plans of several registries in turn; after a failure the rest is not attempted.

    `replan` (used after the user took time to confirm): plan again first and refuse, deleting
    nothing, when the registry changed since the plan the user saw."""
    if replan is not None:
        for client, plan in plans:
            if replan(client, plan).signature() != plan.signature():
                raise Changed(f"{client.registry} changed since the plan was shown; nothing was deleted — run it again")
    rows: list[ActionRow] = []
    errors: list[str] = []
    for client, plan in plans:
        if errors:  # an earlier registry failed: the plan of this one is not attempted
            rows.extend(row for item in plan.items for row in plan.item_rows(item, "kept", NOT_ATTEMPTED))
            continue
        outcome = delete_images(client, plan, tag_delete_api=tag_delete_api(client.registry))
        rows.extend(outcome.rows)
        if outcome.error:
            errors.append(outcome.error)
    return DeleteOutcome(rows, "; ".join(errors))


@dataclass
class RepoPlan:
    """What `rmr` will do for one repository: every tagged digest, with its tags."""

    registry: str
    repository: str
    digests: dict[str, list[str]] = field(default_factory=dict)
    #: digest → media type: indexes are deleted before the manifests they hold.
    media_types: dict[str, str] = field(default_factory=dict)
    #: Filled by `delete_repositories`: digests deleted, and the error that stopped the rest.
    done: set[str] = field(default_factory=set)
    error: str = ""
    failed: str = ""  # the digest whose delete failed
    #: Tags the registry lists whose manifest is gone: what its own delete leaves when it is killed
    #: between removing a manifest and removing the tags on it. No API call can remove them.
    torn: list[str] = field(default_factory=list)

    def rows(self, action: str, note: str, *, torn_removed: bool = False) -> list[ActionRow]:
        """One row per tag; `torn_removed`: the repository's directory goes, torn tags with it. After
        a failed `delete_repositories`, digests it did not delete are `kept`, saying why."""
        rows: list[ActionRow] = []
        for digest, tags in sorted(self.digests.items()):
            if action == "deleted" and self.error and digest not in self.done:
                why = f"delete failed: {self.error}" if digest == self.failed else NOT_ATTEMPTED
                rows.extend(ActionRow(self.registry, self.repository, t, digest, "kept", why) for t in sorted(tags))
                continue
            rows.extend(ActionRow(self.registry, self.repository, t, digest, action, note) for t in sorted(tags))
        for tag in sorted(self.torn):
            if torn_removed:
                detail = f"{TORN_NOTE}; {note}" if note else TORN_NOTE
                rows.append(ActionRow(self.registry, self.repository, tag, "", action, detail))
            else:
                rows.append(ActionRow(self.registry, self.repository, tag, "", "not found", TORN_ADVICE))
        return rows


def plan_repositories(client: RegistryClient, repositories: Sequence[str], *, probe: bool = True) -> list[RepoPlan]:
    """Resolve every tag of every repository first; an unknown repository, or a registry that will
    not delete (`probe`: deletes through the API, see `check_deletes`), raises, deleting nothing."""
    plans = []
    for repo in repositories:
        plan = RepoPlan(client.registry, repo)
        for tag in client.tags(repo):
            head = client.head_manifest(repo, tag)
            if head is not None and head[0]:
                plan.digests.setdefault(head[0], []).append(tag)
                plan.media_types[head[0]] = head[1]
            else:
                plan.torn.append(tag)
        plans.append(plan)
    if probe:
        check_deletes(client, list(repositories))
    return plans


def delete_repositories(client: RegistryClient, plans: Sequence[RepoPlan]) -> str:
    """Delete every tagged manifest of each planned repository through the API, indexes before the
    manifests they hold (so no tag is ever left on an index missing a child); stop at the first
    failure. Returns the error ("" when all went); each plan records what it deleted."""
    for plan in plans:
        order = sorted(plan.digests, key=lambda d: (plan.media_types.get(d) not in INDEX_TYPES, d))
        for digest in order:
            try:
                _delete_checked(client, plan.repository, digest)
            except NotFound:
                pass  # deleted meanwhile: the goal is reached
            except JindrError as exc:
                plan.error, plan.failed = str(exc), digest
                for rest in plans[plans.index(plan) + 1 :]:
                    rest.error = NOT_ATTEMPTED
                return str(exc)
            plan.done.add(digest)
    return ""


@dataclass
class ImageDeletion:
    """`rmi` over one or more registries: every registry's plan, made before anything is touched."""

    #: (client, the refs asked for in its registry, the plan for them), in the order given.
    plans: list[tuple[RegistryClient, list[Ref], DeletePlan]]
    with_index: bool = False

    def rows(self, action: str = "would delete") -> list[ActionRow]:
        return [row for _, _, plan in self.plans for row in plan.rows(action)]

    def question(self) -> str:
        """What a face asks before acting: every tag and digest that goes, digests with their tags."""
        names = [f"{t.repository}:{t.tag}" for _, _, p in self.plans for t in p.tag_deletes]
        for _, _, p in self.plans:
            for d in p.digest_deletes:
                tags = [*(t for i in d.indexes for t in i.tags), *d.tags]
                indexes = f", {len(d.indexes)} index(es)" if d.indexes else ""
                names.append(f"{d.repository}@{d.digest[:19]}… (tags: {', '.join(tags) or 'none'}{indexes})")
        return f"delete {', '.join(names)}?"

    def carry_out(self, *, tag_delete_api: Callable[[str], bool], recheck: bool = False) -> DeleteOutcome:
        """Delete as planned (`delete_all`); `recheck` (after the user took time to confirm): plan
        again first and refuse, deleting nothing, if any registry changed since."""
        selections = {id(plan): refs for _, refs, plan in self.plans}

        def replan(client: RegistryClient, plan: DeletePlan) -> DeletePlan:
            return plan_images(client, selections[id(plan)], with_index=self.with_index)

        pairs = [(client, plan) for client, _, plan in self.plans]
        return delete_all(pairs, tag_delete_api=tag_delete_api, replan=replan if recheck else None)


def plan_deletion(
    client_for: Callable[[str], RegistryClient],
    selections: Sequence[tuple[str, list[Ref]]],
    *,
    with_index: bool = False,
) -> ImageDeletion:
    """Plan `rmi` in every registry of `selections` ((registry, refs) pairs) before touching any."""
    plans = []
    for registry, refs in selections:
        client = client_for(registry)
        plans.append((client, refs, plan_images(client, refs, with_index=with_index)))
    return ImageDeletion(plans, with_index)


@dataclass
class RepoRemoval:
    """`rmr`, planned: the repositories' plans, and how they go.

    On a registry jindr runs and that is running (`runtime`), the repositories' directories are
    removed from its storage while it is paused (what the API cannot do: the names leave the
    catalog, torn tags go too) and it is garbage-collected; on any other registry, every tagged
    manifest is deleted through the API and the names stay in the catalog.
    """

    client: RegistryClient
    repositories: list[str]
    plans: list[RepoPlan]
    runtime: Runtime | None = None

    def rows(self, action: str = "would delete") -> list[ActionRow]:
        return [row for p in self.plans for row in p.rows(action, "", torn_removed=self.runtime is not None)]

    def carry_out(self) -> DeleteOutcome:
        if self.runtime is not None:
            from .gc import collect

            gc = collect(self.runtime, self.client.registry, remove_repositories=self.repositories)
            note = "repository removed from storage"
            rows = [row for p in self.plans for row in p.rows("deleted", note, torn_removed=True)]
            message = f"{len(self.repositories)} repositories removed; garbage collection reclaimed {gc.describe()}"
            return DeleteOutcome(rows, message=message)
        error = delete_repositories(self.client, self.plans)
        rows = [row for p in self.plans for row in p.rows("deleted", f"manifest deleted; {SPACE_NOTE} of the registry")]
        if error:
            return DeleteOutcome(rows, f"{error}; the rest was not attempted")
        message = (
            "the repository names stay in the catalog until the registry's operator removes them "
            "(the registry API cannot delete a repository)"
        )
        return DeleteOutcome(rows, message=message)


def plan_removal(client: RegistryClient, repositories: Sequence[str], runtime: Runtime | None = None) -> RepoRemoval:
    """Plan `rmr`: every repository must exist, and (through the API: no `runtime`, the running
    registry's runtime when jindr runs it here) the registry must accept deletes, before anything goes."""
    repos = list(repositories)
    return RepoRemoval(client, repos, plan_repositories(client, repos, probe=runtime is None), runtime)
