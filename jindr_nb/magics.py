"""`%jindr`: the command table as an IPython line magic that returns DataFrames."""

from __future__ import annotations

import ast
import os
import shlex
import sys
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from traitlets import Unicode

from .commands import HelpShown, Session, build_parser, panel_for, run
from .errors import CommandLineError, JindrError
from .frames import frame_html, to_frame
from .refs import DEFAULT_REGISTRY

__all__ = ["EachLineShown", "JindrMagics", "displayed", "silenced", "split_line", "unload_ipython_extension"]


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


def _end_bars(shell: Any, error: BaseException | None = None) -> None:
    """The command returned (or raised `error`): its bars end now, green or red with the error.

    Not only at the cell's end: a user who catches the error in the cell would otherwise get a green
    bar from `post_run_cell` for a copy whose every byte moved but whose manifest was refused.
    """
    progress = sys.modules.get(f"{__package__}.widgets.progress")
    if progress is not None:  # no bar can be open before the module that makes them is imported
        progress.end_in_cell(shell, error)


def displayed(value: Any) -> None:
    """Show `value` in the cell now, as IPython shows a cell's last value; nothing for None (help)."""
    if value is not None:
        from IPython.display import display

        display(value)


def silenced(value: Any) -> None:  # noqa: ARG001 - the value is dropped on purpose
    """Nothing: the value of a cell's last `%jindr ...;` line, silenced by its semicolon."""


_BLANK = " \t\r\n"  # shlex's whitespace


def _code(line: str) -> tuple[str, bool]:
    """`line` without its comment and without the `;` that silences it, and whether it had one.

    A comment starts at an unquoted `#` that begins a word (at the line's start or after
    whitespace), as in a POSIX shell: `run#2.tar`, `app:v1#old`, `'#x'` and `\\#x` are words. The
    line is silenced when what is left ends in an unquoted, unescaped `;`. Quotes and backslashes
    follow shlex's POSIX rules (no escapes inside '...'; a backslash takes the next character
    elsewhere); an open quote or a trailing backslash is left for shlex.split to refuse.
    """
    quote = ""
    escaped = False
    starts_word = True
    last = -1  # the last character that counts: not a blank outside quotes and escapes
    semicolon = -1  # the last `;` outside quotes and escapes
    for i, char in enumerate(line):
        plain = False  # outside quotes, not escaped, not a quote or backslash itself
        if escaped:
            escaped = False
        elif quote:
            if char == quote:
                quote = ""
            elif char == "\\" and quote == '"':
                escaped = True
        elif char == "#" and starts_word:
            break
        elif char == "\\":
            escaped = True
        elif char in "'\"":
            quote = char
        else:
            plain = True
            if char == ";":
                semicolon = i
        blank = plain and char in _BLANK
        starts_word = blank
        if not blank:
            last = i
    if last >= 0 and semicolon == last:
        return line[:last], True
    return line[: last + 1], False


def split_line(line: str) -> tuple[list[str], bool]:
    """A `%jindr` line's words as a shell splits them, and whether it ended in `;`.

    Quotes as in a shell; an unquoted `#` at the start of a word starts a comment (so README-style
    `%jindr start  # on localhost:5001` works, while `save app run#2.tar` keeps its `#`). A last
    unquoted `;` only silences the cell's output, as IPython's `;` does, and is no part of the last
    word; a quoted one (`'x;'`) is an argument. ValueError: an open quote.
    """
    code, quiet = _code(line)
    return shlex.split(code), quiet


def _jindr_line(node: ast.stmt) -> tuple[ast.Call, str] | None:
    """The call and line of a statement that is IPython's translation of a `%jindr LINE` line
    standing alone (`get_ipython().run_line_magic('jindr', 'LINE')`), else None."""
    if not isinstance(node, ast.Expr) or not isinstance(node.value, ast.Call):
        return None
    call = node.value
    func = call.func
    if not (
        isinstance(func, ast.Attribute)
        and func.attr == "run_line_magic"
        and isinstance(func.value, ast.Call)
        and isinstance(func.value.func, ast.Name)
        and func.value.func.id == "get_ipython"
        and not func.value.args
        and not call.keywords
        and len(call.args) == 2
    ):
        return None
    name, line = (a.value if isinstance(a, ast.Constant) else None for a in call.args)
    return (call, line) if name == "jindr" and isinstance(line, str) else None


