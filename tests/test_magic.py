"""`%jindr` in a real IPython InteractiveShell."""

from __future__ import annotations

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from jindr_nb.errors import JindrError, RegistryUnreachable


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


def _cell(ip: InteractiveShell, source: str) -> tuple[list[str], object, str]:
    """Run `source` as a cell: the text of each frame `display()` showed (in order), the value
    IPython's displayhook showed (the cell's Out), and what the displayhook printed."""
    from IPython.utils.capture import capture_output

    with capture_output() as shown:
        result = ip.run_cell(source)
    assert result.success, result.error_in_exec or result.error_before_exec
    return [o.data["text/plain"] for o in shown.outputs], result.result, shown.stdout


def test_every_bare_jindr_line_of_a_cell_shows_its_frame(ip: InteractiveShell, populated: dict) -> None:
    address = populated["registry"].address
    ip.run_line_magic("config", f"JindrMagics.registry = {address!r}")
    try:
        expected = [repr(ip.run_line_magic("jindr", line)) for line in ("lsi plain", "lsi multi/oci", "ls")]
        assert len(set(expected)) == 3
        displayed, out, printed = _cell(ip, "%jindr lsi plain\n%jindr lsi multi/oci\n%jindr ls\n")
        assert displayed == expected[:2]  # the first two, in order, through display()
        assert repr(out) == expected[2] and printed.count("Out[") == 1  # the last, once, as IPython shows it
        assert "multi/docker" in printed and "multi/oci" not in printed.split("Out[")[0]
        # Between other statements, with a semicolon and a comment-free shell line around them.
        displayed, out, _ = _cell(ip, "n = 1\n%jindr lsi plain\nn += 1\n%jindr lsi multi/oci;\nn")
        assert displayed == expected[:1] and out == 2
        # `{name}` is expanded from the cell's namespace as before; a shell line in between changes nothing.
        displayed, out, _ = _cell(ip, "name = 'multi/oci'\n%jindr lsi {name}\n!true\n%jindr lsi plain\n1")
        assert displayed == [expected[1], expected[0]] and out == 1
    finally:
        ip.run_line_magic("config", "JindrMagics.registry = ''")


def test_other_shapes_keep_ipythons_behaviour(ip: InteractiveShell, populated: dict) -> None:
    address = populated["registry"].address
    ip.run_line_magic("config", f"JindrMagics.registry = {address!r}")
    try:
        plain = repr(ip.run_line_magic("jindr", "lsi plain"))
        # Assignments show nothing; a name on the last line shows its value once.
        displayed, out, printed = _cell(ip, "df = %jindr lsi\nx = %jindr lsi plain\nx")
        assert displayed == [] and repr(out) == plain and printed.count("Out[") == 1
        assert len(ip.user_ns["df"]) == 5 and repr(ip.user_ns["x"]) == plain
        # A trailing semicolon silences the last line, as IPython silences `x;` (and the command runs).
        displayed, out, printed = _cell(ip, "%jindr lsi plain;\n%jindr lsi plain;")
        assert displayed == [] and out is None and "Out[" not in printed
        assert repr(ip.run_line_magic("jindr", "lsi plain;")) == plain  # the semicolon is not an argument
        # `#` starts a comment, as in the README's quick start (`%jindr start   # a registry on ...`).
        displayed, out, _ = _cell(ip, "%jindr lsi plain  # the one image\n%jindr lsi plain; # quiet\n1")
        assert displayed == [plain] and out == 1
        assert repr(ip.run_line_magic("jindr", "lsi 'plain' # tagged 'latest'")) == plain
        # Inside a loop, an `if`, a function or a `with`: nothing is shown, as for any expression there.
        loop = "for r in ['plain', 'armv7']:\n    %jindr lsi {r}\nif True:\n    %jindr ls\n"
        loop += "def f():\n    %jindr ls\nf()\nimport contextlib\nwith contextlib.nullcontext():\n    %jindr ls\n"
        displayed, out, printed = _cell(ip, loop)
        assert displayed == [] and out is None and printed == ""
        # Called from code, %jindr returns its frame whatever the line's place.
        displayed, out, _ = _cell(
            ip, "def g():\n    return get_ipython().run_line_magic('jindr', 'lsi plain')\nframes = [g(), g()]\n1"
        )
        assert displayed == [] and out == 1 and [repr(f) for f in ip.user_ns["frames"]] == [plain, plain]
        # A cell magic is one statement; `%%capture` runs its body as a cell, whose frames it captures.
        displayed, out, printed = _cell(ip, "%%capture captured\n%jindr lsi plain\n%jindr ls\n")
        assert displayed == [] and out is None and printed == ""
        captured = [o.data["text/plain"] for o in ip.user_ns["captured"].outputs]
        assert captured == [plain, repr(ip.run_line_magic("jindr", "ls"))]
        # Help returns nothing, so a bare help line shows nothing more than its text.
        displayed, out, printed = _cell(ip, "%jindr lsi --help\n1")
        assert displayed == [] and out == 1 and "--long" in printed
        # With IPython showing every expression ("all"), each frame shows once, as IPython shows it.
        ip.ast_node_interactivity = "all"
        try:
            displayed, out, printed = _cell(ip, "%jindr lsi plain\n%jindr lsi plain\n")
        finally:
            ip.ast_node_interactivity = "last_expr"
        assert displayed == [] and printed.count("Out[") == 2
    finally:
        ip.run_line_magic("config", "JindrMagics.registry = ''")


