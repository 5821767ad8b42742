"""The loopback stack: pooled `http.client` connections to a plain-HTTP registry on this machine.

Listing is thousands of small GETs, and on a 2-core machine the client's CPU per request is taken
from the registry it talks to: `http.client` costs a few per cent more than a hand-written parser
did, and far less than httpx. `http.client` parses every status line, header and chunk; this
module adds only what jindr needs on top:

- interim answers (1xx) are skipped, whatever their code (`http.client` skips only 100);
- every body read is bounded by the caller's limit whatever the framing says: a chunk size that
  `int(..., 16)` takes but no server sends (negative, absurd) is `Malformed`, one larger than what
  is left of the limit `TooLarge`, before a byte of it is read (`http.client` alone reads to the
  end of the stream on a chunk size of -1);
- an idle connection is checked before reuse: one the registry closed (or that holds stray bytes,
  say after a body longer than its Content-Length) is dropped, never read as the next answer;
- a request that must not be sent twice (POST, PATCH) whose connection drops raises `Unanswered`.

`request` hands back a whole answer of any status (the transport applies auth, retries and error
mapping to it as to an httpx answer), or None when this stack cannot speak for the registry and
sending again is harmless. `get` is the listing's shortcut: a 200 or None, `Busy` for a retryable
status. A timeout raises `TimeoutError`. `open_body` and `send_head`/`finish` serve the kernel
relay (`relay.py`): the head parsed by `http.client`, the body moved by `os.splice` on its socket.
"""

from __future__ import annotations

import http.client
import select
import socket
import threading
import time
from collections.abc import Mapping

from .transport import RETRY_STATUS, Headers, Response

__all__ = ["IDLE_SECONDS", "Body", "Busy", "Malformed", "Pool", "TooLarge", "Unanswered"]

IDLE_SECONDS = 20.0  # keep-alive connections idle longer than this are not reused
_MAX_INTERIM = 8
_STEP = 65536  # bytes per read of a body that runs to the end of the connection


class Busy(Exception):
    """The registry answered a retryable status; `retry_after` is its Retry-After header, if any."""

    def __init__(self, status: int, retry_after: str | None) -> None:
        super().__init__(status, retry_after)
        self.status = status
        self.retry_after = retry_after


class Unanswered(Exception):
    """A request that must not be sent twice went out, and no readable answer came back."""


class Malformed(Exception):
    """An answer no HTTP/1.1 server sends: said once, not asked again (not a ValueError: http.client
    turns those into a truncated read)."""


class TooLarge(Exception):
    """A chunked body that says, before it is read, that it is longer than the caller's limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


#: A chunk size no answer jindr reads could have (a TiB): malformed, not merely too large.
_ABSURD = 1 << 40


class _Answer(http.client.HTTPResponse):
    """`http.client`'s response with jindr's two bounds: interim answers skipped, chunk sizes
    within what is left of the caller's limit (`budget`, set before the body is read)."""

    budget = limit = 1 << 20

    def _read_status(self) -> tuple[str, int, str]:
        for _ in range(_MAX_INTERIM):
            version, status, reason = super()._read_status()  # type: ignore[misc]  # stdlib hook, 3.11-3.13
            if not 100 < status < 200:  # 100 Continue: http.client's own loop skips it
                return version, status, reason
            http.client.parse_headers(self.fp)  # 103 Early Hints and the like: their headers go too
        raise Malformed(f"more than {_MAX_INTERIM} interim answers")

    def _read_next_chunk_size(self) -> int:
        try:
            size = int(super()._read_next_chunk_size())  # type: ignore[misc]  # stdlib hook, 3.11-3.13
        except ValueError:
            raise Malformed("a chunk size that is not a hex number") from None
        if size < 0 or size >= _ABSURD:
            self.close()
            raise Malformed(f"a chunk size of {size} bytes")
        if size > self.budget:
            self.close()
            raise TooLarge(self.limit)
        self.budget -= size
        return size


class _Conn(http.client.HTTPConnection):
    response_class = _Answer
    idle_since = 0.0


