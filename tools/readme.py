"""Rewrite the README's command reference from the command table."""

from pathlib import Path

from jindr_nb.commands import reference_markdown

path = Path(__file__).parent.parent / "README.md"
text = path.read_text()
start, end = "<!-- commands:start -->\n", "<!-- commands:end -->"
head, rest = text.split(start, 1)
_, tail = rest.split(end, 1)
path.write_text(head + start + reference_markdown().strip() + "\n" + end + tail)