def test_reloading_the_extension_shows_each_frame_once(ip: InteractiveShell, populated: dict) -> None:
    from jindr_nb.magics import EachLineShown

    address = populated["registry"].address
    ip.run_line_magic("reload_ext", "jindr_nb")
    ip.run_line_magic("load_ext", "jindr_nb")
    assert sum(isinstance(t, EachLineShown) for t in ip.ast_transformers) == 1
    displayed, _, _ = _cell(ip, f"%jindr -r {address} lsi plain\n%jindr -r {address} lsi plain\n1")
    assert len(displayed) == 2 and displayed[0] == displayed[1]


@pytest.mark.parametrize(
    ("line", "words", "quiet"),
    [
        ("lsi a#b", ["lsi", "a#b"], False),  # `#` inside a word is part of it, as in a shell
        ("save app /tmp/run#2.tar", ["save", "app", "/tmp/run#2.tar"], False),
        ("start -d ~/reg#2", ["start", "-d", "~/reg#2"], False),
        ("rmi app:v1#old", ["rmi", "app:v1#old"], False),
        ("lsi '#x'", ["lsi", "#x"], False),  # quoted: not a comment
        ('lsi "#x" \\#y', ["lsi", "#x", "#y"], False),
        ("lsi x # comment", ["lsi", "x"], False),
        ("lsi x #", ["lsi", "x"], False),
        ("# all of it", [], False),
        ("lsi x\t#tab", ["lsi", "x"], False),
        ("lsi 'a b' #c 'd", ["lsi", "a b"], False),  # a quote in the comment opens nothing
        ("lsi x; # quiet", ["lsi", "x"], True),
        ("lsi 'x;'", ["lsi", "x;"], False),  # a quoted `;` is an argument, and silences nothing
        ('lsi "x;"', ["lsi", "x;"], False),
        ("lsi x\\;", ["lsi", "x;"], False),
        ("lsi 'x';", ["lsi", "x"], True),
        ("lsi x ;", ["lsi", "x"], True),
        ("lsi x;  ", ["lsi", "x"], True),
        ("lsi x;;", ["lsi", "x;"], True),  # one `;` silences; the other is the word's
        (";", [], True),
        ("lsi 'x # y'", ["lsi", "x # y"], False),
        ("lsi 'a'#b", ["lsi", "a#b"], False),  # after a closing quote: still inside the word
        ("lsi a\\ #b", ["lsi", "a #b"], False),  # an escaped blank does not end the word
        ("lsi x;\\ ", ["lsi", "x; "], False),  # nor is an escaped blank stripped
    ],
)
def test_split_line_as_a_shell_does(line: str, words: list[str], quiet: bool) -> None:
    from jindr_nb.magics import split_line

    assert split_line(line) == (words, quiet)


def test_a_hash_inside_a_word_reaches_the_command(ip: InteractiveShell, populated: dict, tmp_path) -> None:
    address = populated["registry"].address
    # Cut at `#`, `plain:latest#old` was `plain:latest`, and inspect showed (rmi would delete) that image.
    with pytest.raises(JindrError) as info:
        ip.run_line_magic("jindr", f"-r {address} inspect plain:latest#old")
    assert type(info.value).__name__ == "InvalidReference" and "latest#old" in str(info.value)
    # A path with `#` in it, written as is and through a `{name}` expansion.
    ip.user_ns["target"] = str(tmp_path / "b#2.tar")
    ip.run_line_magic("jindr", f"-r {address} save plain {tmp_path}/a#1.tar")
    result = ip.run_cell(f"%jindr -r {address} save plain {{target}}")
    assert result.success, result.error_in_exec
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a#1.tar", "b#2.tar"]


