"""Image references: parse once at the edge, then pass a frozen `Ref` around.

Grammar (Docker's): ``[host[:port]/]path[:tag][@algorithm:hex]``. The first path component
is a host when it contains ``.`` or ``:``, is ``localhost``, starts with ``[`` (IPv6) or has
upper-case letters; otherwise the reference belongs to the current registry.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from .errors import InvalidReference

__all__ = [
    "DEFAULT_REGISTRY",
    "Ref",
    "is_loopback",
    "parse_digest",
    "parse_ref",
    "parse_registry",
    "parse_repository",
    "scheme_for",
]

DEFAULT_REGISTRY = "localhost:5001"

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_DOMAIN_LABEL = re.compile(r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])\Z")
_HEX = re.compile(r"[a-f0-9]+\Z")
_DIGEST_LENGTHS = {"sha256": 64, "sha512": 128}
_MAX_NAME = 255


@dataclass(frozen=True, slots=True)
class Ref:
    """A parsed image reference; `str()` gives it back in canonical form."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def name(self) -> str:
        """`registry/repository`, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What the registry API takes after `/manifests/`: the digest when known, else the tag."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str) -> Ref:
        """A copy with `tag` (validated) and no digest."""
        _check_tag(tag, tag)
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> Ref:
        """A copy pinned to `digest` (validated), keeping the tag for display."""
        return replace(self, digest=parse_digest(digest))

    def with_registry(self, registry: str) -> Ref:
        """The same repository, tag and digest on another registry."""
        return replace(self, registry=parse_registry(registry))

    def with_repository(self, repository: str) -> Ref:
        """The same tag and digest under another repository name."""
        return replace(self, repository=parse_repository(repository))


def parse_ref(text: str, registry: str = DEFAULT_REGISTRY, *, default_tag: str | None = "latest") -> Ref:
    """Parse an image reference; a reference without a host belongs to `registry`.

    A reference with neither tag nor digest gets `default_tag` (``latest``; ``None`` keeps it bare,
    which listing commands use to mean "every tag").
    """
    if not isinstance(text, str) or not text:
        raise InvalidReference("empty image reference")
    if text != text.strip() or any(c.isspace() for c in text):
        raise InvalidReference(f"invalid reference {text!r}: whitespace is not allowed")
    rest, digest = text, None
    if "@" in rest:
        rest, _, raw_digest = rest.partition("@")
        if "@" in raw_digest:
            raise InvalidReference(f'invalid reference "{text}": more than one "@"')
        digest = _parse_digest(raw_digest, text)
    host, path = _split_host(rest, text)
    tag = None
    last_slash = path.rfind("/")
    colon = path.rfind(":")
    if colon > last_slash:
        path, tag = path[:colon], path[colon + 1 :]
        _check_tag(tag, text)
    repository = _check_path(path, text)
    if host is None:
        host = parse_registry(registry)
    if tag is None and digest is None:
        tag = default_tag
    return Ref(host, repository, tag, digest)


def parse_repository(text: str) -> str:
    """Validate a repository path (no host, tag or digest) and return it."""
    return _check_path(text, text)


def parse_registry(text: str, context: str | None = None) -> str:
    """Validate a registry address ``host[:port]`` and return it unchanged.

    `context` is the whole reference the address came from, for the error message.
    """
    try:
        return _parse_registry(text)
    except InvalidReference as exc:
        if context is None:
            raise
        raise InvalidReference(str(exc).replace(f'in "{text}"', f'in "{context}"')) from None


def _parse_registry(text: str) -> str:
    if not text:
        raise InvalidReference("empty registry address")
    if "://" in text:
        raise InvalidReference(f'invalid registry "{text}": give host[:port] without a scheme (e.g. localhost:5001)')
    if "/" in text or any(c.isspace() for c in text):
        raise InvalidReference(f'invalid registry "{text}": expected host[:port]')
    port: str | None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise InvalidReference(f'invalid registry "{text}": unclosed "[" in IPv6 address')
        try:
            ipaddress.IPv6Address(text[1:end])
        except ValueError:
            raise InvalidReference(f'invalid registry "{text}": "{text[1:end]}" is not an IPv6 address') from None
        host, port = text[: end + 1], text[end + 1 :]
        if port and not port.startswith(":"):
            raise InvalidReference(f'invalid registry "{text}": expected ":port" after "]"')
        port = port[1:] if port else None
    else:
        host, sep, port = text.partition(":")
        if sep and not port:
            raise InvalidReference(f'invalid registry "{text}": empty port')
        port = port if sep else None
        labels = host.split(".")
        if not all(_DOMAIN_LABEL.match(label) for label in labels):
            raise InvalidReference(f'invalid registry host "{host}" in "{text}"')
    if port is not None:
        if not port.isdigit() or not 0 < int(port) < 65536 or port != str(int(port)):
            raise InvalidReference(f'invalid port "{port}" in "{text}": expected 1-65535')
    return text


def parse_digest(text: str) -> str:
    """Validate a digest (``sha256:<64 hex>`` or ``sha512:<128 hex>``) and return it."""
    return _parse_digest(text, text)


def is_loopback(registry: str) -> bool:
    """True for `localhost`, 127.0.0.0/8 and [::1] registries (which jindr talks to over http)."""
    host = registry.rsplit(":", 1)[0] if not registry.startswith("[") else registry[1 : registry.find("]")]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def scheme_for(registry: str, insecure: frozenset[str] | set[str] = frozenset()) -> str:
    """`http` for loopback registries and those listed as insecure, `https` otherwise."""
    return "http" if is_loopback(registry) or registry in insecure else "https"


def _parse_digest(raw: str, text: str) -> str:
    algorithm, sep, hexpart = raw.partition(":")
    if not sep:
        raise InvalidReference(f'invalid digest "{raw}" in "{text}": expected algorithm:hex')
    if algorithm not in _DIGEST_LENGTHS:
        raise InvalidReference(f'invalid digest "{raw}" in "{text}": algorithm "{algorithm}" is not sha256 or sha512')
    if len(hexpart) != _DIGEST_LENGTHS[algorithm] or not _HEX.match(hexpart):
        raise InvalidReference(
            f'invalid digest "{raw}" in "{text}": {algorithm} needs {_DIGEST_LENGTHS[algorithm]} lower-case hex digits'
        )
    return raw


def _split_host(rest: str, text: str) -> tuple[str | None, str]:
    first, slash, remainder = rest.partition("/")
    if not slash:
        return None, rest
    looks_like_host = (
        "." in first or ":" in first or first == "localhost" or first.startswith("[") or first != first.lower()
    )
    if not looks_like_host:
        return None, rest
    return parse_registry(first, text), remainder


def _check_tag(tag: str, text: str) -> None:
    if not _TAG.match(tag):
        why = "longer than 128 characters" if len(tag) > 128 else "allowed: A-Z a-z 0-9 _ . - (not first: . -)"
        raise InvalidReference(f'invalid tag "{tag}" in "{text}": {why}')


def _check_path(path: str, text: str) -> str:
    if not path:
        raise InvalidReference(f'invalid reference "{text}": repository name is empty')
    if len(path) > _MAX_NAME:
        raise InvalidReference(f'invalid repository "{path[:40]}..." in "{text}": longer than {_MAX_NAME} characters')
    for component in path.split("/"):
        if not _COMPONENT.match(component):
            hint = "must be lower case" if component.lower() != component else "allowed: a-z 0-9 separated by . _ __ -"
            raise InvalidReference(f'invalid repository component "{component}" in "{text}": {hint}')
    return path
