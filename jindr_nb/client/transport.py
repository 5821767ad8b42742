"""The send loop: one request's auth challenge, retries, redirects, on whichever stack fits the peer.

Two stacks, each maintained by others: `loopback.Pool` (`http.client` connections) for plain-HTTP
registries on this machine, and one `httpx.Client` for everything else (TLS, remote hosts, proxies,
redirects, an injected transport). Both answer with a `Response`, the one answer type the rest of
the client reads. Every header jindr sends passes `check_headers` first, whichever stack sends it.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from ..errors import IntegrityError, RegistryError, RegistryUnreachable, Unauthorized, Unsupported
from ..refs import is_loopback
from .auth import Challenge, Credentials, docker_credentials, fetch_token, parse_challenge

if TYPE_CHECKING:
    import ssl

    import httpx

    from .loopback import Pool

__all__ = [
    "IDEMPOTENT",
    "RETRY_STATUS",
    "Headers",
    "Response",
    "Transport",
    "backoff",
    "check_headers",
    "check_target",
    "retry_after",
    "same_origin",
]

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
#: The one list of statuses worth asking again (after Retry-After, or a backoff).
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 10.0  # a registry asking for a longer wait gets an error that says so, not a hang
MAX_ANSWER = 16 * 1024 * 1024  # a whole answer (not a blob) larger than this is refused
_REDIRECTS = (301, 302, 303, 307, 308)
_MAX_REDIRECTS = 5
#: Never on the wire inside a header or the request line: CR or LF would end it early, NUL is refused.
_UNSAFE = re.compile(r"[\r\n\x00]")
_USER_AGENT = "jindr_nb"


class Headers:
    """An answer's headers: every value kept (duplicates too), names read case-insensitively."""

    __slots__ = ("_items", "_first")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items = [(k.lower(), v) for k, v in items]
        self._first: dict[str, str] = {}
        for k, v in self._items:
            self._first.setdefault(k, v)

    def get(self, name: str, default: str = "") -> str:
        """The first value of `name`, or `default`."""
        return self._first.get(name.lower(), default)

    def get_all(self, name: str) -> list[str]:
        """Every value of `name`, in the order they came."""
        name = name.lower()
        return [v for k, v in self._items if k == name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class Response:
    """A whole answer from either stack."""

    __slots__ = ("status", "headers", "content", "method", "url")

    def __init__(self, status: int, headers: Headers, content: bytes, method: str, url: str) -> None:
        self.status, self.headers, self.content, self.method, self.url = status, headers, content, method, url

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.method} {self.url}>"


def check_headers(headers: Mapping[str, str], peer: str) -> None:
    """Refuse a header name or value holding CR, LF or NUL (it would put text of someone else's
    choosing on the wire); the error names the header, never the value (it may be a secret)."""
    for name, value in headers.items():
        if _UNSAFE.search(name) or _UNSAFE.search(value):
            raise IntegrityError(
                f"refusing to send a {name if not _UNSAFE.search(name) else 'header'} header to {peer}: "
                "its value holds a control character (CR, LF or NUL; from a registry's or token server's answer)",
                registry=peer,
            )


def check_target(url: str, peer: str, what: str) -> None:
    """Refuse a request target with a space or a control character (from a Location or Link header);
    the error names what the request was for, never the URL."""
    if _UNSAFE.search(url) or " " in url:
        raise IntegrityError(
            f"refusing to send {what} to {peer}: its URL holds a space or a control character "
            "(from the registry's Location or Link header)",
            registry=peer,
        )


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)


def same_origin(a: str, b: str) -> bool:
    """Same scheme, host and port (an absent port is the scheme's default)."""
    return _origin(a) == _origin(b)


def retry_after(value: str | None) -> float:
    """Seconds a Retry-After header asks for (0 for none, or for an HTTP date)."""
    text = (value or "").strip()
    if text.isascii() and text.isdigit():  # "²".isdigit() is True too
        return float(text)
    return 0.0


def backoff(attempt: int, at_least: float = 0.0) -> None:
    delay = max(at_least, min(2.0, 0.1 * 2 ** (attempt - 1)) * (0.5 + random.random()))
    time.sleep(delay)


