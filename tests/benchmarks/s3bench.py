"""`make bench` (S3 part): a registry jindr runs on object storage (moto's S3 server), in one run.

`jindr start --storage s3://BUCKET/PREFIX --s3-endpoint URL --create-bucket` (process runtime),
populated as `run.py` populates its registries (150 repositories x 4 tags of two-platform OCI
indexes with attestations: 600 tags); then, interleaved, `lsi -l` reading the bucket (what jindr
does for a registry it runs on S3) against `lsi -l --no-local` (the registry's API), each with a
cold cache, medians of `--runs`. Then `cp` of the 256 MiB two-platform image of `copybench.py`
into the S3-backed registry (from a filesystem registry) and out of it (to a fresh filesystem
registry), `jindr cp` against `skopeo copy --all`, each run into a prefix or registry of its own.

Runnable standalone: `.venv/bin/python tests/benchmarks/s3bench.py [--runs 3] [--repos 150]`.
"""

from __future__ import annotations

import argparse
import os
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
sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))

import httpx  # noqa: E402
from copybench import MIB, push_image  # noqa: E402
from rig import free_port, start_registry  # noqa: E402
from run import populate  # noqa: E402

from jindr_nb.client import RegistryClient  # noqa: E402

OURS = str(Path(sys.executable).parent / "jindr")
BUCKET = "bench-images"


def moto_server(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """moto's S3 server on a free port, and its URL (AWS_* set for jindr, boto3 and the registry)."""
    port = free_port()
    log = open(work / "moto.log", "wb")  # noqa: SIM115 - kept open for the process
    server = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url + "/moto-api/", timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"moto_server did not start: {(work / 'moto.log').read_text()[-500:]}") from None
            time.sleep(0.1)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench-secret",
            "AWS_CONFIG_FILE": str(work / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(work / "none"),
        }
    )
    for key in ("AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CA_BUNDLE", "AWS_ENDPOINT_URL"):
        os.environ.pop(key, None)
    return proc, url


def jindr(*args: str, env: dict[str, str] | None = None) -> float:
    """Seconds one `jindr` command line takes (a separate process, as a user runs it); exits on failure."""
    start = time.perf_counter()
    done = subprocess.run([OURS, *args], capture_output=True, text=True, env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"`jindr {' '.join(args)}` failed ({done.returncode}): {done.stderr[-800:]}")
    return seconds


def skopeo(source: str, destination: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [
            "skopeo",
            "copy",
            "--all",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            f"docker://{source}",
            f"docker://{destination}",
        ],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"skopeo copy {source} {destination} failed: {done.stderr[-800:]}")
    return seconds


def start_on_s3(endpoint: str, prefix: str) -> str:
    address = f"localhost:{free_port()}"
    storage = f"s3://{BUCKET}/{prefix}"
    jindr(
        "-r",
        address,
        "start",
        "--runtime",
        "process",
        "--storage",
        storage,
        "--s3-endpoint",
        endpoint,
        "--create-bucket",
    )
    return address


def fill_bucket(work: Path, endpoint: str, prefix: str, repos: int, tags: int) -> int:
    """The images `run.py` pushes, in the bucket under `prefix`: pushed to a filesystem registry (as
    run.py does), then its tree uploaded key by key — the registry's S3 driver on moto takes about
    1.5 s a tag to push, which for 600 tags would be the whole benchmark."""
    import boto3

    reg = start_registry(work / "fill")
    try:
        pushed = populate(reg.address, repos, tags, True, 1)
    finally:
        reg.stop()
    api = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    if BUCKET not in {b["Name"] for b in api.list_buckets().get("Buckets", [])}:
        api.create_bucket(Bucket=BUCKET)
    files = [p for p in reg.storage.rglob("*") if p.is_file()]

    def put(path: Path) -> None:
        api.put_object(
            Bucket=BUCKET, Key=f"{prefix}/{path.relative_to(reg.storage).as_posix()}", Body=path.read_bytes()
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, files))
    shutil.rmtree(reg.workdir, ignore_errors=True)
    return pushed


def stop(address: str) -> None:
    jindr("-r", address, "stop", "--no-gc")


