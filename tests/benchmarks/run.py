"""`make bench`: jindr_nb against jindr 1.5.0 and the registry's own ceiling, in one run.

Populates two registries (the real registry binary) through jindr's client with 150 repositories
x 4 tags x 2 platforms — A: OCI indexes with attestations, B: Docker manifest lists (the only kind
jindr 1.5.0 can read) — then times each tool several times, interleaved, and prints medians,
ratios, peak RSS, and how many repositories and tags each tool reported against what was pushed.
`layers` is measured in the same run: cold over the API against a cold `lsi -l`, cold from the
storage of the registry jindr runs, and repeated in a warm kernel (`--only layers` measures just
that, on the OCI registry, for a quick check).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from jindr_run import jindr  # noqa: E402
from rig import ImageFactory, free_port, start_registry  # noqa: E402

from jindr_nb.client import RegistryClient  # noqa: E402

OURS = [str(Path(sys.executable).parent / "jindr")]
PEER_VENV = ROOT / ".bench" / "jindr-1.5.0"
PEER = [str(PEER_VENV / "bin" / "jindr")]
MANIFEST_ACCEPT = (
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json"
)


def ensure_peer() -> None:
    if (PEER_VENV / "bin" / "jindr").exists():
        return
    subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    subprocess.run([str(PEER_VENV / "bin" / "pip"), "install", "-q", "jindr==1.5.0"], check=True)


def populate(address: str, repos: int, tags: int, oci: bool, seed: int) -> int:
    with RegistryClient(address, pool=8) as client:

        def one(i: int) -> None:
            f = ImageFactory(client, seed=seed * 100_000 + i)
            for t in range(tags):
                f.index(f"bench/app{i:03d}", [f"v{t}"], oci=oci, layers=(1, 3), layer_size=8192)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, range(repos)))
    return repos * tags


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str, int]:
    """(seconds, peak RSS KiB, stdout, exit code) of one run."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    out, err = proc.communicate()
    _, status, usage = os.wait4(proc.pid, 0) if proc.returncode is None else (0, 0, None)
    elapsed = time.perf_counter() - start
    rss = usage.ru_maxrss if usage else 0
    return elapsed, rss, out.decode(), proc.returncode


def timed_rss(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str, int]:
    """Like `timed`, with peak RSS from GNU time's -f %M when available."""
    gtime = shutil.which("time") or "/usr/bin/time"
    if not os.path.exists(gtime):
        return timed(cmd, env)
    with tempfile.NamedTemporaryFile("r") as rss_file:
        start = time.perf_counter()
        proc = subprocess.run(
            [gtime, "-o", rss_file.name, "-f", "%M", *cmd], capture_output=True, env={**os.environ, **(env or {})}
        )
        elapsed = time.perf_counter() - start
        text = Path(rss_file.name).read_text().strip().splitlines()
        rss = int(text[-1]) if text and text[-1].isdigit() else 0
    return elapsed, rss, proc.stdout.decode(), proc.returncode


def wrk_rate(address: str, repo: str, reference: str, seconds: int = 5) -> float:
    if not shutil.which("wrk"):
        return float("nan")
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            "-c16",
            f"-d{seconds}s",
            "-H",
            f"Accept: {MANIFEST_ACCEPT}",
            f"http://{address}/v2/{repo}/manifests/{reference}",
        ],
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(match.group(1)) if match else float("nan")


def in_process_rate(address: str) -> tuple[float, int, float]:
    """Cold `lsi -l` inside one process: (seconds, HTTP requests, requests/s)."""
    from jindr_nb.ops.cache import ContentCache
    from jindr_nb.ops.fetch import Fetcher
    from jindr_nb.ops.listing import list_images

    with RegistryClient(address) as client:
        client.ping()
        sent = client.requests_sent
        start = time.perf_counter()
        list_images(Fetcher(client, ContentCache(None)), long=True)
        elapsed = time.perf_counter() - start
        requests = client.requests_sent - sent
    return elapsed, requests, requests / elapsed


