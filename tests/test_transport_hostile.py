"""Hostile answers at the HTTP layer, on both of jindr's stacks.

Every case runs twice: against a plain-HTTP scripted server on 127.0.0.1 (the loopback stack) and
against the same script behind TLS, with a certificate from a test CA trusted through
SSL_CERT_FILE, under a name that resolves to 127.0.0.1 in this process only (the remote stack).
The servers are `ScriptedServer`s (tests/scripted.py): fakes, because no real registry sends
these answers. They record every request head as it came off the wire, so the tests read what
jindr really sent.

What must hold: memory stays under the caller's limit whatever the framing says; extra bytes are
never taken as the next answer; duplicated and folded headers have one defined outcome; nothing a
server puts in a token, a realm or a Location (of a redirect or an upload) reaches the wire as a
header; `Authorization` (bearer or basic) never follows a redirect to another origin, another port
of the same host included; one clear line naming what failed, no secret.
Only the public client API, `jindr` and `main()` are used. The cases that held are counted in
tests/.counts/transport_hostile.json.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import re
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rig import write_counts
from scripted import PING, Script, ScriptedServer, TestCA

from jindr_nb.cli import main
from jindr_nb.client import RegistryClient
from jindr_nb.errors import IntegrityError, JindrError, RegistryError, Unsupported

TIMEOUT = 5.0  # the client's timeout: a case that waits for it has hung
MIB = 1024 * 1024
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

_cases: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _write_counts() -> Iterator[None]:
    """After the module's last test, whichever it is: how many cases held, on which stack."""
    yield
    write_counts(
        "transport_hostile",
        hostile_cases=len(_cases),
        loopback=sum("[loopback" in c for c in _cases),
        tls=sum("[tls" in c for c in _cases),
        cases=_cases,
    )


@pytest.fixture(autouse=True)
def _counted(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)  # set by conftest's makereport hook
    if report is not None and report.passed:
        _cases.append(request.node.name)


# ---- the two stacks ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("test-ca"))


@dataclass
class Stack:
    """Where the scripted servers of one test run: plain HTTP on 127.0.0.1, or TLS under TestCA.NAME."""

    name: str
    start: Callable[..., ScriptedServer]
    tls: TestCA | None

    def serve(self, script: Script, *, head: bool = False) -> ScriptedServer:
        return self.start(script, tls=self.tls, head=head)

    @property
    def host(self) -> str:
        return TestCA.NAME if self.tls is not None else "127.0.0.1"


def _trust(ca: TestCA, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trust the test CA the way a user trusts a private one (SSL_CERT_FILE), and resolve its name
    to 127.0.0.1 in this process only."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - socket's signature
        return real("127.0.0.1" if host == TestCA.NAME else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_file))
    # jindr builds its certificate store once per process (it costs ~0.1 s), so an SSL_CERT_FILE set
    # after the first HTTPS client is not read. There is no public way to rebuild it: drop the
    # cached one (the one private name this module touches; tests/test_tls.py does the same).
    import importlib

    for name in ("jindr_nb.client.transport", "jindr_nb.client.registry"):  # where it lives, then and now
        with contextlib.suppress(ImportError):
            module = importlib.import_module(name)
            if hasattr(module, "_TLS_CONTEXT"):
                monkeypatch.setattr(module, "_TLS_CONTEXT", None)


@pytest.fixture(params=["loopback", "tls"])
def stack(request: pytest.FixtureRequest, scripted, monkeypatch: pytest.MonkeyPatch) -> Stack:
    if request.param == "tls":
        ca = request.getfixturevalue("test_ca")
        _trust(ca, monkeypatch)
        return Stack("tls", scripted, ca)
    return Stack("loopback", scripted, None)


# ---- answers and checks --------------------------------------------------------------------------


def answer(status: str, headers: list[str] | None = None, body: bytes = b"", *, length: bool = True) -> bytes:
    """An HTTP/1.1 answer: status line, headers as given (duplicates kept), Content-Length unless told not."""
    lines = [f"HTTP/1.1 {status}", *(headers or [])]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def header_lines(server: ScriptedServer) -> list[bytes]:
    """Every header line of every request the server received (request lines left out)."""
    return [line.strip() for head in server.heads for line in head.split(b"\n")[1:] if line.strip()]


