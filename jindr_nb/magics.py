"""`%jindr`: the command table as an IPython line magic that returns DataFrames."""

from __future__ import annotations

import os
import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from traitlets import Unicode

from .commands import HelpShown, Session, build_parser, run
from .errors import CommandLineError, JindrError
from .frames import to_frame
from .refs import DEFAULT_REGISTRY

__all__ = ["JindrMagics"]


@magics_class
class JindrMagics(Magics):
    """`%jindr [-r REGISTRY] [--debug] COMMAND [ARGS]` — manage a local registry from a notebook."""

    registry = Unicode(
        "",
        help=f"Default registry (host:port) for %jindr; else $JINDR_REGISTRY, else {DEFAULT_REGISTRY}.",
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        """The kernel-wide session: pooled clients and caches survive between cells."""
        wanted = self.registry or os.environ.get("JINDR_REGISTRY") or DEFAULT_REGISTRY
        if self._session is None or self._session.registry != wanted:
            old = self._session
            self._session = Session(wanted, cache=old.cache if old is not None else None)
            if old is not None:
                self._session._clients = old._clients  # keep warm connections
        return self._session

    @line_magic
    def jindr(self, line: str) -> Any:
        """Manage a private Docker/OCI registry; `%jindr --help` lists the commands."""
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%jindr: cannot split the line: {exc}") from None
        parser = build_parser("%jindr", cli=False)
        debug = "--debug" in argv
        try:
            args = parser.parse_args(argv)
            result = run(self.session, args)
        except HelpShown:
            return None
        except CommandLineError as exc:
            if debug:
                raise
            raise UsageError(f"{exc.usage}\n%jindr: error: {exc}" if exc.usage else str(exc)) from None
        except JindrError as exc:
            if debug:
                raise
            raise UsageError(str(exc)) from None
        if result.message:
            print(result.message)
        return to_frame(result.rows, result.row_type)
