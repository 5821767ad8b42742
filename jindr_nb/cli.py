"""`jindr`: the command table as a console script that prints tables (or JSON).

Output into a pipe whose reader has gone (`jindr lsi | head -1`) ends quietly, with exit status
141 = 128 + SIGPIPE: what the shell reports for `ls | head` when `ls` is killed by the signal.
jindr cannot let the signal itself kill it (Python ignores SIGPIPE so that a registry closing a
socket is an error to handle, not a silent death), so it catches the EPIPE on its own output,
points the stream at os.devnull (Python's advice for SIGPIPE: the interpreter's last flush then
cannot fail again) and exits with the status a killed filter would have.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from typing import TextIO

from .commands import HelpShown, build_parser, run
from .errors import CommandLineError, JindrError
from .frames import to_json, to_text
from .session import Session

__all__ = ["CLOSED_PIPE", "main"]

#: The exit status when stdout's reader has gone.
CLOSED_PIPE = 128 + signal.SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; 0 on success, 1 on an error (or a false status), 2 on a usage error,
    CLOSED_PIPE (141) when the output's reader has gone."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser("jindr", cli=True, argv=argv)
    debug = "--debug" in argv
    session: Session | None = None
    try:
        try:
            args = parser.parse_args(argv)
        except BrokenPipeError:  # --help or --version (argparse writes them) into a closed pipe
            _to_devnull(sys.stdout)
            return CLOSED_PIPE
        session = Session(confirm=_ask if sys.stdin.isatty() and sys.stdout.isatty() else None)
        if sys.stderr.isatty():
            session.progress = _progress_line
        result = run(session, args)
    except HelpShown:
        return 0 if _write(sys.stdout) else CLOSED_PIPE
    except CommandLineError as exc:
        if exc.usage:
            _write(sys.stderr, exc.usage)
        _write(sys.stderr, f"jindr: error: {exc.line('jindr')}")
        return 2
    except JindrError as exc:
        if debug:
            raise
        _write(sys.stderr, f"jindr: {exc.line('jindr')}")
        return 1
    except KeyboardInterrupt:
        _write(sys.stderr, "jindr: interrupted")
        return 130
    finally:
        if session is not None:
            session.close()
    shown = True
    if args.json:
        shown = _write(sys.stdout, to_json(result.rows, result.row_type))
    elif result.rows or not result.message:
        shown = _write(sys.stdout, to_text(result.rows, result.row_type))
    if result.message and result.rows:
        _write(sys.stderr, result.message)  # a note beside the rows
    elif result.message:
        shown = shown and _write(sys.stdout, result.message)  # the whole answer
    if not shown:
        return CLOSED_PIPE
    return 0 if result.ok else 1


def _write(stream: TextIO, text: str | None = None) -> bool:
    """Print `text` (or only flush) now; False when the reader has gone (EPIPE), the stream then
    silenced so that nothing written later, nor the interpreter's flush at exit, fails again."""
    try:
        if text is not None:
            print(text, file=stream)
        stream.flush()
    except BrokenPipeError:
        _to_devnull(stream)
        return False
    return True


def _to_devnull(stream: TextIO) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)


def _progress_line(name: str):  # noqa: ANN202 - a (done, total) callback
    """A progress line on the terminal (stderr), rewritten in place; nothing when not a terminal."""
    last = [-1.0]

    def update(done: int, total: int) -> None:
        share = done / total if total else 1.0
        if share - last[0] < 0.01 and done < total:
            return
        last[0] = share
        end = "\n" if done >= total else ""
        sys.stderr.write(f"\r{name}: {share:6.1%} of {total / 1048576:.1f} MiB{end}")
        sys.stderr.flush()

    return update


def _ask(question: str) -> bool:
    try:
        return input(f"jindr: {question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


if __name__ == "__main__":
    raise SystemExit(main())
