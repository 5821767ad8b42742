"""Manifests and configs through the content cache: by digest once, from memory or disk after."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..client import RegistryClient
from ..models import Index, Manifest, Platform, config_created, parse_manifest
from .cache import ContentCache

__all__ = ["ConfigInfo", "Fetcher"]


@dataclass(frozen=True, slots=True)
class ConfigInfo:
    """What listing needs from an image config blob."""

    platform: Platform
    created: object  # datetime | None


class Fetcher:
    """Reads manifests and configs of one registry, caching what is addressed by digest."""

    def __init__(self, client: RegistryClient, cache: ContentCache | None = None) -> None:
        self.client = client
        self.cache = cache if cache is not None else ContentCache()

    def manifest(self, repository: str, reference: str) -> Manifest | Index:
        """A parsed manifest; by digest from the cache when we have it, by tag always asked."""
        if reference.startswith("sha256:"):
            hit = self.cache.get(reference)
            if hit is not None:
                return parse_manifest(hit[1], hit[0], reference)
        got = self.client.get_manifest(repository, reference)
        parsed = parse_manifest(got.raw, got.media_type, got.digest)
        self.cache.put(got.digest, parsed.media_type, got.raw)
        return parsed

    def config(self, repository: str, digest: str) -> ConfigInfo:
        """Platform and created time of a config blob."""
        hit = self.cache.get(digest)
        if hit is None:
            raw = self.client.get_blob(repository, digest, limit=16 * 1024 * 1024)
            self.cache.put(digest, "", raw)
        else:
            raw = hit[1]
        try:
            data = json.loads(raw)
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        return ConfigInfo(Platform.from_json(data), config_created(raw))
