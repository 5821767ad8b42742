"""The lean HTTP path and the kernel relay at their edges.

Most of what they do runs in every other test against the real registry. What a real registry
never sends — interim 1xx answers, bodies ended by closing the connection, a connection dropped
after a request that must not be sent twice — comes from `ScriptedServer`, a fake named as such:
a loopback socket server answering each request with the bytes a test scripts. The relay's
fallbacks (the kernel refusing splice, an upload moved to another host) run against real
registries.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
from rig import ImageFactory, LocalRegistry, free_port, start_registry
from test_runtime import verify_pull

import jindr_nb.client.fast as fast
from jindr_nb.client import RegistryClient
from jindr_nb.client.fast import FastGet, Unanswered
from jindr_nb.errors import RegistryUnreachable
from jindr_nb.ops.copy import copy_image
from jindr_nb.refs import parse_ref

PING = b"HTTP/1.1 200 OK\r\nDocker-Distribution-Api-Version: registry/2.0\r\nContent-Length: 2\r\n\r\n{}"

# ---- a scripted server: the fake ----------------------------------------------------------


class ScriptedServer:
    """Loopback HTTP/1.1 server: `script(method, path, body)` returns the bytes to send, or None
    to close the connection without answering. Keeps connections alive; records every request."""

    def __init__(self, script: Callable[[str, str, bytes], bytes | None]) -> None:
        self.script = script
        self.requests: list[tuple[str, str]] = []
        self.heads: list[bytes] = []  # every request's head, as it came off the wire
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        with conn, reader:
            while True:
                line = reader.readline()
                if not line:
                    return
                method, path, _ = line.decode().split(" ", 2)
                length = 0
                head = [line]
                while (header := reader.readline()) not in (b"\r\n", b""):
                    head.append(header)
                    name, _, value = header.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                body = reader.read(length) if length else b""
                self.heads.append(b"".join(head))
                self.requests.append((method, path))
                answer = self.script(method, path, body)
                if answer is None:
                    return
                try:
                    conn.sendall(answer)
                except OSError:
                    return  # the client hung up (as it should on a hostile answer)
                if b"Connection: close" in answer.split(b"\r\n\r\n")[0]:
                    return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture()
def scripted() -> Iterator[Callable[[Callable[[str, str, bytes], bytes | None]], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: Callable[[str, str, bytes], bytes | None]) -> ScriptedServer:
        servers.append(ScriptedServer(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


# ---- the lean path: framing ---------------------------------------------------------------


def test_interim_answers_are_skipped_and_the_connection_stays_in_step(scripted) -> None:
    def script(method: str, path: str, body: bytes) -> bytes:
        n = path.rsplit("/", 1)[1].encode()
        return b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (
            len(n),
            n,
        )

    server = scripted(script)
    lean = FastGet("http", server.address, timeout=5)
    try:
        answers = [lean.get(f"/v2/x/{i}", {}, 1024) for i in range(3)]
    finally:
        lean.close()
    assert [a[1] for a in answers if a] == [b"0", b"1", b"2"]  # each request its own answer
    assert len({t.name for t in server._threads}) == 1  # one kept-alive connection


def test_a_body_ended_by_closing_the_connection_is_read_whole(scripted) -> None:
    server = scripted(lambda m, p, b: b"HTTP/1.1 201 Created\r\nConnection: close\r\n\r\ncreated!")
    lean = FastGet("http", server.address, timeout=5)
    try:
        answer = lean.request("PUT", "/v2/x/manifests/v1", {}, b"{}", resend=False)
    finally:
        lean.close()
    assert answer is not None and answer.status_code == 201 and answer.content == b"created!"


def test_a_chunked_answer_is_read_whole(scripted) -> None:
    chunked = b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n3\r\n:1}\r\n0\r\n\r\n'
    server = scripted(lambda m, p, b: chunked)
    lean = FastGet("http", server.address, timeout=5)
    try:
        assert lean.get("/v2/x", {}, 1024) == ({"transfer-encoding": "chunked"}, b'{"a":1}')
    finally:
        lean.close()


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
    lean = FastGet("http", server.address, timeout=5)
    try:
        with pytest.raises(Unanswered):
            lean.request("PATCH", "/v2/x/blobs/uploads/u1", {}, b"x", resend=False)
        before = len(server.requests)
        assert lean.request("PUT", "/v2/x/manifests/v1", {}, b"{}", resend=True) is None  # httpx may resend
        assert len(server.requests) == before + 1
    finally:
        lean.close()


def test_a_proxy_from_the_environment_keeps_off_the_lean_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", ".internal.example")
    assert RegistryClient("registry.example.com")._fast is None  # the proxy is httpx's to use
    assert RegistryClient("registry.internal.example")._fast is not None  # NO_PROXY
    assert RegistryClient("localhost:5001")._fast is not None  # this machine: never proxied
    monkeypatch.delenv("HTTPS_PROXY")
    assert RegistryClient("registry.example.com")._fast is not None


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


def test_when_the_kernel_refuses_splice_blobs_stream_instead(source, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, pushed = source
    dst = start_registry(tmp_path / "dst")
    real_splice = os.splice
    calls: list[int] = []

    def refusing(*args: object, **kw: object) -> int:
        calls.append(1)
        raise OSError(errno.EINVAL, "splice refused (as a sandbox would)")

    monkeypatch.setattr(fast.os, "splice", refusing)
    monkeypatch.setattr(fast, "_splice_refused", False)
    try:
        with RegistryClient(dst.address) as d:
            row = _copy(src, dst.address, d, jobs=1)
            verify_pull(d, "app", "v1", pushed)
            assert d.blobs_relayed == 0 and row.digest == pushed.digest
        assert len(calls) == 1  # refused once, then every blob streamed without asking again
        assert fast._splice_refused
    finally:
        monkeypatch.setattr(fast.os, "splice", real_splice)
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
