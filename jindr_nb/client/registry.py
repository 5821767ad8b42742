"""`RegistryClient`: the registry HTTP API (distribution spec) on one pooled httpx client."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urljoin, urlsplit

from ..errors import (
    IntegrityError,
    NotFound,
    RegistryError,
    RegistryUnreachable,
    Unauthorized,
    Unsupported,
)
from ..models import (
    ACCEPT_MANIFESTS,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    MAX_MANIFEST_BYTES,
    Descriptor,
    verify_digest,
)
from ..refs import is_loopback, parse_registry, scheme_for
from .auth import Challenge, Credentials, TokenCache, docker_credentials, parse_challenge
from .fast import Answer, Body, Busy, FastGet, Headers, RelayBroken, Unanswered

if TYPE_CHECKING:
    import httpx

__all__ = ["ManifestBytes", "RegistryClient", "unreachable"]

_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_PAGE = 1000  # newer registries refuse n above their maxentries (default 1000)
_MAX_PAGES = 10_000
_MAX_BLOB_IN_MEMORY = 64 * 1024 * 1024
_MAX_PAGE_BYTES = 16 * 1024 * 1024
_MAX_FAST_ANSWER = 16 * 1024 * 1024  # larger answers (none expected) go through httpx
_MAX_RETRY_AFTER = 10.0  # a registry asking for a longer wait gets an error that says so, not a hang
CHUNK = 8 * 1024 * 1024
_API_PATH = re.compile(r"/v2/(.+?)/(?:tags/list|manifests/[^/]+|blobs/(?:uploads/.*|[^/]+))")


@dataclass(frozen=True, slots=True)
class ManifestBytes:
    """A manifest exactly as the registry sent it."""

    raw: bytes
    media_type: str
    digest: str


class RegistryClient:
    """One registry, one connection pool; safe to share between threads.

    Every httpx failure is turned into a JindrError here and nowhere else.
    """

    def __init__(
        self,
        registry: str,
        *,
        transport: httpx.BaseTransport | None = None,
        insecure: bool = False,
        credentials: Credentials | None = None,
        docker_config: str | None = None,
        timeout: float | None = None,
        connect_timeout: float = 5.0,
        retries: int = 3,
        pool: int = 16,
    ) -> None:
        self.registry = parse_registry(registry)
        timeout = _default_timeout() if timeout is None else timeout
        self.scheme = "http" if insecure else scheme_for(self.registry)
        self.base_url = f"{self.scheme}://{self.registry}"
        self.retries = retries
        self._credentials = credentials
        self._credentials_loaded = credentials is not None
        self._docker_config = docker_config
        self._challenge: Challenge | None = None
        self._tokens = TokenCache()
        self._scope_tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self._checked = False
        self._transport = transport
        self._http_options = {"timeout": timeout, "connect": connect_timeout, "pool": pool, "verify": not insecure}
        self._http_client: httpx.Client | None = None
        # An injected transport (tests, fault injection) must see every request; a proxy from the
        # environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY) is for httpx to use: no fast path then.
        self._fast = (
            None
            if transport is not None or _proxied(self.scheme, self.registry)
            else FastGet(
                self.scheme, self.registry, timeout=timeout, verify=not insecure, connect_timeout=connect_timeout
            )
        )
        self._sent = _Counter()
        self._no_referrers_api = False
        #: Blobs that came into this registry through the kernel relay (`relay_blob`).
        self.blobs_relayed = 0

    def __repr__(self) -> str:
        return f"RegistryClient({self.base_url!r})"

    @property
    def _http(self) -> httpx.Client:
        # Built on first use: the listing hot path never needs it, and importing httpx costs ~0.1 s.
        if self._http_client is None:
            import httpx

            with self._lock:
                if self._http_client is None:
                    o = self._http_options
                    self._http_client = httpx.Client(
                        base_url=self.base_url,
                        transport=self._transport,
                        timeout=httpx.Timeout(o["timeout"], connect=o["connect"]),
                        limits=httpx.Limits(max_connections=o["pool"], max_keepalive_connections=o["pool"]),
                        follow_redirects=False,
                        verify=_tls(self.scheme, bool(o["verify"])),
                        headers={"User-Agent": "jindr_nb"},
                    )
        return self._http_client

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent so far (both paths; a fast-path miss counts twice)."""
        return self._sent.value

    def close(self) -> None:
        """Close the pooled connections."""
        if self._fast is not None:
            self._fast.close()
        if self._http_client is not None:
            self._http_client.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the API -------------------------------------------------------------------------

    def ping(self) -> dict[str, str]:
        """GET /v2/: succeed when a distribution registry answers; return its identifying headers."""
        fast = self._fast_get("/v2/", {"User-Agent": "jindr_nb"}, 65536, "GET /v2/")[0]
        if fast is not None:
            status, headers = 200, fast[0]
        else:
            resp = self._send("GET", "/v2/", ok=(200, 401), scope="", check_registry=False, auth=False)
            status, headers = resp.status_code, {k.lower(): v for k, v in resp.headers.items()}
        api = headers.get("docker-distribution-api-version", "")
        ctype = headers.get("content-type", "")
        if not api.startswith("registry/2") and "json" not in ctype:
            raise RegistryUnreachable(
                f"something answers at {self.registry} but it is not a registry (GET /v2/ gave {status} "
                f"{ctype or 'no content type'}); check the address",
                registry=self.registry,
                hint="`-r HOST:PORT` names the registry",
                status=status,
            )
        self._checked = True
        return {"api_version": api, "status": str(status)}

    def catalog(self) -> list[str]:
        """Every repository, following `Link` pagination."""
        return self._paginate("/v2/_catalog", "repositories", scope="registry:catalog:*", what="catalog")

    def tags(self, repository: str) -> list[str]:
        """Every tag of `repository`, following `Link` pagination (registry 3.1+ paginates tags)."""
        return self._paginate(
            f"/v2/{repository}/tags/list",
            "tags",
            scope=f"repository:{repository}:pull",
            what=f"repository {repository}",
        )

    def get_manifest(self, repository: str, reference: str) -> ManifestBytes:
        """The manifest for a tag or digest, as bytes, with its media type and verified digest."""
        found, raw = self._get_small(
            f"/v2/{repository}/manifests/{reference}",
            scope=f"repository:{repository}:pull",
            headers={"Accept": ACCEPT_MANIFESTS},
            what=f"manifest {_what(repository, reference)}",
            limit=MAX_MANIFEST_BYTES,
        )
        media_type = found.get("content-type", "").split(";")[0].strip()
        header_digest = found.get("docker-content-digest", "")
        if media_type in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
            raise Unsupported(
                f"{_what(repository, reference)} is a Docker schema 1 manifest, which jindr does not support; "
                "re-push it with a current docker",
                registry=self.registry,
            )
        if ":" in reference:  # a digest (tags cannot hold ":")
            verify_digest(raw, reference, f"manifest {_what(repository, reference)}")
            digest = reference
        else:
            digest = "sha256:" + hashlib.sha256(raw).hexdigest()
            if header_digest.startswith("sha256:") and header_digest != digest:
                raise IntegrityError(
                    f"manifest {_what(repository, reference)}: registry says {header_digest} "
                    f"but the bytes are {digest}",
                    registry=self.registry,
                )
        if not media_type:
            try:
                media_type = str(json.loads(raw).get("mediaType") or "")
            except (ValueError, AttributeError):
                media_type = ""
        return ManifestBytes(raw, media_type, digest)

    def head_manifest(self, repository: str, reference: str) -> tuple[str, str, int] | None:
        """(digest, media type, size) for a tag or digest, or None when the registry does not have it."""
        resp = self._send(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            ok=(200, 404),
            scope=f"repository:{repository}:pull",
            headers={"Accept": ACCEPT_MANIFESTS},
            what=_what(repository, reference),
        )
        if resp.status_code == 404:
            return None
        return (
            resp.headers.get("Docker-Content-Digest", ""),
            resp.headers.get("Content-Type", "").split(";")[0].strip(),
            int(resp.headers.get("Content-Length") or 0),
        )

    def put_manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> str:
        """PUT a manifest's exact bytes under a tag or digest; return its digest."""
        resp = self._send(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            ok=(201,),
            scope=f"repository:{repository}:pull,push",
            headers={"Content-Type": media_type},
            content=raw,
            what=_what(repository, reference),
        )
        return resp.headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(raw).hexdigest()

    def delete_manifest(self, repository: str, reference: str) -> None:
        """DELETE a manifest by digest (or by tag, on registries that allow it)."""
        self._send(
            "DELETE",
            f"/v2/{repository}/manifests/{reference}",
            ok=(202, 200),
            scope=f"repository:{repository}:delete",
            what=_what(repository, reference),
        )

    def referrers(self, repository: str, digest: str) -> list[Descriptor] | None:
        """Manifests whose `subject` is `digest` (OCI 1.1 referrers API); None when the registry lacks it."""
        if self._no_referrers_api:
            return None
        resp = self._send(
            "GET",
            f"/v2/{repository}/referrers/{digest}",
            ok=(200, 404, 400, 405),
            scope=f"repository:{repository}:pull",
            headers={"Accept": "application/vnd.oci.image.index.v1+json"},
            what=f"referrers of {digest}",
        )
        ctype = resp.headers.get("Content-Type", "")
        if resp.status_code != 200 or "json" not in ctype:
            # A registry with the API answers 200 (an empty index when nothing refers to the digest):
            # anything else means it has none, so later copies skip the question.
            self._no_referrers_api = True
            return None
        try:
            body = json.loads(resp.content)
            return [Descriptor.from_json(m) for m in body.get("manifests") or []]
        except (ValueError, AttributeError):
            return None

    def head_blob(self, repository: str, digest: str) -> int | None:
        """The blob's size when `repository` has it, else None."""
        resp = self._send(
            "HEAD",
            f"/v2/{repository}/blobs/{digest}",
            ok=(200, 404),
            scope=f"repository:{repository}:pull",
            what=f"blob {digest} in {repository}",
            follow=True,
        )
        return int(resp.headers.get("Content-Length") or 0) if resp.status_code == 200 else None

    def get_blob(self, repository: str, digest: str, *, limit: int = _MAX_BLOB_IN_MEMORY) -> bytes:
        """A small blob (a config) in memory, verified against its digest."""
        _, data = self._get_small(
            f"/v2/{repository}/blobs/{digest}",
            scope=f"repository:{repository}:pull",
            what=f"blob {digest} in {repository}",
            limit=limit,
            follow=True,
        )
        verify_digest(data, digest, f"blob {digest} in {repository}")
        return data

    @contextmanager
    def open_blob(self, repository: str, digest: str) -> Iterator[httpx.Response]:
        """A streaming response for a blob (redirects followed); the caller reads and verifies it.

        A body that breaks off or stalls raises a JindrError naming this registry and blob, not an
        httpx error (which, read inside another registry's upload, would be blamed on that one).
        """
        what = f"blob {digest} in {repository}"
        with self._stream(
            "GET",
            f"/v2/{repository}/blobs/{digest}",
            ok=(200,),
            scope=f"repository:{repository}:pull",
            what=what,
            follow=True,
        ) as resp:
            resp.stream = _guarded_stream()(resp.stream, self.registry, what)
            yield resp

    def mount_blob(self, repository: str, digest: str, source_repository: str) -> bool:
        """Cross-repository mount; True when mounted, False when the registry started an upload instead."""
        resp = self._send(
            "POST",
            f"/v2/{repository}/blobs/uploads/?" + urlencode({"mount": digest, "from": source_repository}),
            ok=(201, 202),
            scope=f"repository:{repository}:pull,push repository:{source_repository}:pull",
            what=f"mount of {digest} into {repository}",
        )
        if resp.status_code == 202 and resp.headers.get("Location"):
            # An upload session we do not need: cancel it so it does not linger.
            try:
                self._send(
                    "DELETE",
                    self._location(resp),
                    ok=(204, 404, 405),
                    scope=f"repository:{repository}:pull,push",
                    what="upload cancel",
                )
            except RegistryError:
                pass
        return resp.status_code == 201

    def upload_blob(
        self,
        repository: str,
        data: bytes | Iterable[bytes],
        digest: str,
        *,
        chunk_size: int | None = None,
        size: int | None = None,
    ) -> None:
        """Upload a blob: one PUT by default, PATCH chunks of `chunk_size` bytes when asked.

        `data` may be an iterable of byte pieces: it is streamed, never held whole (chunked uploads
        of an iterable need its total `size`, so each PATCH can announce its length). The registry
        checks the digest when the upload completes.
        """
        scope = f"repository:{repository}:pull,push"
        what = f"upload of {digest} to {repository}"
        start = self._send("POST", f"/v2/{repository}/blobs/uploads/", ok=(202,), scope=scope, what=what)
        location = self._location(start)
        if chunk_size is None:
            headers = {"Content-Type": "application/octet-stream"}
            if size is not None and not isinstance(data, bytes | bytearray | memoryview):
                headers["Content-Length"] = str(size)  # a plain body, not chunked transfer encoding
            self._send(
                "PUT",
                _add_query(location, digest=digest),
                ok=(201,),
                scope=scope,
                content=data,
                headers=headers,
                what=what,
                retry=isinstance(data, bytes),
            )
            return
        if isinstance(data, bytes | bytearray | memoryview):
            size = len(data)
            pieces: Iterator[bytes] = iter([bytes(data)])
        else:
            if size is None:
                raise ValueError("a chunked upload of a stream needs its size")
            pieces = iter(data)
        reader = _Pieces(pieces)
        offset = 0
        while offset < size:
            length = min(chunk_size, size - offset)
            resp = self._send(
                "PATCH",
                location,
                ok=(202,),
                scope=scope,
                content=reader.take(length),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + length - 1}",
                    "Content-Length": str(length),
                },
                what=what,
                retry=False,
            )
            offset += length
            location = self._location(resp)
        reader.finish()
        self._send(
            "PUT", _add_query(location, digest=digest), ok=(201,), scope=scope, content=b"", what=what, retry=False
        )

    def relay_blob(
        self,
        source: RegistryClient,
        source_repository: str,
        repository: str,
        digest: str,
        size: int,
        *,
        on_bytes: Callable[[int], None],
        chunk_size: int | None = None,
    ) -> bool:
        """Copy a blob from `source` into this registry with the bytes moving inside the kernel.

        True when done; False when this path cannot carry it (TLS, a redirect, an auth challenge
        still to answer, a chunked body, no `os.splice`): nothing was moved then, and the caller
        streams the blob instead. `on_bytes(n)` hears of each piece (n=0 while a socket waits);
        whatever it raises stops the copy. PATCH chunks of `chunk_size` bytes when given.
        """
        if self._fast is None or source._fast is None or not (self._fast.can_relay and source._fast.can_relay):
            return False
        if os.environ.get("JINDR_SPLICE", "1") == "0":  # the way out should a kernel or sandbox refuse splice
            return False
        what = f"blob {digest} in {source_repository}"
        body = self._open_relay_source(source, source_repository, digest, what)
        if body is None:
            return False
        moved = 0

        def counted(n: int) -> None:
            nonlocal moved
            on_bytes(n)
            moved += n

        try:
            if body.length != size:
                raise IntegrityError(
                    f"{what}: {source.registry} sends {body.length} bytes where the manifest says {size}",
                    registry=source.registry,
                )
            push = f"repository:{repository}:pull,push"
            upload = f"upload of {digest} to {repository}"
            start = self._send("POST", f"/v2/{repository}/blobs/uploads/", ok=(202,), scope=push, what=upload)
            location = self._location(start)
            if self._fast_path(location) is None:  # the registry sends uploads elsewhere: httpx follows
                self._cancel_upload(location, push)
                return False
            offset = 0
            parts = [size] if chunk_size is None else [min(chunk_size, size - o) for o in range(0, size, chunk_size)]
            for length in parts or [0]:
                path = self._fast_path(location)
                if path is None:
                    raise Unsupported(f"{self.registry} moved {upload} to another host", registry=self.registry)
                last = chunk_size is None
                hdrs = {"Content-Type": "application/octet-stream", **self._auth_headers(push)}
                if last:
                    path = _add_query(path, digest=digest)
                else:
                    hdrs["Content-Range"] = f"{offset}-{offset + length - 1}"
                next(self._sent)
                try:
                    answer = self._fast.send_body("PUT" if last else "PATCH", path, hdrs, body, length, counted)
                except RelayBroken as broken:
                    if broken.side == "kernel":  # splice refused here: this blob, and later ones, stream
                        self._cancel_upload(location, push)
                        on_bytes(-moved)
                        return False
                    raise self._relay_error(broken, source, what, upload, offset) from None
                if answer.status_code != (201 if last else 202):
                    raise self._error(answer, upload)
                offset += length
                location = location if last else self._location(answer)
            if chunk_size is not None:
                self._send(
                    "PUT",
                    _add_query(location, digest=digest),
                    ok=(201,),
                    scope=push,
                    content=b"",
                    what=upload,
                    retry=False,
                )
        finally:
            body.close()
        with self._lock:
            self.blobs_relayed += 1
        return True

    def _open_relay_source(self, source: RegistryClient, repository: str, digest: str, what: str) -> Body | None:
        """The source's blob, head read and body waiting on the socket; None: stream it instead.

        A 429/5xx is retried here within the source's retry budget (Retry-After honoured), as the
        streaming path would.
        """
        assert source._fast is not None
        scope = f"repository:{repository}:pull"
        if not source._checked:
            source.ping()
        for attempt in range(1, source.retries + 2):
            headers = {"User-Agent": "jindr_nb", **source._auth_headers(scope)}
            next(source._sent)
            try:
                return source._fast.open_body(f"/v2/{repository}/blobs/{digest}", headers)
            except TimeoutError:
                raise source._stalled(what) from None
            except RelayBroken as broken:
                raise self._relay_error(broken, source, what, "", 0) from None
            except Busy as busy:
                wait = _retry_after(busy.retry_after)
                if attempt > source.retries or wait > _MAX_RETRY_AFTER:
                    busy_headers = Headers({"retry-after": busy.retry_after} if busy.retry_after else {})
                    url = f"{source.base_url}/v2/{repository}/blobs/{digest}"
                    raise source._error(Answer(busy.status, busy_headers, b"", "GET", url), what) from None
                _backoff(attempt, wait)
        return None

    def _cancel_upload(self, location: str, scope: str) -> None:
        """Best effort: an upload session jindr will not finish should not linger."""
        try:
            self._send("DELETE", location, ok=(204, 404, 405), scope=scope, what="upload cancel", retry=False)
        except RegistryError:
            pass

    def _relay_error(
        self, broken: RelayBroken, source: RegistryClient, what: str, upload: str, offset: int
    ) -> RegistryError:
        moved = offset + broken.moved
        if broken.side == "source":
            if broken.how == "stalled":
                return source._stalled(what)
            return IntegrityError(
                f"{what}: body truncated ({source.registry} closed the connection after {moved} bytes)",
                registry=source.registry,
            )
        if broken.how == "stalled":
            return self._stalled(upload)
        return RegistryUnreachable(
            f"{self.registry} closed the connection during {upload} (after {moved} bytes); is it still running?",
            registry=self.registry,
        )

    def _stalled(self, what: str) -> RegistryUnreachable:
        return RegistryUnreachable(
            f"{self.registry} stopped answering during {what} (timed out); is it overloaded or stalled?",
            registry=self.registry,
        )

    # ---- plumbing ------------------------------------------------------------------------

    def _get_small(
        self,
        path: str,
        *,
        scope: str,
        what: str,
        limit: int,
        headers: dict[str, str] | None = None,
        follow: bool = False,
    ) -> tuple[dict[str, str], bytes]:
        """(lower-cased headers, body) of a GET that must answer 200 with at most `limit` bytes."""
        if not self._checked:
            self.ping()
        hdrs = dict(headers or {})
        hdrs.update(self._auth_headers(scope))
        fast, tried = self._fast_get(path, {"User-Agent": "jindr_nb", **hdrs}, limit, what)
        if fast is not None:
            return fast
        # Anything but a plain 200 (auth challenge, redirect, error, broken connection): the general path.
        while True:
            with self._stream(
                "GET", path, ok=(200,), scope=scope, headers=headers, what=what, follow=follow, tried=tried
            ) as resp:
                tried += 1
                declared = resp.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise Unsupported(
                        f"{what} is {declared} bytes, over the {limit}-byte limit", registry=self.registry
                    )
                try:
                    body = self._read_capped(resp, limit, what)
                except IntegrityError:  # a truncated body: the same GET again, within the retry budget
                    if tried > self.retries:
                        raise
                    _backoff(tried)
                    continue
                return {k.lower(): v for k, v in resp.headers.items()}, body

    def _fast_get(
        self, path: str, headers: dict[str, str], limit: int, what: str
    ) -> tuple[tuple[dict[str, str], bytes] | None, int]:
        """The fast path's answer (None: use the general path) and the attempts it used up."""
        if self._fast is None:
            return None, 0
        next(self._sent)
        try:
            return self._fast.get(path, headers, limit), 0
        except IntegrityError as exc:  # an answer no registry sends: said once, not asked again
            raise IntegrityError(f"{what}: {exc}", registry=self.registry) from None
        except TimeoutError:
            raise RegistryUnreachable(
                f"{self.registry} stopped answering during {what} (timed out); is it overloaded or stalled?",
                registry=self.registry,
            ) from None
        except Busy as busy:
            # A 429/5xx is the first attempt: wait as asked, and the general path retries the rest.
            wait = _retry_after(busy.retry_after)
            if self.retries and wait <= _MAX_RETRY_AFTER:
                _backoff(1, wait)
            return None, 1

    def _paginate(self, path: str, key: str, *, scope: str, what: str) -> list[str]:
        items: list[str] = []
        url: str | None = f"{path}?n={_PAGE}"
        seen: set[str] = set()
        known: set[str] = set()
        page_size = _PAGE
        while url is not None:
            if len(seen) >= _MAX_PAGES or url in seen:
                raise IntegrityError(
                    f"{self.registry} sent a pagination loop listing {what} (page {url} again)", registry=self.registry
                )
            seen.add(url)
            try:
                found, raw = self._get_small(url, scope=scope, what=what, limit=_MAX_PAGE_BYTES)
            except RegistryError as exc:
                # A registry with a smaller maxentries refuses our n: ask for less (first page only).
                if "PAGINATION_NUMBER_INVALID" in exc.codes and len(seen) == 1 and page_size > 10:
                    seen.clear()
                    page_size //= 10
                    url = f"{path}?n={page_size}"
                    continue
                raise
            try:
                body = json.loads(raw)
            except ValueError:
                raise IntegrityError(
                    f"{self.registry} sent a listing of {what} that is not JSON", registry=self.registry
                ) from None
            if not isinstance(body, dict) or key not in body or not isinstance(body[key], list | None):
                # A registry always names the list, even when it is empty (`"tags": null`).
                raise IntegrityError(
                    f"{self.registry} answered the {what} listing without a {key!r} list: "
                    "it does not look like a registry; check the address",
                    registry=self.registry,
                    hint="`-r HOST:PORT` names the registry",
                )
            page = [str(x) for x in body[key] or []]
            fresh = [x for x in page if x not in known]
            items.extend(page)
            known.update(fresh)
            url = _next_link(found.get("link", ""))
            if url is not None and not fresh:
                # Distinct URLs replaying old entries (or none) would otherwise go on for _MAX_PAGES pages.
                raise IntegrityError(
                    f"{self.registry} sent a pagination loop listing {what} (a page with nothing new, "
                    f"then a link to {url})",
                    registry=self.registry,
                )
            if url is not None and "://" in url:
                parts = urlsplit(url)
                if parts.netloc != self.registry:
                    raise IntegrityError(f"{self.registry} sent a Link to another host: {url}", registry=self.registry)
                url = parts.path + ("?" + parts.query if parts.query else "")
        return items

    def _location(self, resp: httpx.Response) -> str:
        location = resp.headers.get("Location")
        if not location:
            raise IntegrityError(f"{self.registry} started an upload without a Location header", registry=self.registry)
        return urljoin(self.base_url + "/", location)

    def _read_capped(self, resp: httpx.Response, limit: int, what: str) -> bytes:
        import httpx

        parts: list[bytes] = []
        total = 0
        expected = resp.headers.get("Content-Length") or "?"
        try:
            for chunk in resp.iter_bytes():
                total += len(chunk)
                if total > limit:
                    raise Unsupported(f"{what} is larger than {limit} bytes", registry=self.registry)
                parts.append(chunk)
        except httpx.TimeoutException as exc:
            raise _translate(exc, self.registry, what) from exc
        except httpx.HTTPError:
            raise IntegrityError(
                f"{what}: body truncated ({self.registry} closed the connection after {total} of {expected} bytes)",
                registry=self.registry,
            ) from None
        data = b"".join(parts)
        if expected.isdigit() and int(expected) != len(data):
            raise IntegrityError(f"{what}: body truncated ({len(data)} of {expected} bytes)", registry=self.registry)
        return data

    def _send(self, method: str, url: str, **kw: object) -> httpx.Response | Answer:
        """A whole answer: through the fast path when it can speak for the registry, else httpx."""
        with self._stream(method, url, buffered=True, **kw) as resp:  # type: ignore[arg-type]
            if isinstance(resp, Answer):
                return resp
            import httpx

            try:
                resp.read()
            except httpx.HTTPError as exc:
                raise _translate(exc, self.registry, str(kw.get("what") or "")) from exc
            return resp

    @contextmanager
    def _stream(
        self,
        method: str,
        url: str,
        *,
        ok: tuple[int, ...],
        scope: str,
        what: str = "",
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        content: bytes | Iterable[bytes] | None = None,
        retry: bool | None = None,
        follow: bool = False,
        auth: bool = True,
        check_registry: bool = True,
        tried: int = 0,
        buffered: bool = False,
    ) -> Iterator[httpx.Response | Answer]:
        """Send with auth, retries and redirects; yield a response whose status is in `ok`.

        `tried` attempts of the retry budget are spent already (by the fast path, or a truncated body).
        `buffered`: the caller reads the whole body, so the fast path may answer (an `Answer`).
        """
        if check_registry and not self._checked:
            self.ping()
        retry = method in _IDEMPOTENT if retry is None else retry
        attempts = (self.retries + 1) if retry else 1
        authed = False
        attempt = min(tried, attempts - 1)
        fast_path = self._fast_path(url) if buffered and params is None else None
        if not isinstance(content, bytes | None):
            fast_path = None  # a streamed body goes through httpx (a blob relay has its own path)
        while True:
            attempt += 1
            hdrs = dict(headers or {})
            if auth:
                hdrs.update(self._auth_headers(scope))
            resp: httpx.Response | Answer | None = None
            if fast_path is not None:
                resp = self._fast_send(method, fast_path, hdrs, content or b"", what or url, resend=retry)
                if resp is None or (follow and 300 <= resp.status_code < 400):
                    resp, fast_path = None, None  # not for this path: httpx from here on
            if resp is None:
                resp = self._http_send(method, url, hdrs, params, content, follow, (attempt, attempts), what)
                if resp is None:
                    continue  # a transport error worth another attempt, after its backoff
            if resp.status_code == 401 and auth and not authed:
                header = resp.headers.get("WWW-Authenticate", "")
                resp.close()
                self._answer_challenge(header, scope)
                authed = True
                attempt -= 1
                continue
            wait = _retry_after(resp.headers.get("Retry-After"))
            if resp.status_code in _RETRY_STATUS and attempt < attempts and wait <= _MAX_RETRY_AFTER:
                resp.close()
                _backoff(attempt, wait)
                continue
            try:
                if resp.status_code not in ok:
                    _read_quietly(resp)
                    raise self._error(resp, what or url)
                yield resp
            finally:
                resp.close()
            return

    def _fast_path(self, url: str) -> str | None:
        """The path (and query) of `url` when the fast path can send to it, else None."""
        if self._fast is None:
            return None
        if url.startswith("/"):
            return url
        if url.startswith(self.base_url + "/"):
            return url[len(self.base_url) :]
        return None

    def _fast_send(
        self, method: str, path: str, headers: dict[str, str], body: bytes, what: str, *, resend: bool
    ) -> Answer | None:
        """The fast path's whole answer; None: send it through httpx (only when that is harmless)."""
        assert self._fast is not None
        next(self._sent)
        try:
            return self._fast.request(
                method, path, {"User-Agent": "jindr_nb", **headers}, body, _MAX_FAST_ANSWER, resend=resend
            )
        except TimeoutError:
            raise self._stalled(what) from None
        except Unanswered as exc:
            raise RegistryUnreachable(
                f"{self.registry} closed the connection during {what} without an answer ({exc}); "
                "check the registry, then run the command again",
                registry=self.registry,
            ) from None

    def _http_send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        params: dict[str, str] | None,
        content: bytes | Iterable[bytes] | None,
        follow: bool,
        attempt: tuple[int, int],
        what: str,
    ) -> httpx.Response | None:
        """One attempt through httpx (redirects followed when asked); None: back off and try again."""
        import httpx

        try:
            next(self._sent)
            req = self._http.build_request(method, url, headers=headers, params=params, content=content)
            resp = self._http.send(req, stream=True)
            redirects = 0
            while follow and resp.status_code in (301, 302, 303, 307, 308) and redirects < 5:
                # Blob storage redirects (S3, CDN) must not receive our registry credentials.
                target = urljoin(str(resp.url), resp.headers.get("Location", ""))
                resp.close()
                redirects += 1
                same = urlsplit(target).netloc == urlsplit(self.base_url).netloc
                next(self._sent)
                req = self._http.build_request(method, target, headers=headers if same else {})
                resp = self._http.send(req, stream=True)
        except httpx.HTTPError as exc:
            # A stalled registry is not retried: each attempt would cost a whole timeout more.
            stalled = isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout | httpx.PoolTimeout)
            if attempt[0] < attempt[1] and isinstance(exc, httpx.TransportError) and not stalled:
                _backoff(attempt[0])
                return None
            raise _translate(exc, self.registry, what) from exc
        return resp

    def _auth_headers(self, scope: str) -> dict[str, str]:
        challenge = self._challenge
        if challenge is None:
            return {}
        if challenge.scheme == "basic":
            creds = self._creds()
            return {"Authorization": creds.basic_header()} if creds else {}
        if challenge.scheme == "bearer":
            with self._lock:
                token = self._scope_tokens.get(scope)
            if token is None:
                token = self._tokens.fetch(self._http, challenge, scope, self._creds(), self.registry)
                with self._lock:
                    self._scope_tokens[scope] = token
            return {"Authorization": f"Bearer {token}"}
        return {}

    def _answer_challenge(self, header: str, scope: str) -> None:
        challenge = parse_challenge(header) if header else Challenge("basic", {})
        if challenge.scheme not in ("basic", "bearer"):
            raise Unauthorized(
                f"{self.registry} asks for {challenge.scheme} authentication, which jindr does not support",
                registry=self.registry,
            )
        creds = self._creds()
        if challenge.scheme == "basic" and creds is None:
            raise Unauthorized(
                f"{self.registry} needs credentials: run `docker login {self.registry}`",
                registry=self.registry,
                status=401,
            )
        self._challenge = challenge
        if challenge.scheme == "bearer":
            token = self._tokens.fetch(self._http, challenge, scope, creds, self.registry)
            with self._lock:
                self._scope_tokens[scope] = token

    def _creds(self) -> Credentials | None:
        if not self._credentials_loaded:
            self._credentials = docker_credentials(self.registry, self._docker_config)
            self._credentials_loaded = True
        return self._credentials

    def _error(self, resp: httpx.Response, what: str) -> RegistryError:
        status = resp.status_code
        codes, detail = _oci_errors(resp)
        kw = {
            "registry": self.registry,
            "status": status,
            "codes": codes,
            "method": resp.request.method,
            "url": str(resp.url),
        }
        if status == 401:
            return Unauthorized(
                f"{self.registry} refused the credentials for {what}; check `docker login {self.registry}`", **kw
            )
        if status == 403:
            return Unauthorized(f"{self.registry} denied access to {what}{_detail(detail)}", **kw)
        if status == 404:
            if "NAME_UNKNOWN" in codes:
                return NotFound(
                    f"repository {_repository_of(resp.url.path) or what} not found in {self.registry}",
                    hint="`{prog} ls` lists them",
                    **kw,
                )
            if "MANIFEST_UNKNOWN" in codes:
                return NotFound(f"{what} not found in {self.registry}", hint="`{prog} lsi REPO` lists its tags", **kw)
            if "BLOB_UNKNOWN" in codes:
                return NotFound(f"{what} not found in {self.registry}", **kw)
            return NotFound(f"{what} not found in {self.registry}", **kw)
        if status == 405 and resp.request.method == "DELETE":
            return Unsupported(
                f"{self.registry} has deletion disabled; restart it with REGISTRY_STORAGE_DELETE_ENABLED=true",
                hint="`{prog} start` runs registries that way",
                **kw,
            )
        if status in (405, 501) or "UNSUPPORTED" in codes:
            return Unsupported(
                f"{self.registry} does not support {resp.request.method} for {what}{_detail(detail)}", **kw
            )
        if status == 400 and ("MANIFEST_INVALID" in codes or "DIGEST_INVALID" in codes):
            return IntegrityError(f"{self.registry} rejected {what}{_detail(detail)}", **kw)
        if status == 429:
            wait = resp.headers.get("Retry-After", "")
            later = f"in {wait.strip()} s" if wait.strip().isdigit() else "later"
            return RegistryError(
                f"{self.registry} is rate-limiting requests (429) on {what}{_detail(detail)}; try again {later}", **kw
            )
        if status >= 500:
            return RegistryError(f"{self.registry} failed ({status}) on {what}{_detail(detail)}; try again", **kw)
        return RegistryError(f"{self.registry} answered {status} for {what}{_detail(detail)}", **kw)


