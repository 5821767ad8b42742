"""What each dependency's failures mean in jindr's error tree: one declarative map per dependency.

- `STATUS_RULES`: an answer's status (and the registry's own OCI error codes) → the error class and
  message; the codes, messages and details the registry sent stay on the error as data.
- `HTTPX_RULES`: httpx's exception classes (the remote stack) → error class and message.
- `OS_RULES`: the standard library's socket and `http.client` failures (the loopback stack).

Every error carries the registry, method, URL and (for answers) status.
"""

from __future__ import annotations

import json
import os
import re
import socket
from typing import TYPE_CHECKING, Any

from ..errors import IntegrityError, NotFound, RegistryError, RegistryUnreachable, Unauthorized, Unsupported
from ..refs import is_loopback

if TYPE_CHECKING:
    from .transport import Response

__all__ = ["for_loopback", "for_status", "for_transport", "oci_errors", "unreachable"]

_API_PATH = re.compile(r"/v2/(.+?)/(?:tags/list|manifests/[^/]+|blobs/(?:uploads/.*|[^/]+))")

#: (statuses, method or None, OCI error code or None) → (class, message, hint); the first match wins.
#: Messages name {registry}, {what}, {method}, {status}, {repository}, {detail}, {later}.
_NO = "{registry} does not support {method} for {what}{detail}"
STATUS_RULES: tuple[tuple[tuple[int, int], str | None, str | None, type[RegistryError], str, str], ...] = (
    ((401, 401), None, None, Unauthorized,
     "{registry} refused the credentials for {what}; check `docker login {registry}`", ""),
    ((403, 403), None, None, Unauthorized, "{registry} denied access to {what}{detail}", ""),
    ((404, 404), None, "NAME_UNKNOWN", NotFound,
     "repository {repository} not found in {registry}", "`{{prog}} ls` lists them"),
    ((404, 404), None, "MANIFEST_UNKNOWN", NotFound,
     "{what} not found in {registry}", "`{{prog}} lsi REPO` lists its tags"),
    ((404, 404), None, None, NotFound, "{what} not found in {registry}", ""),
    ((405, 405), "DELETE", None, Unsupported,
     "{registry} has deletion disabled; restart it with REGISTRY_STORAGE_DELETE_ENABLED=true",
     "`{{prog}} start` runs registries that way"),
    ((405, 405), None, None, Unsupported, _NO, ""),
    ((501, 501), None, None, Unsupported, _NO, ""),
    ((0, 999), None, "UNSUPPORTED", Unsupported, _NO, ""),
    ((400, 400), None, "MANIFEST_INVALID", IntegrityError, "{registry} rejected {what}{detail}", ""),
    ((400, 400), None, "DIGEST_INVALID", IntegrityError, "{registry} rejected {what}{detail}", ""),
    ((429, 429), None, None, RegistryError,
     "{registry} is rate-limiting requests (429) on {what}{detail}; try again {later}", ""),
    ((500, 599), None, None, RegistryError, "{registry} failed ({status}) on {what}{detail}; try again", ""),
    ((0, 999), None, None, RegistryError, "{registry} answered {status} for {what}{detail}", ""),
)  # fmt: skip

_CLOSED = (
    "{registry} closed the connection{during} or does not speak HTTP; check that the address is a registry's ({name})"
)
_STALLED = "{registry} stopped answering{during} (timed out); is it overloaded or stalled?"

#: httpx exception class names (httpx is imported lazily) → (class, message); the first match wins.
#: Connection failures are `unreachable` (DNS or refused); TLS failures are told apart before.
HTTPX_RULES: tuple[tuple[str, type[RegistryError], str], ...] = (
    ("ConnectError", RegistryUnreachable, ""),
    ("ConnectTimeout", RegistryUnreachable, ""),
    ("TimeoutException", RegistryUnreachable, _STALLED),
    ("RemoteProtocolError", RegistryUnreachable, _CLOSED),
    ("ReadError", RegistryUnreachable, _CLOSED),
    ("UnsupportedProtocol", RegistryError, "bad URL for {registry}: {exc}"),
    ("InvalidURL", RegistryError, "bad URL for {registry}: {exc}"),
    ("HTTPError", RegistryUnreachable, "talking to {registry} failed: {name}: {exc}"),
)

#: The loopback stack's failures (socket errors, http.client's exceptions) → (class, message).
OS_RULES: tuple[tuple[type[BaseException], type[RegistryError], str], ...] = (
    (socket.gaierror, RegistryUnreachable, ""),
    (ConnectionRefusedError, RegistryUnreachable, ""),
    (TimeoutError, RegistryUnreachable, _STALLED),
    (OSError, RegistryUnreachable, _CLOSED),
    (Exception, RegistryUnreachable, _CLOSED),  # http.client.HTTPException: not an HTTP answer
)


