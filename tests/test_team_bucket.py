"""Every command on a registry that keeps its tree in a bucket: what jindr reads or deletes in a
storage directory, it reads or deletes in the bucket (moto's S3 server, the real registry binary).

`S3Registry` is the registry binary served with the S3 config `runtime.s3` builds, as a `Runtime`
(pause stops it, resume starts it again, garbage_collect runs the binary's own collector on the
same config): what `gc.collect` and `rmr` drive. Two of them on one bucket and prefix are replicas.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pandas as pd
import pytest
from clients import need_tool, pulls_whole
from jindr_run import jindr
from rig import ImageFactory, free_port, registry_binary, start_registry
from test_ecr import moto  # noqa: F401 - fixture
from test_team_parts import team_config

from jindr_nb import runtime
from jindr_nb.client import RegistryClient
from jindr_nb.client.bucket import BucketLayout, BucketReader
from jindr_nb.client.storage import StorageLayout, StorageReader
from jindr_nb.commands import Session
from jindr_nb.errors import JindrError, RuntimeFailure
from jindr_nb.frames import to_frame
from jindr_nb.models import InstanceRow
from jindr_nb.ops import gc
from jindr_nb.ops.cache import ContentCache
from jindr_nb.ops.delete import plan_removal
from jindr_nb.ops.du import disk_usage
from jindr_nb.ops.fetch import Fetcher
from jindr_nb.ops.listing import list_images
from jindr_nb.runtime import s3
from jindr_nb.runtime.base import RegistrySpec, write_private

BUCKET = "team-bucket"
PREFIX = "reg/one"


class S3Registry:
    """The registry binary on 127.0.0.1 with its tree in `location` (a `Runtime` for one registry)."""

    name = "s3-test"

    def __init__(self, workdir: Path, endpoint: str, location: s3.S3Location) -> None:
        binary = registry_binary()
        if binary is None:
            pytest.fail("the registry binary is missing: apt-get install docker-registry")
        self.binary = binary
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.registry = f"127.0.0.1:{self.port}"
        self.bucket = s3.BucketStorage(location, "us-east-1", endpoint)
        section = s3.storage_section(
            location, region="us-east-1", endpoint=endpoint, credentials=s3.resolve_credentials()
        )
        self.config = workdir / "config.yml"
        write_private(self.config, json.dumps(team_config(self.port, workdir / "unused", storage=section)) + "\n")
        self.env, _ = s3.registry_environment(os.environ)
        self.env["OTEL_TRACES_EXPORTER"] = "none"
        self.proc: subprocess.Popen[bytes] | None = None
        self.gc_runs = 0

    def start(self) -> S3Registry:
        with open(self.workdir / "registry.log", "ab") as log:
            self.proc = subprocess.Popen([self.binary, "serve", str(self.config)], stdout=log, stderr=log, env=self.env)
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"http://{self.registry}/v2/", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the registry did not start: {(self.workdir / 'registry.log').read_text()[-1500:]}")
            time.sleep(0.05)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # the Runtime protocol, for this one registry

    def spec_of(self, registry: str) -> RegistrySpec | None:
        if registry != self.registry:
            return None
        return RegistrySpec(self.registry, self.workdir / "unused", "s3-test", bucket=self.bucket)

    def pause(self, registry: str) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def resume(self, registry: str) -> InstanceRow:
        self.start()
        return InstanceRow(self.registry, self.name, "", "running", self.bucket.url, 0, "", "", "registry", "")

    def garbage_collect(self, registry: str, *, dry_run: bool) -> str:
        self.gc_runs += 1
        done = subprocess.run(
            [self.binary, "garbage-collect", str(self.config)],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeFailure(f"garbage-collect failed: {done.stderr.strip()[-300:]}")
        return done.stdout


@pytest.fixture()
def bucket_api(moto: str) -> Any:  # noqa: F811 - fixture
    api = boto3.client("s3", endpoint_url=moto, region_name="us-east-1")
    api.create_bucket(Bucket=BUCKET)
    return api


@pytest.fixture()
def on_bucket(moto: str, bucket_api: Any, tmp_path: Path) -> Iterator[Callable[[str], S3Registry]]:  # noqa: F811
    """Starts registries on s3://team-bucket/reg/one (each call one more replica); stops them all."""
    started: list[S3Registry] = []

    def make(name: str = "a") -> S3Registry:
        reg = S3Registry(tmp_path / f"registry-{name}", moto, s3.S3Location(BUCKET, PREFIX)).start()
        started.append(reg)
        return reg

    yield make
    for reg in started:
        reg.pause(reg.registry)


def listing(api: Any, prefix: str = f"{PREFIX}/") -> dict[str, int]:
    """key -> size of every object under `prefix`, as the test lists the bucket itself."""
    found: dict[str, int] = {}
    for page in api.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        found.update({item["Key"]: item["Size"] for item in page.get("Contents", [])})
    return found


