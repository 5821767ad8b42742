"""The loopback stack (`http.client` connections) and the kernel relay at their edges.

Most of what they do runs in every other test against the real registry. What a real registry
never sends — interim 1xx answers, bodies ended by closing the connection, a connection dropped
after a request that must not be sent twice — comes from `ScriptedServer` (tests/scripted.py), a fake named as such:
a loopback socket server answering each request with the bytes a test scripts. The relay's
fallbacks (the kernel refusing splice, an upload moved to another host) run against real
registries.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

import pytest
from rig import ImageFactory, LocalRegistry, free_port, start_registry
from scripted import PING  # the `scripted` fixture comes from scripted.py through conftest.py
from test_runtime import verify_pull

import jindr_nb.client.relay as relay
from jindr_nb.client import RegistryClient
from jindr_nb.client.loopback import Pool, Unanswered
from jindr_nb.client.transport import proxied
from jindr_nb.errors import RegistryUnreachable
from jindr_nb.ops.copy import copy_image
from jindr_nb.refs import parse_ref

# ---- the lean path: framing ---------------------------------------------------------------


def test_interim_answers_are_skipped_and_the_connection_stays_in_step(scripted) -> None:
    def script(method: str, path: str, body: bytes) -> bytes:
        n = path.rsplit("/", 1)[1].encode()
        return b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (
            len(n),
            n,
        )

    server = scripted(script)
    lean = Pool(server.address, timeout=5)
    try:
        answers = [lean.get(f"/v2/x/{i}", {}, 1024) for i in range(3)]
    finally:
        lean.close()
    assert [a[1] for a in answers if a] == [b"0", b"1", b"2"]  # each request its own answer
    assert len({t.name for t in server._threads}) == 1  # one kept-alive connection


def test_a_body_ended_by_closing_the_connection_is_read_whole(scripted) -> None:
    server = scripted(lambda m, p, b: b"HTTP/1.1 201 Created\r\nConnection: close\r\n\r\ncreated!")
    lean = Pool(server.address, timeout=5)
    try:
        answer = lean.request("PUT", "/v2/x/manifests/v1", {}, b"{}", resend=False)
    finally:
        lean.close()
    assert answer is not None and answer.status == 201 and answer.content == b"created!"


def test_a_chunked_answer_is_read_whole(scripted) -> None:
    chunked = b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n3\r\n:1}\r\n0\r\n\r\n'
    server = scripted(lambda m, p, b: chunked)
    lean = Pool(server.address, timeout=5)
    try:
        got = lean.get("/v2/x", {}, 1024)
    finally:
        lean.close()
    assert got is not None and got[1] == b'{"a":1}' and got[0].get("Transfer-Encoding") == "chunked"


# ---- the lean path: a request that must not go twice ----------------------------------------


def test_a_request_that_must_not_repeat_is_not_sent_again(scripted) -> None:
    """An upload's POST goes out and the connection drops: one POST, then a clear error."""

    def script(method: str, path: str, body: bytes) -> bytes | None:
        return PING if path == "/v2/" else None  # anything else: dropped without an answer

    server = scripted(script)
    with RegistryClient(server.address, retries=3) as client:
        with pytest.raises(RegistryUnreachable, match="closed the connection during upload .* without an answer"):
            client.upload_blob("x", b"abc", "sha256:" + "0" * 64)
    assert [m for m, _ in server.requests] == ["GET", "POST"], server.requests
    lean = Pool(server.address, timeout=5)
    try:
        with pytest.raises(Unanswered):
            lean.request("PATCH", "/v2/x/blobs/uploads/u1", {}, b"x", resend=False)
        before = len(server.requests)
        assert lean.request("PUT", "/v2/x/manifests/v1", {}, b"{}", resend=True) is None  # httpx may resend
        assert len(server.requests) == before + 1
    finally:
        lean.close()


def test_only_plain_http_on_this_machine_takes_the_loopback_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", ".internal.example")
    assert proxied("https", "registry.example.com")  # the proxy is httpx's to use
    assert not proxied("https", "registry.internal.example")  # NO_PROXY
    assert not proxied("http", "localhost:5001")  # this machine: never proxied
    assert RegistryClient("localhost:5001")._t.loopback is not None
    assert RegistryClient("127.0.0.1:5001")._t.loopback is not None
    assert RegistryClient("registry.example.com")._t.loopback is None  # TLS: httpx
    assert RegistryClient("registry.internal.example", insecure=True)._t.loopback is None  # off this machine
    mock = httpx.MockTransport(lambda request: httpx.Response(200))
    assert RegistryClient("localhost:5001", transport=mock)._t.loopback is None  # injected: sees every request
    monkeypatch.delenv("HTTPS_PROXY")
    assert not proxied("https", "registry.example.com")


# ---- the relay's fallbacks, against real registries -----------------------------------------


@pytest.fixture()
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRegistry, object]]:
    reg = start_registry(tmp_path_factory.mktemp("relay-source"))
    with RegistryClient(reg.address) as c:
        pushed = ImageFactory(c, seed=41).index("app", "v1", layers=2, layer_size=300_000)
    yield reg, pushed
    reg.stop()


def _copy(src: LocalRegistry, dst_address: str, client: RegistryClient, jobs: int = 4) -> object:
    with RegistryClient(src.address) as s:
        return copy_image(s, parse_ref("app:v1", src.address), client, parse_ref("app:v1", dst_address), jobs=jobs)


