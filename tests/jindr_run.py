"""Run jindr commands in-process through the command table, as the faces do."""

from __future__ import annotations

from jindr_nb.commands import Result, Session, build_parser, run


def jindr(*argv: str) -> Result:
    """Parse and run one command line in a fresh session; JindrErrors propagate."""
    session = Session()
    try:
        return run(session, build_parser().parse_args(list(argv)))
    finally:
        session.close()
