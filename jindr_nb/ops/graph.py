"""One walk of a manifest graph — an image, or an index down through its children to the blobs —
for every command that follows images: copy, save, du, gc, layers, history, diff.

The walk knows nothing of where manifests come from: `get(digest_or_tag)` returns a parsed
manifest (the registry API, its storage, the content cache, a layout on disk), `None` for one that
is there but cannot be read as a manifest (kept, not descended), and raises `NotFound` for one
that is gone. A child that is gone is recorded in `Graph.missing` — the index is *broken* — never
skipped in silence; so is a child whose "digest" is not one (`Descriptor.well_formed`: the
registry refuses such an index), without a look at any source. `exists`, when given, is asked
before `get` for every child: a cache can say what a digest contained, not that the registry still
has it. `present(digest)`, when given, reads
a child the walk follows and proves that the source still has it, in one step (NotFound when it
has not, None for opaque, as `get`): where the read that finds a manifest is that proof (a
registry's storage), asking `exists` first would look twice; `exists` is then asked only of the
children not followed. `referrers(digest)` adds what is attached to a manifest (signatures,
SBOMs: OCI 1.1 `subject`), each as (tag or "", digest); the digest may be "" for one known only
by its tag (the `sha256-<hex>` tag schema), which is then read by tag. Referrers are followed
from opaque manifests too: what is attached to a digest is attached whether or not jindr can read
it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..errors import NotFound
from ..models import Descriptor, Index, Manifest, is_digest

__all__ = ["Graph", "Node", "walk"]

Getter = Callable[[str], "Manifest | Index | None"]


@dataclass(frozen=True, slots=True)
class Node:
    """One manifest of the graph and how it was reached."""

    manifest: Manifest | Index
    #: The descriptor the parent index lists it with (platform, annotations); None for the root
    #: and for referrers.
    via: Descriptor | None = None
    #: Digest of the index that lists it ("" for the root and for referrers).
    parent: str = ""
    #: Set when the node was reached as a referrer of that digest ...
    referrer_of: str = ""
    #: ... through this tag of the `sha256-<hex>` tag schema ("" when through the referrers API).
    tag: str = ""

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def is_attestation(self) -> bool:
        return self.via is not None and self.via.is_attestation


@dataclass
class Graph:
    """Everything a reference reaches, children before the manifests that list them."""

    root: Manifest | Index
    #: Post-order: every child before its parent, the root last — the order a copy pushes in.
    nodes: list[Node] = field(default_factory=list)
    #: (parent digest, descriptor) of each child the source no longer has.
    missing: list[tuple[str, Descriptor]] = field(default_factory=list)
    #: Digests that are present but could not be read as manifests (kept, not descended); a
    #: referrer known only by its tag is recorded by that tag.
    opaque: list[str] = field(default_factory=list)
    #: (tag, digest) of every referrer read through the tag schema, in the order read — also one
    #: whose manifest the walk had reached before (two subjects' empty referrer indexes are the
    #: same bytes), which then has no node of its own.
    referrer_tags: list[tuple[str, str]] = field(default_factory=list)

    @property
    def broken(self) -> bool:
        return bool(self.missing)

    def require_whole(self, name: str, registry: str = "") -> None:
        """Raise NotFound naming a missing child, for a command that needs all of the image (`cp`, `save`)."""
        if not self.missing:
            return
        desc = self.missing[0][1]
        what = f"the {desc.platform} image" if desc.platform and not desc.is_attestation else "a manifest"
        what = "an attestation" if desc.is_attestation else what
        more = f" (and {len(self.missing) - 1} more)" if len(self.missing) > 1 else ""
        raise NotFound(
            f"{name} is broken: {what} it lists ({desc.digest}) is gone from {registry or 'the registry'}{more}; "
            "nothing was written — push the image again or delete the tag (`inspect` names what is missing)",
            registry=registry,
        )

    @property
    def manifests(self) -> list[Manifest | Index]:
        return [n.manifest for n in self.nodes]

    @property
    def digests(self) -> set[str]:
        """Every manifest digest reached (opaque ones too)."""
        return {n.digest for n in self.nodes} | set(self.opaque)

    def images(self, *, attestations: bool = False) -> Iterator[Node]:
        """The single-platform image manifests, one per listing, in the order their index lists them."""
        for node in _listed_order(self):
            if (
                isinstance(node.manifest, Manifest)
                and not node.referrer_of
                and (attestations or not node.is_attestation)
            ):
                yield node

    @property
    def blobs(self) -> dict[str, Descriptor]:
        """Config and layer blobs of every image manifest reached, each once (first seen wins)."""
        found: dict[str, Descriptor] = {}
        for node in self.nodes:
            if isinstance(node.manifest, Manifest):
                for blob in (node.manifest.config, *node.manifest.layers):
                    found.setdefault(blob.digest, blob)
        return found


def walk(
    get: Getter,
    root: str | Manifest | Index,
    *,
    exists: Callable[[str], bool] | None = None,
    referrers: Callable[[str], list[tuple[str, str]]] | None = None,
    follow: Callable[[Descriptor], bool] | None = None,
    present: Getter | None = None,
) -> Graph:
    """Walk from `root` (a tag or digest for `get`, or a manifest already read).

    `follow(descriptor)` False: that child is only checked (`exists`), not read nor walked — for
    a caller that needs no attestation manifests, say; a missing one still breaks the index.

    The root itself must exist: `get` raising NotFound for it propagates (or it is opaque: a
    ValueError, since there is nothing to walk)."""
    top = get(root) if isinstance(root, str) else root
    if top is None:
        raise ValueError(f"{root} is not a manifest jindr can read")
    graph = Graph(top)
    seen: set[str] = set()

    def visit(manifest: Manifest | Index, via: Descriptor | None, parent: str, referrer_of: str, tag: str) -> None:
        if manifest.digest in seen:
            return
        seen.add(manifest.digest)
        if isinstance(manifest, Index):
            for child in manifest.manifests:
                if child.digest in seen:
                    continue
                if not child.well_formed:
                    # Not a digest (`v1/../v1`, a path): the registry refuses an index listing it, so the
                    # child is not there — and its text never becomes a path or a URL.
                    graph.missing.append((manifest.digest, child))
                    continue
                followed = follow is None or follow(child)
                if not (followed and present is not None) and exists is not None and not exists(child.digest):
                    graph.missing.append((manifest.digest, child))
                    continue
                if not followed:
                    continue
                try:
                    got = present(child.digest) if present is not None else get(child.digest)
                except NotFound:
                    graph.missing.append((manifest.digest, child))
                    continue
                if got is None:
                    seen.add(child.digest)
                    graph.opaque.append(child.digest)
                    attached(child.digest)
                    continue
                visit(got, child, manifest.digest, "", "")
        attached(manifest.digest)
        graph.nodes.append(Node(manifest, via, parent, referrer_of, tag))

    def attached(subject: str) -> None:
        for ref_tag, digest in referrers(subject) if referrers is not None else ():
            if digest and (digest in seen or not is_digest(digest)):
                continue  # read already, or not a digest: nothing a registry could serve
            try:
                got = get(ref_tag or digest)
            except NotFound:
                continue  # a referrer listed but gone: nothing of the subject is missing
            if got is None:
                graph.opaque.append(digest or ref_tag)
                if digest:
                    seen.add(digest)
                    attached(digest)
                continue
            visit(got, None, "", subject, ref_tag)
            if ref_tag:
                graph.referrer_tags.append((ref_tag, got.digest))

    visit(top, None, "", "", "")
    return graph


def _listed_order(graph: Graph) -> list[Node]:
    """One node per listing, parents first, each index's children in the order it lists them (post-order
    reversed would list the last child first). A manifest an index lists twice (one image under two
    platforms) or two indexes list is read and walked once, but is a node for each listing, with that
    listing's descriptor and parent; each index's own list is gone through once (a cycle ends there)."""
    if not graph.nodes:
        return []
    by_digest = {n.digest: n for n in graph.nodes}
    order: list[Node] = []
    listed: set[str] = set()

    def down(node: Node) -> None:
        order.append(node)
        if isinstance(node.manifest, Index) and node.digest not in listed:
            listed.add(node.digest)
            for desc in node.manifest.manifests:
                child = by_digest.get(desc.digest)  # None: missing, opaque or not followed
                if child is not None:
                    down(Node(child.manifest, desc, node.digest))

    down(graph.nodes[-1])
    order.extend(n for n in graph.nodes if n.referrer_of)
    return order
