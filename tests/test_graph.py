"""The one manifest-graph walker (ops/graph.py), against the real registry: order, missing, opaque, blobs."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
from rig import ImageFactory, LocalRegistry, _canon, _digest

from jindr_nb.client import RegistryClient
from jindr_nb.client.storage import StorageLayout
from jindr_nb.errors import IntegrityError, NotFound
from jindr_nb.models import OCI_INDEX, OCI_MANIFEST, Index, Manifest
from jindr_nb.ops.cache import ContentCache
from jindr_nb.ops.copy import copy_image
from jindr_nb.ops.fetch import Fetcher, fetch_manifest
from jindr_nb.ops.gc import plan
from jindr_nb.ops.graph import walk
from jindr_nb.ops.layout import save
from jindr_nb.refs import parse_ref


def _doc(client: RegistryClient, repo: str, digest: str) -> dict:
    return json.loads(client.get_manifest(repo, digest).raw)


def _blobs_of(client: RegistryClient, repo: str, digests: list[str]) -> set[str]:
    """Config and layer digests of image manifests, read from the registry's own documents."""
    found: set[str] = set()
    for digest in digests:
        doc = _doc(client, repo, digest)
        found |= {doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])}
    return found


class Counting:
    """A getter over the registry API that counts what it was asked for."""

    def __init__(self, client: RegistryClient, repo: str) -> None:
        self.get = partial(fetch_manifest, client, repo)
        self.asked: list[str] = []

    def __call__(self, reference: str) -> Manifest | Index:
        self.asked.append(reference)
        return self.get(reference)


def _push_index(client: RegistryClient, repo: str, tag: str, children: list[dict]) -> str:
    raw = _canon({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children})
    return client.put_manifest(repo, tag, raw, OCI_INDEX)


def _entry(client: RegistryClient, repo: str, digest: str) -> dict:
    got = client.get_manifest(repo, digest)
    return {"mediaType": got.media_type, "digest": digest, "size": len(got.raw)}


def test_an_index_with_attestations_children_first_in_listed_order(
    client: RegistryClient, factory: ImageFactory
) -> None:
    platforms = (("linux", "amd64", ""), ("linux", "arm64", "v8"), ("linux", "s390x", ""))
    pushed = factory.index("app", "v1", platforms=platforms)
    get = Counting(client, "app")
    graph = walk(get, "v1")
    listed = [m["digest"] for m in _doc(client, "app", pushed.digest)["manifests"]]
    assert [n.digest for n in graph.nodes] == [*listed, pushed.digest]  # post-order: the root last
    assert graph.root.digest == pushed.digest and graph.nodes[-1].parent == "" and graph.nodes[-1].via is None
    assert all(n.parent == pushed.digest for n in graph.nodes[:-1])
    assert graph.missing == [] and graph.opaque == [] and not graph.broken
    assert [n.digest for n in graph.images()] == list(pushed.platforms.values())
    assert [str(n.via.platform) for n in graph.images()] == ["linux/amd64", "linux/arm64/v8", "linux/s390x"]
    assert [n.digest for n in graph.images(attestations=True) if n.is_attestation] == pushed.attestations
    assert set(graph.blobs) == _blobs_of(client, "app", listed)
    assert all(graph.blobs[d].size > 0 for d in graph.blobs)
    assert get.asked == ["v1", *listed]  # each manifest read once


def test_a_single_image_is_one_node_with_its_blobs(client: RegistryClient, factory: ImageFactory) -> None:
    pushed = factory.single("one", "v1", layers=3)
    graph = walk(partial(fetch_manifest, client, "one"), "v1")
    assert [n.digest for n in graph.nodes] == [pushed.digest]
    assert [n.digest for n in graph.images()] == [pushed.digest]
    assert set(graph.blobs) == _blobs_of(client, "one", [pushed.digest]) and len(graph.blobs) == 4