def injected(server: ScriptedServer) -> list[bytes]:
    """Header lines no jindr request has: what a hostile value would have smuggled onto the wire."""
    return [line for line in header_lines(server) if line.lower().startswith(b"x-injected")]


def one_line(error: BaseException, *names: str) -> str:
    """The error's message: a jindr error, one line, naming each of `names`."""
    assert isinstance(error, JindrError), f"{type(error).__name__}: {error}"
    message = str(error)
    assert "\n" not in message and "\r" not in message, repr(message)
    for name in names:
        assert name in message, (name, message)
    return message


def failing(fn: Callable[[], object], bound: float = TIMEOUT * 0.9) -> tuple[BaseException, int, float]:
    """Run `fn`, which must raise before the client's own timeout would (a hang waits that long at least);
    the error, peak traced memory, seconds."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - which kind it is, is the test's to check
        error: BaseException | None = exc
    else:
        error = None
    finally:
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert error is not None, "no error"
    assert elapsed < bound, f"took {elapsed:.1f} s (bound {bound} s): read until the timeout?"
    return error, peak, elapsed


# ---- chunk sizes ---------------------------------------------------------------------------------

BLOB = b'{"architecture":"amd64","os":"linux"}'
FLOOD = 16 * MIB  # what the server keeps sending after the bad chunk size
LIMIT = 4096


@pytest.mark.parametrize(
    "size", [b"-1", b"-ff", b"zz", b"0x10", b" 10", b"+10", b"1_0", b"ffffffffffffffffff"], ids=repr
)
def test_a_malformed_chunk_size_stays_under_the_limit(stack: Stack, size: bytes) -> None:
    """A chunk size `int(x, 16)` would take ("-1": read to the end; "0x10", " 10", "+10", "1_0") or absurd:
    one clear error within the caller's 4 KiB limit; the 16 MiB behind it are never read in."""
    digest = digest_of(BLOB)
    hostile = answer("200 OK", ["Content-Type: application/octet-stream", "Transfer-Encoding: chunked"], length=False)
    hostile += size + b"\r\n" + b"x" * FLOOD  # built before memory is traced
    server = stack.serve(lambda m, p, b: PING if p == "/v2/" else hostile)
    with RegistryClient(server.address, timeout=TIMEOUT) as client:
        client.ping()  # connection set-up is not the body's
        error, peak, _ = failing(lambda: client.get_blob("x", digest, limit=LIMIT))
    assert isinstance(error, (IntegrityError, Unsupported)), f"{type(error).__name__}: {error}"
    one_line(error, digest)
    assert peak < 1 * MIB, f"{peak} bytes traced for a {LIMIT}-byte limit"


def test_a_chunked_answer_over_the_limit_stops_at_the_limit(stack: Stack) -> None:
    """Well-formed chunks, endless: the limit ends it, not the framing."""
    digest = digest_of(BLOB)
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"y" * 64 * 1024)
    hostile = answer("200 OK", ["Transfer-Encoding: chunked"], length=False) + chunk * 256
    server = stack.serve(lambda m, p, b: PING if p == "/v2/" else hostile)
    with RegistryClient(server.address, timeout=TIMEOUT) as client:
        client.ping()
        error, peak, _ = failing(lambda: client.get_blob("x", digest, limit=LIMIT))
    assert isinstance(error, Unsupported), f"{type(error).__name__}: {error}"
    one_line(error, digest, f"larger than {LIMIT} bytes")
    assert peak < 1 * MIB, peak


# ---- a body longer than its Content-Length -------------------------------------------------------

FIRST, SECOND = b"the first blob\n", b"the second blob\n"
SMUGGLED = {
    # A whole answer after the declared body: taken as the next answer, it is a 404 for SECOND.
    "whole-answer": answer("404 Not Found", ["Content-Type: application/json"], b'{"errors":[]}'),
    # An answer with a body of the wrong bytes: taken, SECOND would fail its digest.
    "wrong-bytes": answer("200 OK", [], b"not the second blob\n"),
    # Junk: taken, the next answer would not parse.
    "junk": b"garbage after the body " * 10,
}


