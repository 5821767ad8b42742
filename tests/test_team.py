"""The team registry through `start`: S3 storage on moto's server, TLS from jindr's local CA,
htpasswd users, `--listen`, `user` and `trust`, with the real registry binary, Docker, skopeo and
curl — and jindr's own client trusting and logging in to what it started, without flags."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import ssl
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from clients import need_tool
from jindr_run import jindr
from rig import ImageFactory, free_port
from test_ecr import moto  # noqa: F401 - fixture

from jindr_nb.client import Credentials, RegistryClient
from jindr_nb.errors import InvalidReference, JindrError, RuntimeFailure, Unauthorized
from jindr_nb.runtime import local_storage, managed_bucket, replicas

REFUSAL = "a registry on the network without TLS and users would let anyone push and delete — add --tls --users"


def _state() -> Path:
    return Path(os.environ["JINDR_STATE_DIR"])


def _started_here() -> set[str]:
    root = _state()
    ports = {p.name for p in (root / "process").glob("*") if (p / "state.json").exists()}
    ports |= {p.stem for p in (root / "docker").glob("*.json") if p.stem.isdigit()}
    return {f"localhost:{port}" for port in ports}


@pytest.fixture(autouse=True)
def _nothing_leaks() -> Iterator[None]:
    """Stop every registry the test started, whatever happened."""
    yield
    for address in sorted(_started_here()):
        try:
            jindr("-r", address, "stop", "-G")
        except JindrError:
            pass


def _skopeo_env(tmp_path: Path) -> dict[str, str]:
    """skopeo without the machine's registries.conf, with a policy that accepts, and the system CAs only."""
    conf, policy = tmp_path / "registries.conf", tmp_path / "policy.json"
    conf.write_text("")
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    return {**env, "CONTAINERS_REGISTRIES_CONF": str(conf), "CONTAINERS_POLICY_JSON": str(policy)}


def _skopeo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    skopeo = need_tool("skopeo", "skopeo")
    return subprocess.run([skopeo, *args], capture_output=True, text=True, env=_skopeo_env(tmp_path), timeout=120)


def _proc(pid: int) -> bytes:
    return b"".join(Path(f"/proc/{pid}/{part}").read_bytes() for part in ("cmdline", "environ"))


def _ps(pid: int) -> bytes:
    """The registry's line in the process list, with its environment (`ps e`)."""
    return subprocess.run(["ps", "eww", "-o", "args=", "-p", str(pid)], capture_output=True, timeout=30).stdout