def test_a_nested_index_and_a_shared_child_are_each_walked_once(client: RegistryClient, factory: ImageFactory) -> None:
    inner = factory.index("app", "inner", attestations=False)
    extra = factory.single("app", "extra", oci=True)
    shared = inner.platforms["linux/arm64"]
    outer = _push_index(
        client,
        "app",
        "outer",
        [_entry(client, "app", d) for d in (inner.digest, shared, extra.digest)],
    )
    get = Counting(client, "app")
    graph = walk(get, "outer")
    amd64 = inner.platforms["linux/amd64"]
    assert [n.digest for n in graph.nodes] == [amd64, shared, inner.digest, extra.digest, outer]
    assert get.asked == ["outer", inner.digest, amd64, shared, extra.digest]  # the shared child: read once
    parents = {n.digest: n.parent for n in graph.nodes}
    assert parents == {amd64: inner.digest, shared: inner.digest, inner.digest: outer, extra.digest: outer, outer: ""}
    # One node per listing, as the indexes list them: the shared child under each index that lists it.
    listed = [(n.digest, n.parent) for n in graph.images()]
    assert listed == [(amd64, inner.digest), (shared, inner.digest), (shared, outer), (extra.digest, outer)]
    assert set(graph.blobs) == _blobs_of(client, "app", [amd64, shared, extra.digest])
    assert graph.digests == {amd64, shared, inner.digest, extra.digest, outer}


def test_a_missing_child_is_recorded_never_skipped(client: RegistryClient, factory: ImageFactory) -> None:
    pushed = factory.index("app", "v1")
    gone = pushed.platforms["linux/arm64"]
    kept = [d for d in [*pushed.platforms.values(), *pushed.attestations] if d != gone]
    fetcher = Fetcher(client, ContentCache(directory=None))
    assert not walk(partial(fetcher.manifest, "app"), "v1", exists=partial(fetcher.exists, "app")).broken
    client.delete_manifest("app", gone)  # the cache above saw it whole
    for graph in (
        walk(partial(fetcher.manifest, "app"), "v1", exists=partial(fetcher.exists, "app")),
        walk(partial(fetch_manifest, client, "app"), "v1"),  # no `exists`: the registry's 404 says it
    ):
        assert graph.broken
        assert [(parent, d.digest, str(d.platform)) for parent, d in graph.missing] == [
            (pushed.digest, gone, "linux/arm64")
        ]
        assert gone not in graph.digests and set(kept) | {pushed.digest} == graph.digests
        assert set(graph.blobs) == _blobs_of(client, "app", kept)
        with pytest.raises(NotFound, match=r"broken: the linux/arm64 image it lists \(sha256:"):
            graph.require_whole("app:v1", client.registry)


def test_a_referrer_through_the_tag_schema(client: RegistryClient, factory: ImageFactory) -> None:
    pushed = factory.index("app", "v1", attestations=False)
    config = factory.blob("app", b"{}")
    sbom = factory.blob("app", b'{"spdxVersion": "SPDX-2.3"}')
    artifact = _canon(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/spdx+json",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
            "layers": [{"mediaType": "application/spdx+json", "digest": sbom, "size": 27}],
            "subject": {"mediaType": OCI_INDEX, "digest": pushed.digest, "size": 1},
        }
    )
    schema_tag = pushed.digest.replace(":", "-")
    referrer = client.put_manifest("app", schema_tag, artifact, OCI_MANIFEST)
    assert client.referrers("app", pushed.digest) is None  # registry 2.8: no referrers API, so the tag schema
    tags = set(client.tags("app"))
    asked: list[str] = []

    def referrers(digest: str) -> list[tuple[str, str]]:
        asked.append(digest)
        fallback = digest.replace(":", "-")
        return [(fallback, "")] if fallback in tags else []

    graph = walk(partial(fetch_manifest, client, "app"), "v1", referrers=referrers)
    platforms = list(pushed.platforms.values())
    assert [n.digest for n in graph.nodes] == [*platforms, referrer, pushed.digest]  # before its subject
    node = graph.nodes[-2]
    assert (node.referrer_of, node.tag, node.via, node.parent) == (pushed.digest, schema_tag, None, "")
    assert graph.referrer_tags == [(schema_tag, referrer)]
    assert [n.digest for n in graph.images()] == platforms  # a referrer is not a platform image
    assert {config, sbom} <= set(graph.blobs)
    assert set(asked) == {*platforms, referrer, pushed.digest}  # every manifest's referrers asked for