@pytest.mark.parametrize("extra", list(SMUGGLED))
def test_bytes_after_the_declared_body_are_never_the_next_answer(stack: Stack, extra: str) -> None:
    def script(method: str, path: str, body: bytes) -> bytes:
        if path == "/v2/":
            return PING
        if path.endswith(digest_of(FIRST)):
            return answer("200 OK", ["Content-Type: application/octet-stream"], FIRST) + SMUGGLED[extra]
        if path.endswith(digest_of(SECOND)):
            return answer("200 OK", ["Content-Type: application/octet-stream"], SECOND)
        return answer("404 Not Found")

    server = stack.serve(script)
    with RegistryClient(server.address, timeout=TIMEOUT) as client:
        assert client.get_blob("x", digest_of(FIRST)) == FIRST
        assert client.get_blob("x", digest_of(SECOND)) == SECOND  # its own answer
        assert client.get_blob("x", digest_of(FIRST)) == FIRST
    asked = [p for m, p in server.requests if "/blobs/" in p]
    assert asked.count(f"/v2/x/blobs/{digest_of(SECOND)}") >= 1, server.requests  # really asked for


# ---- duplicated and folded headers ---------------------------------------------------------------

MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(BLOB), "size": 37},
        "layers": [],
    }
).encode()
OTHER = digest_of(b"some other manifest")


@pytest.mark.parametrize("order", ["true-first", "true-last"])
def test_two_content_digests_that_disagree_are_an_error(stack: Stack, order: str) -> None:
    true = f"Docker-Content-Digest: {digest_of(MANIFEST)}"
    false = f"Docker-Content-Digest: {OTHER}"
    pair = [true, false] if order == "true-first" else [false, true]
    hostile = answer("200 OK", [f"Content-Type: {OCI_MANIFEST}", *pair], MANIFEST)
    server = stack.serve(lambda m, p, b: PING if p == "/v2/" else hostile)
    with RegistryClient(server.address, timeout=TIMEOUT) as client:
        error, _, _ = failing(lambda: client.get_manifest("x", "latest"))
    assert isinstance(error, IntegrityError), f"{type(error).__name__}: {error}"
    one_line(error, "x:latest")


def test_a_folded_content_digest_is_never_read_as_its_first_line(stack: Stack) -> None:
    """obs-fold: the first line alone is the true digest. Unfolded, the value is not a digest; a
    parser that drops the continuation would take it silently."""
    folded = [f"Content-Type: {OCI_MANIFEST}", f"Docker-Content-Digest: {digest_of(MANIFEST)}", f" {OTHER}"]
    hostile = answer("200 OK", folded, MANIFEST)
    server = stack.serve(lambda m, p, b: PING if p == "/v2/" else hostile)
    with RegistryClient(server.address, timeout=TIMEOUT) as client:
        error, _, _ = failing(lambda: client.get_manifest("x", "latest"))
    assert isinstance(error, RegistryError), f"{type(error).__name__}: {error}"
    one_line(error, "x:latest")


TOKEN = "good-token-d3adb33f"  # a token the scripted token server hands out: never on another origin


def _bearer_registry(stack: Stack, challenges: Callable[[str], list[str]], ok: bytes) -> ScriptedServer:
    """A registry that wants `Bearer TOKEN`: without it, a 401 with the headers `challenges(realm)`
    gives; GET /token hands out TOKEN; with it, every /v2/ path gets `ok`."""
    holder: list[ScriptedServer] = []

    def script(method: str, path: str, body: bytes, head: bytes) -> bytes:
        server = holder[0]
        if path.startswith("/token?") or path == "/token":
            doc = json.dumps({"token": TOKEN}).encode()
            return answer("200 OK", ["Content-Type: application/json"], doc)
        if f"Authorization: Bearer {TOKEN}".encode() in head:
            return PING if path == "/v2/" else ok
        realm = f"{server.scheme}://{server.address}/token"
        return answer(
            "401 Unauthorized",
            ["Docker-Distribution-Api-Version: registry/2.0", "Content-Type: application/json", *challenges(realm)],
            b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
        )

    holder.append(stack.serve(script, head=True))
    return holder[0]