def _cli(*argv: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The `jindr` console script in a process of its own (exit status, stdout and stderr as a user sees them)."""
    return subprocess.run(
        [sys.executable, "-m", "jindr_nb", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def _bucket_keys(endpoint: str, bucket: str) -> list[str]:
    api = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    keys: list[str] = []
    for page in api.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


# S3


def test_start_on_s3_with_the_process_runtime(
    moto: str,  # noqa: F811 - fixture
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "S3ntinel-" + secrets.token_urlsafe(24)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_CA_BUNDLE", ssl.get_default_verify_paths().openssl_cafile)  # 2.8.2 panics with it
    address = f"localhost:{free_port()}"
    start = ["-r", address, "start", "--runtime", "process", "--storage", "s3://team-s3/reg", "--s3-endpoint", moto]
    # A missing bucket: one line, and nothing started or written for the registry.
    with pytest.raises(RuntimeFailure) as caught:
        jindr(*start)
    assert "bucket team-s3 does not exist" in str(caught.value) and "--create-bucket" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert _started_here() == set() and not list((_state() / "process").glob("*"))
    # S3 flags without S3 storage are refused.
    with pytest.raises(JindrError, match="--s3-endpoint is for object storage"):
        jindr("-r", address, "start", "--runtime", "process", "--s3-endpoint", moto)
    result = jindr(*start, "--create-bucket")
    row = result.rows[0]
    assert (row.status, row.storage) == ("running", "s3://team-s3/reg")
    assert "created bucket team-s3" in result.message and "AWS_CA_BUNDLE is not passed" in result.message
    bucket = managed_bucket(address)
    assert bucket is not None and (bucket.url, bucket.endpoint) == ("s3://team-s3/reg", moto)
    assert local_storage(address) is None and replicas(address) == [address]
    with RegistryClient(address) as client:
        pushed = ImageFactory(client, seed=5).single("team/app", ["v1"], layers=2)
    copied = _skopeo(
        tmp_path, "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
        f"docker://{address}/team/app:v1", f"docker://{address}/team/copy:v1",
    )  # fmt: skip
    assert copied.returncode == 0, copied.stderr
    assert {r.repository for r in jindr("-r", address, "ls").rows} == {"team/app", "team/copy"}
    long = {(r.repository, r.tag): r for r in jindr("-r", address, "lsi", "-l").rows}
    assert long[("team/app", "v1")].digest == long[("team/copy", "v1")].digest == pushed.digest
    assert long[("team/app", "v1")].size > 0
    keys = _bucket_keys(moto, "team-s3")
    assert keys and all(k.startswith("reg/docker/registry/v2/") for k in keys), keys[:3]
    assert "reg/docker/registry/v2/repositories/team/copy/_manifests/tags/v1/current/link" in keys
    # The key: in the 0600 config only; not in the registry's command line or environment, the
    # process list, the rows, or any other file jindr keeps.
    config = _state() / "process" / address.rsplit(":", 1)[1] / "config.yml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600 and secret in config.read_text()
    pid = int(row.name)
    assert secret.encode() not in _proc(pid) and b"AWS_CA_BUNDLE" not in _proc(pid)
    assert b"serve" in _ps(pid) and secret.encode() not in _ps(pid)
    info = jindr("info")
    assert secret not in repr(info.rows) + repr(result.rows) + result.message
    listing = boto3.client("s3", endpoint_url=moto, region_name="us-east-1").list_objects_v2(Bucket="team-s3")
    assert [r.size for r in info.rows if r.registry == address][0] == sum(o["Size"] for o in listing["Contents"])
    holders = [p for p in _state().rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert holders == [config]
    # restart keeps S3 (the config is written again, credentials asked of boto3 again).
    again = jindr("-r", address, "restart").rows[0]
    assert again.storage == "s3://team-s3/reg" and again.name != row.name
    assert {r.repository for r in jindr("-r", address, "ls").rows} == {"team/app", "team/copy"}
    assert jindr("-r", address, "stat").rows[0].storage == "s3://team-s3/reg"
    jindr("-r", address, "stop", "-G")
    assert not config.exists()  # the keys go with the registry


def test_two_registries_on_one_bucket_are_replicas(
    moto: str,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    first, second, other = (f"localhost:{free_port()}" for _ in range(3))
    common = ["start", "--runtime", "process", "--s3-endpoint", moto, "--create-bucket"]
    jindr("-r", first, *common, "--storage", "s3://shared/one")
    jindr("-r", second, *common, "--storage", "s3://shared/one")
    jindr("-r", other, *common, "--storage", "s3://shared/two")
    with RegistryClient(first) as client:
        pushed = ImageFactory(client, seed=8).single("team/app", ["v1"])
    assert [r.digest for r in jindr("-r", second, "lsi").rows] == [pushed.digest]
    assert replicas(second) == [second, first]
    assert replicas(other) == [other]
    assert jindr("-r", other, "lsi").rows == []


def test_replicas_share_logins_and_the_upload_secret(
    moto: str,  # noqa: F811 - fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two registries on one bucket behind one name must accept the same users and each other's
    uploads: a replica started later gets the users, `user add/remove` changes both, and an upload
    begun on one finishes on the other (the same http.secret signs its state)."""
    import httpx

    first, second = (f"localhost:{free_port()}" for _ in range(2))
    common = ["start", "--runtime", "process", "--s3-endpoint", moto, "--create-bucket", "--storage", "s3://team/r"]
    jindr("-r", first, *common, "--users")
    password = "S3ntinel-" + secrets.token_urlsafe(18)
    monkeypatch.setenv("TEAM_PW", password)
    assert _cli("-r", first, "user", "add", "ci", "--password-env", "TEAM_PW").returncode == 0
    started = jindr("-r", second, *common, "--users")
    assert f"users copied from {first}" in started.message
    assert [r.user for r in jindr("-r", second, "user", "list").rows] == ["ci"]
    added = _cli("--json", "-r", second, "user", "add", "dev", "--password-env", "TEAM_PW")
    assert sorted(r["registry"] for r in json.loads(added.stdout)) == sorted([first, second])
    for address in (first, second):
        assert [r.user for r in jindr("-r", address, "user", "list").rows] == ["ci", "dev"]
        assert httpx.get(f"http://{address}/v2/", auth=("dev", password)).status_code == 200
    assert _cli("-r", first, "user", "remove", "ci").returncode == 0
    for address in (first, second):
        assert httpx.get(f"http://{address}/v2/", auth=("ci", password)).status_code == 401
    # A chunked upload begun on the first replica (POST, PATCH), finished on the second (PUT).
    blob = os.urandom(4096)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    auth = ("dev", password)
    begun = httpx.post(f"http://{first}/v2/team/app/blobs/uploads/", auth=auth)
    assert begun.status_code == 202
    patched = httpx.patch(begun.headers["location"], content=blob[:2048], auth=auth)
    assert patched.status_code == 202
    location = patched.headers["location"]
    assert location.startswith(f"http://{first}/") and "_state=" in location
    location = location.replace(f"http://{first}/", f"http://{second}/", 1) + "&digest=" + digest
    done = httpx.put(location, content=blob[2048:], auth=auth)
    assert done.status_code == 201, done.text  # with a secret each, BLOB_UPLOAD_INVALID
    assert httpx.get(f"http://{first}/v2/team/app/blobs/{digest}", auth=auth, follow_redirects=True).content == blob


# TLS


def test_tls_with_the_local_ca(tmp_path: Path) -> None:
    port = free_port()
    address = f"localhost:{port}"
    row = jindr("-r", address, "start", "--runtime", "process", "-d", str(tmp_path / "storage"), "--tls").rows[0]
    assert row.status == "running"
    ca = _state() / "team" / "ca" / "ca.crt"  # one local CA for every registry jindr runs with --tls
    key = _state() / "team" / str(port) / "tls" / "server.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(ca.with_name("ca.key").stat().st_mode) == 0o600
    assert sorted(p.name for p in key.parent.iterdir()) == ["server.crt", "server.key"]  # no CA key beside them
    # jindr's own client: HTTPS trusting the CA, no flag.
    client = jindr("-r", address, "ls")
    assert client.rows == []
    with RegistryClient(address, tls=ssl.create_default_context(cafile=str(ca))) as c:
        assert c.base_url == f"https://{address}"
        pushed = ImageFactory(c, seed=2).single("secure/app", ["v1"])
    listed = _cli("--json", "-r", address, "lsi", "--no-local")
    assert listed.returncode == 0, listed.stderr
    assert [r["digest"] for r in json.loads(listed.stdout)] == [pushed.digest]
    # `trust`: a bundle, a --cert-dir, and certs.d entries (installed into a root of the test's own).
    root = tmp_path / "etc"
    rows = jindr(
        "-r", address, "trust", "--install", "--docker-certs-d", str(root / "docker"),
        "--containers-certs-d", str(root / "containers"),
    ).rows  # fmt: skip
    by_how = {r.how.split(" ")[0].split("=")[0]: r for r in rows}
    bundle, certs = Path(by_how["SSL_CERT_FILE"].path), Path(by_how["--cert-dir"].path)
    assert ca.read_bytes() in bundle.read_bytes() and (certs / "ca.crt").read_bytes() == ca.read_bytes()
    installed = sorted(Path(r.path) for r in rows if r.installed)
    assert installed == [root / "containers" / address / "ca.crt", root / "docker" / address / "ca.crt"]
    assert all(p.read_bytes() == ca.read_bytes() for p in installed)
    assert len({r.fingerprint for r in rows}) == 1 and rows[0].fingerprint.startswith("sha256:")
    # skopeo: refused without the CA (a certificate error), works with `trust`'s --cert-dir.
    source = f"docker://{address}/secure/app:v1"
    refused = _skopeo(tmp_path, "inspect", "--raw", source)
    assert refused.returncode != 0 and "x509" in refused.stderr, refused.stderr
    copied = _skopeo(
        tmp_path, "copy", "--src-cert-dir", str(certs), "--dest-cert-dir", str(certs), source,
        f"docker://{address}/secure/copy:v1",
    )  # fmt: skip
    assert copied.returncode == 0, copied.stderr
    curl = subprocess.run(
        ["curl", "-sS", "--cacert", str(bundle), f"https://{address}/v2/_catalog"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert json.loads(curl.stdout) == {"repositories": ["secure/app", "secure/copy"]}, curl.stderr
    # The CA and the certificate are reused across restarts: clients set up once keep trusting.
    before = (ca.read_bytes(), key.with_name("server.crt").read_bytes())
    jindr("-r", address, "restart")
    jindr("-r", address, "stop", "-G")
    jindr("-r", address, "start", "--runtime", "process", "-d", str(tmp_path / "storage"), "--tls")
    assert (ca.read_bytes(), key.with_name("server.crt").read_bytes()) == before
    assert {r.repository for r in jindr("-r", address, "ls", "--no-local").rows} == {"secure/app", "secure/copy"}
    # `trust` on a plain registry says what to do.
    plain = f"localhost:{free_port()}"
    jindr("-r", plain, "start", "--runtime", "process", "-d", str(tmp_path / "plain"))
    with pytest.raises(RuntimeFailure, match="serves plain HTTP: start it with --tls"):
        jindr("-r", plain, "trust")


def test_a_users_own_certificate(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"]
        + ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    address = f"localhost:{free_port()}"
    with pytest.raises(InvalidReference, match="--tls-cert and --tls-key go together"):
        jindr("-r", address, "start", "--runtime", "process", "--tls-cert", str(cert))
    other = tmp_path / "other.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(other)], check=True, capture_output=True)
    with pytest.raises(InvalidReference, match="is not the key of"):
        jindr("-r", address, "start", "--runtime", "process", "--tls-cert", str(cert), "--tls-key", str(other))
    assert _started_here() == set()
    pair = ["--tls-cert", str(cert), "--tls-key", str(key)]
    jindr("-r", address, "start", "--runtime", "process", "-d", str(tmp_path / "s"), *pair)
    with RegistryClient(address, tls=ssl.create_default_context(cafile=str(cert))) as c:
        pushed = ImageFactory(c, seed=4).single("own/app", ["v1"])
    assert [r.digest for r in jindr("-r", address, "lsi", "--no-local").rows] == [pushed.digest]
    trusted = {r.how.split("=")[0] for r in jindr("-r", address, "trust").rows}
    assert "SSL_CERT_FILE" in trusted


# Users


def test_users_added_removed_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from authrig import docker_config

    password, other = "S3ntinel-" + secrets.token_urlsafe(18), "S3ntinel-" + secrets.token_urlsafe(18)
    address = f"localhost:{free_port()}"
    row = jindr("-r", address, "start", "--runtime", "process", "-d", str(tmp_path / "s"), "--users").rows[0]
    monkeypatch.setenv("TEAM_PW", password)
    added = _cli("-r", address, "user", "add", "ci", "--password-env", "TEAM_PW")
    assert added.returncode == 0 and "added" in added.stdout, added.stderr
    piped = _cli("-r", address, "user", "add", "dev", "--password-stdin", stdin=other + "\n")
    assert piped.returncode == 0, piped.stderr
    listed = _cli("--json", "-r", address, "user", "list")
    assert [r["user"] for r in json.loads(listed.stdout)] == ["ci", "dev"]
    htpasswd = _state() / "team" / address.rsplit(":", 1)[1] / "htpasswd"
    assert stat.S_IMODE(htpasswd.stat().st_mode) == 0o600 and password not in htpasswd.read_text()
    # Anonymous: 401, said in one line naming both ways to log in.
    anonymous = _cli("-r", address, "ls", "--no-local")
    assert anonymous.returncode == 1
    assert anonymous.stderr.strip() == (
        f"jindr: {address} needs credentials: run `docker login {address}` (or set JINDR_USERNAME and "
        "JINDR_PASSWORD_ENV)"
    )
    # Docker's config (as `docker login` writes it): skopeo with it pushes, jindr reads it on its own.
    docker_dir = Path(os.environ["DOCKER_CONFIG"])
    docker_config(docker_dir, address, "ci", password)
    with RegistryClient(address, credentials=Credentials("ci", password)) as c:
        pushed = ImageFactory(c, seed=6).single("team/app", ["v1"])
    copied = _skopeo(
        tmp_path, "copy", "--authfile", str(docker_dir / "config.json"), "--src-tls-verify=false",
        "--dest-tls-verify=false", f"docker://{address}/team/app:v1", f"docker://{address}/team/copy:v1",
    )  # fmt: skip
    assert copied.returncode == 0, copied.stderr
    assert {r.repository for r in jindr("-r", address, "ls", "--no-local").rows} == {"team/app", "team/copy"}
    # JINDR_USERNAME with the variable JINDR_PASSWORD_ENV names; a wrong password is one clear line.
    os.unlink(docker_dir / "config.json")
    env = {"JINDR_USERNAME": "dev", "JINDR_PASSWORD_ENV": "DEV_PW", "DEV_PW": other}
    ok = _cli("--json", "-r", address, "lsi", "--no-local", env=env)
    assert ok.returncode == 0 and pushed.digest in ok.stdout, ok.stderr
    wrong = _cli("-r", address, "ls", "--no-local", env={**env, "DEV_PW": "not-" + other})
    assert wrong.returncode == 1 and wrong.stderr.strip() == (
        f"jindr: {address} refused the credentials for catalog; check `docker login {address}`"
    )
    # `user remove` takes effect at once (the registry reads the file again).
    removed = _cli("-r", address, "user", "remove", "dev")
    assert removed.returncode == 0 and "removed" in removed.stdout
    gone = _cli("-r", address, "ls", "--no-local", env=env)
    assert gone.returncode == 1 and "refused the credentials" in gone.stderr
    # No password anywhere it could be seen.
    for shown in (added, piped, listed, anonymous, ok, wrong, removed, gone):
        assert password not in shown.stdout + shown.stderr and other not in shown.stdout + shown.stderr
    assert password.encode() not in _proc(int(row.name)) and other.encode() not in _proc(int(row.name))
    # Bad requests: one line, nothing changed.
    before = htpasswd.read_bytes()
    no_tty = _cli("-r", address, "user", "add", "eve")
    assert no_tty.returncode == 1 and "no terminal to ask for the password" in no_tty.stderr
    assert _cli("-r", address, "user", "remove", "nobody").stderr.strip().endswith("(users: ci)")
    argv = _cli("-r", address, "user", "add", "eve", password)
    assert argv.returncode == 2  # a password is never an argument
    assert htpasswd.read_bytes() == before
    plain = f"localhost:{free_port()}"
    jindr("-r", plain, "start", "--runtime", "process", "-d", str(tmp_path / "plain"))
    refused = _cli("-r", plain, "user", "add", "eve", "--password-env", "TEAM_PW")
    assert refused.returncode == 1 and "was started without --users" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


# --listen


def test_listening_off_loopback_needs_tls_and_users(tmp_path: Path) -> None:
    address = f"localhost:{free_port()}"
    start = ["-r", address, "start", "--runtime", "process", "-d", str(tmp_path / "s")]
    for extra in ([], ["--tls"], ["--users"]):
        for listen in ("0.0.0.0", "10.250.7.1"):
            with pytest.raises(InvalidReference) as caught:
                jindr(*start, "--listen", listen, *extra)
            assert str(caught.value) == REFUSAL
    with pytest.raises(InvalidReference, match="invalid --listen 'somewhere'"):
        jindr("-r", address, "start", "--runtime", "process", "--listen", "somewhere")
    assert _started_here() == set() and not (tmp_path / "s").exists()
    assert not (_state() / "team").exists()


@pytest.fixture()
def netns(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """A network namespace joined to this one by a veth pair with addresses picked here:
    (namespace, the address on our side, the address on its side). Removed afterwards."""
    ip = shutil.which("ip")
    if ip is None or os.geteuid() != 0:
        message = "network namespaces need root and iproute2"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    tag = secrets.token_hex(2)
    name, ours, theirs = f"jt{tag}", f"jt{tag}a", f"jt{tag}b"
    net = int(tag, 16) % 250
    host, peer = f"10.250.{net}.1", f"10.250.{net}.2"
    steps = [
        ["netns", "add", name],
        ["link", "add", ours, "type", "veth", "peer", "name", theirs],
        ["link", "set", theirs, "netns", name],
        ["addr", "add", f"{host}/30", "dev", ours],
        ["link", "set", ours, "up"],
        ["-n", name, "addr", "add", f"{peer}/30", "dev", theirs],
        ["-n", name, "link", "set", theirs, "up"],
        ["-n", name, "link", "set", "lo", "up"],
    ]
    try:
        for step in steps:
            subprocess.run([ip, *step], check=True, capture_output=True, timeout=30)
        yield name, host, peer
    finally:
        subprocess.run([ip, "link", "del", ours], capture_output=True, timeout=30)
        subprocess.run([ip, "netns", "del", name], capture_output=True, timeout=30)


def test_a_client_on_the_network_reaches_a_registry_with_tls_and_users(
    netns: tuple[str, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, host, _ = netns
    port = free_port()
    address = f"localhost:{port}"
    password = "S3ntinel-" + secrets.token_urlsafe(12)
    args = ["start", "--runtime", "process", "-d", str(tmp_path / "s"), "--tls", "--users", "--listen", host]
    result = jindr("-r", address, *args, "--hostname", "registry.team.test")
    assert f"use -r {host}:{port}" in result.message
    monkeypatch.setenv("TEAM_PW", password)
    jindr("-r", f"{host}:{port}", "user", "add", "ci", "--password-env", "TEAM_PW")
    rows = jindr("-r", address, "trust").rows
    bundle = next(Path(r.path) for r in rows if r.how.startswith("SSL_CERT_FILE"))
    assert {r.registry for r in rows} >= {address, f"{host}:{port}", f"registry.team.test:{port}"}

    def curl(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", name, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"]
            + [str(bundle), *extra, f"https://{host}:{port}/v2/_catalog"],
            capture_output=True,
            text=True,
            timeout=30,
        )

    assert curl().stdout == "401"
    assert curl("-u", f"ci:{password}").stdout == "200"
    assert curl("-u", "ci:wrong").stdout == "401"
    # jindr on this side, addressed as the network sees it, logs in with JINDR_USERNAME.
    monkeypatch.setenv("JINDR_USERNAME", "ci")
    monkeypatch.setenv("JINDR_PASSWORD_ENV", "TEAM_PW")
    assert jindr("-r", f"{host}:{port}", "ls", "--no-local").rows == []
    # Nothing listens on loopback for it: the registry is bound to the veth address only.
    with pytest.raises(JindrError):
        with RegistryClient(address, tls=ssl.create_default_context(cafile=str(bundle)), retries=0) as c:
            c.ping()


# The three together, and the docker runtime


def test_s3_tls_and_users_together_on_the_process_runtime(
    moto: str,  # noqa: F811 - fixture
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret, password = "S3ntinel-" + secrets.token_urlsafe(20), "S3ntinel-" + secrets.token_urlsafe(14)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("TEAM_PW", password)
    address = f"localhost:{free_port()}"
    row = jindr(
        "-r", address, "start", "--runtime", "process", "--storage", "s3://team-all/r", "--s3-endpoint", moto,
        "--create-bucket", "--tls", "--users",
    ).rows[0]  # fmt: skip
    jindr("-r", address, "user", "add", "ci", "--password-env", "TEAM_PW")
    with pytest.raises(Unauthorized, match="needs credentials"):
        jindr("-r", address, "ls", "--no-local")  # through the API: logging in is needed
    monkeypatch.setenv("JINDR_USERNAME", "ci")
    monkeypatch.setenv("JINDR_PASSWORD_ENV", "TEAM_PW")
    certs = Path(next(r.path for r in jindr("-r", address, "trust").rows if r.how.startswith("--cert-dir")))
    from authrig import docker_config

    auth = docker_config(tmp_path / "auth", address, "ci", password) / "config.json"
    with RegistryClient(address, tls=ssl.create_default_context(cafile=str(certs / "ca.crt"))) as c:
        with pytest.raises(Unauthorized):
            c.catalog()
    assert jindr("-r", address, "lsi", "--no-local").rows == []  # JINDR_USERNAME's login
    with RegistryClient(
        address, tls=ssl.create_default_context(cafile=str(certs / "ca.crt")), credentials=Credentials("ci", password)
    ) as c:
        pushed = ImageFactory(c, seed=9).single("team/app", ["v1"])
    copied = _skopeo(
        tmp_path, "copy", "--authfile", str(auth), "--src-cert-dir", str(certs), "--dest-cert-dir", str(certs),
        f"docker://{address}/team/app:v1", f"docker://{address}/team/copy:v1",
    )  # fmt: skip
    assert copied.returncode == 0, copied.stderr
    for local in ([], ["--no-local"]):  # from the bucket, and through the API
        assert {r.digest for r in jindr("-r", address, "lsi", *local).rows} == {pushed.digest}
    assert "r/docker/registry/v2/repositories/team/copy/_manifests/tags/v1/current/link" in _bucket_keys(
        moto, "team-all"
    )
    for seen in (_proc(int(row.name)), repr(jindr("info").rows).encode()):
        assert secret.encode() not in seen and password.encode() not in seen
    again = jindr("-r", address, "restart").rows[0]
    assert again.storage == "s3://team-all/r"
    assert {r.digest for r in jindr("-r", address, "lsi").rows} == {pushed.digest}


@pytest.fixture()
def docker_certs_d(request: pytest.FixtureRequest) -> Iterator[list[Path]]:
    """Entries the test puts in the real /etc/docker/certs.d (the docker CLI reads no other): removed after."""
    root = Path("/etc/docker/certs.d")
    existed = root.exists()
    made: list[Path] = []
    yield made
    for path in made:
        shutil.rmtree(path, ignore_errors=True)
    if not existed and root.is_dir() and not any(root.iterdir()):
        root.rmdir()  # the test made it: leave /etc/docker as it was


def test_docker_runtime_on_s3_with_tls_and_users(
    docker_engine,  # noqa: ANN001 - fixture
    moto: str,  # noqa: F811 - fixture
    docker_certs_d: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`docker login` then `docker push` and `docker pull` through the docker runtime, the registry
    on moto's S3 (host networking: moto listens on the host's loopback), TLS trusted through certs.d."""
    client, image = docker_engine
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    docker = need_tool("docker", "docker.io")
    secret, password = "S3ntinel-" + secrets.token_urlsafe(20), "S3ntinel-" + secrets.token_urlsafe(14)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("TEAM_PW", password)
    port = free_port()
    address = f"localhost:{port}"
    row = jindr(
        "-r", address, "start", "--runtime", "docker", "--image", image, "--storage", "s3://team-docker/d",
        "--s3-endpoint", moto, "--create-bucket", "--tls", "--users",
    ).rows[0]  # fmt: skip
    assert (row.runtime, row.storage, row.status) == ("docker", "s3://team-docker/d", "running")
    jindr("-r", address, "user", "add", "ci", "--password-env", "TEAM_PW")
    rows = jindr("-r", address, "trust", "--install", "--containers-certs-d", str(tmp_path / "containers")).rows
    docker_certs_d.append(Path("/etc/docker/certs.d") / address)
    assert (Path("/etc/docker/certs.d") / address / "ca.crt").exists()
    assert any(r.installed and r.client == "docker" for r in rows)
    login = subprocess.run(
        [docker, "login", address, "-u", "ci", "--password-stdin"],
        input=password,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert login.returncode == 0, login.stderr
    target = f"{address}/team/registry:v1"
    client.images.get(image).tag(target)
    try:
        pushed = subprocess.run([docker, "push", target], capture_output=True, text=True, timeout=300)
        assert pushed.returncode == 0, pushed.stderr
        client.images.remove(target)
        pulled = subprocess.run([docker, "pull", target], capture_output=True, text=True, timeout=300)
        assert pulled.returncode == 0, pulled.stderr
    finally:
        try:
            client.images.remove(target)
        except Exception:  # noqa: BLE001 - cleanup only
            pass
    # jindr reads `docker login`'s credentials and trusts the CA on its own (the API), and reads the bucket.
    for local in (["--no-local"], []):
        assert [(r.repository, r.tag) for r in jindr("-r", address, "lsi", *local).rows] == [("team/registry", "v1")]
    keys = _bucket_keys(moto, "team-docker")
    assert "d/docker/registry/v2/repositories/team/registry/_manifests/tags/v1/current/link" in keys
    attrs = repr(client.containers.get(row.name).attrs)
    assert secret not in attrs and password not in attrs and "AWS_" not in attrs
    again = jindr("-r", address, "restart").rows[0]
    assert again.storage == "s3://team-docker/d"
    assert [r.tag for r in jindr("-r", address, "lsi").rows] == ["v1"]
    # gc in a one-off container with the S3 config (host network, as the registry), then back over TLS.
    collected = jindr("-r", address, "gc").rows[0]
    assert (collected.manifests_deleted, collected.blobs_deleted) == (0, 0)
    assert [r.tag for r in jindr("-r", address, "lsi", "--no-local").rows] == ["v1"]
    jindr("-r", address, "stop", "-G")
    held = [p for p in _state().rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert held == []


def test_a_docker_start_that_fails_leaves_no_config_behind(
    docker_engine,  # noqa: ANN001 - fixture
    moto: str,  # noqa: F811 - fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The docker runtime writes the registry's whole config (S3 keys included) to a 0600 file
    before it asks Docker for the container. When Docker refuses (here: a container of someone
    else's already has the name), the start is one line and the file is gone with it — a file it
    did not create stays."""
    client, image = docker_engine
    secret = "S3ntinel-" + secrets.token_urlsafe(20)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    port = free_port()
    address = f"localhost:{port}"
    squatter = client.containers.create(image, name=f"jindr-{port}")  # not jindr's: no label
    try:
        with pytest.raises(RuntimeFailure, match=f"a container named 'jindr-{port}' already exists"):
            jindr(
                "-r", address, "start", "--runtime", "docker", "--image", image, "--storage", "s3://team-fail/d",
                "--s3-endpoint", moto, "--create-bucket", "--users",
            )  # fmt: skip
        assert not (_state() / "docker" / str(port) / "config.yml").exists()
        held = [p for p in _state().rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
        assert held == []
        assert client.containers.get(squatter.id).status == "created"  # someone else's: untouched
        # A config that was there before (another registry jindr runs on this port under another
        # name, `127.0.0.1:PORT`, shares the path) is not this start's to remove.
        theirs = _state() / "docker" / str(port) / "config.yml"
        theirs.write_text("version: 0.1\n")
        with pytest.raises(RuntimeFailure, match="already exists"):
            jindr("-r", address, "start", "--runtime", "docker", "--image", image, "--users")
        assert theirs.exists()
    finally:
        squatter.remove(force=True)


def test_registries_with_tls_share_one_local_ca(tmp_path: Path) -> None:
    """Replicas behind one name must serve certificates a client trusts alike: every registry jindr
    runs with --tls gets its certificate from the same local CA, so one `trust` covers them all."""
    first, second = (f"localhost:{free_port()}" for _ in range(2))
    for address, storage in ((first, "one"), (second, "two")):
        jindr("-r", address, "start", "--runtime", "process", "-d", str(tmp_path / storage), "--tls")
    prints = {r.fingerprint for address in (first, second) for r in jindr("-r", address, "trust").rows}
    assert len(prints) == 1
    bundle = next(Path(r.path) for r in jindr("-r", first, "trust").rows if r.how.startswith("SSL_CERT_FILE="))
    context = ssl.create_default_context(cafile=str(bundle))
    with RegistryClient(second, tls=context) as client:  # the first's trust, the second registry
        assert client.catalog() == []


@pytest.mark.parametrize(
    "options",
    [
        ["--storage", "s3://AKIAXX:wJalrS3ntinel@bucket/p"],
        ["--storage", "s3://bkt/p", "--s3-endpoint", "https://AKIAXX:wJalrS3ntinel@minio.local:9000/x"],
        ["--storage", "s3://bkt/p", "--s3-endpoint", "https://AKIAXX:wJalrS3ntinel@minio.local:9000"],
        ["--storage", "s3:/team-images/registry"],
        ["--storage", "S3://team-images/registry"],
    ],
)
def test_a_mistyped_bucket_is_one_line_echoes_no_key_and_starts_nothing(options: list[str], tmp_path: Path) -> None:
    """A key typed into a URL is not repeated in the error (it would sit in the notebook's output),
    and `s3:/...` or `S3://...` is not taken for a directory called `s3:`."""
    address = f"localhost:{free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "jindr_nb", "-r", address, "start", "--runtime", "process", *options],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode != 0 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "S3ntinel" not in done.stderr
    assert "s3://BUCKET" in done.stderr or "no credentials in the URL" in done.stderr
    assert list(tmp_path.iterdir()) == [] and not _started_here()
