"""Rewrite the README's generated parts: the command reference, and the last benchmark tables."""

from pathlib import Path

from jindr_nb.commands import reference_markdown

ROOT = Path(__file__).parent.parent
path = ROOT / "README.md"


def replace(text: str, name: str, body: str) -> str:
    start, end = f"<!-- {name}:start -->\n", f"<!-- {name}:end -->"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + start + body.strip() + "\n" + end + tail


text = replace(path.read_text(), "commands", reference_markdown())
results = [ROOT / "tests" / "benchmarks" / n for n in ("results-core.md", "results-copy.md")]
found = [p.read_text() for p in results if p.exists()]
if found:
    text = replace(text, "bench", "\n".join(found))
path.write_text(text)