class _Managed:
    """A registry started by `jindr start` (its address and port, like rig's LocalRegistry)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.port = int(address.rsplit(":", 1)[1])


def start_stop_times(work: Path, runs: int) -> dict[str, list[float]]:
    """Warm-kernel `%jindr start` to a ready registry, and `stop -G`, per runtime."""
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    if "jindr_nb" not in ip.extension_manager.loaded:
        ip.run_line_magic("load_ext", "jindr_nb")
    runtimes = [("process", "")]
    try:
        from engines import build_registry_image, ensure_dockerd

        client = ensure_dockerd(work)
        if client is not None:
            runtimes.append(("docker", f"--image {build_registry_image(client, shutil.which('docker-registry'))}"))
    except Exception as exc:  # noqa: BLE001 - docker is optional for the benchmark
        print(f"docker runtime not measured: {exc}")
    out: dict[str, list[float]] = {}
    for name, extra in runtimes:
        address = f"localhost:{free_port()}"
        storage = work / f"lifecycle-{name}"
        ip.run_line_magic("jindr", f"-r {address} start --runtime {name} -d {storage} {extra}")
        ip.run_line_magic("jindr", f"-r {address} stop -G")
        for _ in range(runs):
            t0 = time.perf_counter()
            ip.run_line_magic("jindr", f"-r {address} start --runtime {name} -d {storage} {extra}")
            t1 = time.perf_counter()
            ip.run_line_magic("jindr", f"-r {address} stop -G")
            t2 = time.perf_counter()
            out.setdefault(f"{name} start", []).append(t1 - t0)
            out.setdefault(f"{name} stop -G", []).append(t2 - t1)
    return out


def panel_render(rows: int = 5000, runs: int = 5) -> dict[str, float]:
    """The delete panel's table with `rows` tags once the listing is in: load, filter, next page."""
    from datetime import UTC, datetime, timedelta

    from jindr_nb.frames import to_frame
    from jindr_nb.models import LongImageRow
    from jindr_nb.widgets.table import ImageTable

    now = datetime.now(UTC)
    listing = [
        LongImageRow(
            "localhost:5001",
            f"team{i % 50}/app{i % 400}",
            f"v{i}",
            "sha256:" + f"{i:064x}",
            f"{i:012x}",
            "application/vnd.oci.image.index.v1+json",
            ["linux/amd64", "linux/arm64"],
            1000 * i,
            now - timedelta(minutes=i),
        )
        for i in range(rows)
    ]
    frame = to_frame(listing, LongImageRow)
    out: dict[str, list[float]] = {}
    for _ in range(runs):
        table = ImageTable()
        t0 = time.perf_counter()
        table.load(frame)
        t1 = time.perf_counter()
        table.filter.value = "team7/*"
        t2 = time.perf_counter()
        table.next.click()
        t3 = time.perf_counter()
        table.sort.value = "size (largest first)"
        t4 = time.perf_counter()
        for key, value in (("load", t1 - t0), ("filter", t2 - t1), ("next page", t3 - t2), ("sort", t4 - t3)):
            out.setdefault(key, []).append(value)
    return {k: statistics.median(v) for k, v in out.items()}


def warm_kernel(address: str, runs: int, *, local: bool, command: str = "lsi -l") -> list[float]:
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    if "jindr_nb" not in ip.extension_manager.loaded:
        ip.run_line_magic("load_ext", "jindr_nb")
    flag = "" if local else " --no-local"
    ip.run_line_magic("jindr", f"-r {address} {command}{flag}")
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        frame = ip.run_line_magic("jindr", f"-r {address} {command}{flag}")
        times.append(time.perf_counter() - start)
        assert len(frame) > 0
    return times


def count_rows(text: str, address_port: str) -> tuple[int, int]:
    """(repositories, tags) in a listing printed by either tool (`layers` prints a tag once per layer)."""
    tags = set()
    for line in text.splitlines():
        match = re.search(r"(?:localhost|127\.0\.0\.1):" + address_port + r"/?\s*(\S+)\s+(\S+)", line)
        if match:
            tags.add((match.group(1), match.group(2)))
    return len({repo for repo, _ in tags}), len(tags)


