"""The `jindr` console script as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

JINDR = [str(Path(sys.executable).parent / "jindr")]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*JINDR, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


def test_lsi_prints_an_aligned_table(populated: dict) -> None:
    address = populated["registry"].address
    proc = run("-r", address, "lsi")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == [
        "registry",
        "repository",
        "tag",
        "digest",
        "image_id",
        "media_type",
        "platforms",
        "missing",
    ]
    assert len(lines) == 6
    row = next(line for line in lines if " v1 " in line)
    assert populated["images"]["oci"].digest in row and "linux/amd64,linux/arm64" in row
    header = lines[0]
    starts = [header.index(name) for name in header.split()]
    for line in lines[1:]:  # every cell starts under its column name; `missing` is empty (all whole)
        assert all(line[i - 1] == " " and line[i] != " " for i in starts[1:-1]), line
        assert len(line) < starts[-1], line


def test_json_records_and_module_entry_point(populated: dict) -> None:
    address = populated["registry"].address
    proc = subprocess.run(
        [sys.executable, "-m", "jindr_nb", "-r", address, "--json", "lsi", "-l", "multi/oci"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    assert [r["tag"] for r in records] == ["latest", "v1"]
    assert records[0]["size"] == populated["images"]["oci"].size and records[0]["created"].endswith("+00:00")


def test_registry_from_environment(populated: dict) -> None:
    proc = run("ls", env={"JINDR_REGISTRY": populated["registry"].address})
    assert proc.returncode == 0 and "multi/oci" in proc.stdout


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["-r", "127.0.0.1:1", "ls"], 1, "jindr: no registry answers at 127.0.0.1:1"),
        (["frobnicate"], 2, "unknown command 'frobnicate'"),
        (["lsi", "--nope"], 2, "unrecognized arguments"),
        (["inspect", "UPPER"], 1, "jindr: invalid repository component"),
    ],
)
def test_errors_exit_codes_and_one_line(args: list[str], code: int, fragment: str) -> None:
    proc = run(*args)
    assert proc.returncode == code
    assert fragment in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""
    if code == 2:
        assert proc.stderr.startswith("usage: jindr")


def test_unknown_image_is_exit_1(populated: dict) -> None:
    proc = run("-r", populated["registry"].address, "inspect", "plain:nope")
    assert (
        proc.returncode == 1 and proc.stderr.strip().count("\n") == 0 and "manifest plain:nope not found" in proc.stderr
    )


def test_help_and_version() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    for name in ("ls (repos)", "lsi (images)", "ins (inspect)"):
        assert name in proc.stdout
    # argparse 3.13 names an option's value once ("-r, --registry REGISTRY"); before, after each spelling.
    assert "-r REGISTRY, --registry REGISTRY" in proc.stdout or "-r, --registry REGISTRY" in proc.stdout
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("jindr_nb ")


def _parsed(parser: Any, argv: list[str]) -> tuple[str, object]:
    """What a parser makes of `argv`: the namespace (handler by name), or the error and usage lines."""
    from jindr_nb.commands import CommandLineError, HelpShown

    try:
        args = vars(parser.parse_args(argv))
    except CommandLineError as exc:
        return "error", (str(exc), exc.usage)
    except HelpShown:
        return "help", None
    args["_handler"] = args["_handler"].__name__
    return "ok", args


def test_the_parser_built_for_one_command_answers_as_the_whole_table() -> None:
    """The CLI and the magic build only the sub-parser of the command a line names: every line —
    each command and alias with and without top-level options before it, bad options, counts and
    values, misspelt and missing commands, help — parses to the same namespace, or fails with the
    same message and usage, as with every command's parser built."""
    from test_badinput import ALL_COMMANDS, BAD_VALUES, UNKNOWN_COMMANDS, UNKNOWN_OPTIONS, WRONG_COUNTS

    from jindr_nb.commands import COMMANDS, build_parser

    lines: list[list[str]] = [[], ["-h"], ["--version"], ["--json"], ["-r"], ["-r", "localhost:1"]]
    for command in COMMANDS:
        for name in (command.name, *command.aliases):
            for before in ([], ["-r", "localhost:5999"], ["-rlocalhost:5999", "--json"], ["--registry=x:1", "--debug"]):
                lines += [[*before, name], [*before, name, "-h"], [*before, name, "app:v1"], [*before, name, "--bogus"]]
    lines += [list(c) for c in ALL_COMMANDS] + [list(c) for c, _ in WRONG_COUNTS]
    lines += [[w.format(address="localhost:1") for w in c] for c in BAD_VALUES]
    lines += [[word] for word in UNKNOWN_COMMANDS] + [["-r", "lsi", "ls"], ["--insecure", "lsi", "-l", "-j", "3"]]
    lines += [["lsi", option] for option in UNKNOWN_OPTIONS] + [[option, "lsi"] for option in UNKNOWN_OPTIONS]
    kinds = set()
    for cli in (True, False):
        whole = build_parser("jindr", cli=cli)
        for argv in lines:
            lean = _parsed(build_parser("jindr", cli=cli, argv=argv), argv)
            assert lean == _parsed(whole, argv), (argv, cli)
            kinds.add(lean[0])
    assert kinds == {"ok", "error", "help"}