def blob_sizes(keys: dict[str, int]) -> dict[str, int]:
    """digest -> size of the blobs a listing holds."""
    found = {}
    for key, size in keys.items():
        parts = key.split("/")
        if parts[-1] == "data" and "blobs" in parts:
            found[f"sha256:{parts[-2]}"] = size
    return found


def layout_of(reg: S3Registry) -> BucketLayout:
    return BucketLayout(reg.bucket.client(), BUCKET, f"{PREFIX}/")


def pulls(reference: str, into: Path) -> None:
    need_tool("skopeo", "skopeo")
    done = pulls_whole(reference, into)
    assert done.returncode == 0, done.stderr


def fill(client: RegistryClient) -> dict[str, str]:
    """A tagged multi-platform index, two single images sharing nothing, names that prefix each other."""
    factory = ImageFactory(client, seed=7)
    return {
        "team/app:v1": factory.index("team/app", ["v1", "stable"]).digest,
        "a:v1": factory.single("a", "v1", layers=2).digest,
        "ab:v1": factory.single("ab", "v1", layers=2).digest,
    }


# Reading


def _copy_tree(root: Path, api: Any, prefix: str) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        api.put_object(Bucket=BUCKET, Key=f"{prefix}{path.relative_to(root).as_posix()}", Body=path.read_bytes())


def test_bucket_answers_as_the_storage_directory(tmp_path: Path, bucket_api: Any) -> None:
    reg = start_registry(tmp_path / "fs")
    try:
        with RegistryClient(reg.address) as client:
            fill(client)
            ImageFactory(client, seed=9).single("team/app", "v0", layers=1)
            ImageFactory(client, seed=10).single("team/app", "v0", layers=1)  # the first v0 is now untagged
            v2 = reg.storage / "docker" / "registry" / "v2" / "repositories"
            # A torn tag (its revision gone), a tag caught mid-write (empty link), names no registry takes.
            torn = v2 / "ab" / "_manifests" / "tags" / "gone"
            (torn / "current").mkdir(parents=True)
            (torn / "current" / "link").write_text("sha256:" + "0" * 64)
            half = v2 / "a" / "_manifests" / "tags" / "half" / "current"
            half.mkdir(parents=True)
            (half / "link").write_text("")
            (v2 / "Bad..Name" / "_manifests" / "tags" / "x" / "current").mkdir(parents=True)
            (v2 / "Bad..Name" / "_manifests" / "tags" / "x" / "current" / "link").write_text("sha256:" + "1" * 64)
            _copy_tree(reg.storage, bucket_api, "copy/")
            fs, bk = (
                StorageLayout(reg.storage),
                BucketLayout(boto3.client("s3", region_name="us-east-1"), BUCKET, "copy/"),
            )
            assert bk.repositories() == fs.repositories() and "Bad..Name" in bk.repositories()
            assert sorted(bk.blobs()) == sorted(fs.blobs())
            for repo in [*fs.repositories(), "nope", "../a", "a/../ab"]:
                assert bk.tags(repo) == fs.tags(repo), repo
                assert sorted(bk.revisions(repo)) == sorted(fs.revisions(repo)), repo
                for tag in (fs.tags(repo) or []) + ["none", ".."]:
                    assert bk.tag_digest(repo, tag) == fs.tag_digest(repo, tag), (repo, tag)
                for digest in fs.revisions(repo):
                    assert bk.has_revision(repo, digest) == fs.has_revision(repo, digest)
                    assert bk.read_blob(digest, 1 << 20) == fs.read_blob(digest, 1 << 20)
            plans = gc.plan(bk), gc.plan(fs)
            assert plans[0].manifests == plans[1].manifests and plans[1].manifest_count == 1
            assert sorted(plans[0].blobs) == sorted(plans[1].blobs) and plans[1].blobs
            # A listing stops at a name no registry takes, from either (the API refuses it): both go.
            shutil.rmtree(v2 / "Bad..Name")
            bk.remove_prefix(bk.repo_prefix("Bad..Name"))
            disk = StorageReader(reg.storage, client)
            bucket = BucketReader(bk, client)
            assert bucket.catalog() == disk.catalog()
            for repo in ("team/app", "a", "ab"):
                assert bucket.tags(repo) == disk.tags(repo)
                for tag in disk.tags(repo):
                    assert bucket.resolve_tag(repo, tag) == disk.resolve_tag(repo, tag), (repo, tag)
                    assert bucket.read_manifest(repo, tag) == disk.read_manifest(repo, tag), (repo, tag)
            # A link caught mid-write makes the registry itself answer 500: the listings go on without it.
            shutil.rmtree(half.parent)
            bk.remove_prefix(bk.repo_prefix("a") + "_manifests/tags/half/")
            for long in (False, True):
                rows_disk = list_images(Fetcher(disk, ContentCache(tmp_path / "c1")), long=long)
                rows_bucket = list_images(Fetcher(bucket, ContentCache(tmp_path / "c2")), long=long)
                assert rows_bucket == rows_disk and any(r.tag == "gone" for r in rows_bucket)
                lean = BucketReader(BucketLayout(bk.s3, BUCKET, "copy/", blob_listing=False), client)  # as `lsi` reads
                assert list_images(Fetcher(lean, ContentCache(tmp_path / "c3")), long=long) == rows_disk
    finally:
        reg.stop()