_TLS_CONTEXT: ssl.SSLContext | None = None


def _tls(scheme: str, verify: bool) -> ssl.SSLContext | bool:
    """Certificate verification for https, built once per process (loading the CA store costs ~0.1 s).

    A plain-http client (a loopback registry, or one listed as insecure) never speaks TLS, so it
    skips the CA store altogether.
    """
    global _TLS_CONTEXT
    if scheme == "http" or not verify:
        return False
    if _TLS_CONTEXT is None:
        _TLS_CONTEXT = ssl.create_default_context()
    return _TLS_CONTEXT


def _default_timeout() -> float:
    """Seconds to wait for a silent registry: $JINDR_TIMEOUT, else 30."""
    value = os.environ.get("JINDR_TIMEOUT", "")
    try:
        seconds = float(value) if value else 30.0
    except ValueError:
        return 30.0
    return min(seconds, 3600.0) if seconds > 0 else 30.0  # nan -> 30, inf -> an hour


def _read_quietly(resp: httpx.Response | Answer) -> None:
    """Read an error answer's body for its message; a body that breaks off leaves it empty."""
    if isinstance(resp, Answer):
        return
    import httpx

    try:
        resp.read()
    except httpx.HTTPError:
        pass


def _what(repository: str, reference: str) -> str:
    sep = "@" if ":" in reference else ":"
    return f"{repository}{sep}{reference}"


