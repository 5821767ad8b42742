"""Blob uploads: one PUT, PATCH chunks, a cross-repository mount, and the upload session's Location."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from ..errors import IntegrityError, RegistryError

if TYPE_CHECKING:
    from .transport import Response, Transport

__all__ = ["add_query", "cancel", "location", "mount", "start", "upload"]

_OCTETS = "application/octet-stream"


def location(t: Transport, resp: Response) -> str:
    """The absolute URL of the upload session an answer points to."""
    found = resp.headers.get("Location")
    if not found:
        raise IntegrityError(
            f"{t.registry} started an upload without a Location header",
            registry=t.registry,
            method=resp.method,
            url=resp.url,
            status=resp.status,
        )
    return t.url(found)


def add_query(url: str, **params: str) -> str:
    sep = "&" if "?" in url else "?"
    return url + sep + "&".join(f"{k}={v}" for k, v in params.items())


def start(t: Transport, repository: str, scope: str, what: str) -> str:
    """POST a new upload session; its Location."""
    return location(t, t.send("POST", f"/v2/{repository}/blobs/uploads/", ok=(202,), scope=scope, what=what))


def cancel(t: Transport, url: str, scope: str) -> None:
    """Best effort: an upload session jindr will not finish should not linger."""
    try:
        t.send("DELETE", url, ok=(204, 404, 405), scope=scope, what="upload cancel", retry=False)
    except RegistryError:
        pass


def mount(t: Transport, repository: str, digest: str, source_repository: str) -> bool:
    """Cross-repository mount; True when mounted, False when the registry started an upload instead."""
    resp = t.send(
        "POST",
        f"/v2/{repository}/blobs/uploads/?" + urlencode({"mount": digest, "from": source_repository}),
        ok=(201, 202),
        scope=f"repository:{repository}:pull,push repository:{source_repository}:pull",
        what=f"mount of {digest} into {repository}",
    )
    if resp.status == 202 and resp.headers.get("Location"):
        # An upload session we do not need: cancel it so it does not linger.
        try:
            t.send(
                "DELETE",
                location(t, resp),
                ok=(204, 404, 405),
                scope=f"repository:{repository}:pull,push",
                what="upload cancel",
            )
        except RegistryError:
            pass
    return resp.status == 201


def upload(
    t: Transport,
    repository: str,
    data: bytes | Iterable[bytes],
    digest: str,
    *,
    chunk_size: int | None = None,
    size: int | None = None,
) -> None:
    """Upload a blob: one PUT by default, PATCH chunks of `chunk_size` bytes when asked (see
    `RegistryClient.upload_blob`)."""
    scope = f"repository:{repository}:pull,push"
    what = f"upload of {digest} to {repository}"
    url = start(t, repository, scope, what)
    if chunk_size is None:
        headers = {"Content-Type": _OCTETS}
        if size is not None and not isinstance(data, bytes | bytearray | memoryview):
            headers["Content-Length"] = str(size)  # a plain body, not chunked transfer encoding
        t.send(
            "PUT",
            add_query(url, digest=digest),
            ok=(201,),
            scope=scope,
            content=bytes(data) if isinstance(data, bytearray | memoryview) else data,
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
        resp = t.send(
            "PATCH",
            url,
            ok=(202,),
            scope=scope,
            content=reader.take(length),
            headers={
                "Content-Type": _OCTETS,
                "Content-Range": f"{offset}-{offset + length - 1}",
                "Content-Length": str(length),
            },
            what=what,
            retry=False,
        )
        offset += length
        url = location(t, resp)
    reader.finish()
    t.send("PUT", add_query(url, digest=digest), ok=(201,), scope=scope, content=b"", what=what, retry=False)


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
