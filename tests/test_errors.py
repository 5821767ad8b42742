"""Errors that point the right way: each one line, in the CLI and in `%jindr`, naming what failed.

The CLI runs as a subprocess (the console script), the magic through a real InteractiveShell, the
panels' route (`run` on a parsed line, as widgets/table.py `command` does) in-process. Names that
must not resolve are under `.invalid` (RFC 2606), so no test ever reaches a real outside address.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from jindr_run import jindr
from rig import ImageFactory, free_port

from jindr_nb.commands import Session, build_parser, run
from jindr_nb.errors import JindrError, NotFound, RegistryUnreachable

CLI = str(Path(sys.executable).parent / "jindr")
NOWHERE = "nosuch-registry.invalid:5000"


@pytest.fixture(scope="module")
def ip() -> InteractiveShell:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "jindr_nb")
    return shell


def cli(*argv: str) -> tuple[int, str]:
    """Exit status and stderr of the console script; stdout must stay empty on an error."""
    proc = subprocess.run([CLI, *argv], capture_output=True, text=True, timeout=60)
    assert proc.stdout == "", proc.stdout
    return proc.returncode, proc.stderr


def cli_line(*argv: str) -> str:
    """The CLI's one error line for a command that fails at run time (exit 1)."""
    rc, err = cli(*argv)
    assert rc == 1 and err.count("\n") == 1 and err.startswith("jindr: "), (rc, err)
    return err.removeprefix("jindr: ").rstrip("\n")


def magic_line(ip: InteractiveShell, line: str) -> tuple[JindrError, str]:
    """The error `%jindr line` raises and the one line a cell shows for it (no traceback)."""
    with pytest.raises(JindrError) as caught:
        ip.run_line_magic("jindr", line)
    shown = caught.value._render_traceback_()  # type: ignore[attr-defined]
    assert len(shown) == 1 and "\n" not in shown[0], shown
    return caught.value, shown[0]


def unreachable_port() -> str:
    return f"localhost:{free_port()}"


# ---- a registry that does not answer -------------------------------------------------------------


def test_copy_to_a_loopback_destination_that_is_down_names_the_destination(
    ip: InteractiveShell, registry, factory: ImageFactory
) -> None:
    factory.single("archy")
    dst = unreachable_port()
    line = cli_line("-r", registry.address, "cp", "archy", dst)
    assert line == f"no registry answers at the destination {dst} — start one there: `jindr -r {dst} start`"
    exc, shown = magic_line(ip, f"-r {registry.address} cp archy {dst}")
    assert isinstance(exc, RegistryUnreachable) and exc.registry == dst and exc.kind == "refused"
    assert shown == f"RegistryUnreachable: no registry answers at the destination {dst} — start one there: " + (
        f"`%jindr -r {dst} start`"
    )


def test_copy_from_a_source_that_is_down_names_the_source(registry) -> None:
    src = unreachable_port()
    line = cli_line("-r", src, "cp", "archy", registry.address)
    assert line.startswith(f"no registry answers at the source {src} — start one there: `jindr -r {src} start`")


def test_copy_to_a_name_that_does_not_resolve_says_so_without_start_advice(
    ip: InteractiveShell, registry, factory: ImageFactory
) -> None:
    factory.single("archy")
    line = cli_line("-r", registry.address, "cp", "archy", NOWHERE)
    host = NOWHERE.partition(":")[0]
    assert (
        line == f"the name {host} does not resolve (DNS lookup failed); check the spelling of the destination {NOWHERE}"
    )
    exc, shown = magic_line(ip, f"-r {registry.address} cp archy {NOWHERE}")
    assert exc.kind == "dns" and "start" not in shown and "does not resolve" in shown  # type: ignore[attr-defined]


def test_a_listing_from_a_name_that_does_not_resolve_says_so(ip: InteractiveShell) -> None:
    line = cli_line("-r", NOWHERE, "ls")
    assert "does not resolve" in line and NOWHERE in line and "no registry answers" not in line
    _, shown = magic_line(ip, f"-r {NOWHERE} ls")
    assert shown.startswith("RegistryUnreachable: the name nosuch-registry.invalid does not resolve")


