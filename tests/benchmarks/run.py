"""`make bench`: jindr_nb against jindr 1.5.0, the Python peers and the registry's own ceiling, in one run.

Populates two registries (the real registry binary) through jindr's client with 150 repositories
x 4 tags x 2 platforms — A: OCI indexes with attestations, B: Docker manifest lists (the only kind
jindr 1.5.0 can read) — then times each tool several times, interleaved, and prints medians,
ratios, peak RSS, and how many repositories and tags each tool reported against what was pushed.
The Python peers (python-dxf and oras-py, driven by peers.py with 8 threads: what plain `jindr lsi`
does) run in `.bench/peers`, with py-spy. The registry's ceiling is the best `wrk -t2` rate over
-c 4, 8 and 16 for the requests a cold `lsi -l` sends, on registry A in the same run; a cold
`lsi -l` is then split into its CPU and the registry's, and profiled with py-spy. The targets
(`targets.py`) go to results-core.json beside results-core.md.
`layers` is measured in the same run: cold over the API against a cold `lsi -l`, cold from the
storage of the registry jindr runs, and repeated in a warm kernel (`--only layers` measures just
that, on the OCI registry, for a quick check).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))

from jindr_run import jindr  # noqa: E402
from rig import ImageFactory, free_port  # noqa: E402
from targets import fraction, markdown, row, write  # noqa: E402

from jindr_nb.client import RegistryClient  # noqa: E402

OURS = [str(Path(sys.executable).parent / "jindr")]
PEER_VENV = ROOT / ".bench" / "jindr-1.5.0"
PEER = [str(PEER_VENV / "bin" / "jindr")]
# The Python peers a user would pick instead (tests/benchmarks/peers.py drives them), and py-spy.
PY_PEERS_VENV = ROOT / ".bench" / "peers"
PY_PEER_PINS = ["python-dxf==12.1.1", "oras==0.2.43", "py-spy==0.4.3"]
PY_PEERS = {"python-dxf": "dxf", "oras-py": "oras"}
PY_PEER = [str(PY_PEERS_VENV / "bin" / "python"), str(ROOT / "tests" / "benchmarks" / "peers.py")]
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


def ensure_python_peers() -> None:
    """python-dxf and oras-py (the peers a Python user would pick) and py-spy, in the bench's own venv."""
    marker = PY_PEERS_VENV / ".installed"
    if marker.exists() and marker.read_text() == " ".join(PY_PEER_PINS):
        return
    subprocess.run([sys.executable, "-m", "venv", str(PY_PEERS_VENV)], check=True)
    subprocess.run([str(PY_PEERS_VENV / "bin" / "pip"), "install", "-q", *PY_PEER_PINS], check=True)
    marker.write_text(" ".join(PY_PEER_PINS))


def ceiling_requests(address: str, repos: int, tags: int) -> list[tuple[str, str]]:
    """The requests a cold `lsi -l --no-local` sends, read from the populated registry, as (method, path):
    each tag's index by tag, each platform's manifest by digest and its config blob, and each
    attestation manifest (jindr's HEAD: the check that every child of an index is still there)."""

    def one(ref: tuple[int, int]) -> list[tuple[str, str]]:
        repo = f"bench/app{ref[0]:03d}"
        base = f"http://{address}/v2/{repo}"
        found = [("GET", f"/v2/{repo}/manifests/v{ref[1]}")]
        index = json.loads(_get(f"{base}/manifests/v{ref[1]}"))
        for entry in index["manifests"]:
            path = f"/v2/{repo}/manifests/{entry['digest']}"
            if (entry.get("annotations") or {}).get("vnd.docker.reference.type") == "attestation-manifest":
                # jindr sends a HEAD; wrk's parser waits for a body after a HEAD's Content-Length (each one
                # then ends at wrk's timeout), so the ceiling asks a GET, which costs the registry the same
                # manifest read.
                found.append(("GET", path))
                continue
            child = json.loads(_get(f"http://{address}{path}"))
            found += [("GET", path), ("GET", f"/v2/{repo}/blobs/{child['config']['digest']}")]
        return found

    with ThreadPoolExecutor(8) as pool:
        refs = [(r, t) for r in range(repos) for t in range(tags)]
        return [request for requests in pool.map(one, refs) for request in requests]