def test_listing_from_the_bucket_equals_the_api(on_bucket: Callable[[str], S3Registry], tmp_path: Path) -> None:
    reg = on_bucket("a")
    with RegistryClient(reg.registry) as client:
        fill(client)
        reader = BucketReader(BucketLayout(reg.bucket.client(), BUCKET, f"{PREFIX}/", blob_listing=False), client)
        for long in (False, True):
            api_rows = list_images(Fetcher(client, ContentCache(tmp_path / f"api{long}")), long=long)
            bucket_rows = list_images(Fetcher(reader, ContentCache(tmp_path / f"bucket{long}")), long=long)
            assert bucket_rows == api_rows and len(api_rows) == 4


# rmr, gc, du


def test_rmr_deletes_the_prefix_and_nothing_else(
    on_bucket: Callable[[str], S3Registry], bucket_api: Any, tmp_path: Path
) -> None:
    reg = on_bucket("a")
    with RegistryClient(reg.registry) as client:
        fill(client)
        repos = f"{PREFIX}/docker/registry/v2/repositories/"
        before = listing(bucket_api)
        kept = {k for k in before if not k.startswith(repos + "a/")}
        removal = plan_removal(client, ["a"], reg)  # type: ignore[arg-type]
        outcome = removal.carry_out()
        after = listing(bucket_api)
        assert not [k for k in after if k.startswith(repos + "a/")]
        assert {k for k in kept if "/blobs/" not in k} <= set(after)  # every other repository's links
        assert [k for k in after if k.startswith(repos + "ab/")]
        assert "less in the bucket" in outcome.message and reg.running()
        assert client.catalog() == ["ab", "team/app"]
    for ref in ("ab:v1", "team/app:v1", "team/app:stable"):
        pulls(f"{reg.registry}/{ref}", tmp_path / ref.replace("/", "_").replace(":", "_"))


def test_gc_reclaims_what_the_bucket_lists(
    on_bucket: Callable[[str], S3Registry], bucket_api: Any, tmp_path: Path
) -> None:
    reg = on_bucket("a")
    with RegistryClient(reg.registry) as client:
        fill(client)
        factory = ImageFactory(client, seed=11)
        old = factory.single("solo", "v1", layers=3, layer_size=50_000)
        factory.single("solo", "v1", layers=1)  # v1 moves: the old image is untagged and unreachable
        before = listing(bucket_api)
        dry = gc.collect(reg, reg.registry, dry_run=True)  # type: ignore[arg-type]
        assert listing(bucket_api) == before and reg.gc_runs == 0
        assert dry.manifests_deleted == 1 and dry.blobs_deleted == 5 and dry.reclaimed_bytes > 150_000
        assert dry.disk_before == sum(before.values())
        row = gc.collect(reg, reg.registry)  # type: ignore[arg-type]
        after = listing(bucket_api)
        gone = blob_sizes(before).keys() - blob_sizes(after).keys()
        assert old.digest in gone and row.blobs_deleted == len(gone) == dry.blobs_deleted
        assert row.reclaimed_bytes == sum(blob_sizes(before)[d] for d in gone) == dry.reclaimed_bytes
        assert (row.disk_before, row.disk_after) == (sum(before.values()), sum(after.values()))
        assert row.disk_freed == dry.disk_freed and "in the bucket" in row.describe()
        assert reg.running() and reg.gc_runs == 1
    for ref in ("team/app:v1", "solo:v1", "a:v1"):  # the tagged index's children survive
        pulls(f"{reg.registry}/{ref}", tmp_path / ref.replace("/", "_").replace(":", "_"))