def test_a_registry_that_is_down_is_not_a_usage_error(ip: InteractiveShell, capsys: pytest.CaptureFixture) -> None:
    address = unreachable_port()
    result = ip.run_cell(f"%jindr -r {address} ls")
    assert not result.success and isinstance(result.error_in_exec, RegistryUnreachable)
    assert not isinstance(result.error_in_exec, UsageError)
    captured = capsys.readouterr()
    shown = (captured.out + captured.err).strip()
    assert shown == f"RegistryUnreachable: no registry answers at {address} — start one there: " + (
        f"`%jindr -r {address} start`"
    )
    assert ip.run_cell("1 + 1").result == 2


def test_debug_still_shows_the_traceback(ip: InteractiveShell) -> None:
    with pytest.raises(RegistryUnreachable) as caught:
        ip.run_line_magic("jindr", f"--debug -r {unreachable_port()} ls")
    assert not hasattr(caught.value, "_render_traceback_")  # IPython prints the whole traceback


# ---- the panels' route: words without command-line flags -----------------------------------------


def test_errors_on_the_panels_route_carry_no_flags(registry, factory: ImageFactory) -> None:
    factory.single("archy")
    dst = unreachable_port()
    session = Session(registry.address)
    parser = build_parser("%jindr", cli=False)
    try:
        for argv, words in (
            (["cp", "archy", dst], f"no registry answers at the destination {dst}"),
            (["lsi", "arhcy"], f"repository arhcy not found in {registry.address}"),
            (["cp", "archy", NOWHERE], "nosuch-registry.invalid does not resolve"),
        ):
            with pytest.raises(JindrError) as caught:
                run(session, parser.parse_args(argv))
            shown = str(caught.value)  # what the panels show (widgets/table.py)
            assert words in shown and "`" not in shown and " -r " not in shown and "--" not in shown, shown
            assert caught.value.hint == "" or "{prog}" in caught.value.hint or "`" in caught.value.hint
    finally:
        session.close()


# ---- no doubled words ------------------------------------------------------------------------------


def test_an_unknown_repository_says_repository_once(ip: InteractiveShell, registry, factory: ImageFactory) -> None:
    factory.single("archy")
    line = cli_line("-r", registry.address, "lsi", "arhcy")
    assert line == f"repository arhcy not found in {registry.address} — `jindr ls` lists them"
    assert line.count("repository") == 1
    exc, shown = magic_line(ip, f"-r {registry.address} lsi arhcy")
    assert isinstance(exc, NotFound) and shown.count("repository") == 1 and "`%jindr ls`" in shown


def test_an_unknown_tag_names_the_image_and_how_to_list_tags(registry, factory: ImageFactory) -> None:
    factory.single("archy")
    line = cli_line("-r", registry.address, "inspect", "archy:nope")
    assert line == f"manifest archy:nope not found in {registry.address} — `jindr lsi REPO` lists its tags"


# ---- did you mean ...? ------------------------------------------------------------------------------


def test_a_misspelt_command_gets_one_suggestion(ip: InteractiveShell) -> None:
    rc, err = cli("rmii")
    *usage, last = err.rstrip("\n").split("\n")
    assert rc == 2 and usage[0].startswith("usage: jindr ")
    assert last == "jindr: error: unknown command 'rmii'; did you mean rmi?"
    assert "delimage" not in err and "copy2ecr" not in err  # no list of every command
    with pytest.raises(UsageError) as caught:
        ip.run_line_magic("jindr", "rmii")
    assert str(caught.value).split("\n")[-1] == "%jindr: error: unknown command 'rmii'; did you mean rmi?"


def test_a_command_nothing_like_any_points_at_help() -> None:
    rc, err = cli("frobnicate")
    assert rc == 2 and err.rstrip("\n").split("\n")[-1] == (
        "jindr: error: unknown command 'frobnicate' — `jindr --help` lists the commands"
    )