@pytest.mark.parametrize("order", ["bearer-first", "bearer-last"])
def test_two_challenges_the_bearer_one_is_answered(stack: Stack, order: str) -> None:
    """`WWW-Authenticate: Basic` and `WWW-Authenticate: Bearer`, no credentials: the anonymous bearer
    token is fetched and used, whichever header came last; never a lone pick of Basic."""

    def challenges(realm: str) -> list[str]:
        basic, bearer = 'WWW-Authenticate: Basic realm="registry"', f'WWW-Authenticate: Bearer realm="{realm}"'
        return [bearer, basic] if order == "bearer-first" else [basic, bearer]

    ok = answer("200 OK", ["Content-Type: application/json"], b'{"repositories":["a"]}')
    server = _bearer_registry(stack, challenges, ok)
    with RegistryClient(server.address, timeout=TIMEOUT) as client:
        assert client.catalog() == ["a"]
    assert any(p.startswith("/token") for _, p in server.requests), server.requests
    assert not any(line.lower().startswith(b"authorization: basic") for line in header_lines(server))


LINK_NEXT = 'Link: </v2/_catalog?last=a&n=1000>; rel="next"'


@pytest.mark.parametrize(
    "links,outcome",
    [
        ([LINK_NEXT, 'Link: </docs/catalog>; rel="describedby"'], ["a", "b"]),
        (['Link: </docs/catalog>; rel="describedby"', LINK_NEXT], ["a", "b"]),
        ([LINK_NEXT, LINK_NEXT], ["a", "b"]),  # the same link twice is one link
        ([LINK_NEXT, 'Link: </v2/_catalog?last=zz&n=1000>; rel="next"'], IntegrityError),  # which next?
    ],
    ids=["next-then-other", "other-then-next", "same-next-twice", "two-different-next"],
)
def test_two_link_headers(stack: Stack, links: list[str], outcome: list[str] | type[JindrError]) -> None:
    def script(method: str, path: str, body: bytes) -> bytes:
        if path == "/v2/":
            return PING
        if path.startswith("/v2/_catalog") and "last=" not in path:
            return answer("200 OK", ["Content-Type: application/json", *links], b'{"repositories":["a"]}')
        if path.startswith("/v2/_catalog?last=a"):
            return answer("200 OK", ["Content-Type: application/json"], b'{"repositories":["b"]}')
        if path.startswith("/v2/_catalog?last=zz"):
            return answer("200 OK", ["Content-Type: application/json"], b'{"repositories":["zzz"]}')
        return answer("404 Not Found")  # /docs/catalog: never a page of the catalog

    server = stack.serve(script)
    with RegistryClient(server.address, timeout=TIMEOUT) as client:
        if isinstance(outcome, list):
            assert client.catalog() == outcome
        else:
            error, _, _ = failing(client.catalog)
            assert isinstance(error, outcome), f"{type(error).__name__}: {error}"
            one_line(error, "catalog")
    assert not any(p.startswith("/docs") for _, p in server.requests), server.requests


# ---- tokens and realms that are not what they claim ----------------------------------------------

BAD_TOKENS = {
    "crlf": "abc\r\nX-Injected: 1",
    "lf": "abc\nX-Injected: 1",
    "cr": "abc\rX-Injected: 1",
    "nul": "abc\x00def",
    "encoded-crlf": "abc%0d%0aX-Injected:%201",
    "space": "abc X-Injected: 1",
}


def _token_server(stack: Stack, token: str, field: str = "token") -> ScriptedServer:
    """A registry whose token server (itself, /token) hands out `token` (under `field` in its JSON);
    401 to everything else."""
    holder: list[ScriptedServer] = []

    def script(method: str, path: str, body: bytes) -> bytes:
        server = holder[0]
        if path.startswith("/token"):
            return answer("200 OK", ["Content-Type: application/json"], json.dumps({field: token}).encode())
        realm = f"{server.scheme}://{server.address}/token"
        return answer(
            "401 Unauthorized",
            ["Docker-Distribution-Api-Version: registry/2.0", f'WWW-Authenticate: Bearer realm="{realm}",service="t"'],
        )

    holder.append(stack.serve(script))
    return holder[0]


def _no_secret(message: str, token: str) -> None:
    for piece in {token, *(p for p in re.split(r"[\r\n\x00 ]+", token) if len(p) >= 3)}:
        assert piece not in message, (piece, message)