def oci_errors(content: bytes) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """The registry's own error list: (codes, messages, a one-line detail for a message)."""
    try:
        body = json.loads(content or b"{}")
        errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
    except (ValueError, AttributeError, TypeError):
        return (), (), ""
    codes = tuple(str(e.get("code", "")) for e in errors)
    messages = tuple(_message(e) for e in errors if e.get("message"))
    return codes, messages, "; ".join(messages)


def for_status(resp: Response, registry: str, what: str) -> RegistryError:
    """The error for an answer whose status the caller did not expect."""
    status = resp.status
    codes, messages, detail = oci_errors(resp.content)
    wait = resp.headers.get("Retry-After").strip()
    path = resp.url.split("://", 1)[-1].partition("/")[2].partition("?")[0]
    fields = {
        "registry": registry,
        "what": what,
        "method": resp.method,
        "status": status,
        "repository": _repository_of("/" + path) or what,
        "detail": f": {detail}" if detail else "",
        "later": f"in {wait} s" if wait.isdigit() else "later",
    }
    for (low, high), method, code, kind, message, hint in STATUS_RULES:
        if low <= status <= high and method in (None, resp.method) and (code is None or code in codes):
            return kind(
                message.format(**fields),
                hint=hint.format(),
                registry=registry,
                status=status,
                codes=codes,
                messages=messages,
                method=resp.method,
                url=resp.url,
            )
    raise AssertionError("STATUS_RULES ends with a rule for every status")


def for_transport(exc: BaseException, registry: str, what: str = "", method: str = "", url: str = "") -> RegistryError:
    """The error for an httpx failure."""
    import httpx

    text = str(exc)
    kw: dict[str, Any] = {"method": method, "url": url}
    if "CERTIFICATE_VERIFY_FAILED" in text:
        reason = text.rpartition("certificate verify failed:")[2].strip(" ()") or "not trusted"
        return RegistryUnreachable(
            f"{registry}'s TLS certificate is not trusted ({reason}); add its CA to SSL_CERT_FILE",
            registry=registry,
            hint="or use --insecure for plain HTTP",
            **kw,
        )
    if isinstance(exc, httpx.ConnectError) and "[SSL" in text:
        return RegistryUnreachable(
            f"TLS with {registry} failed ({text}); it may serve plain HTTP",
            registry=registry,
            hint="--insecure speaks plain HTTP to it",
            **kw,
        )
    for name, kind, message in HTTPX_RULES:
        if isinstance(exc, getattr(httpx, name)):
            if not message:
                return unreachable(registry, "dns" if _caused_by(exc, socket.gaierror) else "refused", **kw)
            return kind(_say(message, registry, what, exc), registry=registry, **kw)
    return RegistryUnreachable(
        _say("talking to {registry} failed: {name}: {exc}", registry, what, exc), registry=registry, **kw
    )


def for_loopback(exc: BaseException, registry: str, what: str = "", method: str = "", url: str = "") -> RegistryError:
    """The error for a failure of the loopback stack (the standard library's sockets and http.client)."""
    kw: dict[str, Any] = {"method": method, "url": url}
    for cls, kind, message in OS_RULES:
        if isinstance(exc, cls):
            if not message:
                return unreachable(registry, "dns" if isinstance(exc, socket.gaierror) else "refused", **kw)
            return kind(_say(message, registry, what, exc), registry=registry, **kw)
    raise AssertionError("OS_RULES ends with a rule for every exception")


def unreachable(registry: str, kind: str, role: str = "", **kw: Any) -> RegistryUnreachable:
    """The error for a registry that cannot be reached: its name does not resolve ("dns"), or nothing
    answers there ("refused"); `role` ("source", "destination") names which side of a copy it is."""
    named = f"the {role} {registry}" if role else registry
    if kind == "dns":
        host = registry.rpartition(":")[0] if registry.count(":") == 1 else registry
        return RegistryUnreachable(
            f"the name {host} does not resolve (DNS lookup failed); check the spelling of {named}",
            registry=registry,
            kind=kind,
            **kw,
        )
    message = f"no registry answers at {named}"
    if is_loopback(registry):
        return RegistryUnreachable(
            message, registry=registry, kind=kind, hint=f"start one there: `{{prog}} -r {registry} start`", **kw
        )
    return RegistryUnreachable(
        f"{message}; check the address and that the registry is running", registry=registry, kind=kind, **kw
    )


def _say(message: str, registry: str, what: str, exc: BaseException) -> str:
    return message.format(
        registry=registry, during=f" during {what}" if what else "", name=type(exc).__name__, exc=str(exc)
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


def _message(error: dict[str, Any]) -> str:
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
