"""`make bench` (load part): 2,000 repositories x 5 tags, `ls` and `lsi` with time and peak memory.

The same registry (started by `jindr start --runtime process`, storage written beforehand in the
registry's own layout: single-platform images over one shared layer) is listed by jindr_nb from its
storage and over the API, and by jindr 1.5.0 — which shows only the registry's first page of 100
repositories, so its rows are counted too. Runs are interleaved; medians and the highest peak RSS
are reported. Then a warm kernel repeats `%jindr lsi` from the storage. The targets: `jindr --json
lsi` from storage <= 0.6 s and <= 60 MiB peak RSS, the warm kernel <= 0.2 s.
"""

from __future__ import annotations

import argparse
import compileall
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
from run import OURS, PEER, ensure_peer, timed_rss, warm_kernel  # noqa: E402
from targets import row, write  # noqa: E402


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repos", type=int, default=2000)
    parser.add_argument("--tags", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "tests" / "benchmarks" / "results-load.md"))
    opts = parser.parse_args(argv)
    # Bytecode, as `pip install` leaves it (`make bench` does this too): an editable install under
    # PYTHONDONTWRITEBYTECODE would compile every changed module again at each command's start.
    compileall.compile_dir(str(ROOT / "jindr_nb"), quiet=1)
    ensure_peer()
    work = Path(tempfile.mkdtemp(prefix="jindr-loadbench-"))
    os.environ["JINDR_STATE_DIR"] = str(work / "state")
    os.environ["JINDR_CACHE_DIR"] = str(work / "cache")
    started = time.perf_counter()
    pushed = fill_storage(work / "storage", opts.repos, opts.tags)
    wrote = time.perf_counter() - started
    print(f"wrote {len(pushed)} tags in {wrote:.1f} s", flush=True)
    port = free_port()
    address = f"localhost:{port}"
    jindr("-r", address, "start", "--runtime", "process", "-d", str(work / "storage"))
    commands = {
        "jindr_nb ls": [*OURS, "-r", address, "ls"],
        "jindr_nb lsi (from storage)": [*OURS, "-r", address, "lsi"],
        "jindr_nb --json lsi (from storage)": [*OURS, "--json", "-r", address, "lsi"],
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
        kernel = warm_kernel(address, opts.runs, local=True, command="lsi")
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
    cli = statistics.median(times["jindr_nb --json lsi (from storage)"])
    peak_mib = rss["jindr_nb --json lsi (from storage)"] / 1024
    warm = statistics.median(kernel)
    lines += [
        "",
        f"- The storage was written straight in the registry's layout ({len(pushed):,} tags, single-platform "
        f"images over one tiny shared layer) in {wrote:.1f} s.",
        f"- Warm kernel, repeated `%jindr lsi` from the storage ({opts.runs} runs): median {warm:.3f} s "
        f"(min {min(kernel):.3f}, max {max(kernel):.3f}).",
    ]
    tags = f"{opts.repos * opts.tags:,} tags ({opts.repos:,} repositories x {opts.tags})"
    targets = [
        row(
            f"`jindr --json lsi`, {tags} from the storage of a registry jindr runs",
            "<= 0.6 s",
            f"{cli:.2f} s",
            f"{cli / 0.6:.2f}x the goal",
            cli <= 0.6,
        ),
        row(
            "peak RSS of that `jindr --json lsi`",
            "<= 60 MiB",
            f"{peak_mib:.0f} MiB",
            f"{peak_mib / 60:.2f}x the goal",
            peak_mib <= 60,
        ),
        row(
            f"a warm kernel repeating `%jindr lsi`, {tags} from the storage",
            "<= 0.2 s",
            f"{warm:.3f} s",
            f"{warm / 0.2:.2f}x the goal",
            warm <= 0.2,
        ),
    ]
    report = "\n".join(lines)
    print(report)
    Path(opts.out).write_text(report + "\n")
    write(Path(opts.out).with_suffix(".json"), targets)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