def _size_less_index(client: RegistryClient, repo: str, tag: str, children: list[str]) -> str:
    """An index the registry stores but jindr's parser refuses: its descriptors have no size."""
    raw = _canon(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": d} for d in children],
        }
    )
    return client.put_manifest(repo, tag or _digest(raw), raw, OCI_INDEX)


def _signature(client: RegistryClient, factory: ImageFactory, repo: str, subject: str) -> str:
    """A referrer of `subject`, pushed by digest (untagged)."""
    raw = _canon(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": factory.blob(repo, b"{}"),
                "size": 2,
            },
            "layers": [],
            "subject": {"mediaType": OCI_INDEX, "digest": subject, "size": 1},
        }
    )
    return client.put_manifest(repo, _digest(raw), raw, OCI_MANIFEST)


def test_a_manifest_that_cannot_be_read_is_opaque(client: RegistryClient, factory: ImageFactory) -> None:
    inner = factory.index("app", "inner", attestations=False)
    odd = _size_less_index(client, "app", "", list(inner.platforms.values()))
    signature = _signature(client, factory, "app", odd)
    extra = factory.single("app", "extra", oci=True)
    outer = _push_index(client, "app", "outer", [_entry(client, "app", d) for d in (odd, extra.digest)])

    def lenient(reference: str) -> Manifest | Index | None:
        try:
            return fetch_manifest(client, "app", reference)
        except IntegrityError:
            return None  # there, but not a manifest jindr reads

    graph = walk(lenient, "outer", referrers=lambda d: [("", signature)] if d == odd else [])
    assert graph.opaque == [odd] and graph.missing == []
    # Not descended, but what is attached to it is followed.
    assert [n.digest for n in graph.nodes] == [signature, extra.digest, outer]
    assert graph.nodes[0].referrer_of == odd
    assert graph.digests == {odd, signature, extra.digest, outer}
    with pytest.raises(ValueError, match="not a manifest jindr can read"):
        walk(lenient, odd)


def test_gc_keeps_what_an_unreadable_index_and_its_referrers_reach(
    registry: LocalRegistry, factory: ImageFactory
) -> None:
    client = factory.client
    children = [
        factory.image_manifest("app", (os_, arch, ""))[1] for os_, arch in (("linux", "amd64"), ("linux", "arm64"))
    ]
    odd = _size_less_index(client, "app", "odd", children)  # the only tag
    with pytest.raises(IntegrityError):
        fetch_manifest(client, "app", odd)
    signature = _signature(client, factory, "app", odd)
    orphan = factory.image_manifest("app", ("linux", "riscv64", ""))[1]
    doomed = plan(StorageLayout(registry.storage)).manifests.get("app", [])
    assert doomed == [orphan]  # untagged and unreachable: the plan still removes it ...
    assert not {odd, signature, *children} & set(doomed)  # ... and keeps what the index it cannot parse reaches


