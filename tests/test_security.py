"""Security properties: loopback-only listeners, private directories, no shell, validated names,
and secrets (docker-config passwords, ECR tokens) that never reach output, errors, logs or files.

Every case tried is counted into `tests/.counts/security.json` for the README.
"""

from __future__ import annotations

import ast
import base64
import logging
import os
import secrets
import socket
import stat
import subprocess
import sys
import traceback
from pathlib import Path

import boto3
import pytest
from authrig import TokenServer, basic_auth_config, docker_config, htpasswd
from jindr_run import jindr
from rig import ImageFactory, free_port, start_registry, write_counts
from test_ecr import ACCOUNT, fake_ecr_registry, moto  # noqa: F401 - fixtures

from jindr_nb.client import Credentials, RegistryClient
from jindr_nb.errors import InvalidReference, JindrError, RuntimeFailure, Unauthorized
from jindr_nb.frames import to_frame, to_json, to_text

CASES: list[str] = []
CLI = str(Path(sys.executable).parent / "jindr")
PACKAGE = Path(__file__).parent.parent / "jindr_nb"


def case(name: str) -> None:
    CASES.append(name)


@pytest.fixture(scope="module", autouse=True)
def _write_counts():
    yield
    write_counts("security", security_cases=len(CASES), cases=CASES)


def listeners(port: int) -> set[str]:
    """Local addresses listening (state 0A) on TCP `port`, from /proc/net/tcp and tcp6."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if fields[3] != "0A" or int(hex_port, 16) != port:
                continue
            raw = bytes.fromhex(address)
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, raw))
    return found


@pytest.fixture(params=["process", "docker", "podman"])
def runtime(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    if request.param == "process":
        yield "process", ["--runtime", "process"], None
    elif request.param == "docker":
        client, image = request.getfixturevalue("docker_engine")
        monkeypatch.delenv("DOCKER_HOST", raising=False)
        yield "docker", ["--runtime", "docker", "--image", image], client
    else:
        client, image, host = request.getfixturevalue("podman_engine")
        monkeypatch.setenv("DOCKER_HOST", host)
        yield "podman", ["--runtime", "docker", "--image", image], client


def test_listens_on_loopback_only_and_keeps_its_directories_private(runtime, tmp_path: Path) -> None:
    kind, args, client = runtime
    port = free_port()
    address, storage = f"localhost:{port}", tmp_path / "fresh" / "parents" / "storage"
    row = jindr("-r", address, "start", "-d", str(storage), *args).rows[0]
    try:
        case(f"{kind}: listens on 127.0.0.1 only")
        heard = listeners(port)
        assert heard <= {"127.0.0.1"}, heard
        if kind != "podman":  # podman publishes through the kernel's NAT, with no listening socket
            assert heard == {"127.0.0.1"}
        with RegistryClient(address) as c:
            assert c.ping() is not None
        if client is not None:
            case(f"{kind}: the container publishes on 127.0.0.1 only")
            bindings = client.containers.get(row.name).attrs["HostConfig"]["PortBindings"]
            assert bindings and all(b["HostIp"] == "127.0.0.1" for bs in bindings.values() for b in bs), bindings
        case(f"{kind}: storage (and the parents jindr made) are 0700")
        for directory in (storage, storage.parent, storage.parent.parent):
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
        case(f"{kind}: state directories 0700, state files 0600")
        state = Path(os.environ["JINDR_STATE_DIR"])
        for path in [state, *state.rglob("*")]:
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
        with RegistryClient(address) as c:
            ImageFactory(c, seed=3).index("private", "v1")
        jindr("-r", address, "lsi", "-l")
        jindr("-r", address, "ins", "private:v1")
        case(f"{kind}: cache directories 0700, cache files 0600")
        cache = Path(os.environ["JINDR_CACHE_DIR"])
        assert cache.is_dir()
        wrong = [
            (str(p), oct(stat.S_IMODE(p.stat().st_mode)))
            for p in [cache, *cache.rglob("*")]
            if stat.S_IMODE(p.stat().st_mode) != (0o700 if p.is_dir() else 0o600)
        ]
        assert not wrong, wrong[:3]
    finally:
        jindr("-r", address, "stop", "-G")


SHELL_CALLS = {("os", "system"), ("os", "popen"), ("subprocess", "getoutput"), ("subprocess", "getstatusoutput")}
SHELL_NAMES = {"system", "popen", "getoutput", "getstatusoutput", "create_subprocess_shell"}
SPAWNERS = {"run", "call", "check_call", "check_output", "Popen"}  # where `shell=` means a shell


def shell_uses(source: str, filename: str) -> list[str]:
    """Calls that run a shell: a spawner with `shell=<not False>`, os.system, os.popen, getoutput, ..."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        for keyword in node.keywords:
            if keyword.arg == "shell" and name in SPAWNERS:
                if not (isinstance(keyword.value, ast.Constant) and keyword.value.value is False):
                    found.append(f"{filename}:{node.lineno} {name}(shell=...)")
        module = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
        if (module, name) in SHELL_CALLS or name in SHELL_NAMES:
            found.append(f"{filename}:{node.lineno} {name}")
    return found


