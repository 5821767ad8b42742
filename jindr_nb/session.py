"""`Session`: what a face keeps between commands — the default registry, pooled clients, the cache.

A face (the magic, the CLI, a panel) makes one and hands it to every command it runs; the
handlers in `commands.py` take everything they need from it, nothing from globals.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .refs import DEFAULT_REGISTRY, Ref, is_loopback, parse_ref, parse_registry

if TYPE_CHECKING:
    import ssl

    from .client import RegistryClient
    from .ops.cache import ContentCache
    from .ops.fetch import Fetcher

__all__ = ["Session"]


class Session:
    """Long-lived state of a face: the default registry, pooled clients, and the content cache."""

    def __init__(
        self,
        registry: str | None = None,
        *,
        cache: ContentCache | None = None,
        confirm: Callable[[str], bool] | None = None,
    ) -> None:
        self.registry = parse_registry(registry or os.environ.get("JINDR_REGISTRY") or DEFAULT_REGISTRY)
        self._cache = cache
        self._clients: dict[str, RegistryClient] = {}
        #: Asked before a destructive command acts (the CLI on a terminal); None acts without asking.
        self.confirm = confirm
        #: Makes a progress callback (done, total) for a named task; the faces supply bars or lines.
        self.progress: Callable[[str], Callable[[int, int], None] | None] = lambda name: None
        #: `--insecure` given: registries off loopback may be spoken to over plain HTTP.
        self.insecure = False
        #: Tells the user something that is not a result (a warning); the faces print it to stderr.
        self.notice: Callable[[str], None] = _to_stderr

    @property
    def cache(self) -> ContentCache:
        if self._cache is None:
            from .ops.cache import ContentCache, default_cache_dir

            self._cache = ContentCache(default_cache_dir())
        return self._cache

    def client(self, registry: str | None = None) -> RegistryClient:
        """The pooled client for `registry` (default: the session's).

        Loopback registries are spoken to over plain HTTP; every other one over HTTPS with the
        certificate verified, unless `--insecure` (or JINDR_INSECURE_REGISTRIES) says otherwise.
        A registry jindr runs with TLS is spoken to over HTTPS trusting the CA jindr made for it,
        and one with users gets JINDR_USERNAME's credentials (else Docker's config, on a 401).
        """
        from .client import RegistryClient, default_insecure
        from .runtime import client_settings

        name = registry or self.registry
        settings = client_settings(name)
        if settings is not None:
            if name not in self._clients:
                self._clients[name] = RegistryClient(
                    name, tls=_trusting(settings.ca) if settings.tls else None, credentials=settings.login()
                )
            return self._clients[name]
        insecure = not is_loopback(name) and (self.insecure or name in default_insecure())
        key = f"{name} (plain http)" if insecure else name
        if key not in self._clients:
            if insecure:
                why = "--insecure" if self.insecure else "JINDR_INSECURE_REGISTRIES"
                self.notice(f"jindr: warning: speaking plain HTTP to {name}: no TLS, as asked by {why}")
            self._clients[key] = RegistryClient(name, insecure=insecure)
        return self._clients[key]

    def fetcher(self, registry: str | None = None, *, local: bool = True) -> Fetcher:
        """Reads through the registry's storage when jindr runs it here (`local`): its bucket when it
        keeps its tree on object storage, else its directory; otherwise its API."""
        from .ops.fetch import Fetcher

        client = self.client(registry)
        if local:
            from .runtime import local_storage, managed_bucket, running

            bucket = managed_bucket(client.registry)
            # Running, as for a directory: a stopped registry is not listed as if it answered.
            if bucket is not None and running(client.registry) is not None:
                from .client.bucket import BucketLayout, BucketReader

                location = bucket.location
                layout = BucketLayout(bucket.client(), location.bucket, location.root, blob_listing=False)
                return Fetcher(BucketReader(layout, client), self.cache)

            storage = local_storage(client.registry)
            if storage is not None:
                from .client.storage import StorageReader

                return Fetcher(StorageReader(storage, client), self.cache)
        return Fetcher(client, self.cache)

    def ref(self, text: str, *, default_tag: str | None = "latest") -> Ref:
        """Parse a reference typed by the user, relative to the session's registry."""
        return parse_ref(text, self.registry, default_tag=default_tag)

    def by_registry(self, refs: Sequence[Ref]) -> list[tuple[str, list[Ref]]]:
        """`refs` grouped by registry, in the order each registry first appears; with no refs, the
        session's registry with an empty selection (a command's "everything")."""
        if not refs:
            return [(self.registry, [])]
        registries = dict.fromkeys(r.registry for r in refs)
        return [(registry, [r for r in refs if r.registry == registry]) for registry in registries]

    def with_registry(self, registry: str) -> Session:
        """A view of this session on another default registry, sharing its clients and cache."""
        registry = parse_registry(registry)
        self.cache  # noqa: B018 - built here so that every view shares this one (and its open file)
        view = copy.copy(self)
        view.registry = registry
        return view

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        if self._cache is not None:
            self._cache.close()


def _trusting(ca: str | None) -> ssl.SSLContext:
    """Verification for a TLS registry jindr runs: its CA (no flag, no SSL_CERT_FILE needed), or the
    system's CAs for a certificate of the user's own issued elsewhere."""
    import ssl

    return ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()


def _to_stderr(text: str) -> None:
    import sys

    print(text, file=sys.stderr)
