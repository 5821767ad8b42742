"""Hostile registry answers, through a fault proxy in front of the real registry.

Truncated bodies, bytes that do not match their digest, oversized and endless bodies, `Link`
pagination loops, 429 with Retry-After, 500s and stalled connections, through the client, the
in-process command runner and the real CLI. Each case asserts a clear JindrError naming what
failed, a bounded number of requests (counted at the proxy), a bounded wall-clock time, and
bounded memory where the body is large. The cases run are counted in tests/.counts/hostile.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator

import pytest
from faultproxy import FaultProxy, Rule
from jindr_run import jindr
from rig import LocalRegistry, write_counts

from jindr_nb.client import RegistryClient
from jindr_nb.errors import IntegrityError, JindrError, RegistryError, RegistryUnreachable, Unsupported

TIMEOUT = 2.0  # the client's timeout wherever the surface lets a test choose it
RETRIES = 3  # RegistryClient's default retry budget
MIB = 1024 * 1024
CLI = [sys.executable, "-m", "jindr_nb"]

_cases: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _write_counts() -> Iterator[None]:
    """After the module's last test, whichever it is: how many hostile cases held (the README's table)."""
    yield
    write_counts("hostile", hostile_cases=len(_cases), cases=_cases)


@pytest.fixture(autouse=True)
def _counted(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)  # set by conftest's makereport hook
    if report is not None and report.passed:
        _cases.append(request.node.name)  # only cases that held count


@pytest.fixture()
def proxy(populated: dict) -> Iterator[FaultProxy]:
    with FaultProxy(populated["registry"].address) as p:
        yield p


@pytest.fixture()
def client(proxy: FaultProxy) -> Iterator[RegistryClient]:
    """A client to the proxy (overrides conftest's), with a short timeout."""
    with RegistryClient(proxy.address, timeout=TIMEOUT) as c:
        yield c


@pytest.fixture()
def direct(populated: dict) -> Iterator[RegistryClient]:
    with RegistryClient(populated["registry"].address) as c:
        yield c


def _timed(fn: Callable[[], object], bound: float) -> tuple[object, float]:
    started = time.monotonic()
    result = fn()
    elapsed = time.monotonic() - started
    assert elapsed < bound, f"took {elapsed:.1f} s (bound {bound} s)"
    return result, elapsed


def _raises(kind: type[JindrError], pattern: str, fn: Callable[[], object], bound: float) -> tuple[JindrError, float]:
    started = time.monotonic()
    with pytest.raises(kind, match=pattern) as info:
        fn()
    elapsed = time.monotonic() - started
    assert elapsed < bound, f"took {elapsed:.1f} s (bound {bound} s)"
    assert "\n" not in str(info.value)
    return info.value, elapsed


def _peak(fn: Callable[[], object]) -> int:
    """Peak traced allocation while `fn` runs (the proxy's threads included: they stream a constant)."""
    tracemalloc.start()
    try:
        fn()
    except JindrError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def _config_digest(direct: RegistryClient, repository: str, tag: str) -> str:
    return json.loads(direct.get_manifest(repository, tag).raw)["config"]["digest"]


# ---- truncated bodies ---------------------------------------------------------------------


def test_truncated_manifest_once_is_retried_and_correct(client: RegistryClient, proxy, direct) -> None:
    rule = proxy.plan(Rule("GET", r"/v2/plain/manifests/latest$", "truncate", after=10, times=1))
    got, _ = _timed(lambda: client.get_manifest("plain", "latest"), 5)
    assert got.raw == direct.get_manifest("plain", "latest").raw
    assert rule.faulted == 1 and rule.seen == 2


def test_truncated_manifest_every_time_is_an_error_naming_it(client: RegistryClient, proxy) -> None:
    rule = proxy.plan(Rule("GET", r"/manifests/latest$", "truncate", after=10))
    _raises(
        IntegrityError,
        r"manifest plain:latest: body truncated .*after 10 of \d+ bytes",
        lambda: client.get_manifest("plain", "latest"),
        5,
    )
    assert rule.seen <= RETRIES + 2  # the fast path's try, then the general path's budget


def test_truncated_config_blob_is_an_error_naming_the_blob(client: RegistryClient, proxy, direct) -> None:
    config = _config_digest(direct, "plain", "latest")
    rule = proxy.plan(Rule("GET", "/blobs/", "truncate", after=5))
    _raises(IntegrityError, f"blob {config} in plain: body truncated", lambda: client.get_blob("plain", config), 5)
    assert 1 <= rule.seen <= RETRIES + 2


def test_truncated_catalog_page_is_an_error(client: RegistryClient, proxy) -> None:
    rule = proxy.plan(Rule("GET", "/_catalog", "truncate", after=3))
    _raises(IntegrityError, "catalog: body truncated", client.catalog, 5)
    assert rule.seen <= RETRIES + 2


# ---- bytes that do not match their digest -------------------------------------------------


def test_corrupted_manifest_by_tag_disagrees_with_its_header(client: RegistryClient, proxy) -> None:
    proxy.plan(Rule("GET", "/manifests/latest$", "corrupt", after=20))
    _raises(
        IntegrityError,
        "manifest plain:latest: registry says sha256:.* but the bytes are",
        lambda: client.get_manifest("plain", "latest"),
        5,
    )


def test_corrupted_manifest_by_digest_does_not_match(client: RegistryClient, proxy, populated) -> None:
    digest = populated["images"]["single"].digest
    proxy.plan(Rule("GET", "/manifests/sha256:", "corrupt", after=20))
    _raises(
        IntegrityError,
        f"manifest plain@{digest} does not match its digest",
        lambda: client.get_manifest("plain", digest),
        5,
    )


def test_corrupted_config_blob_does_not_match(client: RegistryClient, proxy, direct) -> None:
    config = _config_digest(direct, "plain", "latest")
    rule = proxy.plan(Rule("GET", "/blobs/", "corrupt", after=1))
    _raises(
        IntegrityError, f"blob {config} in plain does not match its digest", lambda: client.get_blob("plain", config), 5
    )
    assert rule.seen == 1  # bytes that arrived whole but wrong are not asked for again


# ---- oversized and endless bodies ---------------------------------------------------------


@pytest.mark.parametrize(
    "shape,size,chunked,pattern",
    [
        ("declared", 256 * MIB, False, "is 268435456 bytes, over the 4194304-byte limit"),
        ("chunked", 64 * MIB, True, "is larger than 4194304 bytes"),
        ("endless", None, True, "is larger than 4194304 bytes"),
    ],
)
def test_manifest_over_4_mib_is_refused_without_reading_it(
    client: RegistryClient, proxy, shape: str, size: int | None, chunked: bool, pattern: str
) -> None:
    client.ping()  # connection set-up allocations are not the body's
    rule = proxy.plan(Rule("GET", "/manifests/", "huge", size=size, chunked=chunked))
    started = time.monotonic()
    peak = _peak(lambda: client.get_manifest("plain", "latest"))
    assert time.monotonic() - started < 5
    _raises(Unsupported, f"manifest plain:latest {pattern}", lambda: client.get_manifest("plain", "latest"), 5)
    assert peak < 12 * MIB  # 4 MiB limit plus one read's worth, never the body
    assert rule.seen <= 4


def test_endless_config_blob_stops_at_the_callers_limit(client: RegistryClient, proxy, direct) -> None:
    config = _config_digest(direct, "plain", "latest")
    client.ping()
    proxy.plan(Rule("GET", "/blobs/", "huge", size=None, media_type="application/octet-stream"))
    peak = _peak(lambda: client.get_blob("plain", config, limit=8 * MIB))
    _raises(
        Unsupported,
        f"blob {config} in plain is larger than 8388608 bytes",
        lambda: client.get_blob("plain", config, limit=8 * MIB),
        5,
    )
    assert peak < 20 * MIB


def test_huge_catalog_page_is_refused(client: RegistryClient, proxy) -> None:
    client.ping()
    proxy.plan(Rule("GET", "/_catalog", "huge", size=None, media_type="application/json"))
    peak = _peak(client.catalog)
    _raises(Unsupported, "catalog is larger than 16777216 bytes", client.catalog, 10)
    assert peak < 40 * MIB


# ---- endless Link pagination -------------------------------------------------------------


@pytest.mark.parametrize(
    "link,cycle",
    [("/v2/_catalog?n=1000", 0), ("/v2/_catalog?n=1000&last=p{n}", 2), ("/v2/_catalog?n=1000&last=p{n}", 0)],
    ids=["itself", "two-cycle", "endless-distinct"],
)
def test_catalog_link_loop_ends_with_an_error(client: RegistryClient, proxy, link: str, cycle: int) -> None:
    rule = proxy.plan(Rule("GET", "/_catalog", "link_loop", link=link, cycle=cycle))
    _raises(IntegrityError, "pagination loop listing catalog", client.catalog, 5)
    assert rule.seen <= 3


def test_tags_link_loop_ends_with_an_error(client: RegistryClient, proxy) -> None:
    rule = proxy.plan(Rule("GET", "/tags/list", "link_loop", link="/v2/multi/oci/tags/list?n=1000&last=zz{n}"))
    _raises(IntegrityError, "pagination loop listing repository multi/oci", lambda: client.tags("multi/oci"), 5)
    assert rule.seen == 2


def test_link_to_another_host_is_refused(client: RegistryClient, proxy) -> None:
    rule = proxy.plan(Rule("GET", "/_catalog", "link_loop", link="http://203.0.113.9:5000/v2/_catalog?n=1000"))
    _raises(IntegrityError, "Link to another host", client.catalog, 5)
    assert rule.seen == 1


# ---- 429 with Retry-After, 500s, dropped connections --------------------------------------


def test_429_retry_after_is_honoured_then_succeeds(client: RegistryClient, proxy, direct) -> None:
    client.ping()
    rule = proxy.plan(Rule("GET", "/manifests/latest$", "status", status=429, retry_after="1", times=1))
    got, elapsed = _timed(lambda: client.get_manifest("plain", "latest"), 5)
    assert got.raw == direct.get_manifest("plain", "latest").raw
    assert elapsed >= 1.0 and rule.seen == 2


def test_429_for_ever_gives_up_after_the_budget(proxy) -> None:
    rule = proxy.plan(Rule("GET", "/tags/list", "status", status=429, retry_after="1"))
    with RegistryClient(proxy.address, timeout=TIMEOUT, retries=2) as c:
        _, elapsed = _raises(
            RegistryError,
            r"rate-limiting requests \(429\) on repository plain.*try again in 1 s",
            lambda: c.tags("plain"),
            6,
        )
    assert rule.seen == 3 and elapsed >= 2.0  # every wait honoured


def test_429_asking_for_an_hour_fails_at_once(client: RegistryClient, proxy) -> None:
    rule = proxy.plan(Rule("GET", "/manifests/", "status", status=429, retry_after="3600"))
    _raises(RegistryError, r"429.*try again in 3600 s", lambda: client.get_manifest("plain", "latest"), 2)
    assert rule.seen <= 2


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_twice_then_the_real_answer(client: RegistryClient, proxy, direct, status: int) -> None:
    rule = proxy.plan(Rule("GET", "/manifests/latest$", "status", status=status, times=2))
    got, _ = _timed(lambda: client.get_manifest("plain", "latest"), 5)
    assert got.raw == direct.get_manifest("plain", "latest").raw
    assert rule.seen == 3


def test_500_for_ever_gives_up_after_the_budget(client: RegistryClient, proxy) -> None:
    rule = proxy.plan(Rule("GET", "/manifests/", "status", status=500))
    _raises(
        RegistryError,
        r"failed \(500\) on manifest plain:latest.*try again",
        lambda: client.get_manifest("plain", "latest"),
        5,
    )
    assert rule.seen == RETRIES + 1


def test_500_on_head_gives_up_after_the_budget(client: RegistryClient, proxy) -> None:
    rule = proxy.plan(Rule("HEAD", "/manifests/", "status", status=500))
    _raises(RegistryError, r"failed \(500\) on plain:latest", lambda: client.head_manifest("plain", "latest"), 5)
    assert rule.seen == RETRIES + 1


def test_500_on_upload_start_is_not_retried(client: RegistryClient, proxy) -> None:
    rule = proxy.plan(Rule("POST", "/blobs/uploads/", "status", status=500))
    _raises(
        RegistryError,
        r"failed \(500\) on upload of sha256:",
        lambda: client.upload_blob("plain", b"x", "sha256:" + "0" * 64),
        5,
    )
    assert rule.seen == 1  # POST is not idempotent


def test_dropped_connection_once_is_retried(client: RegistryClient, proxy, direct) -> None:
    rule = proxy.plan(Rule("GET", "/manifests/latest$", "drop", times=1))
    got, _ = _timed(lambda: client.get_manifest("plain", "latest"), 5)
    assert got.raw == direct.get_manifest("plain", "latest").raw and rule.seen == 2


def test_dropped_connection_for_ever_is_an_error_naming_the_request(client: RegistryClient, proxy) -> None:
    rule = proxy.plan(Rule("GET", "/manifests/", "drop"))
    _raises(
        RegistryUnreachable,
        "closed the connection during manifest plain:latest",
        lambda: client.get_manifest("plain", "latest"),
        5,
    )
    assert rule.seen <= RETRIES + 3  # an idle keep-alive connection may be tried once more


# ---- stalled connections ------------------------------------------------------------------


@pytest.mark.parametrize("after", [0, 10], ids=["silent", "mid-body"])
def test_stalled_manifest_costs_one_timeout(client: RegistryClient, proxy, after: int) -> None:
    client.ping()
    rule = proxy.plan(Rule("GET", "/manifests/", "stall", after=after))
    _, elapsed = _raises(
        RegistryUnreachable,
        "stopped answering during manifest plain:latest .*timed out",
        lambda: client.get_manifest("plain", "latest"),
        TIMEOUT * 2,
    )
    assert elapsed >= TIMEOUT * 0.9 and rule.seen == 1


def test_stalled_first_contact(proxy) -> None:
    rule = proxy.plan(Rule("GET", r"^/v2/$", "stall"))
    with RegistryClient(proxy.address, timeout=TIMEOUT) as c:
        _raises(RegistryUnreachable, "stopped answering .*timed out", c.catalog, TIMEOUT * 2)
    assert rule.seen == 1


def _read_blob(client: RegistryClient, repository: str, digest: str) -> int:
    with client.open_blob(repository, digest) as resp:
        return sum(len(chunk) for chunk in resp.iter_bytes())


@pytest.mark.parametrize(
    "action,kind,pattern,bound",
    [
        (
            "stall",
            RegistryUnreachable,
            "{proxy} stopped answering during blob {layer} in plain .*timed out",
            TIMEOUT * 2,
        ),
        (
            "truncate",
            IntegrityError,
            "blob {layer} in plain: body truncated \\({proxy} closed the connection after 100 bytes",
            5,
        ),
    ],
    ids=["stalled", "truncated"],
)
def test_a_broken_blob_stream_names_the_registry_and_blob(
    client: RegistryClient, proxy, direct, action: str, kind: type[JindrError], pattern: str, bound: float
) -> None:
    layer = json.loads(direct.get_manifest("plain", "latest").raw)["layers"][0]["digest"]
    rule = proxy.plan(Rule("GET", "/blobs/", action, after=100))
    _raises(kind, pattern.format(proxy=proxy.address, layer=layer), lambda: _read_blob(client, "plain", layer), bound)
    assert rule.seen == 1  # a stream handed to the caller is not re-sent: the caller re-runs


# ---- through jindr's commands -------------------------------------------------------------


def test_ls_with_a_catalog_loop(proxy) -> None:
    proxy.plan(Rule("GET", "/_catalog", "link_loop", link="/v2/_catalog?n=1000"))
    _raises(IntegrityError, "pagination loop listing catalog", lambda: jindr("-r", proxy.address, "ls"), 5)


def test_lsi_long_with_transient_500s_lists_the_same(proxy, populated) -> None:
    expected = jindr("-r", populated["registry"].address, "lsi", "-l").rows
    rule = proxy.plan(Rule("GET", "/tags/list", "status", status=500, times=2))
    rows, _ = _timed(lambda: jindr("-r", proxy.address, "lsi", "-l").rows, 10)
    key = [(r.repository, r.tag, r.digest, getattr(r, "size", None)) for r in rows]
    assert key == [(r.repository, r.tag, r.digest, getattr(r, "size", None)) for r in expected]
    assert rule.faulted == 2


def test_lsi_with_a_stalled_registry(proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JINDR_TIMEOUT", str(TIMEOUT))
    proxy.plan(Rule("GET", "/tags/list", "stall"))
    _raises(
        RegistryUnreachable,
        "stopped answering during repository .*timed out",
        lambda: jindr("-r", proxy.address, "lsi", "plain"),
        TIMEOUT * 3,
    )


def test_ins_with_a_huge_manifest(proxy) -> None:
    proxy.plan(Rule("GET", "/manifests/", "huge", size=None))
    _raises(
        Unsupported,
        "manifest plain:latest is larger than 4194304 bytes",
        lambda: jindr("-r", proxy.address, "ins", "plain:latest"),
        5,
    )


def test_ins_with_a_corrupted_config(proxy, direct) -> None:
    config = _config_digest(direct, "plain", "latest")
    proxy.plan(Rule("GET", "/blobs/", "corrupt", after=3))
    _raises(
        IntegrityError,
        f"blob {config} in plain does not match its digest",
        lambda: jindr("-r", proxy.address, "ins", "plain:latest"),
        5,
    )


def _copy_through(proxy: FaultProxy, dst: LocalRegistry, rule: Rule) -> tuple[Rule, str]:
    """The layer blob of `plain:latest` gets `rule`'s fault; returns the rule and the layer digest."""
    with RegistryClient(proxy.upstream) as c:
        layer = json.loads(c.get_manifest("plain", "latest").raw)["layers"][0]["digest"]
    rule.path = f"/blobs/{layer}"
    proxy.plan(rule)
    return rule, layer


def _no_tag(dst: LocalRegistry) -> None:
    with RegistryClient(dst.address) as d:
        assert d.head_manifest("plain", "latest") is None


def test_cp_with_a_corrupted_blob_tags_nothing(proxy, registry: LocalRegistry, blob_path: str) -> None:
    rule, layer = _copy_through(proxy, registry, Rule("GET", "", "corrupt", after=100))
    _raises(
        IntegrityError,
        f"blob {layer} .*does not match its digest",
        lambda: jindr("-r", proxy.address, "cp", "plain:latest", registry.address),
        10,
    )
    _no_tag(registry)
    with RegistryClient(registry.address) as d:
        assert d.head_blob("plain", layer) is None
    assert rule.seen == 1


def test_cp_with_a_truncated_blob_tags_nothing(proxy, registry: LocalRegistry, blob_path: str) -> None:
    rule, layer = _copy_through(proxy, registry, Rule("GET", "", "truncate", after=100))
    _raises(
        IntegrityError,
        f"blob {layer} in plain: body truncated \\({proxy.address} closed the connection after 100 bytes",
        lambda: jindr("-r", proxy.address, "cp", "plain:latest", registry.address),
        10,
    )
    _no_tag(registry)
    assert rule.seen == 1


def test_cp_with_transient_500s_on_a_blob_copies(proxy, registry: LocalRegistry, populated, blob_path: str) -> None:
    rule, _ = _copy_through(proxy, registry, Rule("GET", "", "status", status=503, times=2))
    row = _timed(lambda: jindr("-r", proxy.address, "cp", "plain:latest", registry.address).rows[0], 10)[0]
    assert row.digest == populated["images"]["single"].digest and rule.seen == 3
    with RegistryClient(registry.address) as d:
        assert d.head_manifest("plain", "latest")[0] == row.digest


def test_cp_with_a_stalled_blob_tags_nothing(
    proxy, registry: LocalRegistry, monkeypatch: pytest.MonkeyPatch, blob_path: str
) -> None:
    monkeypatch.setenv("JINDR_TIMEOUT", str(TIMEOUT))
    rule, layer = _copy_through(proxy, registry, Rule("GET", "", "stall", after=100))
    _raises(
        RegistryUnreachable,
        f"{proxy.address} stopped answering during blob {layer} in plain .*timed out",
        lambda: jindr("-r", proxy.address, "cp", "plain:latest", registry.address),
        TIMEOUT * 4,
    )
    _no_tag(registry)
    assert rule.seen == 1


# ---- the real CLI: exit status 1, one line, no traceback -----------------------------------


@pytest.mark.parametrize(
    "rule,argv,pattern",
    [
        (Rule("GET", "/_catalog", "link_loop", link="/v2/_catalog?n=1000"), ["ls"], "pagination loop listing catalog"),
        (Rule("GET", "/manifests/", "huge", size=None), ["ins", "plain:latest"], "manifest plain:latest is larger"),
        (Rule("GET", "/manifests/", "corrupt", after=20), ["ins", "plain:latest"], "registry says sha256:"),
        (Rule("GET", "/tags/list", "status", status=500), ["lsi", "plain"], r"failed \(500\) on repository plain"),
        (Rule("GET", "/tags/list", "stall"), ["lsi", "plain"], "stopped answering during repository plain .*timed out"),
    ],
    ids=["link-loop", "huge-manifest", "corrupt-manifest", "500", "stall"],
)
def test_cli_one_line_and_exit_1(proxy, rule: Rule, argv: list[str], pattern: str) -> None:
    import re

    proxy.plan(rule)
    env = dict(os.environ, JINDR_TIMEOUT=str(TIMEOUT))
    started = time.monotonic()
    done = subprocess.run([*CLI, "-r", proxy.address, *argv], capture_output=True, text=True, timeout=30, env=env)
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jindr: ") and re.search(pattern, lines[0]), done.stderr
    assert "Traceback" not in done.stderr and elapsed < 15
