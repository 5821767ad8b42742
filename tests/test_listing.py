"""ls / lsi / inspect as rows and DataFrames, against the real registry."""

from __future__ import annotations

import pandas as pd
import pytest

from jindr_nb.client import RegistryClient
from jindr_nb.errors import NotFound
from jindr_nb.frames import columns, to_frame, to_text
from jindr_nb.models import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, ImageRow, LongImageRow, PlatformRow
from jindr_nb.ops.cache import ContentCache
from jindr_nb.ops.fetch import Fetcher
from jindr_nb.ops.inspect import inspect_images
from jindr_nb.ops.listing import list_images, list_repositories
from jindr_nb.refs import parse_ref


@pytest.fixture()
def fetcher(populated: dict, tmp_path) -> Fetcher:
    with RegistryClient(populated["registry"].address) as c:
        yield Fetcher(c, ContentCache(tmp_path / "cache"))


def test_ls_lists_every_repository(fetcher: Fetcher) -> None:
    names = [r.repository for r in list_repositories(fetcher)]
    assert names == ["armv7", "multi/docker", "multi/oci", "plain"]


def test_lsi_one_row_per_tag_with_index_digest_and_platforms(fetcher: Fetcher, populated: dict) -> None:
    images = populated["images"]
    rows = list_images(fetcher)
    assert [(r.repository, r.tag) for r in rows] == [
        ("armv7", "edge"),
        ("multi/docker", "1.0"),
        ("multi/oci", "latest"),
        ("multi/oci", "v1"),
        ("plain", "latest"),
    ]
    by = {(r.repository, r.tag): r for r in rows}
    oci = by["multi/oci", "v1"]
    assert oci.digest == images["oci"].digest and oci.media_type == OCI_INDEX
    assert oci.platforms == ["linux/amd64", "linux/arm64"]  # attestations (unknown/unknown) left out
    assert oci.image_id == images["oci"].digest[7:19]
    dl = by["multi/docker", "1.0"]
    assert dl.digest == images["list"].digest and dl.media_type == DOCKER_LIST  # the list, not its amd64 child
    assert by["plain", "latest"].platforms == ["linux/amd64"] and by["plain", "latest"].media_type == DOCKER_MANIFEST
    assert by["armv7", "edge"].platforms == ["linux/arm/v7"]
    assert all(type(r) is ImageRow for r in rows)


def test_lsi_long_adds_size_and_newest_created(fetcher: Fetcher, populated: dict) -> None:
    images = populated["images"]
    rows = {(r.repository, r.tag): r for r in list_images(fetcher, long=True)}
    oci = rows["multi/oci", "latest"]
    assert isinstance(oci, LongImageRow)
    assert oci.size == images["oci"].size
    assert oci.created.isoformat().startswith(images["oci"].created[:19])
    assert oci.created.tzinfo is not None
    assert rows["plain", "latest"].size == images["single"].size


def test_lsi_selection_by_repo_and_by_tag(fetcher: Fetcher) -> None:
    reg = fetcher.client.registry
    rows = list_images(fetcher, [parse_ref("multi/oci", reg, default_tag=None)])
    assert [r.tag for r in rows] == ["latest", "v1"]
    rows = list_images(fetcher, [parse_ref("multi/oci:v1", reg)])
    assert [r.tag for r in rows] == ["v1"]
    with pytest.raises(NotFound):
        list_images(fetcher, [parse_ref("multi/oci:nope", reg)])
    with pytest.raises(NotFound, match="repository ghost not found"):
        list_images(fetcher, [parse_ref("ghost", reg, default_tag=None)])


def test_inspect_index_then_children_with_attestations_named(fetcher: Fetcher, populated: dict) -> None:
    pushed = populated["images"]["oci"]
    rows = inspect_images(fetcher, [parse_ref("multi/oci:v1", fetcher.client.registry)])
    assert [r.kind for r in rows] == ["index", "image", "image", "attestation", "attestation"]
    index, amd, arm, *atts = rows
    assert index.digest == pushed.digest and index.platform == ""
    assert (amd.platform, amd.os, amd.architecture) == ("linux/amd64", "linux", "amd64")
    assert amd.digest == pushed.platforms["linux/amd64"] and arm.digest == pushed.platforms["linux/arm64"]
    assert {a.digest for a in atts} == set(pushed.attestations) and all(a.platform == "" for a in atts)
    assert index.size == amd.size + arm.size == pushed.size
    assert amd.config_digest.startswith("sha256:") and amd.layers >= 1 and amd.created is not None


