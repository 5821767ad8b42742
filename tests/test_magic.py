"""`%jindr` in a real IPython InteractiveShell."""

from __future__ import annotations

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from jindr_nb.errors import RegistryUnreachable


@pytest.fixture(scope="module")
def ip() -> InteractiveShell:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "jindr_nb")
    return shell


def test_lsi_returns_the_dataframe(ip: InteractiveShell, populated: dict) -> None:
    address = populated["registry"].address
    frame = ip.run_line_magic("jindr", f"-r {address} lsi")
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == [
        "registry",
        "repository",
        "tag",
        "digest",
        "image_id",
        "media_type",
        "platforms",
        "missing",
    ]
    assert len(frame) == 5 and set(frame.registry) == {address}
    assert (
        frame.set_index(["repository", "tag"]).loc[("multi/oci", "v1"), "digest"] == populated["images"]["oci"].digest
    )


def test_assignment_and_aliases(ip: InteractiveShell, populated: dict) -> None:
    address = populated["registry"].address
    ip.run_cell(f"df = %jindr -r {address} images -l multi/oci")
    df = ip.user_ns["df"]
    assert list(df.tag) == ["latest", "v1"] and "size" in df.columns
    repos = ip.run_line_magic("jindr", f"-r {address} repos")
    assert list(repos.repository) == ["armv7", "multi/docker", "multi/oci", "plain"]
    ins = ip.run_line_magic("jindr", f"-r {address} inspect multi/docker:1.0")
    assert list(ins.kind) == ["index", "image", "image"]


def test_default_registry_order(ip: InteractiveShell, populated: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    address = populated["registry"].address
    magics = ip.magics_manager.registry["JindrMagics"]
    monkeypatch.setenv("JINDR_REGISTRY", address)
    assert len(ip.run_line_magic("jindr", "ls")) == 4  # from the environment
    monkeypatch.setenv("JINDR_REGISTRY", "127.0.0.1:1")
    ip.run_line_magic("config", f'JindrMagics.registry = "{address}"')
    try:
        assert len(ip.run_line_magic("jindr", "ls")) == 4  # config beats the environment
        with pytest.raises(RegistryUnreachable, match="127.0.0.1:2"):
            ip.run_line_magic("jindr", "-r 127.0.0.1:2 ls")  # -r beats config
    finally:
        magics.registry = ""


def test_help_prints_and_returns_nothing(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    assert ip.run_line_magic("jindr", "--help") is None
    out = capsys.readouterr().out
    assert "ls (repos)" in out and "lsi (images)" in out and "ins (inspect)" in out
    assert ip.run_line_magic("jindr", "lsi --help") is None
    assert "--long" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("", "required: command"),
        ("frobnicate", "unknown command 'frobnicate'"),
        ("lsi --bogus", "unrecognized arguments: --bogus"),
        ("inspect", "required: IMAGE"),
        ("lsi -j 0", "expected 1-64"),
        ("lsi 'unclosed", "cannot split the line"),
    ],
)
def test_errors_are_one_usage_error(ip: InteractiveShell, line: str, fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("jindr", line)
    assert type(info.value) is UsageError
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("line", "name", "fragment"),
    [
        ("inspect 'Bad:Tag!'", "InvalidReference", 'invalid tag "Tag!" in "Bad:Tag!"'),
        ("-r http://x:1 ls", "InvalidReference", "without a scheme"),
        ("-r 127.0.0.1:1 ls", "RegistryUnreachable", "no registry answers at 127.0.0.1:1"),
    ],
)
def test_other_errors_are_one_line_under_their_own_name(
    ip: InteractiveShell, line: str, name: str, fragment: str
) -> None:
    from jindr_nb.errors import JindrError

    with pytest.raises(JindrError) as info:
        ip.run_line_magic("jindr", line)
    assert type(info.value).__name__ == name and not isinstance(info.value, UsageError)
    [shown] = info.value._render_traceback_()  # what IPython prints instead of a traceback
    assert shown.startswith(f"{name}: ") and fragment in shown


def test_usage_error_shows_usage_line(ip: InteractiveShell) -> None:
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("jindr", "lsi --bogus")
    assert str(info.value).startswith("usage: %jindr")


def test_unknown_tag_in_a_cell_shows_one_line_and_kernel_lives(
    ip: InteractiveShell, populated: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    address = populated["registry"].address
    result = ip.run_cell(f"%jindr -r {address} inspect plain:nope")
    assert not result.success
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "NotFound: manifest plain:nope not found" in text and "Traceback" not in text
    assert ip.run_cell("1 + 1").result == 2


def test_debug_keeps_the_traceback(ip: InteractiveShell) -> None:
    from jindr_nb.errors import RegistryUnreachable

    with pytest.raises(RegistryUnreachable):
        ip.run_line_magic("jindr", "--debug -r 127.0.0.1:1 ls")
