"""The performance targets `make bench` checks: each part writes its rows next to its results
(`results-X.json`), and `tools/readme.py` puts them together in one table above the others."""

from __future__ import annotations

import json
import math
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = ("core", "copy", "load", "s3")  # the order: run.py, copybench.py, loadbench.py, s3bench.py


def row(target: str, goal: str, figure: str, ratio: str, met: bool) -> dict:
    """One target: what is measured, the goal as written, the figure(s), the ratio checked, met or not."""
    return {"target": target, "goal": goal, "figure": figure, "ratio": ratio, "met": bool(met)}


def fraction(value: float, base: float) -> float:
    """value / base, NaN when either is missing (a tool not measured this run)."""
    return value / base if base and not math.isnan(base) and not math.isnan(value) else float("nan")


def write(path: Path, rows: list[dict]) -> None:
    path.write_text(json.dumps({"targets": rows}, indent=1) + "\n")


def markdown(rows: list[dict]) -> str:
    lines = ["| target | goal | measured | ratio | |", "|---|---|---|---:|---|"]
    for r in rows:
        lines.append(
            f"| {r['target']} | {r['goal']} | {r['figure']} | {r['ratio']} | {'met' if r['met'] else 'NOT met'} |"
        )
    return "\n".join(lines)


def collected(folder: Path = HERE) -> list[dict]:
    """Every part's rows, in PARTS order (parts not run yet are left out)."""
    rows: list[dict] = []
    for part in PARTS:
        path = folder / f"results-{part}.json"
        if path.exists():
            rows += json.loads(path.read_text())["targets"]
    return rows
