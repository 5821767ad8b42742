"""The registry HTTP API: `RegistryClient` and its authentication."""

from .auth import Credentials
from .registry import ManifestBytes, RegistryClient, default_insecure

__all__ = ["Credentials", "ManifestBytes", "RegistryClient", "default_insecure"]
