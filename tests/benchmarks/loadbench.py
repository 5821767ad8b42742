"""`make bench` (load part): 2,000 repositories x 5 tags, `ls` and `lsi` with time and peak memory.

The same registry (started by `jindr start --runtime process`, storage written beforehand in the
registry's own layout) is listed by jindr_nb from its storage and over the API, and by jindr
1.5.0 — which shows only the registry's first page of 100 repositories, so its rows are counted
too. Runs are interleaved; medians and the highest peak RSS are reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))

from jindr_run import jindr  # noqa: E402
from rig import fill_storage, free_port  # noqa: E402
from run import OURS, PEER, ensure_peer, timed_rss  # noqa: E402


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repos", type=int, default=2000)
    parser.add_argument("--tags", type=int, default=5)
    opts = parser.parse_args(argv)
    ensure_peer()
    work = Path(tempfile.mkdtemp(prefix="jindr-loadbench-"))
    os.environ["JINDR_STATE_DIR"] = str(work / "state")
    os.environ["JINDR_CACHE_DIR"] = str(work / "cache")
    started = time.perf_counter()
    pushed = fill_storage(work / "storage", opts.repos, opts.tags)
    print(f"wrote {len(pushed)} tags in {time.perf_counter() - started:.1f} s", flush=True)
    port = free_port()
    address = f"localhost:{port}"
    jindr("-r", address, "start", "--runtime", "process", "-d", str(work / "storage"))
    commands = {
        "jindr_nb ls": [*OURS, "-r", address, "ls"],
        "jindr_nb lsi (from storage)": [*OURS, "-r", address, "lsi"],
        "jindr_nb lsi --no-local (API)": [*OURS, "-r", address, "lsi", "--no-local"],
        "jindr 1.5.0 ls": [*PEER, "-r", address, "ls"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    rss: dict[str, int] = {}
    rows: dict[str, int] = {}
    try:
        for _ in range(opts.runs):
            for name, cmd in commands.items():
                seconds, peak, out, code = timed_rss(cmd)
                if code != 0:
                    raise SystemExit(f"{name} failed ({code}): {out[-500:]}")
                times[name].append(seconds)
                rss[name] = max(rss.get(name, 0), peak)
                rows[name] = sum(1 for line in out.splitlines() if f":{port}" in line or "load/r" in line)
    finally:
        jindr("-r", address, "stop", "-G")
    want = {"ls": opts.repos, "lsi": opts.repos * opts.tags}
    lines = [
        f"#### Load: {opts.repos:,} repositories x {opts.tags} tags ({opts.runs} runs, interleaved)",
        "",
        "| command | median s | peak RSS MiB | rows reported / in the registry |",
        "|---|---|---|---|",
    ]
    for name in commands:
        expected = want["lsi"] if "lsi" in name else want["ls"]
        lines.append(
            f"| `{name}` | {statistics.median(times[name]):.2f} | {rss[name] / 1024:.0f} | "
            f"{rows[name]:,} / {expected:,} |"
        )
    report = "\n".join(lines)
    print(report)
    (ROOT / "tests" / "benchmarks" / "results-load.md").write_text(report + "\n")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