def test_nothing_runs_through_a_shell() -> None:
    case("the scanner finds each shell form, and not an IPython `shell=` argument")
    planted = (
        "import os, subprocess\nsubprocess.run('x', shell=True)\nos.system('x')\nos.popen('x')\n"
        "subprocess.getoutput('x')\nfrom os import system\nsystem('x')\nsubprocess.Popen(['x'], shell=flag)\n"
        "asyncio.create_subprocess_shell('x')\nsubprocess.run(['x'], shell=False)\nsuper().__init__(shell=shell)\n"
    )
    assert len(shell_uses(planted, "planted.py")) == 7
    case("no shell anywhere in jindr_nb")
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20
    found = [hit for path in files for hit in shell_uses(path.read_text(), str(path.relative_to(PACKAGE.parent)))]
    assert found == []


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode in (1, 2), (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.strip().splitlines() if line.startswith("jindr")]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize("kind", ["process", "docker"])
def test_names_that_reach_docker_or_a_process_are_validated(kind: str, request, tmp_path: Path, monkeypatch) -> None:
    if kind == "docker":
        client, image = request.getfixturevalue("docker_engine")
        monkeypatch.delenv("DOCKER_HOST", raising=False)
        base = ["--runtime", "docker", "--image", image]
    else:
        client, base = None, ["--runtime", "process"]
    marker = tmp_path / "pwned"
    address = f"localhost:{free_port()}"
    storage = tmp_path / "storage"
    bad: list[tuple[str, list[str], type[JindrError], str]] = [
        ("name with a shell command", ["-n", f"bad name; touch {marker}"], InvalidReference, "invalid --name"),
        ("name with $(...)", ["-n", f"$(touch {marker})"], InvalidReference, "invalid --name"),
        ("name starting with a dash", ["-n", "-rf"], JindrError, "expected one argument"),
    ]
    if kind == "docker":
        bad += [
            ("image with ;", ["--image", f"x;touch {marker}"], RuntimeFailure, "invalid registry image"),
            ("image with a space", ["--image", "registry:2 --privileged"], RuntimeFailure, "invalid registry image"),
        ]
    else:
        bad += [
            ("binary with a shell command", ["--binary", f"/bin/true; touch {marker}"], RuntimeFailure, "not found"),
            ("binary that is not a registry", ["--binary", "/bin/true"], RuntimeFailure, "exited while starting"),
        ]
    for what, extra, error, words in bad:
        case(f"{kind}: {what}")
        argv = ["-r", address, "start", "-d", str(storage), *base, *extra]
        with pytest.raises(error, match=words) as info:
            jindr(*argv)
        assert "\n" not in str(info.value)
        assert one_line(subprocess.run([CLI, *argv], capture_output=True, text=True, timeout=60))
        status = jindr("-r", address, "status")
        assert not status.ok and status.rows[0].status == "not running", what
        assert not marker.exists()
        if client is not None:
            assert client.containers.list(all=True, filters={"label": f"jindr_nb.registry={address}"}) == []


