"""`%jindr`: the command table as an IPython line magic that returns DataFrames."""

from __future__ import annotations

import os
import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from traitlets import Unicode

from .commands import HelpShown, Session, build_parser, panel_for, run
from .errors import CommandLineError, JindrError
from .frames import to_frame
from .refs import DEFAULT_REGISTRY

__all__ = ["JindrMagics"]


def _in_kernel(shell: Any) -> bool:
    """True in a Jupyter kernel, where widgets render; False in terminal IPython."""
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _progress_bar(name: str) -> Any:
    """A progress bar (bytes) shown in the cell now and updated from worker threads."""
    import ipywidgets as widgets
    from IPython.display import display

    bar = widgets.IntProgress(value=0, min=0, max=1, description="", layout=widgets.Layout(width="40%"))
    label = widgets.Label(value=f"{name}: starting")
    display(widgets.HBox([bar, label]))

    def update(done: int, total: int) -> None:
        bar.max = max(total, 1)
        bar.value = min(done, bar.max)
        label.value = f"{name}: {_mib(done)} of {_mib(total)}" + (" — done" if done >= total else "")
        bar.bar_style = "success" if done >= total else ""

    return update


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


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
        if self._session is None:
            self._session = Session(wanted)
            self._session.progress = _progress_bar if _in_kernel(self.shell) else (lambda name: None)
        elif self._session.registry != wanted:
            self._session = self._session.with_registry(wanted)  # keeps warm connections and caches
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
            panel = panel_for(args)
            if panel:
                from . import widgets

                registry = (
                    self.session.with_registry(args.registry).registry
                    if args.registry is not None
                    else self.session.registry
                )
                return getattr(widgets, panel)(registry, insecure=args.insecure)
            result = run(self.session, args)
        except HelpShown:
            return None
        except CommandLineError as exc:
            if debug:
                raise
            raise UsageError(f"{exc.usage}\n%jindr: error: {exc}" if exc.usage else f"%jindr: error: {exc}") from None
        except JindrError as exc:
            if debug:
                raise
            raise UsageError(str(exc)) from None
        if result.message:
            print(result.message)
        return to_frame(result.rows, result.row_type)
