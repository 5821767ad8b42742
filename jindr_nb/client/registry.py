"""`RegistryClient`: the registry HTTP API (distribution spec), the facade the rest of jindr calls.

The parts under it, in the shape of go-containerregistry's `remote/` and `transport/`:

    transport.py   the send loop: auth challenge, retries, redirects; the `Response` both stacks give
    loopback.py    the standard library's pooled connections, for plain-HTTP registries on this machine
    errors.py      statuses and each dependency's exceptions → jindr's error tree (declarative maps)
    pagination.py  catalog and tags pages
    upload.py      PUT, PATCH chunks, mounts
    relay.py       a blob between two loopback registries through the kernel (os.splice)
    auth.py        credentials, challenges, bearer tokens
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import IntegrityError, Unsupported
from ..models import (
    ACCEPT_MANIFESTS,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    MAX_MANIFEST_BYTES,
    Descriptor,
    verify_digest,
)
from ..refs import parse_registry, scheme_for
from . import pagination, upload
from .auth import Credentials
from .errors import for_transport, unreachable
from .transport import Transport

if TYPE_CHECKING:
    import ssl

    import httpx

__all__ = ["ManifestBytes", "RegistryClient", "default_insecure", "unreachable"]

#: What a Docker-Content-Digest header holds (algorithm:hex); anything else is refused, never echoed.
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_MAX_BLOB_IN_MEMORY = 64 * 1024 * 1024
CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ManifestBytes:
    """A manifest exactly as the registry sent it."""

    raw: bytes
    media_type: str
    digest: str


class RegistryClient:
    """One registry, its connection pools; safe to share between threads.

    Every failure of the HTTP stacks is turned into a JindrError under this facade and nowhere else.
    """

    #: Reads over the registry's HTTP API (a storage reader reads the registry's files instead).
    local: bool = False

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
        tls: ssl.SSLContext | None = None,
    ) -> None:
        # `tls`: speak HTTPS trusting this context, even on loopback (a TLS registry jindr runs).
        self.registry = parse_registry(registry)
        self.scheme = "https" if tls is not None else "http" if insecure else scheme_for(self.registry)
        self.base_url = f"{self.scheme}://{self.registry}"
        self._t = Transport(
            self.registry,
            self.scheme,
            transport=transport,
            verify=tls if tls is not None else not insecure,
            credentials=credentials,
            docker_config=docker_config,
            timeout=_default_timeout() if timeout is None else timeout,
            connect_timeout=connect_timeout,
            retries=retries,
            pool=pool,
        )
        self._no_referrers_api = False
        self._lock = threading.Lock()
        #: Blobs that came into this registry through the kernel relay (`relay_blob`).
        self.blobs_relayed = 0

    def __repr__(self) -> str:
        return f"RegistryClient({self.base_url!r})"

    @property
    def retries(self) -> int:
        return self._t.retries

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent so far (both stacks; a loopback miss sent again through httpx counts twice)."""
        return self._t.sent.value

    def close(self) -> None:
        """Close the pooled connections."""
        self._t.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the API -------------------------------------------------------------------------

    def ping(self) -> dict[str, str]:
        """GET /v2/: succeed when a distribution registry answers; return its identifying headers."""
        return self._t.ping()

    def catalog(self) -> list[str]:
        """Every repository, following `Link` pagination."""
        return pagination.paginate(self._t, "/v2/_catalog", "repositories", scope="registry:catalog:*", what="catalog")

    def tags(self, repository: str) -> list[str]:
        """Every tag of `repository`, following `Link` pagination (registry 3.1+ paginates tags)."""
        _checked(repository)
        return pagination.paginate(
            self._t,
            f"/v2/{repository}/tags/list",
            "tags",
            scope=f"repository:{repository}:pull",
            what=f"repository {repository}",
        )

    def get_manifest(self, repository: str, reference: str) -> ManifestBytes:
        """The manifest for a tag or digest, as bytes, with its media type and verified digest."""
        _checked(repository, reference)
        found, raw = self._t.get_small(
            f"/v2/{repository}/manifests/{reference}",
            scope=f"repository:{repository}:pull",
            headers={"Accept": ACCEPT_MANIFESTS},
            what=f"manifest {_what(repository, reference)}",
            limit=MAX_MANIFEST_BYTES,
        )
        media_type = found.get("Content-Type").split(";")[0].strip()
        digests = set(found.get_all("Docker-Content-Digest"))
        if len(digests) > 1 or not all(_DIGEST.fullmatch(d) for d in digests):
            raise IntegrityError(
                f"manifest {_what(repository, reference)}: the registry sent "
                + ("two different digests" if len(digests) > 1 else "a Docker-Content-Digest that is not a digest"),
                registry=self.registry,
            )
        header_digest = digests.pop() if digests else ""
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
        _checked(repository, reference)
        resp = self._t.send(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            ok=(200, 404),
            scope=f"repository:{repository}:pull",
            headers={"Accept": ACCEPT_MANIFESTS},
            what=_what(repository, reference),
        )
        if resp.status == 404:
            return None
        length = resp.headers.get("Content-Length")
        return (
            resp.headers.get("Docker-Content-Digest"),
            resp.headers.get("Content-Type").split(";")[0].strip(),
            int(length) if length.isdigit() else 0,
        )

    def put_manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> str:
        """PUT a manifest's exact bytes under a tag or digest; return its digest."""
        _checked(repository, reference)
        resp = self._t.send(
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
        _checked(repository, reference)
        self._t.send(
            "DELETE",
            f"/v2/{repository}/manifests/{reference}",
            ok=(202, 200),
            scope=f"repository:{repository}:delete",
            what=_what(repository, reference),
        )

    def referrers(self, repository: str, digest: str) -> list[Descriptor] | None:
        """Manifests whose `subject` is `digest` (OCI 1.1 referrers API); None when the registry lacks it."""
        _checked(repository, digest, digest_only=True)
        if self._no_referrers_api:
            return None
        resp = self._t.send(
            "GET",
            f"/v2/{repository}/referrers/{digest}",
            ok=(200, 404, 400, 405),
            scope=f"repository:{repository}:pull",
            headers={"Accept": "application/vnd.oci.image.index.v1+json"},
            what=f"referrers of {digest}",
        )
        if resp.status != 200 or "json" not in resp.headers.get("Content-Type"):
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
        _checked(repository, digest, digest_only=True)
        resp = self._t.send(
            "HEAD",
            f"/v2/{repository}/blobs/{digest}",
            ok=(200, 404),
            scope=f"repository:{repository}:pull",
            what=f"blob {digest} in {repository}",
            follow=True,
        )
        length = resp.headers.get("Content-Length")
        return (int(length) if length.isdigit() else 0) if resp.status == 200 else None

    def get_blob(self, repository: str, digest: str, *, limit: int = _MAX_BLOB_IN_MEMORY) -> bytes:
        """A small blob (a config) in memory, verified against its digest."""
        _checked(repository, digest, digest_only=True)
        _, data = self._t.get_small(
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
        _checked(repository, digest, digest_only=True)
        what = f"blob {digest} in {repository}"
        with self._t.exchange(
            "GET",
            f"/v2/{repository}/blobs/{digest}",
            ok=(200,),
            scope=f"repository:{repository}:pull",
            what=what,
            follow=True,
            stream=True,
        ) as (_, raw):
            assert raw is not None
            assert isinstance(raw.stream, _sync_stream())
            raw.stream = _guarded_stream()(raw.stream, self.registry, what)
            yield raw

    def mount_blob(self, repository: str, digest: str, source_repository: str) -> bool:
        """Cross-repository mount; True when mounted, False when the registry started an upload instead."""
        _checked(repository, digest, digest_only=True)
        _checked(source_repository)
        return upload.mount(self._t, repository, digest, source_repository)

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
        _checked(repository, digest, digest_only=True)
        upload.upload(self._t, repository, data, digest, chunk_size=chunk_size, size=size)

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
        _checked(repository, digest, digest_only=True)
        _checked(source_repository)
        from . import relay  # with http.client: not imported by commands that read storage only

        done = relay.relay(
            self._t,
            source._t,
            source_repository,
            repository,
            digest,
            size,
            on_bytes=on_bytes,
            chunk_size=chunk_size,
        )
        if done:
            with self._lock:
                self.blobs_relayed += 1
        return done


def _default_timeout() -> float:
    """Seconds to wait for a silent registry: $JINDR_TIMEOUT, else 30."""
    value = os.environ.get("JINDR_TIMEOUT", "")
    try:
        seconds = float(value) if value else 30.0
    except ValueError:
        return 30.0
    return min(seconds, 3600.0) if seconds > 0 else 30.0  # nan -> 30, inf -> an hour


#: The distribution spec's repository name: lower-case components joined by `/` (never `..`, never empty).
_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*\Z")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")


def _checked(repository: str, reference: str | None = None, *, digest_only: bool = False) -> None:
    """Refuse a name that is not one before it becomes part of a URL.

    Names reach the client from catalogs, tag lists and manifests a registry sent, not only from the
    user: `v1/../v1` as a child digest would otherwise fetch the tag `v1` (URLs are normalised).
    """
    if not _REPOSITORY.match(repository):
        raise IntegrityError(f"{repository!r} is not a repository name: refusing to put it in a URL")
    if reference is None:
        return
    if _DIGEST.fullmatch(reference) or (not digest_only and _TAG.match(reference)):
        return
    kind = "a digest" if digest_only else "a tag or a digest"
    raise IntegrityError(f"{reference!r} in {repository} is not {kind}: refusing to put it in a URL")


def _what(repository: str, reference: str) -> str:
    sep = "@" if ":" in reference else ":"
    return f"{repository}{sep}{reference}"


def default_insecure() -> frozenset[str]:
    """Registries listed in JINDR_INSECURE_REGISTRIES (comma separated) are spoken to over http."""
    return frozenset(x.strip() for x in os.environ.get("JINDR_INSECURE_REGISTRIES", "").split(",") if x.strip())


def _sync_stream() -> type[httpx.SyncByteStream]:
    import httpx

    return httpx.SyncByteStream


@functools.cache
def _guarded_stream() -> Callable[[httpx.SyncByteStream, str, str], httpx.SyncByteStream]:
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
                raise for_transport(exc, self.registry, self.what) from exc
            except httpx.HTTPError:
                raise IntegrityError(
                    f"{self.what}: body truncated ({self.registry} closed the connection after {got} bytes)",
                    registry=self.registry,
                ) from None

        def close(self) -> None:
            self.inner.close()

    return Guarded
