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
from .frames import frame_html, to_frame
from .refs import DEFAULT_REGISTRY

__all__ = ["JindrMagics"]


def _in_kernel(shell: Any) -> bool:
    """True in a Jupyter kernel, where widgets render; False in terminal IPython."""
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _progress_bar(name: str) -> Any:
    """A progress bar (bytes) shown in the cell now, updated from worker threads; green or red when done."""
    from IPython import get_ipython
    from IPython.display import display

    from .widgets.progress import ProgressBar, in_cell

    bar = in_cell(get_ipython(), ProgressBar(name))
    display(bar.widget)
    return bar.update


_SHOWN: dict[type[JindrError], type[JindrError]] = {}


def _one_line(cls: type[JindrError]) -> type[JindrError]:
    """`cls` as a cell shows it: one line under its own name (`NotFound: ...`), with the `%jindr` hint.

    IPython prints what `_render_traceback_` returns instead of a traceback; UsageError (its other
    way to drop one) would label a registry that is down "UsageError". Still an instance of `cls`.
    """

    def render(self: JindrError) -> list[str]:
        return [f"{cls.__name__}: {self.line('%jindr')}"]

    if cls not in _SHOWN:
        namespace = {"_render_traceback_": render, "__module__": cls.__module__, "__qualname__": cls.__qualname__}
        _SHOWN[cls] = type(cls.__name__, (cls,), namespace)
    return _SHOWN[cls]


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
        if shell is not None:
            # DataFrames jindr made show readably (frames.frame_html); any other gets pandas' own HTML.
            # By name, so that loading the extension does not import pandas ("pandas.core.frame": pandas 2).
            html = shell.display_formatter.formatters["text/html"]
            for module in ("pandas", "pandas.core.frame"):
                html.for_type_by_name(module, "DataFrame", frame_html)

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
            text = f"%jindr: error: {exc.line('%jindr')}"
            raise UsageError(f"{exc.usage}\n{text}" if exc.usage else text) from None
        except JindrError as exc:
            if debug:
                raise
            exc.__class__ = _one_line(type(exc))  # the same error, shown without its traceback
            raise exc from None
        if result.message:
            print(result.message)
        return to_frame(result.rows, result.row_type)