def _get(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": MANIFEST_ACCEPT})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.read()


WRK_SCRIPT = """-- generated by tests/benchmarks/run.py: each request in turn, the full Accept list on every one
local methods = {%s}
local paths = {%s}
local accept = "%s"
local i = 0
request = function()
  i = i %% #paths + 1
  return wrk.format(methods[i], paths[i], {["Accept"] = accept})
end
"""


def wrk_ceiling(address: str, requests: list[tuple[str, str]], work: Path, seconds: int = 5) -> dict[int, float]:
    """requests/s of `wrk -t2 -c N` for N in 4, 8, 16 over `requests` (the best is the registry's ceiling).
    A setting whose answers were not all 2xx is reported as NaN, never as a rate."""
    if not shutil.which("wrk"):
        return {}
    script = work / "ceiling.lua"
    methods = ", ".join(json.dumps(m) for m, _ in requests)
    script.write_text(WRK_SCRIPT % (methods, ", ".join(json.dumps(p) for _, p in requests), MANIFEST_ACCEPT))
    host, port = address.rsplit(":", 1)
    url = f"http://{'127.0.0.1' if host == 'localhost' else host}:{port}"
    rates: dict[int, float] = {}
    for connections in (4, 8, 16):
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url],
            capture_output=True,
            text=True,
        ).stdout
        match = re.search(r"Requests/sec:\s+([\d.]+)", out)
        failed = re.search(r"Non-2xx or 3xx responses:\s+(\d+)|Socket errors:", out)
        if failed:
            print(f"wrk -c{connections}: not every answer was a success, not counted:\n{out}", flush=True)
        rates[connections] = float(match.group(1)) if match and not failed else float("nan")
    return rates


def registry_pid(port: int) -> int | None:
    """The pid of the process listening on 127.0.0.1:port (the registry), to read its CPU time."""
    import psutil

    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return conn.pid
    return None


def cpu_split(cmd: list[str], port: int, env: dict[str, str]) -> tuple[float, float, float]:
    """One run of `cmd`: (wall s, its CPU s, the registry's CPU s over the same time)."""
    import psutil

    pid = registry_pid(port)
    registry = psutil.Process(pid) if pid else None
    before = sum(registry.cpu_times()[:2]) if registry else float("nan")
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, **env})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so that Popen does not wait again
        after = sum(registry.cpu_times()[:2]) if registry else float("nan")
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.read().decode()[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime, after - before


def profile(cmd: list[str], env: dict[str, str], work: Path, rate: int = 100) -> list[str]:
    """Where a command's time goes, from py-spy: every thread's samples (`--idle`) by what the thread was
    doing, and the samples holding the GIL (`--gil`, Python running) by module and function. `--nonblocking`:
    py-spy reads the process without pausing it, so the profile slows it little. Markdown lines."""
    spy = PY_PEERS_VENV / "bin" / "py-spy"
    stacks: dict[str, dict[str, int]] = {}
    walls: dict[str, float] = {}
    for mode in ("--idle", "--gil"):
        raw = work / f"profile{mode}.txt"
        start = time.perf_counter()
        done = subprocess.run(
            [str(spy), "record", "--nonblocking", "--format", "raw", "-o", str(raw), "-r", str(rate), mode, "--", *cmd],
            capture_output=True,
            env={**os.environ, **env, "JINDR_CACHE_DIR": str(work / f"cache-profile{mode}")},
        )
        walls[mode] = time.perf_counter() - start
        if done.returncode != 0 or not raw.exists():
            return [f"- py-spy could not profile: {done.stderr.decode()[-300:].strip()}"]
        counts: dict[str, int] = {}
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if count.isdigit():
                counts[stack] = counts.get(stack, 0) + int(count)
        stacks[mode] = counts
    idle = stacks["--idle"]
    kinds: dict[str, int] = {}
    for stack, n in idle.items():
        kinds[_kind(stack)] = kinds.get(_kind(stack), 0) + n
    total = sum(kinds.values()) or 1
    gil = stacks["--gil"]
    held = sum(gil.values()) or 1
    own: dict[str, int] = {}
    modules: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    for stack, n in gil.items():
        frames = stack.split(";")
        leaf = frames[-1] or "(no Python frame)"
        own[leaf] = own.get(leaf, 0) + n
        module = _module(frames[-1])
        modules[module] = modules.get(module, 0) + n
        for frame in set(frames):
            if _module(frame).startswith(("jindr_nb/", "http/", "json/", "email/")):
                inclusive[frame] = inclusive.get(frame, 0) + n

    def top(counts: dict[str, int], n: int = 8, quote: bool = True) -> str:
        best = sorted(counts.items(), key=lambda kv: -kv[1])[:n]
        return ", ".join(f"{f'`{k}`' if quote else k} {v / held:.0%}" for k, v in best)

    return [
        f"- All threads, by what they were doing ({sum(idle.values())} samples at {rate}/s, {walls['--idle']:.2f} s "
        "under py-spy): "
        + ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))
        + ".",
        f"- Holding the GIL (Python running): {sum(gil.values())} samples over {walls['--gil']:.2f} s at {rate}/s, "
        f"so Python ran {sum(gil.values()) / (rate * walls['--gil']):.0%} of the wall time. By module (self): "
        + top(modules, quote=False)
        + ".",
        "- Holding the GIL, by function (self): " + top(own) + ".",
        "- Holding the GIL, inclusive (jindr_nb, http.client, json): " + top(inclusive) + ".",
    ]


