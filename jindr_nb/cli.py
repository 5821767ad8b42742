"""`jindr`: the command table as a console script that prints tables (or JSON)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .commands import HelpShown, Session, build_parser, run
from .errors import CommandLineError, JindrError
from .frames import to_json, to_text

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; 0 on success, 1 on an error (or a false status), 2 on a usage error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser("jindr", cli=True)
    debug = "--debug" in argv
    session: Session | None = None
    try:
        args = parser.parse_args(argv)
        session = Session(confirm=_ask if sys.stdin.isatty() and sys.stdout.isatty() else None)
        if sys.stderr.isatty():
            session.progress = _progress_line
        result = run(session, args)
    except HelpShown:
        return 0
    except CommandLineError as exc:
        if exc.usage:
            print(exc.usage, file=sys.stderr)
        print(f"jindr: error: {exc}", file=sys.stderr)
        return 2
    except JindrError as exc:
        if debug:
            raise
        print(f"jindr: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("jindr: interrupted", file=sys.stderr)
        return 130
    finally:
        if session is not None:
            session.close()
    if args.json:
        print(to_json(result.rows, result.row_type))
    elif result.rows or not result.message:
        print(to_text(result.rows, result.row_type))
    if result.message:
        print(result.message, file=sys.stderr if result.rows else sys.stdout)
    return 0 if result.ok else 1


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