_TLS_CONTEXT: ssl.SSLContext | None = None


def tls_context(scheme: str, verify: bool) -> ssl.SSLContext | bool:
    """Certificate verification for https, built once per process (loading the CA store costs ~0.1 s).

    A plain-http client (a loopback registry, or one listed as insecure) never speaks TLS, so it
    skips the CA store altogether.
    """
    global _TLS_CONTEXT
    if scheme == "http" or not verify:
        return False
    if _TLS_CONTEXT is None:
        import ssl

        _TLS_CONTEXT = ssl.create_default_context()
    return _TLS_CONTEXT


def proxied(scheme: str, registry: str) -> bool:
    """A proxy from the environment applies to `registry` (never to one on this machine)."""
    if is_loopback(registry):
        return False
    names = ("https_proxy", "all_proxy") if scheme == "https" else ("http_proxy", "all_proxy")
    if not any(os.environ.get(n) or os.environ.get(n.upper()) for n in names):
        return False  # the common case, decided without importing urllib.request
    from urllib.request import proxy_bypass  # NO_PROXY (read from the environment on Linux)

    host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    return not proxy_bypass(host.lower().strip("[]"))


class _Counter:
    """`next(counter)` counts one, thread-safely; `value` reads the count (itertools.count's value
    can only be read through pickling support, deprecated in 3.12 and gone in 3.14)."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def __next__(self) -> int:
        with self._lock:
            self.value += 1
            return self.value


class Transport:
    """One registry's two stacks, its credentials and tokens, and the send loop over them."""

    def __init__(
        self,
        registry: str,
        scheme: str,
        *,
        transport: httpx.BaseTransport | None,
        verify: bool | ssl.SSLContext,
        credentials: Credentials | None,
        docker_config: str | None,
        timeout: float,
        connect_timeout: float,
        retries: int,
        pool: int,
    ) -> None:
        self.registry = registry
        self.scheme = scheme
        self.base_url = f"{scheme}://{registry}"
        self.retries = retries
        self.timeout = timeout
        self.checked = False  # GET /v2/ answered as a registry would
        self.sent = _Counter()
        self.lock = threading.Lock()
        self._credentials = credentials
        self._credentials_loaded = credentials is not None
        self._docker_config = docker_config
        self._challenge: Challenge | None = None
        self._tokens: dict[str, str] = {}  # bearer tokens by scope: the one token cache
        self._injected = transport
        self.http_options: dict[str, Any] = {
            "timeout": timeout,
            "connect": connect_timeout,
            "pool": pool,
            "verify": verify,
        }
        self._http_client: httpx.Client | None = None
        # The standard library's connections for plain HTTP on this machine; an injected transport
        # (tests, fault injection) must see every request, and a proxy from the environment is httpx's.
        # Built on first use, like `http`: a listing answered from the registry's storage sends no
        # request, and importing `http.client` (with `email`) is ~40 ms of a 10,000-tag listing.
        self._loopback_wanted = (
            transport is None and scheme == "http" and is_loopback(registry) and not proxied(scheme, registry)
        )
        self._loopback: Pool | None = None

    @property
    def loopback(self) -> Pool | None:
        """The `http.client` pool for a plain-HTTP registry on this machine, else None."""
        if self._loopback is None and self._loopback_wanted:
            from .loopback import Pool

            with self.lock:
                if self._loopback is None:
                    o = self.http_options
                    self._loopback = Pool(
                        self.registry, timeout=o["timeout"], connect_timeout=o["connect"], size=o["pool"]
                    )
        return self._loopback

    @property
    def http(self) -> httpx.Client:
        # Built on first use: the loopback hot path never needs it, and importing httpx costs ~0.1 s.
        if self._http_client is None:
            import httpx

            with self.lock:
                if self._http_client is None:
                    o = self.http_options
                    verify = o["verify"]  # a context of the caller's (a CA jindr made), or True/False
                    self._http_client = httpx.Client(
                        base_url=self.base_url,
                        transport=self._injected,
                        timeout=httpx.Timeout(o["timeout"], connect=o["connect"]),
                        limits=httpx.Limits(max_connections=o["pool"], max_keepalive_connections=o["pool"]),
                        follow_redirects=False,
                        verify=verify if not isinstance(verify, bool) else tls_context(self.scheme, verify),
                        headers={"User-Agent": _USER_AGENT},
                    )
        return self._http_client

    def close(self) -> None:
        with self.lock:  # a pool being built in another thread is closed too
            pool = self._loopback
        if pool is not None:
            pool.close()
        if self._http_client is not None:
            self._http_client.close()

    # ---- auth ------------------------------------------------------------------------------

    def auth_headers(self, scope: str) -> dict[str, str]:
        challenge = self._challenge
        if challenge is None:
            return {}
        if challenge.scheme == "basic":
            creds = self.creds()
            return {"Authorization": creds.basic_header()} if creds else {}
        if challenge.scheme == "bearer":
            with self.lock:
                token = self._tokens.get(scope)
            if token is None:
                token = fetch_token(self.http, challenge, scope, self.creds(), self.registry)
                with self.lock:
                    self._tokens[scope] = token
            return {"Authorization": f"Bearer {token}"}
        return {}

    def answer_challenge(self, headers: Headers, scope: str) -> None:
        offered = [parse_challenge(h) for h in headers.get_all("WWW-Authenticate") if h.strip()]
        # Several challenges may come (one header each): Bearer is preferred, then Basic.
        known = [c for c in offered if c.scheme in ("bearer", "basic")]
        challenge = (sorted(known, key=lambda c: c.scheme != "bearer") or offered or [Challenge("basic", {})])[0]
        if challenge.scheme not in ("basic", "bearer"):
            raise Unauthorized(
                f"{self.registry} asks for {challenge.scheme} authentication, which jindr does not support",
                registry=self.registry,
            )
        creds = self.creds()
        if challenge.scheme == "basic" and creds is None:
            raise Unauthorized(
                f"{self.registry} needs credentials: run `docker login {self.registry}` "
                "(or set JINDR_USERNAME and JINDR_PASSWORD_ENV)",
                registry=self.registry,
                status=401,
            )
        self._challenge = challenge
        if challenge.scheme == "bearer":
            token = fetch_token(self.http, challenge, scope, creds, self.registry)
            with self.lock:
                self._tokens[scope] = token

    def creds(self) -> Credentials | None:
        if not self._credentials_loaded:
            self._credentials = docker_credentials(self.registry, self._docker_config)
            self._credentials_loaded = True
        return self._credentials

    def ping(self) -> dict[str, str]:
        """GET /v2/: succeed when a distribution registry answers; return its identifying headers."""
        fast = None
        if self.loopback is not None:
            fast = self._loopback_get("/v2/", {"User-Agent": _USER_AGENT}, 65536, "GET /v2/")[0]
        if fast is not None:
            status, headers = 200, fast[0]
        else:
            resp = self.send("GET", "/v2/", ok=(200, 401), scope="", check_registry=False, auth=False)
            status, headers = resp.status, resp.headers
        api = headers.get("Docker-Distribution-Api-Version")
        ctype = headers.get("Content-Type")
        if not api.startswith("registry/2") and "json" not in ctype:
            raise RegistryUnreachable(
                f"something answers at {self.registry} but it is not a registry (GET /v2/ gave {status} "
                f"{ctype or 'no content type'}); check the address",
                registry=self.registry,
                hint="`-r HOST:PORT` names the registry",
                status=status,
                method="GET",
                url=self.base_url + "/v2/",
            )
        self.checked = True
        return {"api_version": api, "status": str(status)}

    # ---- the send loop ---------------------------------------------------------------------

    def loopback_path(self, url: str) -> str | None:
        """The path (and query) of `url` when the loopback stack can send to it, else None."""
        if self.loopback is None:
            return None
        if url.startswith("/"):
            return url
        if url.startswith(self.base_url + "/"):
            return url[len(self.base_url) :]
        return None

    def url(self, path_or_url: str) -> str:
        return urljoin(self.base_url + "/", path_or_url)

    def send(
        self,
        method: str,
        url: str,
        *,
        ok: tuple[int, ...],
        scope: str,
        what: str = "",
        headers: dict[str, str] | None = None,
        content: bytes | Iterable[bytes] | None = None,
        retry: bool | None = None,
        follow: bool = False,
        auth: bool = True,
        check_registry: bool = True,
    ) -> Response:
        """The whole answer (status in `ok`) to a request, with auth, retries and redirects applied."""
        with self.exchange(
            method,
            url,
            ok=ok,
            scope=scope,
            what=what,
            headers=headers,
            content=content,
            retry=retry,
            follow=follow,
            auth=auth,
            check_registry=check_registry,
        ) as (resp, _):
            return resp

    @contextmanager
    def exchange(
        self,
        method: str,
        url: str,
        *,
        ok: tuple[int, ...],
        scope: str,
        what: str = "",
        headers: dict[str, str] | None = None,
        content: bytes | Iterable[bytes] | None = None,
        retry: bool | None = None,
        follow: bool = False,
        auth: bool = True,
        check_registry: bool = True,
        tried: int = 0,
        stream: bool = False,
    ) -> Iterator[tuple[Response, httpx.Response | None]]:
        """Send with auth, retries and redirects; yield (answer, open httpx response) for a status in `ok`.

        `stream`: the body stays on the wire (httpx only) for the caller to read from the second item;
        otherwise the answer is whole and the second item None. `tried` attempts of the retry budget
        are spent already (by the loopback stack's first try, or a truncated body).
        """
        from .errors import for_status

        if check_registry and not self.checked:
            self.ping()
        check_target(url, self.registry, what or "a request")
        what = what or url
        retry = method in IDEMPOTENT if retry is None else retry
        attempts = (self.retries + 1) if retry else 1
        authed = False
        attempt = min(tried, attempts - 1)
        path = None if stream or not isinstance(content, bytes | None) else self.loopback_path(url)
        # An absolute URL (an upload's Location) on another origin never gets this registry's credentials.
        auth = auth and (url.startswith("/") or same_origin(url, self.base_url))
        while True:
            attempt += 1
            hdrs = dict(headers or {})
            if auth:
                hdrs.update(self.auth_headers(scope))
            check_headers(hdrs, self.registry)
            resp: Response | None = None
            raw: httpx.Response | None = None
            if path is not None:
                body = content if isinstance(content, bytes) else b""
                resp = self._loopback_send(method, path, hdrs, body, what, resend=retry)
                if resp is None or (follow and resp.status in _REDIRECTS):
                    resp, path = None, None  # not for this stack: httpx from here on
            if resp is None:
                raw = self._http_send(method, url, hdrs, content, follow, (attempt, attempts), what)
                if raw is None:
                    continue  # a transport error worth another attempt, after its backoff
                keep = stream and raw.status_code in ok and not (raw.status_code == 401 and auth and not authed)
                try:
                    resp = self._whole(raw, what, body=not keep, quietly=raw.status_code not in ok)
                except BaseException:
                    raw.close()
                    raise
                if not keep:
                    raw.close()
                    raw = None
            if resp.status == 401 and auth and not authed:
                if raw is not None:
                    raw.close()
                self.answer_challenge(resp.headers, scope)
                authed = True
                attempt -= 1
                continue
            wait = retry_after(resp.headers.get("Retry-After"))
            if resp.status in RETRY_STATUS and attempt < attempts and wait <= MAX_RETRY_AFTER:
                if raw is not None:
                    raw.close()
                backoff(attempt, wait)
                continue
            try:
                if resp.status not in ok:
                    raise for_status(resp, self.registry, what)
                yield resp, raw
            finally:
                if raw is not None:
                    raw.close()
            return

    def _whole(self, raw: httpx.Response, what: str, *, body: bool, quietly: bool) -> Response:
        """A `Response` for an httpx answer: its body read (at most MAX_ANSWER bytes) unless `body` is False.

        `quietly`: an error answer, whose body is only read for its message; one that breaks off
        leaves the message empty.
        """
        import httpx

        from .errors import for_transport

        content = b""
        if body and raw.request.method != "HEAD" and raw.status_code not in (204, 304):
            try:
                content = read_capped(raw, MAX_ANSWER, what, self.registry, self.http)
            except (httpx.HTTPError, RegistryError) as exc:
                if not quietly:
                    if isinstance(exc, RegistryError):
                        raise
                    raise for_transport(exc, self.registry, what, raw.request.method, str(raw.url)) from exc
        return Response(raw.status_code, Headers(raw.headers.multi_items()), content, raw.request.method, str(raw.url))

    def _loopback_send(
        self, method: str, path: str, headers: dict[str, str], body: bytes, what: str, *, resend: bool
    ) -> Response | None:
        """The loopback stack's whole answer; None: send it through httpx (only when that is harmless)."""
        from .errors import for_loopback
        from .loopback import Malformed, TooLarge, Unanswered

        assert self.loopback is not None
        next(self.sent)
        try:
            return self.loopback.request(
                method, path, {"User-Agent": _USER_AGENT, **headers}, body, MAX_ANSWER, resend=resend
            )
        except TooLarge as exc:
            raise Unsupported(f"{what}: an answer larger than {exc.limit} bytes", registry=self.registry) from None
        except Malformed as exc:
            raise IntegrityError(
                f"{what}: {self.registry} sent a malformed answer ({exc})",
                registry=self.registry,
                method=method,
                url=self.base_url + path,
            ) from None
        except Unanswered as exc:
            raise RegistryUnreachable(
                f"{self.registry} closed the connection during {what} without an answer ({exc}); "
                "check the registry, then run the command again",
                registry=self.registry,
                method=method,
                url=self.base_url + path,
            ) from None
        except OSError as exc:  # a timeout: a stalled registry is not asked again
            raise for_loopback(exc, self.registry, what, method, self.base_url + path) from None

    def _http_send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | Iterable[bytes] | None,
        follow: bool,
        attempt: tuple[int, int],
        what: str,
    ) -> httpx.Response | None:
        """One attempt through httpx (redirects followed when asked); None: back off and try again."""
        import httpx

        from .errors import for_transport

        target = url
        try:
            next(self.sent)
            req = self.http.build_request(method, url, headers=headers, content=content)
            target = str(req.url)
            resp = self.http.send(req, stream=True)
            redirects = 0
            while follow and resp.status_code in _REDIRECTS and redirects < _MAX_REDIRECTS:
                # Blob storage redirects (S3, CDN) must not receive our registry credentials: only
                # the same scheme, host and port gets them.
                location = resp.headers.get("Location", "")
                if _UNSAFE.search(location):
                    resp.close()
                    raise IntegrityError(
                        f"{self.registry} redirected {what} to a URL with a control character; not followed",
                        registry=self.registry,
                        method=method,
                        url=target,
                        status=resp.status_code,
                    )
                nxt = urljoin(str(resp.url), location)
                resp.close()
                redirects += 1
                keep = headers if same_origin(nxt, self.base_url) else {}
                next(self.sent)
                target = nxt
                req = self.http.build_request(method, nxt, headers=keep)
                resp = self.http.send(req, stream=True)
        except httpx.HTTPError as exc:
            # A stalled registry is not retried: each attempt would cost a whole timeout more.
            stalled = isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout | httpx.PoolTimeout)
            if attempt[0] < attempt[1] and isinstance(exc, httpx.TransportError) and not stalled:
                backoff(attempt[0])
                return None
            raise for_transport(exc, self.registry, what, method, target) from exc
        return resp

    # ---- small GETs: the listing's hot path ----------------------------------------------------

    def get_small(
        self,
        path: str,
        *,
        scope: str,
        what: str,
        limit: int,
        headers: dict[str, str] | None = None,
        follow: bool = False,
    ) -> tuple[Headers, bytes]:
        """(headers, body) of a GET that must answer 200 with at most `limit` bytes."""
        if not self.checked:
            self.ping()
        check_target(path, self.registry, what)
        tried = 0
        if self.loopback is not None:
            hdrs = {"User-Agent": _USER_AGENT, **(headers or {}), **self.auth_headers(scope)}
            check_headers(hdrs, self.registry)
            fast, tried = self._loopback_get(path, hdrs, limit, what)
            if fast is not None:
                return fast
        # Anything but a plain 200 (auth challenge, redirect, error, broken connection): the general path.
        while True:
            with self.exchange(
                "GET", path, ok=(200,), scope=scope, headers=headers, what=what, follow=follow, tried=tried, stream=True
            ) as (resp, raw):
                assert raw is not None
                tried += 1
                declared = resp.headers.get("Content-Length")
                if declared.isdigit() and int(declared) > limit:
                    raise Unsupported(
                        f"{what} is {declared} bytes, over the {limit}-byte limit", registry=self.registry
                    )
                try:
                    body = read_capped(raw, limit, what, self.registry, self.http)
                except IntegrityError:  # a truncated body: the same GET again, within the retry budget
                    if tried > self.retries:
                        raise
                    backoff(tried)
                    continue
                return resp.headers, body

    def _loopback_get(
        self, path: str, headers: dict[str, str], limit: int, what: str
    ) -> tuple[tuple[Headers, bytes] | None, int]:
        """The loopback stack's 200 (None: use the general path) and the attempts it used up."""
        from .errors import for_loopback
        from .loopback import Busy, Malformed, TooLarge

        assert self.loopback is not None
        next(self.sent)
        try:
            return self.loopback.get(path, headers, limit), 0
        except TooLarge as exc:
            raise Unsupported(f"{what} is larger than {exc.limit} bytes", registry=self.registry) from None
        except Malformed as exc:  # an answer no registry sends: said once, not asked again
            raise IntegrityError(
                f"{what}: {self.registry} sent a malformed answer ({exc})",
                registry=self.registry,
                method="GET",
                url=self.base_url + path,
            ) from None
        except OSError as exc:
            raise for_loopback(exc, self.registry, what, "GET", self.base_url + path) from None
        except Busy as busy:
            # A 429/5xx is the first attempt: wait as asked, and the general path retries the rest.
            wait = retry_after(busy.retry_after)
            if self.retries and wait <= MAX_RETRY_AFTER:
                backoff(1, wait)
            return None, 1