def _oci_errors(resp: httpx.Response | Answer) -> tuple[tuple[str, ...], str]:
    if isinstance(resp, Answer):
        content = resp.content
    else:
        import httpx

        try:
            content = resp.content
        except httpx.HTTPError:  # a streamed body not read
            return (), ""
    try:
        body = json.loads(content or b"{}")
        errors = body.get("errors") or []
        codes = tuple(str(e.get("code", "")) for e in errors if isinstance(e, dict))
        messages = "; ".join(_message(e) for e in errors if isinstance(e, dict) and e.get("message"))
        return codes, messages
    except (ValueError, AttributeError):
        return (), ""


def _message(error: dict) -> str:
    """An OCI error's message; for the registry's bare "unknown error", the cause from its detail
    (a full disk or a read-only storage comes back as an errno: ENOSPC, EROFS)."""
    message = str(error.get("message", ""))
    if message != "unknown error":
        return message
    cause = _cause(error.get("detail"))
    return f"{message} ({cause})" if cause else message


def _cause(detail: object) -> str:
    if isinstance(detail, str):
        return detail[:200]
    if isinstance(detail, dict):
        errno = detail.get("Err")
        if isinstance(errno, int) and 0 < errno < 4096:
            return f"{os.strerror(errno)}: {detail.get('Path', '')}".rstrip(": ")
        # A storage driver's error: {"DriverName": ..., "Enclosed": {"Op", "Path", "Err": errno}}.
        for value in detail.values():
            found = _cause(value) if isinstance(value, dict) else ""
            if found:
                return found
    return ""