def test_every_byte_of_a_relayed_blob_goes_through_the_kernel(tmp_path) -> None:
    """http.client reads the source's head unbuffered: no body byte passes through Python."""
    import hashlib
    import random

    src, dst = start_registry(tmp_path / "src"), start_registry(tmp_path / "dst")
    blob = random.Random(5).randbytes(700_001)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    heard: list[int] = []
    try:
        with RegistryClient(src.address) as s, RegistryClient(dst.address) as d:
            s.upload_blob("app", blob, digest)
            before = relay.spliced.value
            assert d.relay_blob(s, "app", "copy", digest, len(blob), on_bytes=heard.append)
            assert relay.spliced.value - before == len(blob) and sum(heard) == len(blob)
            assert d.get_blob("copy", digest) == blob and d.blobs_relayed == 1
    finally:
        src.stop()
        dst.stop()


def test_when_the_kernel_refuses_splice_blobs_stream_instead(source, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, pushed = source
    dst = start_registry(tmp_path / "dst")
    real_splice = os.splice
    calls: list[int] = []

    def refusing(*args: object, **kw: object) -> int:
        calls.append(1)
        raise OSError(errno.EINVAL, "splice refused (as a sandbox would)")

    monkeypatch.setattr(relay.os, "splice", refusing)
    monkeypatch.setattr(relay, "_splice_refused", False)
    try:
        with RegistryClient(dst.address) as d:
            row = _copy(src, dst.address, d, jobs=1)
            verify_pull(d, "app", "v1", pushed)
            assert d.blobs_relayed == 0 and row.digest == pushed.digest
        assert len(calls) == 1  # refused once, then every blob streamed without asking again
        assert relay._splice_refused
    finally:
        monkeypatch.setattr(relay.os, "splice", real_splice)
        dst.stop()


def test_an_upload_moved_to_another_host_streams_there(source, tmp_path) -> None:
    """A registry whose Location names another host (`http.host`): httpx follows it."""
    src, pushed = source
    port = free_port()
    dst = LocalRegistry(tmp_path / "dst", port=port, extra_config=f"  host: http://127.0.0.1:{port}\n").start()
    try:
        address = f"localhost:{port}"  # the client's name for it differs from the Location's host
        with RegistryClient(address) as d:
            row = _copy(src, address, d)
            verify_pull(d, "app", "v1", pushed)
            assert d.blobs_relayed == 0 and row.digest == pushed.digest and row.blobs_copied > 0
    finally:
        dst.stop()


# ---- hostile framing and headers --------------------------------------------------------------


@pytest.mark.parametrize("size", [b"-1", b"-ff", b"fffffffffffffffffff", b"0x10", b"zz"])
def test_a_malformed_chunk_size_is_refused_without_reading_on(scripted, size: bytes) -> None:
    """A chunk size int() would take ("-1": read to the end of the stream) or absurd: refused at
    once; the 8 MiB the server keeps sending after it are never read into memory."""
    import time
    import tracemalloc

    # Built before memory is traced: the 8 MiB the server keeps sending after the bad size.
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size + b"\r\n" + b"x" * (8 * 1024 * 1024)

    def script(method: str, path: str, body: bytes) -> bytes | None:
        return PING if path == "/v2/" else answer

    server = scripted(script)
    tracemalloc.start()
    started = time.monotonic()
    try:
        with RegistryClient(server.address, timeout=3) as client:
            with pytest.raises(Exception) as info:
                client.get_manifest("x", "latest")
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.monotonic() - started < 3  # refused, not read until a timeout
    assert peak < 4 * 1024 * 1024, peak  # the body after the bad size stayed on the socket
    assert "\n" not in str(info.value) and "x:latest" in str(info.value)


@pytest.mark.parametrize(
    "token", ["abc\r\nX-Injected: yes", "abc\nX-Injected: yes", "abc\x00def", "two words", "ok\rX-Injected: 1"]
)
def test_a_token_that_is_not_a_token_is_never_sent(scripted, token: str) -> None:
    import json

    def script(method: str, path: str, body: bytes) -> bytes:
        if path.startswith("/token"):
            doc = json.dumps({"token": token}).encode()
            return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
                len(doc),
                doc,
            )
        realm = f'Bearer realm="http://{server.address}/token",service="t"'.encode()
        return (
            b"HTTP/1.1 401 Unauthorized\r\nDocker-Distribution-Api-Version: registry/2.0\r\n"
            b"WWW-Authenticate: " + realm + b"\r\nContent-Length: 0\r\n\r\n"
        )

    server = scripted(script)
    from jindr_nb.errors import Unauthorized

    with RegistryClient(server.address, timeout=3) as client:
        with pytest.raises(Unauthorized) as info:
            client.catalog()
    message = str(info.value)
    assert "not a bearer token" in message and "token server" in message and "\n" not in message
    assert "X-Injected" not in message and "abc" not in message and "def" not in message  # never echoed
    assert not any(b"X-Injected" in head or b"Bearer" in head for head in server.heads)


def test_a_header_value_with_a_line_break_never_reaches_the_wire(scripted) -> None:
    """A media type read from a hostile source's answer, say, PUT on: refused before sending."""
    from jindr_nb.errors import IntegrityError

    server = scripted(lambda m, p, b: PING if p == "/v2/" else b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
    with RegistryClient(server.address, timeout=3) as client:
        client.ping()
        with pytest.raises(IntegrityError) as info:
            client.put_manifest("x", "v1", b"{}", "application/json\r\nX-Injected: yes")
    assert "control character" in str(info.value) and "X-Injected" not in str(info.value)
    assert not any(b"X-Injected" in head for head in server.heads)