def test_cp_and_save_of_a_broken_index_write_nothing(
    client: RegistryClient, factory: ImageFactory, tmp_path: Path
) -> None:
    pushed = factory.index("app", "v1")
    client.delete_manifest("app", pushed.platforms["linux/amd64"])
    source = parse_ref(f"{client.registry}/app:v1")
    with pytest.raises(NotFound, match=r"app:v1 is broken: the linux/amd64 image it lists .* nothing was written"):
        copy_image(client, source, client, parse_ref(f"{client.registry}/mirror:v1"))
    with pytest.raises(NotFound, match="mirror"):
        client.tags("mirror")
    with pytest.raises(NotFound, match=r"app:v1 is broken: the linux/amd64 image"):
        save(client, source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("source", ["api", "storage"])
def test_present_reads_the_children_followed_and_exists_checks_the_rest(process_registry: str, source: str) -> None:
    """`present` stands for `exists` + `get` on the children the walk follows, over the API and
    from storage alike; a child lost after a first walk filled the cache is still found missing."""
    from jindr_run import jindr

    from jindr_nb.client.storage import StorageReader

    address = process_registry
    storage = Path(jindr("-r", address, "status").rows[0].storage)
    cache = ContentCache(directory=None)  # shared by both walks, as a kernel's session shares it
    with RegistryClient(address) as client:
        pushed = ImageFactory(client, seed=43).index("app", "v1")  # two platforms, two attestations
        images = list(pushed.platforms.values())

        def walked() -> tuple[object, list[str], list[str]]:
            # A reader per walk, as each command gets its own (its link memo lives for one command).
            fetcher = Fetcher(client if source == "api" else StorageReader(storage, client), cache)
            asked_exists: list[str] = []
            asked_present: list[str] = []

            def exists(digest: str) -> bool:
                asked_exists.append(digest)
                return fetcher.exists("app", digest)

            def present(digest: str) -> Manifest | Index:
                asked_present.append(digest)
                return fetcher.present("app", digest)

            graph = walk(
                partial(fetcher.manifest, "app"),
                "v1",
                exists=exists,
                follow=lambda desc: not desc.is_attestation,
                present=present,
            )
            return graph, asked_exists, asked_present

        graph, asked_exists, asked_present = walked()
        assert asked_present == images and asked_exists == pushed.attestations  # each child asked once
        assert not graph.broken and [n.digest for n in graph.images()] == images
        client.delete_manifest("app", images[1])
        client.delete_manifest("app", pushed.attestations[0])
        graph, asked_exists, asked_present = walked()
        assert asked_present == images and asked_exists == pushed.attestations
        assert [(parent, d.digest) for parent, d in graph.missing] == [
            (pushed.digest, images[1]),
            (pushed.digest, pushed.attestations[0]),
        ]
        assert [n.digest for n in graph.images()] == [images[0]]


def test_a_child_that_is_not_a_digest_is_missing_without_a_look(client: RegistryClient) -> None:
    """A child whose "digest" is a path (`v1/../v1`, a climb out of storage) or no digest at all is
    missing — the registry refuses such an index — and is never handed to `get`, `exists` or
    `present`, where it would become a path or a URL."""
    from jindr_nb.models import Descriptor, parse_manifest

    f = ImageFactory(client, seed=47)
    f.single("g/app", "v1")
    raw, good, _, _ = f.image_manifest("g/app", ("linux", "amd64", ""))
    bad = ["v1/../v1", "v1/" + "../" * 20 + "etc", "sha256:../../x", "sha256:" + "A" * 64, ""]
    children = [{"mediaType": OCI_MANIFEST, "digest": d, "size": 10} for d in bad]
    doc = _canon({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [_entry(client, "g/app", good), *children]})
    index = parse_manifest(doc, OCI_INDEX, _digest(doc))
    assert isinstance(index, Index) and [d.well_formed for d in index.manifests] == [True] + [False] * len(bad)
    assert Descriptor("", "sha512:" + "a" * 128, 0).well_formed
    fetcher = Fetcher(client)
    asked: list[str] = []

    def ask(answer):  # noqa: ANN001, ANN202 - wraps each callback alike
        def called(digest: str):  # noqa: ANN202
            asked.append(digest)
            return answer(digest)

        return called

    for present in (None, ask(partial(fetcher.present, "g/app"))):
        asked.clear()
        exists = ask(partial(fetcher.exists, "g/app"))
        graph = walk(ask(partial(fetcher.manifest, "g/app")), index, exists=exists, present=present)
        assert set(asked) == {good}
        assert [d.digest for _, d in graph.missing] == bad
        assert [n.digest for n in graph.images()] == [good]
    for digest in bad:  # asked directly, the fetcher says the same
        assert not fetcher.exists("g/app", digest)
        with pytest.raises(NotFound):
            fetcher.present("g/app", digest)
    assert fetcher.descendants("g/app", index) == [good, *bad]