@pytest.mark.parametrize(
    "kind,field", [(kind, "token") for kind in BAD_TOKENS] + [(kind, "access_token") for kind in ("crlf", "nul")]
)
def test_a_token_that_is_not_a_token_never_reaches_the_wire(stack: Stack, kind: str, field: str) -> None:
    token = BAD_TOKENS[kind]
    server = _token_server(stack, token, field)
    with RegistryClient(server.address, timeout=TIMEOUT) as client:
        error, _, _ = failing(client.catalog)
    message = one_line(error, "token server", server.address)  # the realm's host: the token server
    _no_secret(message, token)
    assert injected(server) == [], injected(server)
    assert not any(b"abc" in line or line.lower().startswith(b"authorization") for line in header_lines(server))


BAD_REALMS = {
    "bare-cr": b'Bearer realm="{realm}\rX-Injected: 1",service="t"',
    "nul": b'Bearer realm="{realm}\x00X",service="t"',
    "crlf": b'Bearer realm="{realm}\r\nX-Injected: 1",service="t"',  # the header ends there
    "encoded-crlf": b'Bearer realm="{realm}%0d%0aX-Injected:%201",service="t"',
    "encoded-query": b'Bearer realm="{realm}?a=%0d%0aX-Injected:%201",service="t"',
    "encoded-service": b'Bearer realm="{realm}",service="t%0d%0aX-Injected:%201"',
}


@pytest.mark.parametrize("kind", list(BAD_REALMS))
def test_a_realm_that_smuggles_a_header_never_reaches_the_wire(stack: Stack, kind: str) -> None:
    """The token server answers only a well-formed `GET /token?...` (and then with a 404): whatever
    jindr makes of the realm, the outcome is one line naming the registry, and no request it sent
    carries a header the server chose."""
    holder: list[ScriptedServer] = []

    def script(method: str, path: str, body: bytes) -> bytes:
        server = holder[0]
        if path.startswith("/token"):
            return answer("404 Not Found", ["Content-Type: application/json"], b'{"errors":[]}')
        challenge = BAD_REALMS[kind].replace(b"{realm}", f"{server.scheme}://{server.address}/token".encode())
        head = answer("401 Unauthorized", ["Docker-Distribution-Api-Version: registry/2.0"])
        return head.replace(b"\r\n", b"\r\nWWW-Authenticate: " + challenge + b"\r\n", 1)

    server = stack.serve(script)
    holder.append(server)
    with RegistryClient(server.address, timeout=TIMEOUT) as client:
        error, _, _ = failing(client.catalog)
    one_line(error, server.address)
    assert injected(server) == [], injected(server)


# ---- redirects -----------------------------------------------------------------------------------

DATA = b"blob bytes behind a redirect\n"


def _redirecting(stack: Stack, location: Callable[[ScriptedServer], str]) -> ScriptedServer:
    """A bearer-protected registry whose GET of DATA's blob answers 307 to `location(registry)`;
    same-origin paths under /moved/ serve DATA to an authorised request."""
    holder: list[ScriptedServer] = []
    d = digest_of(DATA)

    def script(method: str, path: str, body: bytes, head: bytes) -> bytes:
        server = holder[0]
        if path.startswith("/token"):
            return answer("200 OK", ["Content-Type: application/json"], json.dumps({"token": TOKEN}).encode())
        if f"Authorization: Bearer {TOKEN}".encode() not in head:
            realm = f"{server.scheme}://{server.address}/token"
            return answer(
                "401 Unauthorized",
                ["Docker-Distribution-Api-Version: registry/2.0", f'WWW-Authenticate: Bearer realm="{realm}"'],
            )
        if path == "/v2/":
            return PING
        if path == f"/v2/x/blobs/{d}":
            return answer("307 Temporary Redirect", [f"Location: {location(server)}"])
        if path.startswith("/moved/"):
            return answer("200 OK", ["Content-Type: application/octet-stream"], DATA)
        return answer("404 Not Found")

    holder.append(stack.serve(script, head=True))
    return holder[0]


def test_a_redirect_to_another_port_drops_authorization(stack: Stack) -> None:
    storage = stack.serve(lambda m, p, b: answer("200 OK", ["Content-Type: application/octet-stream"], DATA))
    registry = _redirecting(stack, lambda r: f"{storage.scheme}://{stack.host}:{storage.port}/moved/{digest_of(DATA)}")
    with RegistryClient(registry.address, timeout=TIMEOUT) as client:
        assert client.get_blob("x", digest_of(DATA)) == DATA
    assert storage.requests == [("GET", f"/moved/{digest_of(DATA)}")], storage.requests
    sent = header_lines(storage)
    assert not any(line.lower().startswith(b"authorization") for line in sent), sent
    assert not any(TOKEN.encode() in line for line in sent), sent
    # The registry itself did get the token: the redirect, not a missing login, is why it was dropped.
    assert any(f"Authorization: Bearer {TOKEN}".encode() == line for line in header_lines(registry))