class _Unbuffered:
    """Hands `http.client` an unbuffered reader of `sock` (its `makefile` is all a response uses)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def makefile(self, mode: str) -> socket.SocketIO:
        return self.sock.makefile("rb", buffering=0)


class Body:
    """A 200 answer's body still on the wire (from `open_body`), `length` bytes long, every byte of
    it waiting on `sock`."""

    def __init__(self, conn: _Conn, resp: http.client.HTTPResponse, length: int) -> None:
        assert conn.sock is not None
        self.conn, self.resp, self.length = conn, resp, length
        self.sock = conn.sock
        self.taken = 0  # body bytes handed on so far

    @property
    def done(self) -> bool:
        return self.taken == self.length

    def close(self) -> None:
        """Closed, not pooled: http.client did not read this body, so its connection is not in step."""
        self.resp.close()
        self.conn.close()


class Pool:
    """Pooled keep-alive connections to one registry; thread-safe."""

    def __init__(self, netloc: str, *, timeout: float, connect_timeout: float = 5.0, size: int = 16) -> None:
        self.netloc = netloc
        host, _, port = netloc.rpartition(":") if not netloc.endswith("]") else (netloc, "", "")
        if not host:
            host, port = netloc, ""
        self.host = host.strip("[]")
        self.port = int(port) if port.isdigit() else 80
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout, timeout)
        self.size = max(1, size)
        self._idle: list[_Conn] = []
        self._lock = threading.Lock()
        self._closed = False

    def url(self, path: str) -> str:
        return f"http://{self.netloc}{path}"

    def get(self, path: str, headers: Mapping[str, str], limit: int) -> tuple[Headers, bytes] | None:
        """(headers, body) of a 200 answer within `limit` bytes, else None.

        Raises `Busy` for a retryable status and `TimeoutError` when the registry stops answering.
        """
        answer = self.request("GET", path, headers, b"", limit)
        if answer is None:
            return None
        if answer.status == 200:
            return answer.headers, answer.content
        if answer.status in RETRY_STATUS:
            raise Busy(answer.status, answer.headers.get("retry-after") or None)
        return None

    def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes = b"",
        limit: int = 1 << 20,
        *,
        resend: bool = True,
    ) -> Response | None:
        """The whole answer to one request (any status), or None when this stack cannot tell.

        None means "send it through the general path": only offered when the request never
        reached the registry, or when `resend` says sending it twice is harmless. Otherwise a
        request that went out without a readable answer raises `Unanswered`. Raises
        `TimeoutError` when the registry stops answering, `Malformed` for an answer no server sends.
        """
        length = len(body) if body or method in ("POST", "PUT", "PATCH") else None
        for attempt in (0, 1):
            conn, reused = self._acquire()
            if conn is None:
                return None  # no connection: nothing was sent
            try:
                try:
                    self._put(conn, method, path, headers, length)
                    conn.endheaders(body or None)
                    resp = conn.getresponse()
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                    # Closed before any answer: an idle keep-alive connection the registry dropped.
                    conn.close()
                    if not resend:
                        raise Unanswered(f"the connection closed before an answer ({type(exc).__name__})") from None
                    if reused and attempt == 0:
                        continue  # once more, on a new connection
                    return None
                content = _read_whole(resp, limit)
            except (TimeoutError, Malformed, TooLarge):
                conn.close()
                raise
            except (http.client.HTTPException, OSError) as exc:
                # Broken mid-answer, or not HTTP: the general path asks again, within the retry budget.
                conn.close()
                if not resend:
                    raise Unanswered(f"the answer broke off ({type(exc).__name__})") from None
                return None
            if content is None:
                conn.close()
                if not resend:
                    raise Unanswered(f"an answer over {limit} bytes")
                return None
            self._done(conn, resp)
            return Response(resp.status, Headers(resp.msg.items()), content, method, self.url(path))
        return None

    # ---- the kernel relay's two ends -------------------------------------------------------

    def open_body(self, path: str, headers: Mapping[str, str]) -> Body | None:
        """GET `path` and stop after the head: a 200 with a Content-Length body gives its `Body`.

        The head is read by `http.client` through an unbuffered reader, so not one body byte is
        taken off the socket: the relay splices all of them. None for anything else (a redirect, a
        challenge, an error, a chunked body: the caller streams it through the general path
        instead). Raises `Busy` and `TimeoutError` as `get`.
        """
        conn, _ = self._acquire()
        if conn is None:
            return None
        try:
            self._put(conn, "GET", path, headers, None)
            conn.endheaders()
            assert conn.sock is not None
            resp = _Answer(_Unbuffered(conn.sock), method="GET")  # type: ignore[arg-type]  # makefile only
            resp.begin()
            if resp.status in RETRY_STATUS:
                raise Busy(resp.status, resp.getheader("Retry-After"))
            length = resp.length
            if resp.status != 200 or resp.chunked or length is None:
                conn.close()
                return None
            return Body(conn, resp, length)
        except (TimeoutError, Busy):
            conn.close()
            raise
        except (http.client.HTTPException, OSError, Malformed, TooLarge):
            conn.close()
            return None

    def send_head(self, method: str, path: str, headers: Mapping[str, str], length: int) -> _Conn | None:
        """A new connection with a request's head sent (Content-Length: `length`): the body is the
        caller's to write on `conn.sock`, then `finish` reads the answer. None: no connection."""
        conn = self._connect()
        if conn is None:
            return None
        try:
            self._put(conn, method, path, headers, length)
            conn.endheaders()
        except BaseException:
            conn.close()
            raise
        return conn

    def finish(self, conn: _Conn, method: str, path: str, *, timeout: float | None = None) -> Response:
        """The whole answer to the request `send_head` started; the connection pooled or closed.

        Raises OSError, `http.client.HTTPException` or `Malformed` when no answer can be read.
        """
        try:
            if timeout is not None and conn.sock is not None:
                conn.sock.settimeout(timeout)
            resp = conn.getresponse()
            try:
                content = _read_whole(resp, 1 << 20)
            except TooLarge:
                content = None
            if content is None:
                raise Malformed("an answer over 1 MiB to an upload")
        except BaseException:
            conn.close()
            raise
        if timeout is not None and conn.sock is not None:
            conn.sock.settimeout(self.timeout)
        self._done(conn, resp)
        return Response(resp.status, Headers(resp.msg.items()), content, method, self.url(path))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # ---- connections --------------------------------------------------------------------------

    def _put(self, conn: _Conn, method: str, path: str, headers: Mapping[str, str], length: int | None) -> None:
        """The request's head, built by http.client (which adds Host); header values were checked
        where they were built (`transport.check_headers`)."""
        conn.putrequest(method, path, skip_accept_encoding=True)
        for key, value in headers.items():
            if key.lower() != "content-length":
                conn.putheader(key, value)
        if length is not None:
            conn.putheader("Content-Length", str(length))

    def _connect(self) -> _Conn | None:
        with self._lock:
            if self._closed:
                return None
        conn = _Conn(self.host, self.port, timeout=self.connect_timeout)
        try:
            conn.connect()  # TCP_NODELAY set by http.client
        except OSError:
            conn.close()
            return None
        assert conn.sock is not None
        conn.sock.settimeout(self.timeout)
        conn.timeout = self.timeout
        return conn

    def _acquire(self) -> tuple[_Conn | None, bool]:
        stale: list[_Conn] = []
        with self._lock:
            # A connection idle for long may have been dropped silently by a NAT or a firewall on
            # the way; a request on it would only find out after the whole timeout.
            now = time.monotonic()
            while self._idle and now - self._idle[-1].idle_since > IDLE_SECONDS:
                stale.append(self._idle.pop())
            found = self._idle.pop() if self._idle else None
        for conn in stale:
            conn.close()
        while found is not None:
            # An idle connection with something to read has been closed by the registry (or holds
            # stray bytes): never send on it, so a request that must not repeat is sent only once,
            # and stray bytes are never read as the next answer.
            if found.sock is not None:
                poller = select.poll()
                poller.register(found.sock, select.POLLIN)
                if not poller.poll(0):
                    return found, True
            found.close()
            with self._lock:
                found = self._idle.pop() if self._idle else None
        return self._connect(), False

    def _done(self, conn: _Conn, resp: http.client.HTTPResponse) -> None:
        """Back to the pool when the answer was whole and the connection stays open, else closed."""
        if resp.will_close or conn.sock is None or not resp.isclosed():
            conn.close()
            return
        with self._lock:
            if not self._closed and len(self._idle) < self.size:
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
                return
        conn.close()


def _read_whole(resp: http.client.HTTPResponse, limit: int) -> bytes | None:
    """The body within `limit` bytes (None when longer), whatever the framing says.

    A body that breaks off raises `http.client.IncompleteRead` or OSError (worth asking again); one
    whose framing no server sends (a chunk-size line of 64 KiB, say) raises `Malformed`.
    """
    try:
        return _read_framed(resp, limit)
    except http.client.IncompleteRead:
        raise
    except http.client.HTTPException as exc:
        resp.close()
        raise Malformed(f"a body framed as no HTTP/1.1 server frames one ({type(exc).__name__})") from None


def _read_framed(resp: http.client.HTTPResponse, limit: int) -> bytes | None:
    if resp.chunked:
        if isinstance(resp, _Answer):
            resp.budget = resp.limit = limit  # each chunk size is checked against what is left before it is read
        return resp.read()
    if resp.length is not None:
        return None if resp.length > limit else resp.read()
    parts: list[bytes] = []  # no length: the body runs to the end of the connection
    total = 0
    while piece := resp.read(_STEP):
        total += len(piece)
        if total > limit:
            return None
        parts.append(piece)
    return b"".join(parts)