def _module(frame: str) -> str:
    """`func (path/file.py:12)` -> `path/file.py` (py-spy's raw frames)."""
    match = re.search(r"\((.*):\d+\)$", frame)
    return match.group(1) if match else frame


def _kind(stack: str) -> str:
    frames = stack.split(";")
    leaf = frames[-1]
    if "importlib" in stack:
        return "importing modules"
    if any(f.startswith(("loads ", "JSONDecoder.", "dumps ", "JSONEncoder.")) for f in frames):
        return "JSON"
    if leaf.startswith(("SocketIO.readinto", "socket.", "select", "recv", "_ssl")) or "(selectors.py" in leaf:
        return "waiting on a socket (the registry)"
    if leaf.startswith(("Condition.wait", "Event.wait", "Thread.join", "_worker", "SimpleQueue", "Queue.get")) or (
        "threading.py" in leaf or "queue.py" in leaf
    ):
        return "waiting for work or a lock"
    if "jindr_nb/" in leaf:
        return "jindr_nb's own Python"
    if "http/client.py" in leaf or "email/" in leaf:
        return "http.client parsing"
    return "other Python or C"


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
        table.headers["size"].click()  # a click on the Size header: largest first
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
    parser.add_argument("--help-runs", type=int, default=10, help="runs of each `--help` (median)")
    parser.add_argument("--no-profile", action="store_true", help="leave out the py-spy profile of `lsi -l`")
    parser.add_argument("--repos", type=int, default=150)
    parser.add_argument("--tags", type=int, default=4)
    parser.add_argument("--out", default=str(ROOT / "tests" / "benchmarks" / "results-core.md"))
    parser.add_argument(
        "--only", choices=["all", "layers"], default="all", help="layers: only the `layers` measurements (no peer)"
    )
    opts = parser.parse_args()
    # Bytecode, as `pip install` leaves it (`make bench` does this too): an editable install under
    # PYTHONDONTWRITEBYTECODE would compile every changed module again at each command's start.
    compileall.compile_dir(str(ROOT / "jindr_nb"), quiet=1)
    full = opts.only == "all"
    if full:
        ensure_peer()
        ensure_python_peers()
    work = Path(tempfile.mkdtemp(prefix="jindr-bench-"))
    os.environ["JINDR_STATE_DIR"] = str(work / "state")
    oci_address = f"localhost:{free_port()}"
    jindr("-r", oci_address, "start", "--runtime", "process", "-d", str(work / "oci"))
    reg_oci = _Managed(oci_address)
    # B, Docker lists, is run by jindr too: plain `jindr lsi` reads its storage, `--no-local` the API.
    reg_list = _Managed(f"localhost:{free_port()}") if full else None
    if reg_list is not None:
        jindr("-r", reg_list.address, "start", "--runtime", "process", "-d", str(work / "list"))
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
            if code != 0 and name != "jindr 1.5.0 lsi (OCI)":  # 1.5.0 cannot read OCI indexes: shown as 0 / 0
                # A failed run would time as a fast one: stop, with what the tool said (asked once more).
                again = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
                raise SystemExit(f"`{name}` failed ({code}): {' '.join(cmd)}\n{again.stderr[-800:]}")
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
                    "jindr_nb lsi --no-local (Docker lists)",
                    OURS + ["-r", f"localhost:{lport}", "lsi", "--no-local"],
                    lport,
                    {"JINDR_CACHE_DIR": str(warm)},
                )
                record(
                    "jindr_nb lsi, local storage (Docker lists)",
                    OURS + ["-r", f"localhost:{lport}", "lsi"],
                    lport,
                    {"JINDR_CACHE_DIR": str(work / f"cache-lsi-list-{run}")},
                )
                record("jindr 1.5.0 lsi (OCI)", PEER + ["-r", f"localhost:{oport}", "lsi"], oport)
                record("jindr_nb lsi (OCI)", OURS + api, oport, {"JINDR_CACHE_DIR": str(warm)})
                # What plain `jindr lsi` does, with the libraries a Python user would pick (no cache, 8 threads).
                for label, library in PY_PEERS.items():
                    record(f"{label} lsi, 8 threads (OCI)", [*PY_PEER, library, f"127.0.0.1:{oport}"], oport)
                # The default on a registry jindr runs: read from its storage (cold cache, as for the peers).
                record(
                    "jindr_nb lsi, local storage (OCI)",
                    OURS + on_oci + ["lsi"],
                    oport,
                    {"JINDR_CACHE_DIR": str(work / f"cache-lsi-local-{run}")},
                )
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
            # `layers` from storage reads what `lsi -l` from storage reads: both in the same runs.
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
            for _ in range(opts.help_runs):
                record("jindr 1.5.0 --help", PEER + ["--help"])
                record("jindr_nb --help", OURS + ["--help"])
        kernel_layers = warm_kernel(reg_oci.address, opts.runs, local=True, command="layers")
        if full:
            mix = ceiling_requests(reg_oci.address, opts.repos, opts.tags)
            rates = [in_process_rate(reg_oci.address) for _ in range(3)]
            t_wrk = time.perf_counter()
            ceiling = wrk_ceiling(reg_oci.address, mix, work)
            print(f"wrk ceiling {ceiling} in {time.perf_counter() - t_wrk:.1f} s", flush=True)
            rates += [in_process_rate(reg_oci.address) for _ in range(2)]
            long_cold = OURS + on_oci + ["lsi", "-l", "--no-local"]
            split = [
                cpu_split(long_cold, reg_oci.port, {"JINDR_CACHE_DIR": str(work / f"cache-cpu-{i}")}) for i in range(3)
            ]
            t_prof = time.perf_counter()
            profiled = [] if opts.no_profile else profile(long_cold, {}, work)
            print(f"profiled in {time.perf_counter() - t_prof:.1f} s", flush=True)
            kernel = warm_kernel(reg_oci.address, opts.runs, local=False)
            kernel_local = warm_kernel(reg_oci.address, opts.runs, local=True)
            lifecycle = start_stop_times(work, opts.runs)
            panel = panel_render()
    finally:
        jindr("-r", oci_address, "stop", "-G")
        if reg_list is not None:
            jindr("-r", reg_list.address, "stop", "-G")
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
        f"- `jindr layers`, cold CLI on the registry jindr runs (local storage): {layers_local:.3f} s, "
        f"{layers_local / med(res['jindr_nb lsi -l cold, local storage (OCI)']):.2f}x a cold `lsi -l` from storage "
        f"in the same runs, peak RSS {rss['jindr_nb layers cold, local storage (OCI)'] / 1024:.0f} MiB "
        f"(target <= 0.5 s: {_verdict(layers_local <= 0.5)}).",
    ]
    if not full:
        report = "\n".join(lines + layer_lines)
        print(report)
        Path(opts.out).write_text(report + "\n")
        return 0
    help_ours, help_peer = med(res["jindr_nb --help"]), med(res["jindr 1.5.0 --help"])
    _, requests, _ = rates[0]
    rate = med([r[2] for r in rates])
    best = max((v for v in ceiling.values() if v == v), default=float("nan"))  # NaN != NaN: unmeasured
    peers = {label: med(res[f"{label} lsi, 8 threads (OCI)"]) for label in PY_PEERS}
    fastest = min(peers, key=lambda k: peers[k])
    ours_list = med(res["jindr_nb lsi, local storage (Docker lists)"])
    ours_list_api = med(res["jindr_nb lsi --no-local (Docker lists)"])
    ours_local = med(res["jindr_nb lsi, local storage (OCI)"])
    ours_api = med(res["jindr_nb lsi (OCI)"])
    wall, own_cpu, reg_cpu = (med([x[i] for x in split]) for i in range(3))
    assert peer_lsi is not None  # measured in a full run
    vs_old = fraction(ours_list, peer_lsi)
    vs_old_api = fraction(ours_list_api, peer_lsi)
    vs_peer_local = fraction(ours_local, peers[fastest])
    vs_peer_api = fraction(ours_api, peers[fastest])
    share = fraction(rate, best)
    targets = [
        row(
            f"`jindr lsi`, {pushed} tags (Docker lists, a registry jindr runs: its storage) vs jindr 1.5.0 `lsi`",
            "<= 0.5x",
            f"{ours_list:.3f} s vs {peer_lsi:.3f} s",
            f"{vs_old:.2f}x",
            vs_old <= 0.5,
        ),
        row(
            f"`jindr lsi --no-local`, {pushed} tags (Docker lists, over the API, children checked) vs 1.5.0 `lsi`",
            "<= 0.5x",
            f"{ours_list_api:.3f} s vs {peer_lsi:.3f} s",
            f"{vs_old_api:.2f}x",
            vs_old_api <= 0.5,
        ),
        row(
            f"`jindr lsi`, {pushed} tags (OCI, a registry jindr runs: its storage) vs the fastest Python peer",
            "<= 0.6x",
            f"{ours_local:.3f} s vs {fastest} {peers[fastest]:.3f} s",
            f"{vs_peer_local:.2f}x",
            vs_peer_local <= 0.6,
        ),
        row(
            f"`jindr lsi --no-local`, {pushed} tags (OCI, over the API, children checked) vs the fastest Python peer",
            "<= 0.6x",
            f"{ours_api:.3f} s vs {fastest} {peers[fastest]:.3f} s",
            f"{vs_peer_api:.2f}x",
            vs_peer_api <= 0.6,
        ),
        row(
            "cold `lsi -l` request rate vs the registry's ceiling (best `wrk -t2` of -c 4, 8, 16, same requests)",
            ">= 60 %",
            f"{rate:.0f} vs {best:.0f} requests/s",
            f"{share:.0%}",
            share >= 0.6,
        ),
        row(
            f"`jindr --help` (median of {opts.help_runs})",
            "< 0.15 s",
            f"{help_ours:.3f} s (jindr 1.5.0: {help_peer:.3f} s)",
            f"{fraction(help_ours, help_peer):.2f}x 1.5.0",
            help_ours < 0.15,
        ),
    ]
    lines += [
        "",
        "- Python peers (tests/benchmarks/peers.py, 8 threads each: catalog, tags, one manifest GET per tag, the "
        "platforms of an index; no child checked): "
        + ", ".join(f"{k} {v:.3f} s" for k, v in peers.items())
        + f". `jindr lsi` checks every child of every index (a stat from storage, a HEAD over the API): "
        f"{ours_local:.3f} s from storage, {ours_api:.3f} s over the API "
        f"({fraction(ours_local, peers[fastest]):.2f}x and {fraction(ours_api, peers[fastest]):.2f}x {fastest}).",
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
        f"- Cold `lsi -l` in process: {requests} HTTP requests at a median {rate:.0f} requests/s ({len(rates)} runs). "
        f"The registry's ceiling, `wrk -t2` (C) over the same GETs (each index by tag, each platform manifest by "
        f"digest, each config blob, each attestation manifest) on the same registry in the same run: "
        + ", ".join(f"-c {c}: {v:.0f}" for c, v in ceiling.items())
        + f" requests/s; the best, {best:.0f}, is the ceiling: jindr_nb reaches {share:.0%} of it.",
        f"- Cold `jindr lsi -l --no-local` as a CLI (medians of {len(split)}): {wall:.2f} s wall, {own_cpu:.2f} s of "
        f"CPU in jindr ({fraction(own_cpu, wall):.2f} cores) and {reg_cpu:.2f} s in the registry "
        f"({fraction(reg_cpu, wall):.2f} cores), of the machine's {os.cpu_count()}.",
        *(
            [f"- Profile of one cold `jindr lsi -l --no-local` (py-spy {PY_PEER_PINS[2].split('==')[1]}):"]
            if profiled
            else []
        ),
        *(f"  {line}" for line in profiled),
        *layer_lines,
    ]
    report = "\n".join(lines)
    print(report)
    print(markdown(targets))
    Path(opts.out).write_text(report + "\n")
    write(Path(opts.out).with_suffix(".json"), targets)
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