def test_a_same_origin_redirect_keeps_authorization(stack: Stack) -> None:
    registry = _redirecting(stack, lambda r: f"/moved/{digest_of(DATA)}")
    with RegistryClient(registry.address, timeout=TIMEOUT) as client:
        assert client.get_blob("x", digest_of(DATA)) == DATA
    moved = [h for h in registry.heads if h.startswith(b"GET /moved/")]
    assert moved and all(f"Authorization: Bearer {TOKEN}".encode() in h for h in moved), moved


def test_an_absolute_redirect_to_the_same_origin_keeps_authorization(stack: Stack) -> None:
    registry = _redirecting(stack, lambda r: f"{r.scheme}://{r.address}/moved/{digest_of(DATA)}")
    with RegistryClient(registry.address, timeout=TIMEOUT) as client:
        assert client.get_blob("x", digest_of(DATA)) == DATA
    moved = [h for h in registry.heads if h.startswith(b"GET /moved/")]
    assert moved and all(f"Authorization: Bearer {TOKEN}".encode() in h for h in moved), moved


def test_basic_credentials_never_follow_a_redirect_to_another_port(stack: Stack) -> None:
    """A password is worse to leak than a token: the Basic header stays with its registry too."""
    from jindr_nb.client.auth import Credentials

    basic = b"Authorization: Basic " + base64.b64encode(b"alice:s3cret-pass")
    storage = stack.serve(lambda m, p, b: answer("200 OK", ["Content-Type: application/octet-stream"], DATA))
    holder: list[ScriptedServer] = []

    def script(method: str, path: str, body: bytes, head: bytes) -> bytes:
        if basic not in head:
            return answer(
                "401 Unauthorized",
                ["Docker-Distribution-Api-Version: registry/2.0", 'WWW-Authenticate: Basic realm="registry"'],
            )
        if path == "/v2/":
            return PING
        return answer("307 Temporary Redirect", [f"Location: {storage.scheme}://{stack.host}:{storage.port}/moved/d"])

    holder.append(stack.serve(script, head=True))
    credentials = Credentials(username="alice", password="s3cret-pass")
    with RegistryClient(holder[0].address, timeout=TIMEOUT, credentials=credentials) as client:
        assert client.get_blob("x", digest_of(DATA)) == DATA
    assert storage.requests == [("GET", "/moved/d")], storage.requests
    sent = header_lines(storage)
    assert not any(line.lower().startswith(b"authorization") for line in sent), sent
    assert any(line == basic for line in header_lines(holder[0]))  # it was sent where it belongs


HOSTILE_LOCATIONS = {
    "bare-cr": b"/moved/x\rX-Injected: 1",
    "nul": b"/moved/x\x00y",
    "encoded-crlf": b"/moved/x%0d%0aX-Injected:%201",
}


@pytest.mark.parametrize("kind", list(HOSTILE_LOCATIONS))
def test_a_redirect_location_that_smuggles_a_header(stack: Stack, kind: str) -> None:
    """A 307 whose Location holds a control character (or an encoded one): followed without
    decoding it, or refused in one line; no request carries a header the server chose."""

    def script(method: str, path: str, body: bytes) -> bytes:
        if path == "/v2/":
            return PING
        if path.startswith("/moved/"):
            return answer("200 OK", ["Content-Type: application/octet-stream"], DATA)
        head = answer("307 Temporary Redirect", [])
        return head.replace(b"\r\n", b"\r\nLocation: " + HOSTILE_LOCATIONS[kind] + b"\r\n", 1)

    server = stack.serve(script)
    with RegistryClient(server.address, timeout=TIMEOUT) as client:
        try:
            got: bytes | BaseException = client.get_blob("x", digest_of(DATA))
        except Exception as exc:  # noqa: BLE001 - which kind it is, is checked below
            got = exc
    if isinstance(got, BaseException):
        one_line(got, digest_of(DATA))
    else:
        assert got == DATA
    assert injected(server) == [], injected(server)
    assert not any(b"\x00" in head or b"\rX" in head for head in server.heads), server.heads


