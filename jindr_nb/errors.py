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

Errors carry data (registry, status, OCI error codes and messages, method, URL) so callers can act on them
without parsing the message. The message (`str(exc)`) says what failed in words that hold in every
face, a panel included; `hint` is the next step as a command line (`{prog}` stands for `jindr` or
`%jindr`), which only the CLI and the magic add: `exc.line("jindr")`. Faces translate a JindrError
into their own one-line error; anything else escaping a command is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any

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
    """Base of every error jindr raises on purpose; `hint` is the command-line advice kept apart."""

    def __init__(self, *args: object, hint: str = "") -> None:
        super().__init__(*args)
        self.hint = hint

    def line(self, prog: str = "") -> str:
        """The message, with the hint worded for `prog` (`jindr`, `%jindr`); without a prog, the message alone."""
        if not prog or not self.hint:
            return str(self)
        return f"{self} — {self.hint.replace('{prog}', prog)}"


class InvalidReference(JindrError, ValueError):
    """An image reference or registry address that does not parse."""


class CommandLineError(JindrError):
    """A bad command line; `usage` holds the usage line of the command that refused it."""

    def __init__(self, message: str, usage: str = "", *, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.usage = usage


class Refused(JindrError):
    """A destructive command that would break something the user did not name; nothing was changed."""


class RuntimeFailure(JindrError):
    """A registry could not be started, stopped or garbage-collected on this machine."""


class ImageUnavailable(RuntimeFailure):
    """The registry image is not on the engine and could not be pulled (`tried_at`: a remembered failure)."""

    def __init__(self, message: str, *, image: str = "", tried_at: float | None = None, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.image = image
        self.tried_at = tried_at


class RegistryError(JindrError):
    """The registry answered something jindr cannot use."""

    def __init__(
        self,
        message: str,
        *,
        registry: str = "",
        status: int | None = None,
        codes: tuple[str, ...] = (),
        messages: tuple[str, ...] = (),
        method: str = "",
        url: str = "",
        hint: str = "",
    ) -> None:
        super().__init__(message, hint=hint)
        self.registry = registry
        self.status = status
        self.codes = codes
        #: The registry's own messages, one per OCI error (`codes` holds their codes).
        self.messages = messages
        self.method = method
        self.url = url


class RegistryUnreachable(RegistryError):
    """Nothing answers at the registry's address, or what answers is not a registry.

    `kind` says why when it is known: "refused" (nothing listens), "dns" (the name does not resolve).
    """

    def __init__(self, message: str, *, kind: str = "", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.kind = kind


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