def test_a_misspelt_option_shows_the_commands_usage_and_a_suggestion(ip: InteractiveShell) -> None:
    rc, err = cli("rmi", "--dryrun", "archy")
    lines = err.rstrip("\n").split("\n")
    assert rc == 2 and lines[0].startswith("usage: jindr rmi ") and "--dry-run" in lines[0]
    assert lines[-1] == "jindr: error: unrecognized arguments: --dryrun; did you mean --dry-run?"
    with pytest.raises(UsageError) as caught:
        ip.run_line_magic("jindr", "rmi --dryrun archy")
    text = str(caught.value)
    assert text.startswith("usage: %jindr rmi ") and text.endswith("did you mean --dry-run?")


def test_an_option_before_the_command_is_the_top_level_parsers() -> None:
    rc, err = cli("--bogus", "ls")
    assert rc == 2 and err.startswith("usage: jindr [-h]") and "unrecognized arguments: --bogus" in err


def test_a_misspelt_choice_gets_a_suggestion_and_the_choices() -> None:
    rc, err = cli("start", "--runtime", "dokcer")
    last = err.rstrip("\n").split("\n")[-1]
    assert rc == 2 and "did you mean docker?" in last and "auto, docker, process" in last


# ---- quiet start -------------------------------------------------------------------------------------


def _pulls(state: Path) -> dict:
    return json.loads((state / "docker" / "pulls.json").read_text())


def test_auto_start_that_cannot_pull_says_one_line_and_remembers(
    docker_engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from jindr_nb.runtime.docker import PULL_MEMORY_S

    monkeypatch.delenv("DOCKER_HOST", raising=False)
    image = "localhost/jindr-test/does-not-exist:1"
    monkeypatch.setenv("JINDR_REGISTRY_IMAGE", image)
    state = Path(os.environ["JINDR_STATE_DIR"])
    address = f"localhost:{free_port()}"
    first = jindr("-r", address, "start", "-d", str(tmp_path / "s"))
    try:
        assert first.rows[0].runtime == "process"
        binary = first.rows[0].image
        assert first.message == (
            f"Docker cannot pull {image} here; using {binary} — `--runtime process` skips this check"
        )
        failed_at = _pulls(state)[image]["failed_at"]
        assert 0 <= time.time() - failed_at < 60 and (state / "docker" / "pulls.json").stat().st_mode & 0o077 == 0
    finally:
        jindr("-r", address, "stop", "-G")
    second = jindr("-r", address, "start", "-d", str(tmp_path / "s"))
    try:
        assert second.rows[0].runtime == "process" and "\n" not in second.message
        assert second.message.startswith(f"Docker cannot pull {image} here; using {binary}")
        assert "`--runtime docker` tries it again" in second.message
        assert _pulls(state)[image]["failed_at"] == failed_at  # remembered: Docker was not asked again
    finally:
        jindr("-r", address, "stop", "-G")
    assert PULL_MEMORY_S >= 600
    with pytest.raises(JindrError, match="could not pull"):  # an explicit docker start always pulls
        jindr("-r", f"localhost:{free_port()}", "start", "--runtime", "docker", "-d", str(tmp_path / "t"))
    assert _pulls(state)[image]["failed_at"] > failed_at


def test_a_failed_pull_is_forgotten_after_its_time() -> None:
    import os

    from jindr_nb.runtime.docker import PULL_MEMORY_S, pull_failed_at

    state = Path(os.environ["JINDR_STATE_DIR"])
    (state / "docker").mkdir(parents=True, exist_ok=True)
    old = time.time() - PULL_MEMORY_S - 1
    recent = time.time() - 5
    (state / "docker" / "pulls.json").write_text(
        json.dumps({"a:1": {"failed_at": old, "reason": "x"}, "b:1": {"failed_at": recent, "reason": "y"}})
    )
    assert pull_failed_at("a:1") is None and pull_failed_at("b:1") == recent and pull_failed_at("c:1") is None
    (state / "docker" / "pulls.json").write_text("not json")
    assert pull_failed_at("b:1") is None
