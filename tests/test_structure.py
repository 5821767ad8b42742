"""Import cost and layering: cheap imports, arrows pointing down, docs agreeing with the table."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "jindr_nb"
HEAVY = ("pandas", "docker", "boto3", "botocore", "ipywidgets", "httpx")


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


# What each layer may import from inside the package (ARCHITECTURE.md).
ALLOWED = {
    "errors": set(),
    "_files": set(),
    "refs": {"errors"},
    "models": {"refs", "errors"},
    "client": {"models", "refs", "errors", "client"},
    "ops": {"client", "models", "refs", "errors", "ops", "runtime", "ecr", "_files"},
    "runtime": {"client", "models", "refs", "errors", "runtime", "_files"},
    "ecr": {"models", "errors", "client", "refs"},
    "frames": {"models"},
    "commands": {"ops", "runtime", "ecr", "refs", "models", "errors", "client", "__version__"},
    "magics": {"commands", "frames", "errors", "refs", "widgets"},
    "cli": {"commands", "frames", "errors"},
    "widgets": {"commands", "frames", "errors", "refs", "models", "widgets", "ops"},
    "__init__": {"magics"},
    "__main__": {"cli"},
}
THIRD_PARTY = {
    "IPython": {"magics", "widgets"},
    "ipywidgets": {"widgets", "magics"},
    "pandas": {"frames", "widgets"},
    "httpx": {"client"},
}


def _layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def test_imports_point_down() -> None:
    problems = []
    for path in PACKAGE.rglob("*.py"):
        layer = _layer(path)
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                depth = len(path.relative_to(PACKAGE).parts) - 1
                if node.level > depth:
                    target = (node.module or node.names[0].name).split(".")[0]
                elif node.level == depth and depth:
                    target = layer
                else:
                    target = layer
                if target != layer and target not in ALLOWED.get(layer, set()):
                    problems.append(f"{path.name}: {layer} imports {target}")
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module.split(".")[0]]
            for name in names:
                if name in THIRD_PARTY and layer not in THIRD_PARTY[name]:
                    problems.append(f"{path.name}: {layer} imports {name}")
    assert problems == []


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