def _uploads_to(stack: Stack, location: bytes) -> ScriptedServer:
    """A registry whose upload session (POST) answers 202 with `location`, as raw bytes."""

    def script(method: str, path: str, body: bytes) -> bytes:
        if path == "/v2/":
            return PING
        if method == "HEAD":
            return answer("404 Not Found")
        if method == "POST":
            head = answer("202 Accepted", ["Docker-Upload-UUID: u1", "Range: 0-0"])
            return head.replace(b"\r\n", b"\r\nLocation: " + location + b"\r\n", 1)
        return answer("201 Created", [f"Docker-Content-Digest: {digest_of(DATA)}"])

    return stack.serve(script)


@pytest.mark.parametrize("kind", list(HOSTILE_LOCATIONS))
def test_an_upload_location_that_smuggles_a_header(stack: Stack, kind: str) -> None:
    server = _uploads_to(stack, HOSTILE_LOCATIONS[kind].replace(b"/moved/", b"/v2/x/blobs/uploads/"))
    with RegistryClient(server.address, timeout=TIMEOUT) as client:
        try:
            client.upload_blob("x", DATA, digest_of(DATA))
        except Exception as exc:  # noqa: BLE001 - refusing is one defined outcome; checked below
            one_line(exc, digest_of(DATA))
    assert injected(server) == [], injected(server)
    assert not any(b"\x00" in head or b"\rX" in head for head in server.heads), server.heads


def test_a_media_type_with_a_line_break_is_refused_before_sending(stack: Stack) -> None:
    """A media type read from a hostile source's answer, say, PUT on: refused before it is sent."""
    server = stack.serve(lambda m, p, b: PING if p == "/v2/" else answer("201 Created"))
    with RegistryClient(server.address, timeout=TIMEOUT) as client:
        client.ping()
        error, _, _ = failing(lambda: client.put_manifest("x", "v1", MANIFEST, f"{OCI_MANIFEST}\r\nX-Injected: 1"))
    message = one_line(error, "Content-Type")
    assert "X-Injected" not in message, message
    assert injected(server) == [] and not any(m == "PUT" for m, _ in server.requests), server.requests


# ---- the CLI face --------------------------------------------------------------------------------

JINDR = str(Path(sys.executable).parent / "jindr")


def _cli(stack: Stack, address: str, *argv: str) -> tuple[int, str, str]:
    """`jindr -r ADDRESS ARGV`: the real executable on the loopback stack; `main()` in this process on
    the TLS one (its name resolves to 127.0.0.1 only here)."""
    if stack.tls is None:
        done = subprocess.run([JINDR, "-r", address, *argv], capture_output=True, text=True, timeout=60)
        return done.returncode, done.stdout, done.stderr
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["-r", address, *argv])
    return rc, out.getvalue(), err.getvalue()


def _refused_in_one_line(rc: int, out: str, err: str) -> str:
    assert rc == 1 and out == "", (rc, out, err)
    assert "Traceback" not in err, err
    lines = err.rstrip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("jindr: "), err
    return lines[0]


def test_cli_a_token_with_a_line_break(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JINDR_TIMEOUT", str(TIMEOUT))
    token = BAD_TOKENS["crlf"]
    server = _token_server(stack, token)
    started = time.monotonic()
    line = _refused_in_one_line(*_cli(stack, server.address, "ls"))
    assert time.monotonic() - started < 30
    assert "token server" in line and server.address in line, line
    _no_secret(line, token)
    assert injected(server) == []


def test_cli_a_negative_chunk_size(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JINDR_TIMEOUT", str(TIMEOUT))
    hostile = answer("200 OK", ["Content-Type: application/json", "Transfer-Encoding: chunked"], length=False)
    hostile += b"-1\r\n" + b'{"repositories":["' + b"a" * FLOOD
    server = stack.serve(lambda m, p, b: PING if p == "/v2/" else hostile)
    started = time.monotonic()
    line = _refused_in_one_line(*_cli(stack, server.address, "ls"))
    assert time.monotonic() - started < 30
    assert "catalog" in line and server.address in line, line
