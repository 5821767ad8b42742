"""Users of a registry jindr runs: an htpasswd file of bcrypt hashes, and reading a password safely.

bcrypt is the only hash the registry's htpasswd auth accepts. The registry checks the hash on
every request that carries credentials, so the cost is what every pull and push pays on the
registry's CPU: DEFAULT_ROUNDS is Apache `htpasswd -B`'s default, and `rounds` raises it.
Passwords come from a prompt, stdin, or an environment variable the caller names; never from argv.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from ..errors import InvalidReference, RuntimeFailure
from .base import needs, write_private

__all__ = [
    "DEFAULT_ROUNDS",
    "add_user",
    "auth_section",
    "check_name",
    "list_users",
    "read_password",
    "remove_user",
]

DEFAULT_ROUNDS = 5  # ~2 ms per check here; 10 would be ~170 ms on every registry request
MAX_PASSWORD_BYTES = 72  # bcrypt reads no further; bcrypt>=5 refuses longer ones rather than cut them


def check_name(name: str) -> str:
    """A user name the htpasswd file and HTTP Basic can carry: no ':', no spaces or control characters."""
    if not name:
        raise InvalidReference("empty user name: give one, e.g. `jindr user add alice`")
    bad = [c for c in name if c == ":" or c.isspace() or not c.isprintable()]
    if bad or name.startswith("#") or len(name) > 256:
        raise InvalidReference(
            f"invalid user name {name!r}: no ':', spaces or control characters, not starting with '#', "
            "at most 256 characters"
        )
    return name


def _read(path: Path) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise RuntimeFailure(f"cannot read the users file {path}: {exc}") from None


def _entry_name(line: str) -> str | None:
    """The user a line defines, as the registry parses it (trimmed; '#' comments and blanks define none)."""
    text = line.strip()
    if not text or text.startswith("#") or ":" not in text:
        return None
    return text.split(":", 1)[0]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold the users file's lock (`flock` on `NAME.lock` beside it) while reading and rewriting it:
    two `user add` at once (two terminals, two replicas' files) each keep the other's user."""
    import fcntl

    from .._files import private_dirs

    lock = Path(path).with_name(Path(path).name + ".lock")
    private_dirs(lock.parent)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def list_users(path: Path) -> list[str]:
    """The user names in the file, in its order (an absent file has none)."""
    return [name for name in map(_entry_name, _read(path)) if name is not None]


def add_user(path: Path, name: str, password: str, *, rounds: int = DEFAULT_ROUNDS) -> bool:
    """Add `name` with a bcrypt hash of `password`, replacing its old entry; True when it replaced one."""
    needs("bcrypt", "user add")
    import bcrypt

    check_name(name)
    secret = _check_password(password)
    if not 4 <= rounds <= 31:
        raise InvalidReference(f"invalid bcrypt cost {rounds}: use 4 to 31 (each step doubles the time)")
    entry = f"{name}:{bcrypt.hashpw(secret, bcrypt.gensalt(rounds=rounds)).decode()}"
    with _locked(path):
        replaced = False
        out = []
        for line in _read(path):
            if _entry_name(line) == name:
                if not replaced:
                    out.append(entry)
                replaced = True
            else:
                out.append(line)
        if not replaced:
            out.append(entry)
        write_private(Path(path), "\n".join(out) + "\n")
    return replaced


def remove_user(path: Path, name: str) -> None:
    """Remove `name`; a name that is not there is an error that lists who is."""
    check_name(name)
    with _locked(path):
        lines = _read(path)
        kept = [line for line in lines if _entry_name(line) != name]
        if len(kept) == len(lines):
            known = ", ".join(list_users(path)) or "none"
            raise InvalidReference(f"no user {name!r} in {path} (users: {known})")
        write_private(Path(path), "\n".join(kept) + "\n" if kept else "")


def auth_section(path: Path, realm: str = "jindr") -> dict[str, dict[str, str]]:
    """The registry config's `auth` section for this htpasswd file."""
    return {"htpasswd": {"realm": realm, "path": str(path)}}


def read_password(
    *,
    env: str = "",
    stdin: bool = False,
    confirm: bool = True,
    environ: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
) -> str:
    """The password from the environment variable named `env`, from stdin (one line), or a prompt.

    The prompt asks twice when `confirm`; with no terminal it says how to pass the password instead
    (getpass would otherwise read the echoing stdin with a warning).
    """
    if env:
        value = (os.environ if environ is None else environ).get(env, "")
        if not value:
            raise InvalidReference(f"${env} is empty or not set: export the password in it, or use --password-stdin")
        return value
    if stdin:
        source = stream or sys.stdin
        text = source.readline()
        if not text.strip("\r\n"):
            raise InvalidReference("no password on stdin: pipe one line, e.g. `printenv PASS | jindr user add NAME`")
        return text.removesuffix("\n").removesuffix("\r")
    source = stream or sys.stdin
    if not source.isatty():
        raise InvalidReference(
            "no terminal to ask for the password: use --password-stdin, or --password-env VAR naming a variable"
        )
    import getpass

    first = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Password (again): ") != first:
        raise InvalidReference("the two passwords differ: nothing changed, try again")
    if not first:
        raise InvalidReference("empty password: nothing changed, type one")
    return first


def _check_password(password: str) -> bytes:
    if not password:
        raise InvalidReference("empty password: give one (prompt, --password-stdin or --password-env VAR)")
    if "\n" in password or "\r" in password:
        raise InvalidReference("a password cannot hold a line break: give it on one line")
    secret = password.encode()
    if len(secret) > MAX_PASSWORD_BYTES:
        raise InvalidReference(
            f"password of {len(secret)} bytes: bcrypt uses at most {MAX_PASSWORD_BYTES}; choose a shorter one"
        )
    return secret