def test_du_equals_a_listing_of_the_bucket(
    on_bucket: Callable[[str], S3Registry], bucket_api: Any, tmp_path: Path
) -> None:
    reg = on_bucket("a")
    with RegistryClient(reg.registry) as client:
        fill(client)
        ImageFactory(client, seed=3).single("a", "v2", layers=1)
        fetcher = Fetcher(BucketReader(layout_of(reg), client), ContentCache(tmp_path / "cache"))
        usage = disk_usage(fetcher, storage=tmp_path / "unused")
    keys = listing(bucket_api)
    sizes = blob_sizes(keys)
    base = f"{PREFIX}/docker/registry/v2/repositories/"
    for row in usage.rows:
        linked = {f"sha256:{k.split('/')[-2]}" for k in keys if k.startswith(f"{base}{row.repository}/_layers/")}
        revisions = {
            f"sha256:{k.split('/')[-2]}" for k in keys if k.startswith(f"{base}{row.repository}/_manifests/revisions/")
        }
        assert row.size == sum(sizes[d] for d in linked), row  # every layer link is a blob a tag reaches
        assert row.manifests == len(revisions), row
    assert usage.total.disk_bytes == sum(keys.values())
    assert usage.total.gc_bytes == 0 and "in the bucket" in usage.notice()


# replicas


def test_two_replicas_on_one_bucket(on_bucket: Callable[[str], S3Registry], tmp_path: Path) -> None:
    one, two = on_bucket("a"), on_bucket("b")
    with RegistryClient(one.registry) as a, RegistryClient(two.registry) as b:
        pushed = ImageFactory(a, seed=5).single("shared", "v1", layers=2, layer_size=4096)
        assert b.catalog() == ["shared"] and b.head_manifest("shared", "v1")[0] == pushed.digest  # type: ignore[index]
        # The layer goes with the old tag, then comes back through the other replica: its cache must
        # not claim it still exists (the "layer already exists" failure) and the pull must be whole.
        manifest = json.loads(a.get_manifest("shared", "v1").raw)
        layer = manifest["layers"][0]["digest"]
        b.get_blob("shared", layer)  # the replica now knows the blob (its blob-descriptor cache)
        ImageFactory(a, seed=6).single("shared", "v1", layers=1)
        row = gc.collect(one, one.registry, replicas=[(two, two.registry)])  # type: ignore[arg-type]
        assert row.blobs_deleted >= 3 and one.running() and two.running()
        assert layer not in dict(layout_of(one).blobs())
    with RegistryClient(two.registry) as b:
        again = ImageFactory(b, seed=5).single("shared", "back", layers=2, layer_size=4096)
        assert again.digest == pushed.digest  # the same image, layer and all, pushed again
    pulls(f"{two.registry}/shared:back", tmp_path / "back")
    pulls(f"{one.registry}/shared:back", tmp_path / "back-one")


def test_gc_with_a_push_racing_on_the_other_replica(on_bucket: Callable[[str], S3Registry], tmp_path: Path) -> None:
    one, two = on_bucket("a"), on_bucket("b")
    with RegistryClient(one.registry) as a:
        fill(a)
        ImageFactory(a, seed=8).single("a", "v1", layers=1)  # garbage for the collection
    pushed: list[str] = []
    failed: list[Exception] = []
    stop = threading.Event()

    def push() -> None:
        n = 0
        while not stop.is_set():
            try:
                with RegistryClient(two.registry, retries=0) as b:
                    ImageFactory(b, seed=100 + n).single("race", f"t{n}", layers=2, layer_size=8192)
                pushed.append(f"race:t{n}")
            except Exception as exc:  # noqa: BLE001 - a push refused while paused: fails cleanly
                failed.append(exc)
            n += 1
            time.sleep(0.02)

    racer = threading.Thread(target=push)
    racer.start()
    try:
        _until(lambda: len(pushed) > 0)
        before = len(pushed)
        row = gc.collect(one, one.registry, replicas=[(two, two.registry)])  # type: ignore[arg-type]
        during = len(pushed)
        _until(lambda: len(pushed) > during)
    finally:
        stop.set()
        racer.join(60)
    assert row.blobs_deleted >= 3 and two.running()
    assert before > 0 and len(pushed) > during  # pushes went on before and after the collection
    # A push that met the paused replica failed as jindr's own clean error, nothing half-done.
    assert all(isinstance(exc, JindrError) for exc in failed), failed
    for i, ref in enumerate(pushed + ["team/app:v1", "ab:v1"]):
        pulls(f"{one.registry}/{ref}", tmp_path / f"p{i}")