def med(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--repos", type=int, default=150)
    parser.add_argument("--tags", type=int, default=4)
    parser.add_argument("--out", default=str(ROOT / "tests" / "benchmarks" / "results-core.md"))
    parser.add_argument(
        "--only", choices=["all", "layers"], default="all", help="layers: only the `layers` measurements (no peer)"
    )
    opts = parser.parse_args()
    full = opts.only == "all"
    if full:
        ensure_peer()
    work = Path(tempfile.mkdtemp(prefix="jindr-bench-"))
    os.environ["JINDR_STATE_DIR"] = str(work / "state")
    oci_address = f"localhost:{free_port()}"
    jindr("-r", oci_address, "start", "--runtime", "process", "-d", str(work / "oci"))
    reg_oci = _Managed(oci_address)
    reg_list = start_registry(work / "list") if full else None
    try:
        t0 = time.perf_counter()
        pushed = populate(reg_oci.address, opts.repos, opts.tags, True, 1)
        if reg_list is not None:
            populate(reg_list.address, opts.repos, opts.tags, False, 2)
        registries = 2 if full else 1
        print(
            f"populated {registries} x {opts.repos} repos x {opts.tags} tags in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        res: dict[str, list[float]] = {}
        rss: dict[str, int] = {}
        counts: dict[str, tuple[int, int]] = {}

        def record(name: str, cmd: list[str], port: str | None = None, env: dict | None = None) -> None:
            seconds, peak, out, code = timed_rss(cmd, env)
            res.setdefault(name, []).append(seconds)
            rss[name] = max(rss.get(name, 0), peak)
            if port is not None:
                counts[name] = count_rows(out, port) if code == 0 else (0, 0)

        oport = str(reg_oci.port)
        lport = str(reg_list.port) if reg_list is not None else ""
        peer_r = ["-r", f"localhost:{lport}"]
        on_oci = ["-r", f"localhost:{oport}"]
        for run in range(opts.runs):
            cold = work / f"cache-cold-{run}"
            warm = work / "cache-warm"
            api = [*on_oci, "lsi", "--no-local"]
            if full:
                record("jindr 1.5.0 lsi (Docker lists)", PEER + peer_r + ["lsi"], lport)
                record(
                    "jindr_nb lsi (Docker lists)",
                    OURS + ["-r", f"localhost:{lport}", "lsi"],
                    lport,
                    {"JINDR_CACHE_DIR": str(warm)},
                )
                record("jindr 1.5.0 lsi (OCI)", PEER + ["-r", f"localhost:{oport}", "lsi"], oport)
                record("jindr_nb lsi (OCI)", OURS + api, oport, {"JINDR_CACHE_DIR": str(warm)})
            record("jindr_nb lsi -l cold (OCI)", OURS + api + ["-l"], oport, {"JINDR_CACHE_DIR": str(cold)})
            # Right after the cold `lsi -l` it is compared with, on its own empty cache.
            record(
                "jindr_nb layers cold (OCI)",
                OURS + on_oci + ["layers", "--no-local"],
                oport,
                {"JINDR_CACHE_DIR": str(work / f"cache-layers-{run}")},
            )
            if full:
                record("jindr_nb lsi -l repeated (OCI)", OURS + api + ["-l"], oport, {"JINDR_CACHE_DIR": str(warm)})
                record(
                    "jindr_nb lsi -l cold, local storage (OCI)",
                    OURS + on_oci + ["lsi", "-l"],
                    oport,
                    {"JINDR_CACHE_DIR": str(work / f"cache-local-{run}")},
                )
            record(
                "jindr_nb layers cold, local storage (OCI)",
                OURS + on_oci + ["layers"],
                oport,
                {"JINDR_CACHE_DIR": str(work / f"cache-layers-local-{run}")},
            )
            if full:
                record("jindr 1.5.0 --help", PEER + ["--help"])
                record("jindr_nb --help", OURS + ["--help"])
        kernel_layers = warm_kernel(reg_oci.address, opts.runs, local=True, command="layers")
        if full:
            some_digest = RegistryClient(reg_oci.address).get_manifest("bench/app000", "v0").digest
            wrk = wrk_rate(reg_oci.address, "bench/app000", some_digest)
            rates = [in_process_rate(reg_oci.address) for _ in range(3)]
            kernel = warm_kernel(reg_oci.address, opts.runs, local=False)
            kernel_local = warm_kernel(reg_oci.address, opts.runs, local=True)
            lifecycle = start_stop_times(work, opts.runs)
            panel = panel_render()
    finally:
        jindr("-r", oci_address, "stop", "-G")
        if reg_list is not None:
            reg_list.stop()
        shutil.rmtree(work, ignore_errors=True)

    peer_lsi = med(res["jindr 1.5.0 lsi (Docker lists)"]) if full else None
    per_registry = "per registry" if full else "(the OCI registry only: --only layers)"
    lines = [
        f"Machine: {os.cpu_count()} cores, {platform_line()}; registry: Debian docker-registry 2.8.2 on 127.0.0.1; "
        f"{opts.runs} runs each, interleaved; pushed {opts.repos} repositories / {pushed} tags {per_registry}.",
        "",
        "| command | median s | vs jindr 1.5.0 lsi | peak RSS MiB | repositories / tags reported |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, values in res.items():
        reported = counts.get(name)
        rep = f"{reported[0]} / {reported[1]}" if reported else ""
        ratio = f"{med(values) / peer_lsi:.2f}x" if peer_lsi and "help" not in name else ""
        lines.append(f"| `{name}` | {med(values):.3f} | {ratio} | {rss[name] / 1024:.0f} | {rep} |")
    layers_cold = med(res["jindr_nb layers cold (OCI)"])
    layers_ratio = layers_cold / med(res["jindr_nb lsi -l cold (OCI)"])
    layers_local = med(res["jindr_nb layers cold, local storage (OCI)"])
    layer_lines = [
        "",
        f"`layers` ({pushed} tags x 2 platforms, one row per layer), medians of {opts.runs} runs:",
        f"- cold over the API: {layers_cold:.3f} s, {layers_ratio:.2f}x a cold `lsi -l` over the API in the same "
        f"runs (target <= 1.2x: {_verdict(layers_ratio <= 1.2)}).",
        f"- Warm kernel, repeated `%jindr layers` on the registry jindr runs (local storage): median "
        f"{med(kernel_layers):.3f} s (min {min(kernel_layers):.3f}, max {max(kernel_layers):.3f}; target <= 0.3 s: "
        f"{_verdict(med(kernel_layers) <= 0.3)}).",
        f"- `jindr layers`, cold CLI on the registry jindr runs (local storage): {layers_local:.3f} s "
        f"(target <= 0.5 s: {_verdict(layers_local <= 0.5)}).",
    ]
    if not full:
        report = "\n".join(lines + layer_lines)
        print(report)
        Path(opts.out).write_text(report + "\n")
        return 0
    help_ratio = med(res["jindr_nb --help"]) / med(res["jindr 1.5.0 --help"])
    cold_s, requests, _ = rates[0]
    rate = med([r[2] for r in rates])
    lines += [
        "",
        f"- `jindr_nb --help` takes {help_ratio:.2f}x the time of jindr 1.5.0's.",
        f"- Warm kernel, repeated `%jindr lsi -l --no-local` (API, OCI, {pushed} tags): median {med(kernel):.3f} s "
        f"(min {min(kernel):.3f}, max {max(kernel):.3f}).",
        f"- Warm kernel, repeated `%jindr lsi -l` on the registry jindr runs (local storage): median "
        f"{med(kernel_local):.3f} s (min {min(kernel_local):.3f}, max {max(kernel_local):.3f}).",
        f"- `jindr lsi -l` (cold cache, local storage) takes "
        f"{med(res['jindr_nb lsi -l cold, local storage (OCI)']) / peer_lsi:.2f}x jindr 1.5.0's `lsi` time.",
        f"- Repeated `lsi -l` costs {med(res['jindr_nb lsi -l repeated (OCI)']) / med(res['jindr_nb lsi (OCI)']):.2f}x"
        " a plain `lsi` over the API (digest cache).",
        "",
        "| warm kernel | median s | min | max |",
        "|---|---:|---:|---:|",
        *[f"| `%jindr {k}` | {med(v):.3f} | {min(v):.3f} | {max(v):.3f} |" for k, v in lifecycle.items()],
        "",
        "Delete panel, 5,000 tags, once the listing is in (medians): "
        + ", ".join(f"{k} {v:.3f} s" for k, v in panel.items())
        + ".",
        f"- Cold `lsi -l` in process: {requests} HTTP requests at a median {rate:.0f} requests/s; `wrk` (C, 2 threads, "
        f"16 connections) on one manifest of the same registry: {wrk:.0f} requests/s, so jindr_nb reaches "
        f"{rate / wrk:.0%} of the registry's ceiling.",
        *layer_lines,
    ]
    report = "\n".join(lines)
    print(report)
    Path(opts.out).write_text(report + "\n")
    return 0


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def platform_line() -> str:
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
        return f"{mem} GiB, Python {sys.version.split()[0]}"
    except (OSError, ValueError, IndexError):
        return f"Python {sys.version.split()[0]}"


if __name__ == "__main__":
    raise SystemExit(main())