def test_inspect_single_image_and_variant(fetcher: Fetcher) -> None:
    reg = fetcher.client.registry
    rows = inspect_images(fetcher, [parse_ref("armv7:edge", reg), parse_ref("plain", reg)])
    assert [(r.kind, r.platform, r.variant) for r in rows] == [
        ("image", "linux/arm/v7", "v7"),
        ("image", "linux/amd64", ""),
    ]


def test_cache_makes_a_repeated_long_listing_skip_digest_requests(populated: dict, tmp_path) -> None:
    with RegistryClient(populated["registry"].address) as c:
        cache_dir = tmp_path / "c"
        start = c.requests_sent
        first = list_images(Fetcher(c, ContentCache(cache_dir)), long=True)
        cold = c.requests_sent - start
        start = c.requests_sent
        second = list_images(Fetcher(c, ContentCache(cache_dir)), long=True)  # new memory, same disk
        warm = c.requests_sent - start
        children = 0
        for row in first:
            doc = __import__("json").loads(c.get_manifest(row.repository, row.tag).raw)
            children += len(doc.get("manifests") or [])
    assert first == second
    tags = len(first)
    assert children > 0
    # catalog, tag lists, one manifest by tag each, and a HEAD per index child (is it still there?):
    # no manifest or config body by digest.
    assert warm == 1 + 4 + tags + children
    assert cold > warm


def test_corrupt_cache_file_is_a_miss_not_a_wrong_answer(tmp_path) -> None:
    cache = ContentCache(tmp_path)
    digest = "sha256:" + __import__("hashlib").sha256(b"abc").hexdigest()
    cache.put(digest, "x", b"abc")
    path = tmp_path / "sha256" / digest[7:9] / digest[7:]
    path.write_bytes(b"x\nabd")
    assert ContentCache(tmp_path).get(digest) is None
    assert ContentCache(tmp_path / "nowhere").get(digest) is None


def test_frames_keep_columns_and_types(fetcher: Fetcher) -> None:
    empty = to_frame([], PlatformRow)
    assert list(empty.columns) == columns(PlatformRow) and len(empty) == 0
    rows = list_images(fetcher, long=True)
    frame = to_frame(rows, LongImageRow)
    assert list(frame.columns) == [
        "registry",
        "repository",
        "tag",
        "digest",
        "image_id",
        "media_type",
        "platforms",
        "size",
        "created",
        "missing",
    ]
    assert frame["size"].dtype == "int64"
    assert isinstance(frame["created"].dtype, pd.DatetimeTZDtype)
    assert frame.loc[frame.repository == "multi/oci", "platforms"].iloc[0] == ["linux/amd64", "linux/arm64"]
    text = to_text(rows, LongImageRow).splitlines()
    assert text[0].split() == list(frame.columns) and len(text) == len(rows) + 1


def test_the_content_cache_keeps_digests_that_are_not_digests_off_the_disk(tmp_path) -> None:
    """A digest comes from a manifest a registry sent; its algorithm part becomes a directory name."""
    home = tmp_path / "a" / "b" / "cache"
    cache = ContentCache(home)
    for bad in ("../../escaped:abc", "sha256:../../x", "sha256:ABC", "md5:" + "0" * 32):
        cache.put(bad, "application/json", b"{}")
        cache.put_summary(bad, {"x": 1})
        cache.clear_memory()
        assert cache.get(bad) is None
    cache.close()
    kept = (home.parent.parent, home.parent, home)
    outside = [p for p in tmp_path.rglob("*") if p not in kept and home not in p.parents]
    assert outside == []
    assert not any(home.rglob("*x*"))