def _until(done: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# failures change nothing


class CannotPause:
    """A replica whose runtime cannot stop it (the one fault a real registry will not produce on demand)."""

    name = "cannot-pause"

    def __init__(self, reg: S3Registry) -> None:
        self.reg = reg

    def pause(self, registry: str) -> None:
        raise RuntimeFailure("the engine refused to stop it")

    def resume(self, registry: str) -> InstanceRow:
        raise AssertionError("never paused, never resumed")


def test_a_replica_that_cannot_pause_changes_nothing(on_bucket: Callable[[str], S3Registry], bucket_api: Any) -> None:
    one, two = on_bucket("a"), on_bucket("b")
    with RegistryClient(one.registry) as a:
        fill(a)
        ImageFactory(a, seed=8).single("a", "v1", layers=1)
    before = listing(bucket_api)
    with pytest.raises(RuntimeFailure) as caught:
        gc.collect(one, one.registry, replicas=[(CannotPause(two), two.registry)])  # type: ignore[list-item]
    message = str(caught.value)
    assert "\n" not in message and f"{two.registry} could not be made read-only" in message
    assert "nothing changed" in message and "1 already paused resumed" in message
    assert listing(bucket_api) == before and one.running() and one.gc_runs == 0


class EngineErrorOnPause:
    """A replica whose engine fails with its own error, not jindr's (a `docker` SDK exception, a dropped socket)."""

    name = "engine-error"

    def pause(self, registry: str) -> None:
        raise ConnectionError("the engine's socket closed")

    def resume(self, registry: str) -> InstanceRow:
        raise AssertionError("never paused, never resumed")


class EngineErrorOnResume:
    """A replica that pauses, then cannot be started again with an engine error (a port taken meanwhile)."""

    name = "engine-error-on-resume"

    def __init__(self) -> None:
        self.paused = 0

    def pause(self, registry: str) -> None:
        self.paused += 1

    def resume(self, registry: str) -> InstanceRow:
        raise OSError("port is already allocated")


def test_an_engine_error_while_pausing_or_resuming_leaves_no_registry_stopped(
    on_bucket: Callable[[str], S3Registry], bucket_api: Any
) -> None:
    """Errors that are not jindr's own (the engine's, the OS's) must not strand the registries
    already paused: pausing, they all come back and nothing was collected; resuming, every other
    one still comes back and the line names the one that did not."""
    one, two, three = on_bucket("a"), on_bucket("b"), on_bucket("c")
    with RegistryClient(one.registry) as a:
        fill(a)
    before = listing(bucket_api)
    with pytest.raises(ConnectionError):
        gc.collect(one, one.registry, replicas=[(two, two.registry), (EngineErrorOnPause(), "localhost:1")])  # type: ignore[list-item]
    assert listing(bucket_api) == before and one.gc_runs == 0
    assert one.running() and two.running()
    stuck = EngineErrorOnResume()
    with pytest.raises(RuntimeFailure) as caught:
        gc.collect(one, one.registry, replicas=[(stuck, "localhost:2"), (three, three.registry)])  # type: ignore[list-item]
    assert stuck.paused == 1 and "localhost:2 did not come back (port is already allocated" in str(caught.value)
    assert one.running() and three.running() and one.gc_runs == 1


class RefusingDeletes:
    """boto3's client for moto, except that `delete_objects` deletes only the first `share` of each
    batch and reports the rest as S3's errors (moto cannot fail on demand)."""

    def __init__(self, real: Any, share: float) -> None:
        self.real = real
        self.share = share

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def delete_objects(self, *, Bucket: str, Delete: dict) -> dict:  # noqa: N803 - boto3's names
        objects = Delete["Objects"]
        half = objects[: int(len(objects) * self.share)]
        if half:
            self.real.delete_objects(Bucket=Bucket, Delete={"Objects": half, "Quiet": True})
        errors = [{"Key": o["Key"], "Code": "AccessDenied", "Message": "Access Denied"} for o in objects[len(half) :]]
        return {"Errors": errors}


@dataclass
class RefusingBucket:
    """The registry's bucket, reached through `RefusingDeletes`."""

    storage: s3.BucketStorage
    share: float

    @property
    def location(self) -> s3.S3Location:
        return self.storage.location

    @property
    def url(self) -> str:
        return self.storage.url

    def client(self) -> Any:
        return RefusingDeletes(self.storage.client(), self.share)


@pytest.mark.parametrize("share", [0.5, 0.0])
def test_a_delete_refused_half_way_puts_back_what_went(
    on_bucket: Callable[[str], S3Registry], bucket_api: Any, monkeypatch: pytest.MonkeyPatch, share: float
) -> None:
    reg = on_bucket("a")
    with RegistryClient(reg.registry) as client:
        fill(client)
        before = listing(bucket_api)
        monkeypatch.setattr(reg, "bucket", RefusingBucket(reg.bucket, share))
        with pytest.raises(RuntimeFailure) as caught:
            plan_removal(client, ["team/app"], reg).carry_out()  # type: ignore[arg-type]
        message = str(caught.value)
        assert "\n" not in message and "S3 refused to delete" in message and "AccessDenied" in message
        assert "were put back, nothing changed" in message
        assert listing(bucket_api) == before and reg.gc_runs == 0 and reg.running()
        assert client.catalog() == ["a", "ab", "team/app"]


def test_a_bucket_prefix_outside_the_tree_is_refused(bucket_api: Any) -> None:
    layout = BucketLayout(boto3.client("s3", region_name="us-east-1"), BUCKET, f"{PREFIX}/")
    for prefix in (f"{PREFIX}/docker/registry/v2/repositories/a", "other/", ""):
        with pytest.raises(RuntimeFailure, match="not a prefix inside the registry's tree"):
            layout.remove_prefix(prefix)
    for name in ("../x", "", "/a", "a//b"):
        with pytest.raises(ValueError, match="would leave"):
            layout.repo_prefix(name)


def test_rmr_of_every_repository_leaves_no_blob(on_bucket: Callable[[str], S3Registry], bucket_api: Any) -> None:
    reg = on_bucket("a")
    with RegistryClient(reg.registry) as client:
        fill(client)
        outcome = plan_removal(client, ["a", "ab", "team/app"], reg).carry_out()  # type: ignore[arg-type]
        assert client.catalog() == [] and "3 repositories removed" in outcome.message
    assert listing(bucket_api) == {}


@pytest.mark.parametrize(
    "command",
    [
        ["ls"],
        ["lsi"],
        ["lsi", "-l"],
        ["inspect", "team/app:v1", "team/app:stable", "a:v1", "ab:v1"],
        ["layers"],
        ["layers", "--attestations", "team/app"],
    ],
)
def test_commands_read_the_bucket_and_agree_with_the_api(
    moto: str,  # noqa: F811 - fixture
    command: list[str],
) -> None:
    address = f"localhost:{free_port()}"
    start = ["start", "--runtime", "process", "--s3-endpoint", moto, "--create-bucket", "--storage", "s3://lists/r"]
    jindr("-r", address, *start)
    try:
        with RegistryClient(address) as client:
            fill(client)
            ImageFactory(client, seed=4).image_manifest("a")  # untagged content: no row of its own
        session = Session(address)
        try:
            assert isinstance(session.fetcher().client, BucketReader)  # the bucket is really read
            assert not isinstance(session.fetcher(local=False).client, StorageReader)
        finally:
            session.close()
        from_bucket = to_frame(*_result(jindr("-r", address, *command)))
        from_api = to_frame(*_result(jindr("-r", address, *command[:1], "--no-local", *command[1:])))
        assert len(from_bucket) > 0
        pd.testing.assert_frame_equal(from_bucket, from_api)
        jindr("-r", address, "stop", "-G")
        # A registry jindr runs but that is stopped is not read from its bucket as if it answered.
        stopped = Session(address)
        try:
            assert not isinstance(stopped.fetcher().client, StorageReader)
        finally:
            stopped.close()
    finally:
        jindr("-r", address, "stop", "-G")


def _result(result: Any) -> tuple[Any, Any]:
    return result.rows, result.row_type


# Through `jindr start --storage s3://` (the process runtime), as a user runs it


def test_every_command_on_registries_jindr_runs_on_s3(
    moto: str,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    first, second = (f"localhost:{free_port()}" for _ in range(2))
    start = [
        "start",
        "--runtime",
        "process",
        "--s3-endpoint",
        moto,
        "--create-bucket",
        "--storage",
        "s3://e2e-team/reg",
    ]
    try:
        jindr("-r", first, *start)
        jindr("-r", second, *start)
        assert runtime.replicas(first) == [first, second]
        api = boto3.client("s3", endpoint_url=moto, region_name="us-east-1")
        with RegistryClient(first) as client:
            fill(client)
            factory = ImageFactory(client, seed=11)
            factory.single("solo", "v1", layers=3, layer_size=50_000)
            manifest = json.loads(client.get_manifest("solo", "v1").raw)
            swept_layer = manifest["layers"][0]["digest"]
            factory.single("solo", "v1", layers=1)  # the old solo:v1 is garbage now
        with RegistryClient(second) as b:
            b.get_blob("solo", swept_layer)  # the replica knows the layer (its blob-descriptor cache)
        session = Session(second)
        try:
            assert isinstance(session.fetcher().client, BucketReader)
        finally:
            session.close()
        for command in (["lsi", "-l"], ["inspect", "team/app:v1"], ["layers"]):
            from_bucket = to_frame(*_result(jindr("-r", second, *command)))
            from_api = to_frame(*_result(jindr("-r", second, command[0], "--no-local", *command[1:])))
            pd.testing.assert_frame_equal(from_bucket, from_api)
        keys = _listing(api, "e2e-team", "reg/")
        total = jindr("-r", first, "du", "--total").rows[0]
        assert total.disk_bytes == sum(keys.values()) and total.gc_blobs == 5
        dry = jindr("-r", first, "gc", "--dry-run").rows[0]
        assert _listing(api, "e2e-team", "reg/") == keys and dry.reclaimed_bytes == total.gc_bytes
        done = jindr("-r", first, "gc").rows[0]
        after = _listing(api, "e2e-team", "reg/")
        gone = blob_sizes(keys).keys() - blob_sizes(after).keys()
        assert swept_layer in gone and done.reclaimed_bytes == sum(blob_sizes(keys)[d] for d in gone)
        assert (done.disk_before, done.disk_after) == (sum(keys.values()), sum(after.values()))
        assert {jindr("-r", r, "status").rows[0].status for r in (first, second)} == {"running"}
        # The swept layer pushed again through the other replica: uploaded, not "already there".
        with RegistryClient(second) as b:
            ImageFactory(b, seed=11).single("solo", "back", layers=3, layer_size=50_000)
        pulls(f"{second}/solo:back", tmp_path / "back")
        removed = jindr("-r", first, "rmr", "a")
        assert "1 repositories removed" in removed.message
        left = _listing(api, "e2e-team", "reg/docker/registry/v2/repositories/")
        assert not [k for k in left if k.startswith("reg/docker/registry/v2/repositories/a/")]
        assert [k for k in left if k.startswith("reg/docker/registry/v2/repositories/ab/")]
        assert [r.repository for r in jindr("-r", second, "ls").rows] == ["ab", "solo", "team/app"]
        for i, ref in enumerate(("ab:v1", "team/app:v1", "team/app:stable", "solo:v1", "solo:back")):
            pulls(f"{second}/{ref}", tmp_path / f"pull{i}")
    finally:
        for address in (first, second):
            jindr("-r", address, "stop", "-G")


def _listing(api: Any, bucket: str, prefix: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for page in api.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found.update({item["Key"]: item["Size"] for item in page.get("Contents", [])})
    return found


def test_replicas_on_one_directory_are_all_read_only_during_gc(tmp_path: Path) -> None:
    first, second = (f"localhost:{free_port()}" for _ in range(2))
    try:
        for address in (first, second):
            jindr("-r", address, "start", "--runtime", "process", "-d", str(tmp_path / "shared"))
        assert runtime.replicas(first) == [first, second]
        with RegistryClient(first) as client:
            factory = ImageFactory(client, seed=21)
            factory.single("solo", "v1", layers=2, layer_size=20_000)
            swept = json.loads(client.get_manifest("solo", "v1").raw)["layers"][0]["digest"]
            factory.single("solo", "v1", layers=1)
        with RegistryClient(second) as b:
            b.get_blob("solo", swept)
        pids = {r: jindr("-r", r, "status").rows[0].name for r in (first, second)}
        row = jindr("-r", first, "gc").rows[0]
        assert row.blobs_deleted == 4 and "of disk" in row.describe()
        again = {r: jindr("-r", r, "status").rows[0] for r in (first, second)}
        # Both were stopped and started again (new processes: their blob caches are empty).
        assert all(again[r].status == "running" and again[r].name != pids[r] for r in (first, second))
        with RegistryClient(second) as b:
            ImageFactory(b, seed=21).single("solo", "back", layers=2, layer_size=20_000)
        pulls(f"{second}/solo:back", tmp_path / "back")
        # `stop` collects first with every replica read-only, and leaves the others running.
        jindr("-r", first, "stop")
        assert jindr("-r", second, "status").rows[0].status == "running"
    finally:
        for address in (first, second):
            jindr("-r", address, "stop", "-G")


@pytest.mark.parametrize("storage", ["directory", "bucket"])
def test_rmr_of_a_repository_keeps_the_ones_nested_under_it(
    storage: str,
    moto: str,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    """`rmr a` deletes `a`, not `a/b`: a repository nested under another is a repository of its own,
    which nobody asked to delete (both live under `repositories/a/` in the storage)."""
    address = f"localhost:{free_port()}"
    where = (
        ["-d", str(tmp_path / "storage")]
        if storage == "directory"
        else ["--storage", "s3://nested-team/reg", "--s3-endpoint", moto, "--create-bucket"]
    )
    jindr("-r", address, "start", "--runtime", "process", *where)
    try:
        with RegistryClient(address) as client:
            factory = ImageFactory(client, seed=21)
            factory.single("a", "v1")
            nested = factory.index("a/b", "v1", attestations=False)
            factory.single("a/b/c", "v2")
            assert client.catalog() == ["a", "a/b", "a/b/c"]
            removed = jindr("-r", address, "rmr", "a", "-y")
            assert {(r.repository, r.tag) for r in removed.rows} == {("a", "v1")}
            assert client.catalog() == ["a/b", "a/b/c"]
            assert client.tags("a/b") == ["v1"] and client.head_manifest("a/b", "v1")[0] == nested.digest
        pulls(f"{address}/a/b:v1", tmp_path / "ab")
        pulls(f"{address}/a/b/c:v2", tmp_path / "abc")
        jindr("-r", address, "rmr", "a/b", "-y")
        with RegistryClient(address) as client:
            assert client.catalog() == ["a/b/c"]
        pulls(f"{address}/a/b/c:v2", tmp_path / "abc2")
    finally:
        jindr("-r", address, "stop", "-G")


def test_cp_into_and_out_of_a_registry_on_s3_with_users(
    moto: str,  # noqa: F811 - fixture
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`cp` into an S3-backed registry with users, and out of it: blob GETs there answer 307 to a
    presigned URL on the storage host, which jindr follows without the registry's credentials.
    The storage host is moto behind a recording proxy, so the test reads every request head it got."""
    from faultproxy import FaultProxy

    from jindr_nb.client import Credentials

    password = "S3ntinel-" + __import__("secrets").token_urlsafe(18)
    monkeypatch.setenv("TEAM_PW", password)
    source, sink = start_registry(tmp_path / "source"), start_registry(tmp_path / "sink")
    team = f"localhost:{free_port()}"
    with FaultProxy(moto.removeprefix("http://")) as storage:
        start = ["start", "--runtime", "process", "--storage", "s3://cp-team/reg", "--create-bucket", "--users"]
        jindr("-r", team, *start, "--s3-endpoint", f"http://{storage.address}")
        try:
            assert _cli_ok("-r", team, "user", "add", "ci", "--password-env", "TEAM_PW")
            monkeypatch.setenv("JINDR_USERNAME", "ci")
            monkeypatch.setenv("JINDR_PASSWORD_ENV", "TEAM_PW")
            with RegistryClient(source.address) as client:
                pushed = ImageFactory(client, seed=31).index("team/app", "v1", layers=2, layer_size=300_000)
            copied_in = jindr("-r", source.address, "cp", "team/app:v1", team)
            assert copied_in.rows[0].digest == pushed.digest
            with RegistryClient(team, credentials=Credentials("ci", password)) as client:
                assert client.head_manifest("team/app", "v1")[0] == pushed.digest
            storage.heads.clear()
            copied_out = jindr("-r", team, "cp", "team/app:v1", sink.address)
            assert copied_out.rows[0].digest == pushed.digest and copied_out.rows[0].blobs_copied >= 4
            presigned = [(m, p, h) for m, p, h in storage.heads if "X-Amz-Signature=" in p]
            assert len([m for m, _, _ in presigned if m == "GET"]) >= 4  # each blob through its 307
            leaked = [p for _, p, h in presigned if any(k.lower() == "authorization" for k in h)]
            assert leaked == []  # the registry's Basic credentials never went to the storage host
            assert not any(password in str(h) for _, _, h in storage.heads)
        finally:
            jindr("-r", team, "stop", "-G")
    pulls(f"{sink.address}/team/app:v1", tmp_path / "out")
    source.stop()
    sink.stop()


def _cli_ok(*args: str) -> bool:
    done = subprocess.run([sys.executable, "-m", "jindr_nb", *args], capture_output=True, text=True)
    return done.returncode == 0


def test_gc_is_refused_while_a_docker_replica_cannot_be_asked(
    moto: str,  # noqa: F811 - fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A replica jindr started in Docker, on the same bucket, whose engine does not answer now, cannot
    be made read-only: gc must refuse (one line, nothing changed), not sweep while it takes pushes."""
    first, in_docker = f"localhost:{free_port()}", f"localhost:{free_port()}"
    where = ["--storage", "s3://docker-down/reg", "--s3-endpoint", moto, "--create-bucket"]
    jindr("-r", first, "start", "--runtime", "process", *where)
    try:
        serving = json.loads((runtime.state_dir() / "process" / first.split(":")[1] / "state.json").read_text())[
            "serving"
        ]
        record = {
            "registry": in_docker,
            "container": "0123abcd",
            "docker_host": "",
            "storage": "",
            "image": "registry:3",
            "serving": serving,
        }
        write_private(runtime.state_dir() / "docker" / f"{in_docker.split(':')[1]}.json", json.dumps(record))
        monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        with RegistryClient(first) as client:
            ImageFactory(client, seed=41).single("app", "v1")
            ImageFactory(client, seed=42).single("app", "v1")  # the first image is now unreachable
        before = jindr("-r", first, "gc", "--dry-run").rows[0]
        assert before.blobs_deleted > 0
        done = subprocess.run(
            [sys.executable, "-m", "jindr_nb", "-r", first, "gc"], capture_output=True, text=True, env=os.environ
        )
        assert done.returncode == 1
        assert done.stderr.strip() == (
            f"jindr: jindr runs {in_docker} on the same storage in Docker, which does not answer: it could not be "
            "made read-only — start Docker (or stop that registry) and try again; nothing changed"
        )
        assert jindr("-r", first, "gc", "--dry-run").rows[0] == before  # nothing collected
        assert jindr("-r", first, "status").rows[0].status == "running"
    finally:
        (runtime.state_dir() / "docker" / f"{in_docker.split(':')[1]}.json").unlink(missing_ok=True)
        jindr("-r", first, "stop", "-G")