def test_a_quoted_semicolon_is_an_argument_not_silence(ip: InteractiveShell, populated: dict) -> None:
    address = populated["registry"].address
    ip.run_line_magic("config", f"JindrMagics.registry = {address!r}")
    try:
        # `ls 'x;'` lists the repositories matching `x;` (none): an empty frame, shown, not silenced.
        displayed, out, printed = _cell(ip, "%jindr ls 'x;'\n%jindr ls 'plain;'")
        assert len(displayed) == 1 and isinstance(out, pd.DataFrame) and out.empty and "Out[" in printed
        assert len(ip.run_line_magic("jindr", "ls 'plain;'")) == 0  # `plain;` is not `plain`
        assert len(ip.run_line_magic("jindr", "ls plain;")) == 1
        # An unquoted `;` after a space silences the last line, and is no argument.
        displayed, out, printed = _cell(ip, "%jindr ls plain ;")
        assert displayed == [] and out is None and "Out[" not in printed
        plain = repr(ip.run_line_magic("jindr", "lsi plain"))
        displayed, out, _ = _cell(ip, "%jindr lsi plain # a comment ; not silence\n%jindr lsi 'plain' ;\n1")
        assert displayed == [plain] and out == 1
    finally:
        ip.run_line_magic("config", "JindrMagics.registry = ''")


def _ours(ip: InteractiveShell) -> tuple[list, list, list]:
    """The transformers jindr added to `ip`, and its callbacks on pre_run_cell / post_run_cell."""
    transformers = [t for t in ip.ast_transformers if type(t).__name__ == "EachLineShown"]
    hooks = [
        [f for f in ip.events.callbacks[event] if type(getattr(f, "__self__", None)).__name__ == "EachLineShown"]
        for event in ("pre_run_cell", "post_run_cell")
    ]
    return transformers, hooks[0], hooks[1]


def test_unloading_the_extension_removes_what_it_added(ip: InteractiveShell, populated: dict) -> None:
    address = populated["registry"].address
    assert [len(x) for x in _ours(ip)] == [1, 1, 1]
    try:
        assert ip.run_line_magic("unload_ext", "jindr_nb") is None  # not "no unload function"
        assert [len(x) for x in _ours(ip)] == [0, 0, 0]
        assert "jindr" not in ip.magics_manager.magics["line"] and "JindrMagics" not in ip.magics_manager.registry
        assert not any(type(c).__name__ == "JindrMagics" for c in ip.configurables)
        html = ip.display_formatter.formatters["text/html"]
        printers = [*html.deferred_printers.values(), *html.type_printers.values()]
        assert not any(getattr(p, "__name__", "") == "frame_html" for p in printers)
        assert ip.run_cell("1 + 1").result == 2
    finally:
        ip.run_line_magic("load_ext", "jindr_nb")
    assert [len(x) for x in _ours(ip)] == [1, 1, 1]
    displayed, _, _ = _cell(ip, f"%jindr -r {address} lsi plain\n%jindr -r {address} lsi plain\n1")
    assert len(displayed) == 2 and displayed[0] == displayed[1]


def test_reimporting_the_module_keeps_one_transformer(ip: InteractiveShell, populated: dict) -> None:
    import importlib

    import jindr_nb.magics

    address = populated["registry"].address
    importlib.reload(jindr_nb.magics)  # as autoreload does: a new EachLineShown class
    jindr_nb.magics._install_each_line_shown(ip)
    assert [len(x) for x in _ours(ip)] == [1, 1, 1]
    assert type(_ours(ip)[0][0]) is jindr_nb.magics.EachLineShown  # the new code's
    ip.run_line_magic("reload_ext", "jindr_nb")
    assert [len(x) for x in _ours(ip)] == [1, 1, 1]
    displayed, _, _ = _cell(ip, f"%jindr -r {address} lsi plain\n%jindr -r {address} lsi plain\n1")
    assert len(displayed) == 2 and displayed[0] == displayed[1]
