"""A fault-injecting HTTP/1.1 reverse proxy in front of a real registry — a fake for faults only.

The real registry binary answers honestly; it cannot truncate a body, flip a byte of a blob on
the wire, send a 4 MiB+ manifest, loop its `Link` pagination, rate-limit with 429, fail with
500 on demand or stall. This proxy (stdlib only, loopback only) forwards everything to the real
registry and applies the first matching `Rule` of its plan:

    with FaultProxy(registry.address) as proxy:
        rule = proxy.plan(Rule("GET", r"/manifests/", "status", status=500, times=2))
        RegistryClient(proxy.address).get_manifest(...)   # two 500s, then the real answer
        assert rule.seen == 3 and rule.faulted == 2

Actions (a rule applies `times` times, None = forever; later matches pass through):
    truncate   the real answer with its Content-Length, cut after `after` body bytes, then close
    corrupt    the real answer with the body byte at `after` flipped (same length)
    huge       a 200 of `size` bytes instead (declared Content-Length, or chunked when `chunked`);
               size=None streams forever until the client hangs up
    link_loop  the real answer with `Link: <link>; rel="next"` (`link` may hold {n}: the request count,
               modulo `cycle` when set)
    status     an answer with `status` (and `Retry-After: retry_after` when given), an OCI error body
    applied    the request goes to the registry (which carries it out), then the answer is replaced by
               `status`, as a reverse proxy timing out on slow storage does (a 504 for a PUT that landed)
    drop       close the connection without answering
    stall      say nothing until the proxy closes (`after` set: the headers and `after` body bytes first)
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["FaultProxy", "Rule"]

_FILL = b"{" + b" " * (64 * 1024 - 1)  # a constant piece: streaming a huge body allocates nothing
_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"})


@dataclass
class Rule:
    """Requests whose method and path (with query) match get `action`, the first `times` times."""

    method: str
    path: str
    action: str
    times: int | None = None
    after: int = 0
    size: int | None = 0
    chunked: bool = False
    status: int = 500
    retry_after: str | None = None
    link: str = ""
    cycle: int = 0
    media_type: str = "application/vnd.oci.image.manifest.v1+json"
    seen: int = 0
    faulted: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def claim(self, method: str, path: str) -> bool:
        """Count a matching request; True when the fault applies to it."""
        if self.method not in ("*", method) or not re.search(self.path, path):
            return False
        with self._lock:
            self.seen += 1
            if self.times is not None and self.faulted >= self.times:
                return False
            self.faulted += 1
            return True


class FaultProxy:
    """Forwards 127.0.0.1:PORT to `upstream` (a real registry), applying the planned faults."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.rules: list[Rule] = []
        self.requests = 0
        self.heads: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers) of every request
        self.stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = False
        self._server.block_on_close = True  # server_close() joins every handler thread
        self._server.proxy = self  # type: ignore[attr-defined]
        self._server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def plan(self, *rules: Rule) -> Rule:
        """Replace the fault plan; return the first rule (the usual single-rule case)."""
        self.rules = list(rules)
        return rules[0] if rules else None  # type: ignore[return-value]

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving, wake stalled handlers, cut open connections and join every thread."""
        self.stopping.set()
        self._server.shutdown()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        self._thread.join()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def log_message(self, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.proxy: FaultProxy = self.server.proxy  # type: ignore[attr-defined]
        self.proxy._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        self.proxy._track(self.connection, False)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except OSError:  # the client hung up, or the proxy is closing
            self.close_connection = True

    def __getattr__(self, name: str):  # noqa: ANN204 - do_GET, do_PUT, ... all land in _serve
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def _serve(self) -> None:
        body = self._request_body()
        with self.proxy._lock:
            self.proxy.requests += 1
            self.proxy.heads.append((self.command, self.path, dict(self.headers.items())))
        rule = next((r for r in self.proxy.rules if r.claim(self.command, self.path)), None)
        action = rule.action if rule is not None else "pass"
        if action == "drop":
            self.close_connection = True
            return
        if action == "stall" and not rule.after:  # type: ignore[union-attr]
            self.proxy.stopping.wait()
            self.close_connection = True
            return
        if action == "status":
            self._answer_status(rule)  # type: ignore[arg-type]
            return
        if action == "applied":
            self._forward(body)
            self._answer_status(rule)  # type: ignore[arg-type]
            return
        if action == "huge":
            self._answer_huge(rule)  # type: ignore[arg-type]
            return
        status, reason, headers, data = self._forward(body)
        if action == "link_loop":
            headers = [(k, v) for k, v in headers if k.lower() != "link"]
            n = rule.seen % rule.cycle if rule.cycle else rule.seen  # type: ignore[union-attr]
            headers.append(("Link", f'<{rule.link.format(n=n)}>; rel="next"'))  # type: ignore[union-attr]
        if action == "corrupt" and len(data) > rule.after:  # type: ignore[union-attr]
            flipped = bytearray(data)
            flipped[rule.after] ^= 0xFF  # type: ignore[union-attr]
            data = bytes(flipped)
        self.send_response(status, reason)
        for key, value in headers:
            self.send_header(key, value)
        if self.command != "HEAD" and not any(k.lower() == "content-length" for k, _ in headers):
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if action in ("truncate", "stall"):
            self.wfile.write(data[: rule.after])  # type: ignore[union-attr]
            self.wfile.flush()
            if action == "stall":
                self.proxy.stopping.wait()
            self.close_connection = True
            return
        self.wfile.write(data)

    def _request_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        host, _, port = self.proxy.upstream.rpartition(":")
        upstream = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP and k.lower() != "content-length"}
            if body or self.command in ("PUT", "POST", "PATCH"):
                headers["Content-Length"] = str(len(body))
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            resp = upstream.getresponse()
            data = resp.read()
            kept = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP]
            if resp.getheader("Transfer-Encoding"):
                kept = [(k, v) for k, v in kept if k.lower() != "content-length"]
            return resp.status, resp.reason, kept, data
        finally:
            upstream.close()

    def _answer_status(self, rule: Rule) -> None:
        codes = {429: "TOOMANYREQUESTS", 503: "UNAVAILABLE"}
        body = (
            b'{"errors":[{"code":"%s","message":"injected by the fault proxy"}]}'
            % codes.get(rule.status, "UNKNOWN").encode()
        )
        self.send_response(rule.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        if rule.retry_after is not None:
            self.send_header("Retry-After", rule.retry_after)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _answer_huge(self, rule: Rule) -> None:
        self.send_response(200)
        self.send_header("Content-Type", rule.media_type)
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        if rule.chunked or rule.size is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(rule.size))
        self.end_headers()
        if self.command == "HEAD":
            return
        left = rule.size
        try:
            while (left is None or left > 0) and not self.proxy.stopping.is_set():
                piece = _FILL if left is None or left >= len(_FILL) else _FILL[:left]
                if rule.chunked or rule.size is None:
                    self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                else:
                    self.wfile.write(piece)
                if left is not None:
                    left -= len(piece)
            if rule.chunked or rule.size is None:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:  # the client refused the rest and hung up: what a bounded client does
            pass
        self.close_connection = True