SENTINEL = f"S3ntinel-pa55-{secrets.token_hex(6)}"
WRONG = f"S3ntinel-wr0ng-{secrets.token_hex(6)}"


def test_a_proxy_password_stays_out_of_sight(runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pull-through cache of a password-protected upstream: the password reaches the registry
    (pulls work, also after a restart) but not the process's command line or environment, nor the
    container's configuration that `docker inspect` shows."""
    kind, args, client = runtime
    # Token auth: registry 2.8's proxy hands credentials only to an upstream's token service (as
    # Docker Hub has), and this one gives nothing to anonymous requests.
    tokens = TokenServer(tmp_path, "puller", SENTINEL, anonymous=False)
    upstream = start_registry(tmp_path / "upstream", tokens.registry_config())
    with RegistryClient(upstream.address, credentials=Credentials("puller", SENTINEL)) as c:
        first = ImageFactory(c, seed=11).single("team/app", "v1")
        second = ImageFactory(c, seed=12).single("team/app", "v2")
    monkeypatch.setenv("UPSTREAM_PASSWORD", SENTINEL)
    address = f"localhost:{free_port()}"
    proxy = ["--proxy", f"http://{upstream.address}", "--proxy-username", "puller"]
    proxy += ["--proxy-password-env", "UPSTREAM_PASSWORD"]
    row = jindr("-r", address, "start", "-d", str(tmp_path / "cache"), *args, *proxy).rows[0]
    try:
        with RegistryClient(address) as cache:
            assert cache.get_manifest("team/app", "v1").digest == first.digest  # the password got there
        if client is None:
            case(f"{kind}: the proxy password is in no command line or environment")
            pid = int(row.name)
            for part in ("cmdline", "environ"):
                assert SENTINEL.encode() not in Path(f"/proc/{pid}/{part}").read_bytes(), part
        else:
            case(f"{kind}: the proxy password is not in the container's configuration (docker inspect)")
            attrs = client.containers.get(row.name).attrs
            assert SENTINEL not in repr(attrs), "the password shows in docker inspect"
        case(f"{kind}: the file holding the proxy password is 0600")
        held = _files_holding(SENTINEL)
        assert held and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in held), held
        jindr("-r", address, "restart")
        with RegistryClient(address) as cache:
            assert cache.get_manifest("team/app", "v2").digest == second.digest  # still there after restart
    finally:
        jindr("-r", address, "stop", "-G")
        upstream.stop()
        tokens.close()
    if client is not None:
        assert _files_holding(SENTINEL) == [], "stop leaves the proxy password on disk"