class EachLineShown(ast.NodeTransformer):
    """Every `%jindr` line standing alone at a cell's top level shows its result, not only the last.

    IPython shows the value of a cell's last expression only, so of three `%jindr load` lines two
    frames were lost. This AST transformer (IPython's `ast_transformers`) rewrites each top-level
    bare `%jindr` statement that is not the cell's last into `displayed(...)`; everything else keeps
    IPython's behaviour: `df = %jindr lsi` (an assignment), the last line (IPython shows it, once),
    `%jindr` inside a loop, function, `if` or `with` (not top level), a cell magic (`%%time`: one
    statement), a line ending in `;` (silenced: a last one goes through `silenced(...)`, because
    IPython's own check reads `...run_line_magic('jindr', 'ls;')` and sees `)`). `%jindr` called
    from code (`get_ipython().run_line_magic(...)` in a function) returns its frame as before.

    Armed by `pre_run_cell` (which IPython sends for cells a person runs, not for silent ones) for
    the one `transform_ast` of that cell: `%time`/`%timeit` transforming their own code later in the
    cell find it unarmed.
    """

    jindr_each_line_shown = True  # the marker `_each_line_shown` finds, whatever import made the class

    def __init__(self, shell: Any) -> None:
        super().__init__()
        self.shell = shell
        self.armed = False

    def arm(self, info: Any = None) -> None:
        self.armed = True

    def disarm(self, result: Any = None) -> None:
        self.armed = False

    def visit_Module(self, node: ast.Module) -> ast.Module:
        armed, self.armed = self.armed, False
        if not armed or self.shell.ast_node_interactivity not in ("last_expr", "last_expr_or_assign", "last"):
            return node  # "all" shows every line already; "none" shows none
        last = len(node.body) - 1
        for i, statement in enumerate(node.body):
            found = _jindr_line(statement)
            if found is None:
                continue
            call, line = found
            try:
                quiet = split_line(line)[1]
            except ValueError:
                quiet = False  # the magic will say why it cannot split the line
            if i < last and not quiet:
                node.body[i] = _through("displayed", call, statement)
            elif i == last and quiet:
                node.body[i] = _through("silenced", call, statement)
        return node


def _through(function: str, call: ast.Call, where: ast.stmt) -> ast.Expr:
    """The statement `__import__('jindr_nb.magics', ...).function(call)`, at `where`'s place: by
    name at run time, because the user's namespace may hold nothing of ours."""
    module = ast.Call(
        func=ast.Name(id="__import__", ctx=ast.Load()),
        args=[ast.Constant(__name__)],
        keywords=[ast.keyword(arg="fromlist", value=ast.List(elts=[ast.Constant(function)], ctx=ast.Load()))],
    )
    wrapped = ast.Call(func=ast.Attribute(value=module, attr=function, ctx=ast.Load()), args=[call], keywords=[])
    statement = ast.Expr(value=wrapped)
    for made in (statement, wrapped, module):
        ast.copy_location(made, where)
    return ast.fix_missing_locations(statement)


def _each_line_shown(shell: Any) -> list[Any]:
    """The transformers jindr added to `shell`, by their marker, not their class: a re-imported
    module (autoreload, `importlib.reload`) has a new EachLineShown class."""
    return [t for t in shell.ast_transformers if getattr(t, "jindr_each_line_shown", False) is True]


def _remove_each_line_shown(shell: Any) -> None:
    """Take jindr's transformers and their two events out of `shell`."""
    for transformer in _each_line_shown(shell):
        shell.ast_transformers.remove(transformer)
        for event, callback in (("pre_run_cell", transformer.arm), ("post_run_cell", transformer.disarm)):
            if callback in shell.events.callbacks.get(event, ()):
                shell.events.unregister(event, callback)


def _install_each_line_shown(shell: Any) -> None:
    """Add the transformer and its two events once per shell (`%reload_ext` makes a new JindrMagics):
    one left by an older import of this module is replaced, so that the current code runs."""
    current = _each_line_shown(shell)
    if len(current) == 1 and type(current[0]) is EachLineShown:
        return
    _remove_each_line_shown(shell)
    transformer = EachLineShown(shell)
    shell.ast_transformers.append(transformer)
    shell.events.register("pre_run_cell", transformer.arm)
    shell.events.register("post_run_cell", transformer.disarm)


def unload_ipython_extension(shell: Any) -> None:
    """Undo `%load_ext jindr_nb` (`%unload_ext`, and `%reload_ext` before it loads again): the
    transformer and its events, the `%jindr` magic, its configurable, its session's connections
    and the HTML formatter for jindr's frames. Nothing of another extension is touched."""
    _remove_each_line_shown(shell)
    manager = shell.magics_manager
    magics = manager.registry.get(JindrMagics.__name__)
    if type(magics).__name__ == JindrMagics.__name__:  # possibly of an older import of this module
        del manager.registry[JindrMagics.__name__]
        for table in manager.magics.values():
            for name, function in list(table.items()):
                if getattr(function, "__self__", None) is magics:
                    del table[name]
        if magics in getattr(shell, "configurables", ()):
            shell.configurables.remove(magics)
        if magics._session is not None:
            magics._session.close()
            magics._session = None
    html = shell.display_formatter.formatters["text/html"]
    ours = f"{__package__}.frames"
    for printers in (html.deferred_printers, html.type_printers):
        for key, printer in list(printers.items()):
            if getattr(printer, "__module__", None) == ours and getattr(printer, "__name__", None) == "frame_html":
                del printers[key]


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
            _install_each_line_shown(shell)

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
            argv, _ = split_line(line)
        except ValueError as exc:
            raise UsageError(f"%jindr: cannot split the line: {exc}") from None
        parser = build_parser("%jindr", cli=False, argv=argv)
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
            try:
                result = run(self.session, args)
            except BaseException as exc:
                _end_bars(self.shell, exc)  # red with the error, even if the cell catches it
                raise
            _end_bars(self.shell)
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