def _detail(detail: str) -> str:
    return f": {detail}" if detail else ""


def unreachable(registry: str, kind: str, role: str = "") -> RegistryUnreachable:
    """The error for a registry that cannot be reached: its name does not resolve ("dns"), or nothing
    answers there ("refused"); `role` ("source", "destination") names which side of a copy it is."""
    named = f"the {role} {registry}" if role else registry
    if kind == "dns":
        host = registry.rpartition(":")[0] if registry.count(":") == 1 else registry
        return RegistryUnreachable(
            f"the name {host} does not resolve (DNS lookup failed); check the spelling of {named}",
            registry=registry,
            kind=kind,
        )
    message = f"no registry answers at {named}"
    if is_loopback(registry):
        return RegistryUnreachable(
            message, registry=registry, kind=kind, hint=f"start one there: `{{prog}} -r {registry} start`"
        )
    return RegistryUnreachable(
        f"{message}; check the address and that the registry is running", registry=registry, kind=kind
    )


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """True when `kind` is in the chain of exceptions that led to `exc` (httpx wraps httpcore wraps socket)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _repository_of(path: str) -> str:
    """The repository in an API path (`/v2/NAME/tags/list`, `/v2/NAME/manifests/REF`, ...), "" if none."""
    found = _API_PATH.fullmatch(path)
    return found.group(1) if found else ""


def _translate(exc: httpx.HTTPError, registry: str, what: str = "") -> RegistryError:
    import httpx

    during = f" during {what}" if what else ""
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        reason = text.rpartition("certificate verify failed:")[2].strip(" ()") or "not trusted"
        return RegistryUnreachable(
            f"{registry}'s TLS certificate is not trusted ({reason}); add its CA to SSL_CERT_FILE",
            registry=registry,
            hint="or use --insecure for plain HTTP",
        )
    if isinstance(exc, httpx.ConnectError) and "[SSL" in text:
        return RegistryUnreachable(
            f"TLS with {registry} failed ({text}); it may serve plain HTTP",
            registry=registry,
            hint="--insecure speaks plain HTTP to it",
        )
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return unreachable(registry, "dns" if _caused_by(exc, socket.gaierror) else "refused")
    if isinstance(exc, httpx.TimeoutException):
        return RegistryUnreachable(
            f"{registry} stopped answering{during} (timed out); is it overloaded or stalled?", registry=registry
        )
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return RegistryUnreachable(
            f"{registry} closed the connection{during} or does not speak HTTP; check that the address is a registry's "
            f"({type(exc).__name__})",
            registry=registry,
        )
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return RegistryError(f"bad URL for {registry}: {exc}", registry=registry)
    return RegistryUnreachable(f"talking to {registry} failed: {type(exc).__name__}: {exc}", registry=registry)


@functools.cache
def _guarded_stream() -> type:
    """A response stream whose httpx failures become JindrErrors (built on first use: httpx is lazy)."""
    import httpx

    class Guarded(httpx.SyncByteStream):
        def __init__(self, inner: httpx.SyncByteStream, registry: str, what: str) -> None:
            self.inner, self.registry, self.what = inner, registry, what

        def __iter__(self) -> Iterator[bytes]:
            got = 0
            try:
                for chunk in self.inner:
                    got += len(chunk)
                    yield chunk
            except httpx.TimeoutException as exc:
                raise _translate(exc, self.registry, self.what) from exc
            except httpx.HTTPError:
                raise IntegrityError(
                    f"{self.what}: body truncated ({self.registry} closed the connection after {got} bytes)",
                    registry=self.registry,
                ) from None

        def close(self) -> None:
            self.inner.close()

    return Guarded


def _next_link(header: str) -> str | None:
    for part in header.split(","):
        if 'rel="next"' in part or "rel=next" in part:
            start, end = part.find("<"), part.find(">")
            if 0 <= start < end:
                return part[start + 1 : end]
    return None


def _retry_after(value: str | None) -> float:
    """Seconds a Retry-After header asks for (0 for none, or for an HTTP date)."""
    text = (value or "").strip()
    if text.isascii() and text.isdigit():  # "²".isdigit() is True too
        return float(text)
    return 0.0


def _backoff(attempt: int, at_least: float = 0.0) -> None:
    delay = max(at_least, min(2.0, 0.1 * 2 ** (attempt - 1)) * (0.5 + random.random()))
    time.sleep(delay)


def _add_query(url: str, **params: str) -> str:
    sep = "&" if "?" in url else "?"
    return url + sep + "&".join(f"{k}={v}" for k, v in params.items())


class _Pieces:
    """Hands out exact byte counts from a stream of pieces, holding at most one piece."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self._left = b""

    def take(self, n: int) -> Iterator[bytes]:
        while n > 0:
            if not self._left:
                self._left = next(self._pieces, b"")
                if not self._left:
                    raise IntegrityError("the blob stream ended early")
            piece, self._left = self._left[:n], self._left[n:]
            n -= len(piece)
            yield piece

    def finish(self) -> None:
        # Drain the stream so a verifying generator gets to check the digest at its end.
        for extra in self._pieces:
            if extra:
                raise IntegrityError("the blob stream is longer than its size")


def _proxied(scheme: str, registry: str) -> bool:
    """A proxy from the environment applies to `registry` (never to one on this machine)."""
    host = (registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry).lower()
    octets = host.split(".")
    if host in ("localhost", "[::1]") or (len(octets) == 4 and octets[0] == "127" and all(map(str.isdigit, octets))):
        return False
    names = ("https_proxy", "all_proxy") if scheme == "https" else ("http_proxy", "all_proxy")
    if not any(os.environ.get(n) or os.environ.get(n.upper()) for n in names):
        return False  # the common case, decided without importing urllib.request
    from urllib.request import proxy_bypass_environment

    return not proxy_bypass_environment(host.strip("[]"))


def default_insecure() -> frozenset[str]:
    """Registries listed in JINDR_INSECURE_REGISTRIES (comma separated) are spoken to over http."""
    return frozenset(x.strip() for x in os.environ.get("JINDR_INSECURE_REGISTRIES", "").split(",") if x.strip())


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
