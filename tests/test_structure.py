"""Import cost and layering: cheap imports, imports exactly as the README's layer table, docs from the commands."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "jindr_nb"
HEAVY = ("pandas", "docker", "boto3", "botocore", "ipywidgets", "httpx", "cryptography", "bcrypt")


@pytest.mark.parametrize(
    "code",
    [
        "import jindr_nb",
        "from IPython.core.interactiveshell import InteractiveShell; InteractiveShell.instance()"
        ".run_line_magic('load_ext', 'jindr_nb')",
        "from jindr_nb.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
    ],
)
def test_cheap_imports(code: str) -> None:
    probe = code + f"\nimport sys\nprint('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY:"


README = PACKAGE.parent / "README.md"


@dataclass
class Row:
    """One row of the layer table: the modules of the package it may import, and the third-party
    packages, each with the files it is confined to (empty: any file of the module)."""

    internal: set[str]
    third_party: dict[str, set[str]]


def layer_table(markdown: str) -> dict[str, Row]:
    """The layer table (`| module | ... | may import | third-party |`) of a markdown text.

    `may import` and `third-party` list names in backticks; text in parentheses is commentary.
    A third-party entry (entries separated by `;`) is `pkg`, `pkg`, ... or `pkg` in `file.py`, ...
    """
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| module |"))
    header = [c.strip() for c in lines[start].strip().strip("|").split("|")]
    table: dict[str, Row] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = dict(zip(header, (c.strip() for c in line.strip().strip("|").split("|")), strict=True))
        named = re.fullmatch(r"`(\w+)(?:\.py|/)`", cells["module"])
        assert named, f"the module column should name a module: {cells['module']!r}"

        def names(text: str) -> list[str]:
            return re.findall(r"`([\w./]+)`", re.sub(r"\([^)]*\)", "", text))

        third: dict[str, set[str]] = {}
        for entry in cells["third-party"].split(";"):
            packages, _, files = entry.partition(" in ")
            for package in names(packages):
                third[package] = set(names(files))
        table[named.group(1)] = Row(set(names(cells["may import"])), third)
    return table


TABLE = layer_table(README.read_text())


def _layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _is_module(name: str) -> bool:
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()


def package_imports(package: Path = PACKAGE) -> tuple[set[tuple[str, str]], set[tuple[str, str, str]]]:
    """What the code imports: (layer, jindr module) arrows between layers, and (layer, package, file)
    for every package outside the standard library; `file` relative to its layer's directory."""
    arrows: set[tuple[str, str]] = set()
    third: set[tuple[str, str, str]] = set()
    for path in package.rglob("*.py"):
        rel = path.relative_to(package)
        layer = rel.parts[0].removesuffix(".py")
        file = "/".join(rel.parts[1:]) or rel.name
        depth = len(rel.parts) - 1
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                if node.level <= depth:
                    continue  # inside its own layer
                if node.module:
                    targets = [node.module.split(".")[0]]
                else:  # `from . import x`: a module, or a name of the package root (`__version__`)
                    targets = [a.name if _is_module(a.name) else "__init__" for a in node.names]
                arrows.update((layer, t) for t in targets if t != layer)
                continue
            if isinstance(node, ast.Import):
                packages = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                packages = [node.module.split(".")[0]]
            else:
                continue
            third.update((layer, p, file) for p in packages if p not in sys.stdlib_module_names and p != package.name)
    return arrows, third


def test_the_table_names_every_module_once() -> None:
    modules = {_layer(p) for p in PACKAGE.glob("*") if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert set(TABLE) == modules
    listed = {t for row in TABLE.values() for t in row.internal}
    assert listed <= modules, f"the table allows imports of modules that do not exist: {listed - modules}"


def test_imports_are_exactly_the_table() -> None:
    """Every arrow between jindr's modules is in the README's table, and every arrow there is used."""
    arrows, _ = package_imports()
    allowed = {(layer, target) for layer, row in TABLE.items() for target in row.internal}
    assert sorted(arrows - allowed) == [], "imports the table does not allow: add them there, or remove them"
    assert sorted(allowed - arrows) == [], "the table allows imports nothing makes: remove them from it"


def test_third_party_packages_are_exactly_the_table() -> None:
    """Every import from outside the standard library (httpx, docker, boto3, botocore, pandas,
    ipywidgets, IPython, ...) sits where the table says, and everything the table lists is used."""
    _, third = package_imports()
    problems = []
    for layer, package, file in sorted(third):
        files = TABLE[layer].third_party.get(package)
        if files is None or (files and file not in files):
            problems.append(f"{layer}/{file} imports {package}")
    assert problems == [], "imports the table does not allow"
    used = {(layer, package) for layer, package, _ in third}
    listed = {(layer, p) for layer, row in TABLE.items() for p in row.third_party}
    assert sorted(listed - used) == [], "the table lists packages nothing imports"
    unused_files = [
        f"{layer}: {package} in {file}"
        for layer, row in TABLE.items()
        for package, files in row.third_party.items()
        for file in files
        if (layer, package, file) not in third
    ]
    assert unused_files == [], "the table confines packages to files that do not import them"


def test_the_guards_see_what_they_guard(tmp_path: Path) -> None:
    """The parsers find a forbidden import, an unlisted package, and a table row they must read."""
    copy = tmp_path / "jindr_nb"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "models.py").write_text((copy / "models.py").read_text() + "\nfrom .commands import Result\n")
    (copy / "ops" / "du.py").write_text((copy / "ops" / "du.py").read_text() + "\nimport docker\n")
    arrows, third = package_imports(copy)
    assert ("models", "commands") in arrows
    assert ("ops", "docker", "du.py") in third and "docker" not in TABLE["ops"].third_party
    row = layer_table(
        "| module | may import | third-party |\n|---|---|---|\n| `a/` | `b` (`c`) | `x`; `y`, `z` in `f.py` |\n"
    )
    assert row == {"a": Row({"b"}, {"x": set(), "y": {"f.py"}, "z": {"f.py"}})}


def test_readme_command_reference_is_generated_from_the_table() -> None:
    from jindr_nb.commands import reference_markdown

    readme = (PACKAGE.parent / "README.md").read_text()
    start, end = "<!-- commands:start -->\n", "<!-- commands:end -->"
    assert start in readme and end in readme
    block = readme[readme.index(start) + len(start) : readme.index(end)]
    generated = reference_markdown()
    if sys.version_info[:2] != (3, 11):
        # `make readme` runs on the main Python (3.11); argparse 3.13 writes "-r, --registry REGISTRY"
        # where 3.11 writes "-r REGISTRY, --registry REGISTRY", and wraps lines elsewhere: compare
        # the words, each option's value named once.
        def words(text: str) -> list[str]:
            text = re.sub(r"(-\w) ([A-Z][A-Z_]*), (--[\w-]+) \2", r"\1, \3 \2", text)
            return text.split()

        assert words(block) == words(generated), "run `make readme` (on Python 3.11)"
        return
    assert block.strip() == generated.strip(), "run `make readme`"
