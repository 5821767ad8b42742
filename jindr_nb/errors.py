"""Every error jindr raises on purpose.

    JindrError                      base; its message is one line that says what to do next
    ├── InvalidReference            an image reference or registry address that does not parse
    ├── CommandLineError            a bad command line (unknown command, option or argument)
    ├── Refused                     a delete that would break what was not asked for (nothing changed)
    ├── RuntimeFailure              a registry could not be started, stopped or collected here
    │   └── ImageUnavailable        the registry image is neither present nor pullable
    └── RegistryError               the registry answered something we cannot use
        ├── RegistryUnreachable     nothing (or not a registry) answers at the address
        ├── NotFound                repository, tag, manifest or blob unknown
        ├── Unauthorized            credentials missing or refused
        ├── Unsupported             the registry or the content cannot do what was asked
        └── IntegrityError          bytes that do not match their digest, or a body that is not JSON
            └── RestoreFailed       a failed delete whose rollback failed too (the message says what to push)

Errors carry data (registry, status, OCI error codes, method, URL) so callers can act on them
without parsing the message. Faces translate a JindrError into their own one-line error;
anything else escaping a command is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "CommandLineError",
    "ImageUnavailable",
    "IntegrityError",
    "InvalidReference",
    "JindrError",
    "NotFound",
    "Refused",
    "RegistryError",
    "RestoreFailed",
    "RegistryUnreachable",
    "RuntimeFailure",
    "Unauthorized",
    "Unsupported",
]


class JindrError(Exception):
    """Base of every error jindr raises on purpose."""


class InvalidReference(JindrError, ValueError):
    """An image reference or registry address that does not parse."""


class CommandLineError(JindrError):
    """A bad command line; `usage` holds the usage line of the command that refused it."""

    def __init__(self, message: str, usage: str = "") -> None:
        super().__init__(message)
        self.usage = usage


class Refused(JindrError):
    """A destructive command that would break something the user did not name; nothing was changed."""


class RuntimeFailure(JindrError):
    """A registry could not be started, stopped or garbage-collected on this machine."""


class ImageUnavailable(RuntimeFailure):
    """The registry image is not on the engine and could not be pulled."""


class RegistryError(JindrError):
    """The registry answered something jindr cannot use."""

    def __init__(
        self,
        message: str,
        *,
        registry: str = "",
        status: int | None = None,
        codes: tuple[str, ...] = (),
        method: str = "",
        url: str = "",
    ) -> None:
        super().__init__(message)
        self.registry = registry
        self.status = status
        self.codes = codes
        self.method = method
        self.url = url


class RegistryUnreachable(RegistryError):
    """Nothing answers at the registry's address, or what answers is not a registry."""


class NotFound(RegistryError):
    """A repository, tag, manifest or blob the registry does not know."""


class Unauthorized(RegistryError):
    """The registry wants credentials we do not have, or refused the ones we sent."""


class Unsupported(RegistryError):
    """The registry or the content cannot do what was asked (schema 1, deletion disabled, ...)."""


class IntegrityError(RegistryError):
    """Bytes that do not match their digest, or a body that is not what the API promises."""


class RestoreFailed(IntegrityError):
    """A delete step failed and putting back what it had moved failed too."""