def drop_if_spoiled(resp: httpx.Response, client: httpx.Client) -> None:
    """Close the connection of a whole httpx answer when bytes came after its declared end.

    h11 keeps such bytes and would read them as the answer to the next request on the connection
    (a whole smuggled answer, say); HTTP/1.1 without pipelining has no use for them. httpx offers no
    public view of them, so this looks at httpcore's connection for the answer's network stream
    (the connection is still this answer's: no other thread can take it before `resp.close()`);
    when those internals change, it does nothing. Closing the stream makes httpcore drop the
    connection instead of reusing it.
    """
    stream = resp.extensions.get("network_stream")
    if stream is None:
        return
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    for conn in getattr(pool, "connections", ()):
        inner = getattr(conn, "_connection", None)
        state = getattr(inner, "_h11_state", None)
        if state is None or getattr(inner, "_network_stream", None) is not stream:
            continue
        trailing = getattr(state, "trailing_data", (b"", False))
        if trailing[0]:
            resp.extensions["network_stream"].close()
        return


def read_capped(
    resp: httpx.Response, limit: int, what: str, registry: str, client: httpx.Client | None = None
) -> bytes:
    """An httpx answer's body, refused past `limit` bytes; a body that breaks off is an IntegrityError.
    With `client`, a connection that holds bytes after the body is not reused (`drop_if_spoiled`)."""
    import httpx

    from .errors import for_transport

    parts: list[bytes] = []
    total = 0
    expected = resp.headers.get("Content-Length") or "?"
    try:
        for chunk in resp.iter_bytes():
            total += len(chunk)
            if total > limit:
                raise Unsupported(f"{what} is larger than {limit} bytes", registry=registry)
            parts.append(chunk)
    except httpx.TimeoutException as exc:
        raise for_transport(exc, registry, what, resp.request.method, str(resp.url)) from exc
    except httpx.HTTPError:
        raise IntegrityError(
            f"{what}: body truncated ({registry} closed the connection after {total} of {expected} bytes)",
            registry=registry,
            method=resp.request.method,
            url=str(resp.url),
        ) from None
    data = b"".join(parts)
    if expected.isdigit() and int(expected) != len(data):
        raise IntegrityError(f"{what}: body truncated ({len(data)} of {expected} bytes)", registry=registry)
    if client is not None:
        drop_if_spoiled(resp, client)
    return data