def lsi_rows(address: str, *extra: str) -> int:
    done = subprocess.run([OURS, "-r", address, "--json", "lsi", "-l", *extra], capture_output=True, text=True)
    return done.stdout.count('"tag"')


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repos", type=int, default=150)
    parser.add_argument("--tags", type=int, default=4)
    parser.add_argument("--no-copy", action="store_true", help="leave out the 256 MiB copies")
    parser.add_argument("--out", default="", help="also write the table to this file")
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="jindr-s3bench-"))
    os.environ["JINDR_STATE_DIR"] = str(work / "state")
    moto, endpoint = moto_server(work)
    started: list[str] = []
    lines = ["| measure | jindr | other | ratio |", "|---|---:|---:|---:|"]
    try:
        t0 = time.perf_counter()
        tags = fill_bucket(work, endpoint, "bench/lsi", opts.repos, opts.tags)
        print(f"populated {opts.repos} repos x {opts.tags} tags on S3 in {time.perf_counter() - t0:.1f} s", flush=True)
        address = start_on_s3(endpoint, "bench/lsi")
        started.append(address)
        rows = (lsi_rows(address), lsi_rows(address, "--no-local"))
        if rows != (tags, tags):
            raise SystemExit(f"lsi -l listed {rows[0]} (bucket) and {rows[1]} (API) tags of {tags}")
        times: dict[str, list[float]] = {}
        for run in range(opts.runs):
            for name, extra in (("bucket", []), ("api", ["--no-local"])):
                cache = {"JINDR_CACHE_DIR": str(work / f"cache-{name}-{run}")}
                times.setdefault(name, []).append(jindr("-r", address, "lsi", "-l", *extra, env=cache))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"lsi -l ({tags} tags, cold): bucket {med['bucket']:.2f} s, API {med['api']:.2f} s", flush=True)
        lines.append(
            f"| `lsi -l`, {tags} tags, cold cache: via the bucket vs via the API (s) | {med['bucket']:.2f} | "
            f"{med['api']:.2f} | {med['api'] / med['bucket']:.2f}x |"
        )
        if not opts.no_copy:
            lines += copies(work, endpoint, opts.runs, started)
    finally:
        for address in started:
            try:
                stop(address)
            except SystemExit as exc:
                print(exc, file=sys.stderr)
        moto.terminate()
        moto.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    table = "\n".join(lines)
    print(table)
    if opts.out:
        Path(opts.out).write_text(table + "\n")
    return 0


def copies(work: Path, endpoint: str, runs: int, started: list[str]) -> list[str]:
    """`cp` of the 256 MiB image into and out of the S3-backed registry, against skopeo (medians)."""
    src = start_registry(work / "src")
    total = 4 * 64 * MIB
    times: dict[str, list[float]] = {}
    try:
        digest = push_image(src.address, "big/app", [64 * MIB, 64 * MIB])
        for run in range(runs):
            for tool in ("jindr", "skopeo"):
                into = start_on_s3(endpoint, f"bench/cp-{tool}-{run}")
                started.append(into)
                if tool == "jindr":
                    seconds = jindr("-r", src.address, "cp", "big/app", into)
                else:
                    seconds = skopeo(f"{src.address}/big/app:latest", f"{into}/big/app:latest")
                times.setdefault(f"in {tool}", []).append(seconds)
                with RegistryClient(into) as check:
                    assert check.get_manifest("big/app", "latest").digest == digest
                out = start_registry(work / f"out-{tool}-{run}")
                try:
                    if tool == "jindr":
                        seconds = jindr("-r", into, "cp", "big/app", out.address)
                    else:
                        seconds = skopeo(f"{into}/big/app:latest", f"{out.address}/big/app:latest")
                    with RegistryClient(out.address) as check:
                        assert check.get_manifest("big/app", "latest").digest == digest
                finally:
                    out.stop()
                    shutil.rmtree(out.workdir, ignore_errors=True)
                times.setdefault(f"out {tool}", []).append(seconds)
                stop(into)
                started.remove(into)
    finally:
        src.stop()
    med = {k: statistics.median(v) for k, v in times.items()}
    lines = []
    for way, what in (("in", "into the S3-backed registry"), ("out", "out of the S3-backed registry")):
        ours, theirs = med[f"{way} jindr"], med[f"{way} skopeo"]
        print(f"cp 256 MiB {what}: jindr {ours:.2f} s, skopeo {theirs:.2f} s", flush=True)
        rates = f"MiB/s {total / MIB / ours:.0f} vs {total / MIB / theirs:.0f}"
        lines.append(
            f"| `cp` of a 256 MiB two-platform image {what} vs `skopeo copy --all` (s; {rates}) "
            f"| {ours:.2f} | {theirs:.2f} | {theirs / ours:.2f}x |"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
