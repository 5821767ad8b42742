"""Registry authentication: Basic, and the Bearer token challenge, with docker-config credentials."""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..errors import Unauthorized

if TYPE_CHECKING:
    import httpx

__all__ = ["Challenge", "Credentials", "docker_credentials", "fetch_token", "parse_challenge"]

#: RFC 6750's b64token: what a bearer token may hold, and so all an Authorization header gets from one.
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*\Z")
_UNSAFE = re.compile(r"[\r\n\x00]")
_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass(frozen=True, slots=True)
class Credentials:
    """A username and password (or identity token) for one registry."""

    username: str = ""
    password: str = ""
    identity_token: str = ""

    def __repr__(self) -> str:
        # Never let a secret reach a repr, a log or a traceback.
        return f"Credentials(username={self.username!r}, password={'***' if self.password else ''!r})"

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True, slots=True)
class Challenge:
    """A parsed `WWW-Authenticate` header."""

    scheme: str
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge:
    """`Bearer realm="...",service="...",scope="..."` → Challenge('bearer', {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)) for m in _PARAM.finditer(rest)}
    return Challenge(scheme.lower(), params)


def docker_credentials(registry: str, config_path: str | None = None) -> Credentials | None:
    """Credentials for `registry` from the docker config (`auths`, `credsStore`, `credHelpers`).

    Uses the docker SDK's own reader and credential-helper support, imported only when a registry
    actually asks for credentials.
    """
    from docker import auth as docker_auth  # lazy: docker is heavy and rarely needed
    from docker import errors as docker_errors

    path = config_path or os.environ.get("JINDR_DOCKER_CONFIG")
    try:
        config = docker_auth.load_config(config_path=path)
        entry = config.resolve_authconfig(registry)
    except (docker_errors.DockerException, OSError, ValueError) as exc:
        raise Unauthorized(
            f"could not read credentials for {registry} from the docker config: {exc}", registry=registry
        ) from None
    if not entry:
        return None
    # The SDK spells keys "username" for config entries and "Username" for helper answers.
    keys = {k.lower(): v for k, v in entry.items()}
    token = keys.get("identitytoken") or ""
    username, password = keys.get("username") or "", keys.get("password") or ""
    if not (username or token):
        return None
    return Credentials(username, password, token)


def fetch_token(http: httpx.Client, challenge: Challenge, scope: str, creds: Credentials | None, registry: str) -> str:
    """Ask the challenge's realm for a bearer token for `scope` (using `creds` when we have them).

    The realm comes from the registry's answer: one that is not a plain http(s) URL (a control
    character, say, that would put text of the registry's choosing on the wire) gets no request.
    """
    import httpx

    realm = challenge.params.get("realm")
    if not realm:
        raise Unauthorized(f"{registry} sent a Bearer challenge without a realm", registry=registry)
    parts = urlsplit(realm) if not _UNSAFE.search(realm) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise Unauthorized(
            f"{registry} named a token server that is not an http(s) URL (or holds a control character); "
            "nothing was sent to it — check the registry's auth settings",
            registry=registry,
        )
    server = parts.hostname
    service = challenge.params.get("service", "")
    scope = challenge.params.get("scope") or scope
    if _UNSAFE.search(service) or _UNSAFE.search(scope):
        raise Unauthorized(
            f"{registry} sent a challenge for token server {server} with a control character in it; not asked",
            registry=registry,
        )
    params = {k: v for k, v in (("service", service), ("scope", scope)) if v}
    headers = {"Authorization": creds.basic_header()} if creds and creds.username else {}
    try:
        if creds and creds.identity_token:
            resp = http.post(
                realm,
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": creds.identity_token,
                    "service": service,
                    "scope": scope,
                },
            )
        else:
            resp = http.get(realm, params=params, headers=headers)
    except httpx.HTTPError as exc:
        raise Unauthorized(
            f"token server {server} for {registry} failed ({type(exc).__name__})", registry=registry
        ) from None
    if resp.status_code in (401, 403):
        raise Unauthorized(
            f"{registry} refused the credentials"
            + (" from the docker config" if creds else "; log in with `docker login " + registry + "`"),
            registry=registry,
            status=resp.status_code,
        )
    if resp.status_code != 200:
        raise Unauthorized(
            f"token server {server} answered {resp.status_code} for {registry}",
            registry=registry,
            status=resp.status_code,
        )
    try:
        body = resp.json()
        token = body.get("token") or body.get("access_token")
    except (ValueError, AttributeError):
        token = None
    if not token:
        raise Unauthorized(f"token server {server} sent no token for {registry}", registry=registry)
    if not isinstance(token, str) or not _BEARER_TOKEN.match(token):
        # Never sent, never shown: a value with CR/LF would put headers of the server's choosing
        # on the wire, and the token itself is a secret.
        raise Unauthorized(
            f"token server {server} sent a token for {registry} that is not a bearer token (RFC 6750: letters, "
            "digits and -._~+/ only); not sent — check the token server",
            registry=registry,
        )
    return token
