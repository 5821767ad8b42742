"""Rewrite the README's generated parts: the command reference, and the last benchmark tables."""

import sys
from pathlib import Path

from jindr_nb.commands import reference_markdown

ROOT = Path(__file__).parent.parent
path = ROOT / "README.md"


def replace(text: str, name: str, body: str) -> str:
    start, end = f"<!-- {name}:start -->\n", f"<!-- {name}:end -->"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + start + body.strip() + "\n" + end + tail


def reliability_table(counts: Path) -> str:
    """The case counts the reliability test modules wrote in the last `make test` (tests/.counts/)."""
    import json

    names = {
        "badinput": ("Bad input (CLI and `%jindr`, plus a real kernel and the executable)", "bad_inputs"),
        "hostile": ("Hostile registry answers through a fault-injecting proxy", "hostile_cases"),
        "transport_hostile": ("Hostile answers at the HTTP layer, loopback and TLS stacks", "hostile_cases"),
        "kill": ("Kills and Ctrl-C in the middle of cp, load, rmr, gc, listing", "fault_cases"),
        "runtime_faults": ("Runtime faults (engine down, SIGKILL, stale pid, read-only, disk full)", "fault_cases"),
        "load": ("Load: 2,000 repositories x 5 tags, listings during writes", "load_cases"),
        "security": ("Security (loopback only, 0700, no shell, secrets never shown)", "security_cases"),
        "data_layers": ("Registry as data: layers, history, config, diff against real builds", "data_cases"),
    }
    lines = ["| area | cases tried |", "|---|---|"]
    # The safety family is counted by several modules (tests/test_safety_*.py): one line, their sum.
    safety = [json.loads(p.read_text()) for p in sorted(counts.glob("safety_*.json"))]
    if safety:
        total = sum(int(r.get("safety_cases", 0)) for r in safety)
        label = "Safety: deletes on every kind of manifest and registry, rollback, broken indexes, load, gc, pipes"
        lines.append(f"| {label} | {total:,} |")
    for stem, (label, key) in names.items():
        path = counts / f"{stem}.json"
        if path.exists():
            record = json.loads(path.read_text())
            lines.append(f"| {label} | {record.get(key, 0):,} |")
    return "\n".join(lines)


def bench_tables(folder: Path) -> str:
    """The targets table (every part's `results-X.json`), then each part's own tables, as `make bench` left them."""
    sys.path.insert(0, str(folder))
    from targets import PARTS, collected, markdown

    found = [p.read_text() for p in (folder / f"results-{part}.md" for part in PARTS) if p.exists()]
    rows = collected(folder)
    head = ["The targets, from the same runs as the tables below:", "", markdown(rows), ""] if rows else []
    return "\n".join(head + found)


text = replace(path.read_text(), "commands", reference_markdown())
bench = bench_tables(ROOT / "tests" / "benchmarks")
if bench:
    text = replace(text, "bench", bench)
counts = ROOT / "tests" / ".counts"
if "<!-- reliability:start -->" in text and counts.is_dir():
    text = replace(text, "reliability", reliability_table(counts))
path.write_text(text)