def _files_holding(secret: str) -> list[Path]:
    state = Path(os.environ["JINDR_STATE_DIR"])
    return [p for p in state.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_secrets_are_never_shown(
    process_registry: str,
    moto,  # noqa: F811 - fixture
    fake_ecr_registry,  # noqa: F811 - fixture
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    src = process_registry
    protected = start_registry(
        tmp_path / "protected", basic_auth_config(htpasswd(tmp_path / "protected.htpasswd", "u", SENTINEL))
    )
    config_dir = Path(os.environ["DOCKER_CONFIG"])
    docker_config(config_dir, protected.address, "u", SENTINEL)
    wrong_dir = docker_config(tmp_path / "wrong-docker", protected.address, "u", WRONG)
    token = boto3.client("ecr", region_name="eu-west-1").get_authorization_token()["authorizationData"][0]
    ecr_token = token["authorizationToken"]
    ecr_password = base64.b64decode(ecr_token).decode().partition(":")[2]
    assert ecr_password.startswith(ACCOUNT)
    caplog.clear()  # botocore logged the test's own call above; from here on only jindr's count
    caplog.set_level(logging.DEBUG)
    needles = [
        SENTINEL,
        WRONG,
        base64.b64encode(f"u:{SENTINEL}".encode()).decode(),
        base64.b64encode(f"u:{WRONG}".encode()).decode(),
        ecr_token,
        ecr_password,
    ]
    seen: list[str] = []
    try:
        with RegistryClient(src) as c:
            ImageFactory(c, seed=9).index("app", ["v1", "v2"])
        with RegistryClient(protected.address, credentials=Credentials("u", SENTINEL)) as c:
            ImageFactory(c, seed=10).single("locked", "v1")
        commands = [
            ["-r", protected.address, "ls"],
            ["-r", protected.address, "lsi", "-l"],
            ["-r", protected.address, "ins", "locked:v1"],
            ["-r", protected.address, "du"],
            ["-r", src, "cp", "app:v1", protected.address],
            ["-r", src, "cp", "app:v2", protected.address, "--to", "renamed", "--tag", "extra"],
            ["-r", src, "cpe", "app:v1", "--region", "eu-west-1"],
            ["-r", src, "lsi", "-l"],
            ["-r", src, "info"],
            ["-r", src, "status"],
            ["-r", protected.address, "rmi", "renamed:extra", "-y"],
        ]
        for argv in commands:
            case("in-process: " + " ".join(argv[2:4]))
            result = jindr(*argv)
            seen += [repr(result), result.message, to_text(result.rows, result.row_type)]
            seen += [to_json(result.rows, result.row_type), repr(to_frame(result.rows, result.row_type))]
            seen.append(str(to_frame(result.rows, result.row_type).to_dict()))
        assert any(r.repository == "renamed" for r in jindr("-r", protected.address, "lsi").rows)
        for argv in commands[:-1]:
            case("CLI: " + " ".join(argv[2:4]))
            done = subprocess.run([CLI, *argv], capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            seen += [done.stdout, done.stderr]
            json_done = subprocess.run([CLI, "--json", *argv], capture_output=True, text=True, timeout=120)
            seen += [json_done.stdout, json_done.stderr]

        monkeypatch.setenv("DOCKER_CONFIG", str(wrong_dir))
        for argv in (["-r", protected.address, "lsi"], ["-r", src, "cp", "app:v1", protected.address]):
            case("wrong password, in-process: " + argv[2])
            with pytest.raises(Unauthorized) as info:
                jindr(*argv)
            seen += [str(info.value), repr(info.value), "".join(traceback.format_exception(info.value))]
            seen.append(repr(vars(info.value)))
            case("wrong password, CLI (and --debug traceback): " + argv[2])
            for extra in ([], ["--debug"]):
                done = subprocess.run([CLI, *extra, *argv], capture_output=True, text=True, timeout=120)
                assert done.returncode == 1 and "refused" in done.stderr
                seen += [done.stdout, done.stderr]
        monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    finally:
        protected.stop()
    captured = capsys.readouterr()
    seen += [captured.out, captured.err, caplog.text]
    seen += [f"{r.getMessage()} {r.args!r}" for r in caplog.records]
    case("outputs, errors, frames, logs")
    for needle in needles:
        assert not [text for text in seen if needle in text], needle
    case("files under the state, cache and storage directories")
    roots = [Path(os.environ["JINDR_STATE_DIR"]), Path(os.environ["JINDR_CACHE_DIR"]), tmp_path / "storage"]
    files = [p for root in roots for p in root.rglob("*") if p.is_file()]
    assert len(files) > 5
    for path in files:
        data = path.read_bytes()
        for needle in needles:
            assert needle.encode() not in data, (path, needle)
