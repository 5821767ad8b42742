"""Listings that come in pages: the catalog and a repository's tags, following `Link` headers."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..errors import IntegrityError, RegistryError
from .transport import same_origin

if TYPE_CHECKING:
    from .transport import Transport

__all__ = ["MAX_PAGE_BYTES", "next_link", "paginate"]

PAGE = 1000  # newer registries refuse n above their maxentries (default 1000)
MAX_PAGES = 10_000
MAX_PAGE_BYTES = 16 * 1024 * 1024


def paginate(t: Transport, path: str, key: str, *, scope: str, what: str) -> list[str]:
    """Every entry of the `key` list over all pages, refusing loops and links to other hosts."""
    items: list[str] = []
    url: str | None = f"{path}?n={PAGE}"
    seen: set[str] = set()
    known: set[str] = set()
    page_size = PAGE
    while url is not None:
        if len(seen) >= MAX_PAGES or url in seen:
            raise IntegrityError(
                f"{t.registry} sent a pagination loop listing {what} (page {url} again)", registry=t.registry
            )
        seen.add(url)
        try:
            found, raw = t.get_small(url, scope=scope, what=what, limit=MAX_PAGE_BYTES)
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
                f"{t.registry} sent a listing of {what} that is not JSON", registry=t.registry
            ) from None
        if not isinstance(body, dict) or key not in body or not isinstance(body[key], list | None):
            # A registry always names the list, even when it is empty (`"tags": null`).
            raise IntegrityError(
                f"{t.registry} answered the {what} listing without a {key!r} list: "
                "it does not look like a registry; check the address",
                registry=t.registry,
                hint="`-r HOST:PORT` names the registry",
            )
        page = [str(x) for x in body[key] or []]
        fresh = [x for x in page if x not in known]
        items.extend(page)
        known.update(fresh)
        try:
            url = next_link(found.get_all("Link"))
        except ValueError:
            raise IntegrityError(
                f"{t.registry} sent two different next pages listing {what} (two Link headers)", registry=t.registry
            ) from None
        if url is not None and not fresh:
            # Distinct URLs replaying old entries (or none) would otherwise go on for MAX_PAGES pages.
            raise IntegrityError(
                f"{t.registry} sent a pagination loop listing {what} (a page with nothing new, then a link to {url})",
                registry=t.registry,
            )
        if url is not None and "://" in url:
            if not same_origin(url, t.base_url):
                raise IntegrityError(f"{t.registry} sent a Link to another host: {url}", registry=t.registry)
            parts = urlsplit(url)
            url = parts.path + ("?" + parts.query if parts.query else "")
    return items


def next_link(headers: list[str]) -> str | None:
    """The target of the `rel="next"` link among `Link` header values (one header may hold several);
    two different next pages are an answer no registry sends (`ValueError`)."""
    found: set[str] = set()
    for header in headers:
        for part in header.split(","):
            if 'rel="next"' in part or "rel=next" in part:
                start, end = part.find("<"), part.find(">")
                if 0 <= start < end:
                    found.add(part[start + 1 : end])
    if len(found) > 1:
        raise ValueError("two different next pages")
    return found.pop() if found else None
