"""The team registry's building blocks against real parts: TLS from jindr's local CA, users in an
htpasswd file, and S3 storage on moto's server, each served by the real registry binary.

The registry's config is the product's own (`registry_config`, JSON being YAML) with the section
each module builds put in, as `start` will do once these are wired in.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import secrets
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt
import boto3
import httpx
import pytest
from clients import need_tool
from rig import ImageFactory, free_port, registry_binary
from test_ecr import moto  # noqa: F401 - fixture
from test_tls import NAME, loopback_name  # noqa: F401 - fixture

from jindr_nb.client import Credentials, RegistryClient
from jindr_nb.client import transport as transport_module
from jindr_nb.errors import InvalidReference, RuntimeFailure
from jindr_nb.runtime import s3, tls, users
from jindr_nb.runtime.base import RegistrySpec, registry_config, write_private


class Served:
    """The registry binary serving one config on 127.0.0.1, its log under `workdir`."""

    def __init__(self, workdir: Path, config: dict, env: dict[str, str], ready: Callable[[], bool]) -> None:
        binary = registry_binary()
        if binary is None:
            pytest.fail("the registry binary is missing: apt-get install docker-registry")
        self.workdir = workdir
        self.config_path = workdir / "config.yml"
        write_private(self.config_path, json.dumps(config, indent=2) + "\n")
        self.log = workdir / "registry.log"
        argv = [binary, "serve", str(self.config_path)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + 15
        while not ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"the registry did not start: {self.log.read_text()[-1500:]}")
            time.sleep(0.05)

    def proc_file(self, name: str) -> bytes:
        """/proc/PID/cmdline or /proc/PID/environ of the registry."""
        return Path(f"/proc/{self.proc.pid}/{name}").read_bytes()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def team_config(port: int, root: Path, **sections: dict) -> dict:
    """The product's registry config for 127.0.0.1:`port`, with TLS, auth or S3 storage put in."""
    spec = RegistrySpec.make(f"localhost:{port}", root)
    config = json.loads(registry_config(spec, f"127.0.0.1:{port}", str(root)))
    if "tls" in sections:
        config["http"]["tls"] = sections["tls"]
    if "auth" in sections:
        config["auth"] = sections["auth"]
    if "storage" in sections:
        del config["storage"]["filesystem"]
        config["storage"].update(sections["storage"])
    return config


def _answers(url: str, **kw: object) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            return httpx.get(url, timeout=1, **kw).status_code in (200, 401)  # type: ignore[arg-type]
        except httpx.HTTPError:
            return False

    return ready


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _skopeo_env(tmp_path: Path) -> dict[str, str]:
    """skopeo with no registries.conf of the machine's (no mirrors, no insecure entries), a policy that
    accepts, and only the system's CAs (not an SSL_CERT_FILE a test set for jindr)."""
    conf, policy = tmp_path / "registries.conf", tmp_path / "policy.json"
    conf.write_text("")
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}  # Go reads both
    return {**env, "CONTAINERS_REGISTRIES_CONF": str(conf), "CONTAINERS_POLICY_JSON": str(policy)}


# TLS


@pytest.fixture()
def tls_registry(tmp_path: Path, loopback_name: None):  # noqa: F811 - fixture
    """The registry serving HTTPS with the certificate `tls.local_ca` made under a state directory."""
    state = tmp_path / "state" / "tls"
    files = tls.local_ca(state, [NAME])
    port = free_port()
    context = ssl.create_default_context(cafile=str(files.ca))
    served = Served(
        tmp_path,
        team_config(port, tmp_path / "storage", tls=tls.http_section(files)),
        {**os.environ, "OTEL_TRACES_EXPORTER": "none"},
        _answers(f"https://127.0.0.1:{port}/v2/", verify=context),
    )
    yield served, files, port
    served.stop()


def test_local_ca_is_trusted_through_its_ca_and_refused_without(
    tls_registry: tuple[Served, tls.TLSFiles, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served, files, port = tls_registry
    assert files.ca is not None
    for key in (files.key, files.ca.with_name("ca.key")):
        assert _mode(key) == 0o600, key
    assert _mode(files.ca.parent) == 0o700
    # A client that does not trust the CA: the machine's own CAs only.
    untrusted = ssl.create_default_context(cafile=ssl.get_default_verify_paths().openssl_cafile)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://127.0.0.1:{port}/v2/", verify=untrusted, timeout=5)
    # SSL_CERT_FILE pointing at the bundle `ca_bundle` writes: our CA, and the public ones still.
    bundle = tls.ca_bundle(files, tmp_path / "bundle.pem")
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    assert files.ca.read_bytes() in bundle.read_bytes()
    assert bundle.read_bytes().count(b"BEGIN CERTIFICATE") > 1
    monkeypatch.setattr(transport_module, "_TLS_CONTEXT", None)  # built once per process: rebuild it here
    assert httpx.get(f"https://127.0.0.1:{port}/v2/", verify=ssl.create_default_context()).status_code == 200
    with RegistryClient(f"{NAME}:{port}") as client:  # a non-loopback name: jindr speaks HTTPS to it
        assert client.base_url == f"https://{NAME}:{port}"
        pushed = ImageFactory(client).single("secure/app", ["v1"])
        assert client.get_manifest("secure/app", "v1").digest == pushed.digest
    # skopeo: refused without our CA, inspects and copies with `--cert-dir` from `cert_dir`.
    skopeo = need_tool("skopeo", "skopeo")
    env = _skopeo_env(tmp_path)
    source = f"docker://127.0.0.1:{port}/secure/app:v1"
    refused = subprocess.run([skopeo, "inspect", "--raw", source], capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode != 0 and "x509" in refused.stderr, refused.stderr
    certs = tls.cert_dir(files, tmp_path / "skopeo-certs")
    assert (certs / "ca.crt").read_bytes() == files.ca.read_bytes()
    raw = subprocess.run(
        [skopeo, "inspect", "--raw", "--cert-dir", str(certs), source], capture_output=True, env=env, timeout=60
    )
    assert raw.returncode == 0, raw.stderr
    assert "sha256:" + _sha256(raw.stdout) == pushed.digest
    copied = subprocess.run(
        [skopeo, "copy", "--src-cert-dir", str(certs), "--dest-cert-dir", str(certs)]
        + [source, f"docker://127.0.0.1:{port}/secure/copy:v1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert copied.returncode == 0, copied.stderr
    with RegistryClient(f"{NAME}:{port}") as client:
        assert client.get_manifest("secure/copy", "v1").digest == pushed.digest


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_a_restart_reuses_the_ca_and_reissues_the_server_certificate_only_when_needed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    old_umask = os.umask(0)  # keys are 0600 because they are created so, not because of the umask
    try:
        first = tls.local_ca(state)
    finally:
        os.umask(old_umask)
    assert first.ca is not None
    assert _mode(first.key) == 0o600 and _mode(state / "ca.key") == 0o600
    ca, server = tls.fingerprint(first.ca), tls.fingerprint(first.certificate)
    port = free_port()
    trusting = ssl.create_default_context(cafile=str(first.ca))  # a client set up after the first start

    def serve(files: tls.TLSFiles) -> None:
        run = tmp_path / f"run-{secrets.token_hex(3)}"
        run.mkdir()
        served = Served(
            run,
            team_config(port, tmp_path / "storage", tls=tls.http_section(files)),
            {**os.environ, "OTEL_TRACES_EXPORTER": "none"},
            _answers(f"https://127.0.0.1:{port}/v2/", verify=trusting),
        )
        served.stop()

    serve(first)
    again = tls.local_ca(state)
    assert (tls.fingerprint(again.ca), tls.fingerprint(again.certificate)) == (ca, server)  # nothing re-made
    wider = tls.local_ca(state, ["team.example", "10.1.2.3"])
    covering = tls.fingerprint(wider.certificate)
    assert tls.fingerprint(wider.ca) == ca and covering != server
    assert tls.fingerprint(tls.local_ca(state, ["team.example"]).certificate) == covering  # a subset: kept
    serve(wider)  # the same client trusts the new server certificate: same CA
    late = dt.datetime.now(dt.UTC) + dt.timedelta(days=tls.SERVER_DAYS - 10)
    renewed = tls.local_ca(state, ["team.example"], now=late)
    assert tls.fingerprint(renewed.ca) == ca and tls.fingerprint(renewed.certificate) != covering
    assert _mode(renewed.key) == 0o600


def test_a_broken_local_ca_is_not_replaced_silently(tmp_path: Path) -> None:
    state = tmp_path / "state"
    tls.local_ca(state)
    before = (state / "ca.crt").read_bytes()
    (state / "ca.key").write_text("not a key\n")
    with pytest.raises(RuntimeFailure, match="remove ca.crt and ca.key") as caught:
        tls.local_ca(state)
    assert "\n" not in str(caught.value)
    assert (state / "ca.crt").read_bytes() == before
    cut_short = tmp_path / "cut-short"  # a first start that wrote ca.key and died before ca.crt
    tls.local_ca(cut_short)
    (cut_short / "ca.crt").unlink()
    remade = tls.local_ca(cut_short)
    assert remade.ca is not None and remade.ca.exists() and _mode(cut_short / "ca.key") == 0o600


def test_a_users_own_pair_is_checked(tmp_path: Path) -> None:
    """`--tls-cert/--tls-key`: openssl's self-signed pair is taken (its own CA); every mismatch is one line."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"]
        + ["-subj", "/CN=team.example", "-addext", "subjectAltName=DNS:*.team.example,IP:127.0.0.1"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    files = tls.user_pair(cert, key, ["registry.team.example", "127.0.0.1"])
    assert files.ca == cert and files.certificate == cert and files.key == key
    other = tls.local_ca(tmp_path / "other")
    cases = {
        "is not the key of": dict(cert=cert, key=other.key, hosts=["127.0.0.1"]),
        "does not cover team.example": dict(cert=cert, key=key, hosts=["team.example"]),  # wildcard: one label only
        "does not cover a.b.team.example": dict(cert=cert, key=key, hosts=["a.b.team.example"]),
        "does not cover ::1": dict(cert=cert, key=key, hosts=["::1"]),
        "is not a PEM certificate": dict(cert=key, key=key, hosts=[]),
        "is not an unencrypted PEM private key": dict(cert=cert, key=cert, hosts=[]),
        "cannot read --tls-cert": dict(cert=tmp_path / "missing.pem", key=key, hosts=[]),
    }
    for expected, kw in cases.items():
        with pytest.raises(InvalidReference) as caught:
            tls.user_pair(kw["cert"], kw["key"], kw["hosts"])  # type: ignore[arg-type]
        assert expected in str(caught.value) and "\n" not in str(caught.value), (expected, str(caught.value))
    with pytest.raises(InvalidReference, match="expired on"):
        tls.user_pair(cert, key, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=3))
    issued = tls.user_pair(other.certificate, other.key, ["localhost", "::1"])
    assert issued.ca is None  # issued by a CA: trusting it is the issuer's business
    with pytest.raises(InvalidReference, match="invalid TLS host name"):
        tls.local_ca(tmp_path / "bad", ["bad_name!"])
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())


def test_trust_files_for_docker_and_containers(tmp_path: Path) -> None:
    files = tls.local_ca(tmp_path / "state")
    assert files.ca is not None
    root = tmp_path / "etc-docker-certs.d"
    target = tls.install_ca(files, "localhost:5443", root=root)
    assert target == root / "localhost:5443" / "ca.crt"
    assert target.read_bytes() == files.ca.read_bytes() and _mode(target) == 0o644
    assert tls.install_ca(files, "[::1]:5443", root=root) == root / "[::1]:5443" / "ca.crt"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(RuntimeFailure, match="cannot write") as caught:
        tls.install_ca(files, "localhost:5443", root=blocker)
    assert "\n" not in str(caught.value)
    assert tls.host_of("localhost:5443") == "localhost" and tls.host_of("[::1]:5000") == "::1"


# Users


def test_htpasswd_users_against_the_real_registry(tmp_path: Path) -> None:
    path = tmp_path / "state" / "htpasswd"
    alice, bob, carol = (secrets.token_urlsafe(18) for _ in range(3))
    assert users.add_user(path, "alice", "first-" + alice) is False
    assert users.add_user(path, "bob", bob) is False
    assert users.add_user(path, "alice", alice) is True  # replaced, not added twice
    assert users.list_users(path) == ["alice", "bob"] and _mode(path) == 0o600
    port = free_port()
    base = f"http://127.0.0.1:{port}/v2/"
    config = team_config(port, tmp_path / "storage", auth=users.auth_section(path))

    def serve(run: str) -> Served:
        (tmp_path / run).mkdir()
        return Served(tmp_path / run, config, {**os.environ, "OTEL_TRACES_EXPORTER": "none"}, _answers(base))

    served = serve("run1")
    try:
        anonymous = httpx.get(base)
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == 'Basic realm="jindr"'
        assert httpx.get(base, auth=("alice", alice)).status_code == 200
        assert httpx.get(base, auth=("bob", bob)).status_code == 200
        assert httpx.get(base, auth=("alice", "first-" + alice)).status_code == 401  # the replaced password
        assert httpx.get(base, auth=("alice", bob)).status_code == 401
        with RegistryClient(f"127.0.0.1:{port}", credentials=Credentials("alice", alice)) as client:
            pushed = ImageFactory(client).single("team/app", ["v1"])
        for secret in (alice, bob):
            assert secret.encode() not in served.proc_file("cmdline") + served.proc_file("environ")
        # Registry 2.8 re-reads the file when its modification time changes: no restart needed.
        users.remove_user(path, "bob")
        assert users.list_users(path) == ["alice"]
        assert httpx.get(base, auth=("bob", bob)).status_code == 401
        users.add_user(path, "carol", carol)
        assert httpx.get(base, auth=("carol", carol)).status_code == 200
        served.stop()
        served = serve("run2")  # and a restart reads the same file
        assert httpx.get(base, auth=("bob", bob)).status_code == 401
        assert httpx.get(base, auth=("alice", alice)).status_code == 200
        with RegistryClient(f"127.0.0.1:{port}", credentials=Credentials("alice", alice)) as client:
            assert client.get_manifest("team/app", "v1").digest == pushed.digest
    finally:
        served.stop()
    # The passwords are in no file (the hash only), nor in any log.
    hashes = dict(line.split(":", 1) for line in path.read_text().splitlines())
    assert bcrypt.checkpw(alice.encode(), hashes["alice"].encode())
    for file in (p for p in tmp_path.rglob("*") if p.is_file()):
        data = file.read_bytes()
        assert not [pw for pw in (alice, bob, carol) if pw.encode() in data], file


def test_user_names_and_passwords_are_checked_and_nothing_changes(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    users.add_user(path, "alice", "correct horse")
    before = path.read_bytes()
    bad = {
        "": "empty user name",
        "a:b": "invalid user name",
        "two words": "invalid user name",
        "line\nbreak": "invalid user name",
        "#comment": "invalid user name",
    }
    for name, expected in bad.items():
        with pytest.raises(InvalidReference, match=expected) as caught:
            users.add_user(path, name, "pw")
        assert "\n" not in str(caught.value)
    for password, expected in {"": "empty password", "a\nb": "line break", "x" * 73: "at most 72"}.items():
        with pytest.raises(InvalidReference, match=expected):
            users.add_user(path, "carol", password)
    with pytest.raises(InvalidReference, match=r"no user 'carol' .* \(users: alice\)"):
        users.remove_user(path, "carol")
    assert path.read_bytes() == before
    assert users.list_users(tmp_path / "absent") == []


def test_passwords_come_from_the_environment_stdin_or_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    assert users.read_password(env="TEAM_PW", environ={"TEAM_PW": "s3cret"}) == "s3cret"
    with pytest.raises(InvalidReference, match=r"\$TEAM_PW is empty or not set"):
        users.read_password(env="TEAM_PW", environ={})
    assert users.read_password(stdin=True, stream=io.StringIO("with spaces \r\nignored\n")) == "with spaces "
    with pytest.raises(InvalidReference, match="no password on stdin"):
        users.read_password(stdin=True, stream=io.StringIO("\n"))
    with pytest.raises(InvalidReference, match="no terminal to ask for the password: use --password-stdin"):
        users.read_password(stream=io.StringIO("typed\n"))

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers = iter(["one", "two"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    with pytest.raises(InvalidReference, match="the two passwords differ"):
        users.read_password(stream=Terminal())
    answers = iter(["same", "same"])
    assert users.read_password(stream=Terminal()) == "same"


# S3


def test_registry_on_moto_s3(
    moto: str,  # noqa: F811 - fixture
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    access, secret = "AKIA" + secrets.token_hex(8).upper(), "sentinel-" + secrets.token_urlsafe(24)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", access)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_CA_BUNDLE", ssl.get_default_verify_paths().openssl_cafile)  # 2.8.2 panics with it
    location = s3.parse_s3_url("s3://team-images/reg/one/")
    assert (location.bucket, location.prefix, location.url) == ("team-images", "reg/one", "s3://team-images/reg/one")
    bucket_api = boto3.client("s3", endpoint_url=moto, region_name="us-east-1")
    with pytest.raises(RuntimeFailure, match="does not exist at .* add --create-bucket") as caught:
        s3.ensure_bucket(location, region="us-east-1", endpoint=moto, create=False)
    assert "\n" not in str(caught.value) and bucket_api.list_buckets()["Buckets"] == []
    assert s3.ensure_bucket(location, region="us-east-1", endpoint=moto, create=True) is True
    assert s3.ensure_bucket(location, region="us-east-1", endpoint=moto, create=False) is False
    credentials = s3.resolve_credentials()
    assert (credentials.access_key, credentials.secret_key, credentials.method) == (access, secret, "env")
    assert secret not in repr(credentials)
    section = s3.storage_section(location, region=s3.resolve_region(), endpoint=moto, credentials=credentials)
    assert section["s3"]["rootdirectory"] == "/reg/one" and section["s3"]["secure"] is False
    env, notices = s3.registry_environment(os.environ)
    assert len(notices) == 1 and "AWS_CA_BUNDLE" in notices[0] and "\n" not in notices[0]
    assert not [k for k in env if k.startswith("AWS_")]
    port = free_port()
    served = Served(
        tmp_path,
        team_config(port, tmp_path / "unused", storage=section),
        {**env, "OTEL_TRACES_EXPORTER": "none"},
        _answers(f"http://127.0.0.1:{port}/v2/"),
    )
    try:
        for name in ("cmdline", "environ"):
            seen = served.proc_file(name)
            assert secret.encode() not in seen and b"AWS_CA_BUNDLE" not in seen, name
        with RegistryClient(f"127.0.0.1:{port}") as client:
            pushed = ImageFactory(client).single("team/app", ["v1"], layers=2)
            manifest = json.loads(client.get_manifest("team/app", "v1").raw)
        keys = []
        for page in bucket_api.get_paginator("list_objects_v2").paginate(Bucket=location.bucket):
            keys += [item["Key"] for item in page.get("Contents", [])]
        assert keys and all(key.startswith("reg/one/docker/registry/v2/") for key in keys), keys[:5]
        digests = [pushed.digest, manifest["config"]["digest"]] + [layer["digest"] for layer in manifest["layers"]]
        for digest in digests:
            hexa = digest.removeprefix("sha256:")
            assert f"reg/one/docker/registry/v2/blobs/sha256/{hexa[:2]}/{hexa}/data" in keys, digest
        link = "reg/one/docker/registry/v2/repositories/team/app/_manifests/tags/v1/current/link"
        assert bucket_api.get_object(Bucket=location.bucket, Key=link)["Body"].read().decode() == pushed.digest
        # A blob GET answers 307 to a presigned URL on the object store; skopeo follows it and checks digests.
        skopeo = need_tool("skopeo", "skopeo")
        out = tmp_path / "pulled"
        pulled = subprocess.run(
            [skopeo, "copy", "--src-tls-verify=false", f"docker://127.0.0.1:{port}/team/app:v1", f"dir:{out}"],
            capture_output=True,
            text=True,
            env=_skopeo_env(tmp_path),
            timeout=120,
        )
        assert pulled.returncode == 0, pulled.stderr
        for layer in manifest["layers"]:
            assert "sha256:" + _sha256((out / layer["digest"].removeprefix("sha256:")).read_bytes()) == layer["digest"]
    finally:
        served.stop()
    # The secret key is in the 0600 config and nowhere else under the test's directory (logs included).
    assert _mode(served.config_path) == 0o600 and secret in served.config_path.read_text()
    holders = [p for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert holders == [served.config_path]


def test_s3_urls_and_endpoints_are_checked() -> None:
    bad = {
        "s3://": "3 to 63",
        "s3://ab": "3 to 63",
        "s3://" + "a" * 64: "3 to 63",
        "s3://Team": "lower-case",
        "s3://-team": "lower-case",
        "s3://te_am": "lower-case",
        "s3://te..am": "two adjacent periods",
        "s3://192.168.1.2": "IP address",
        "s3://xn--team": "reserved",
        "s3://team-s3alias": "reserved",
        "s3://team:9000/x": "no user, port",
        "s3://key:secret@team": "no user, port",
        "s3://team/a//b": "empty path segment",
        "s3://team/a/../b": "invalid prefix segment",
        "s3://team?x=1": "no user, port",
        "/data/registry": "expected a directory or s3://",
    }
    for url, expected in bad.items():
        with pytest.raises(InvalidReference) as caught:
            s3.parse_s3_url(url)
        assert expected in str(caught.value) and "\n" not in str(caught.value), (url, str(caught.value))
    assert s3.parse_s3_url("s3://team.images-1").prefix == ""
    assert s3.parse_s3_url("s3://team.images-1").root == ""
    assert s3.parse_s3_url("s3://team/a/b").root == "a/b/"
    for endpoint in ("ftp://minio:9000", "minio:9000", "https://k:s@minio:9000", "https://minio/bucket"):
        with pytest.raises(InvalidReference, match="--s3-endpoint"):
            s3.storage_section(s3.S3Location("team"), region="us-east-1", endpoint=endpoint)
    aws = s3.storage_section(s3.S3Location("team"), region="eu-west-1")["s3"]
    assert aws == {"bucket": "team", "region": "eu-west-1", "v4auth": True}  # AWS itself: no endpoint, no keys
    minio = s3.storage_section(s3.S3Location("team"), region="us-east-1", endpoint="https://minio.lan:9000/")["s3"]
    assert (minio["regionendpoint"], minio["secure"], minio["forcepathstyle"]) == ("https://minio.lan:9000", True, True)
    temporary = s3.S3Credentials("ASIATEMP", "tempsecret", "token-sentinel", method="sso")
    section = s3.storage_section(s3.S3Location("team"), region="us-east-1", credentials=temporary)["s3"]
    assert section["sessiontoken"] == "token-sentinel"
    with pytest.raises(RuntimeFailure, match="registry 2.8.2 cannot take a session token") as caught:
        s3.storage_section(s3.S3Location("team"), region="us-east-1", credentials=temporary, registry_version="2.8.2")
    assert "tempsecret" not in str(caught.value) and "token-sentinel" not in str(caught.value)
    role = s3.S3Credentials("ASIAROLE", "rolesecret", "token", method="iam-role")
    assert "accesskey" not in s3.storage_section(s3.S3Location("team"), region="us-east-1", credentials=role)["s3"]


def test_missing_credentials_and_profiles_are_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(InvalidReference, match="no AWS profile 'team'"):
        s3.resolve_credentials("team")
    with pytest.raises(RuntimeFailure, match="no AWS credentials found"):
        s3.resolve_credentials()
    (tmp_path / "credentials").write_text("[team]\naws_access_key_id = AKIATEAM\naws_secret_access_key = teamsecret\n")
    (tmp_path / "config").write_text("[profile team]\nregion = eu-central-1\n")
    found = s3.resolve_credentials("team")
    assert (found.access_key, found.secret_key, found.method) == ("AKIATEAM", "teamsecret", "shared-credentials-file")
    assert s3.resolve_region("", "team") == "eu-central-1" and s3.resolve_region("us-west-2", "team") == "us-west-2"


def test_the_modules_import_nothing_heavy() -> None:
    """cryptography, bcrypt and boto3 are imported where used, not when `start` imports these modules."""
    import sys

    code = (
        "import sys, jindr_nb.runtime.tls, jindr_nb.runtime.users, jindr_nb.runtime.s3\n"
        "print(','.join(m for m in ('cryptography', 'bcrypt', 'boto3', 'botocore', 'httpx') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "", (proc.stdout, proc.stderr)


def test_the_three_together_tls_users_and_s3(
    moto: str,  # noqa: F811 - fixture
    loopback_name: None,  # noqa: F811 - fixture
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The team registry's config: S3 storage, TLS from the local CA and htpasswd users, composed."""
    from authrig import docker_config

    secret = "sentinel-" + secrets.token_urlsafe(24)
    password = secrets.token_urlsafe(18)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    state = tmp_path / "state"
    location = s3.parse_s3_url("s3://team-all/registry")
    s3.ensure_bucket(location, region="us-east-1", endpoint=moto, create=True)
    files = tls.local_ca(state / "tls", [NAME])
    users.add_user(state / "htpasswd", "ci", password)
    port = free_port()
    config = team_config(
        port,
        tmp_path / "unused",
        tls=tls.http_section(files),
        auth=users.auth_section(state / "htpasswd"),
        storage=s3.storage_section(location, region="us-east-1", endpoint=moto, credentials=s3.resolve_credentials()),
    )
    env, _ = s3.registry_environment(os.environ)
    assert files.ca is not None
    served = Served(
        tmp_path,
        config,
        {**env, "OTEL_TRACES_EXPORTER": "none"},
        _answers(f"https://127.0.0.1:{port}/v2/", verify=ssl.create_default_context(cafile=str(files.ca))),
    )
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_bundle(files, tmp_path / "bundle.pem")))
        monkeypatch.setattr(transport_module, "_TLS_CONTEXT", None)
        with RegistryClient(f"{NAME}:{port}", credentials=Credentials("ci", password)) as client:
            pushed = ImageFactory(client).single("team/app", ["v1"])
        skopeo = need_tool("skopeo", "skopeo")
        auth = docker_config(tmp_path / "docker", f"127.0.0.1:{port}", "ci", password) / "config.json"
        certs = tls.cert_dir(files, tmp_path / "certs")
        common = ["--authfile", str(auth), "--src-cert-dir", str(certs), "--dest-cert-dir", str(certs)]
        source, copy = f"docker://127.0.0.1:{port}/team/app:v1", f"docker://127.0.0.1:{port}/team/copy:v1"
        copied = subprocess.run(
            [skopeo, "copy", *common, source, copy],
            capture_output=True,
            text=True,
            env=_skopeo_env(tmp_path),
            timeout=120,
        )
        assert copied.returncode == 0, copied.stderr
        denied = subprocess.run(
            [skopeo, "inspect", "--raw", "--cert-dir", str(certs), source],
            capture_output=True,
            text=True,
            env=_skopeo_env(tmp_path),
            timeout=60,
        )
        assert denied.returncode != 0 and "unauthorized" in denied.stderr.lower(), denied.stderr
    finally:
        served.stop()
    bucket = boto3.client("s3", endpoint_url=moto, region_name="us-east-1")
    tag = "registry/docker/registry/v2/repositories/team/copy/_manifests/tags/v1/current/link"
    assert bucket.get_object(Bucket=location.bucket, Key=tag)["Body"].read().decode() == pushed.digest
    for file in (p for p in tmp_path.rglob("*") if p.is_file() and p != served.config_path):
        data = file.read_bytes()
        assert secret.encode() not in data and password.encode() not in data, file  # docker's config: base64


def test_a_private_file_is_0600_even_over_a_stale_or_planted_temporary(tmp_path: Path) -> None:
    """Keys, htpasswd and configs go through write_private: a leftover `.tmp` (0644, or a symlink) changes nothing."""
    target = tmp_path / "state" / "ca.key"
    target.parent.mkdir(mode=0o700)
    stale = target.with_name("ca.key.tmp")
    stale.write_text("old")
    stale.chmod(0o644)
    write_private(target, "secret-one")
    assert target.read_text() == "secret-one"
    assert target.stat().st_mode & 0o777 == 0o600
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("untouched")
    stale.symlink_to(elsewhere)
    write_private(target, "secret-two")
    assert target.read_text() == "secret-two"
    assert target.stat().st_mode & 0o777 == 0o600
    assert elsewhere.read_text() == "untouched"
    assert not stale.exists() and not stale.is_symlink()


def test_users_added_at_once_are_all_kept(tmp_path: Path) -> None:
    """`user add` run at once in several processes (two terminals; one command editing every
    replica's file) keeps every user: the file is read and rewritten under a lock, and each write
    goes through a temporary file of its own. Each process adds its users while the others do."""
    import sys
    import textwrap

    path = tmp_path / "team" / "htpasswd"
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from jindr_nb.runtime.users import add_user
        path, who = Path(sys.argv[1]), sys.argv[2]
        for i in range(25):
            add_user(path, f"{who}-{i}", "pw-" + who, rounds=4)
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(path), f"p{n}"], stderr=subprocess.PIPE, text=True)
        for n in range(6)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    names = users.list_users(path)
    assert sorted(names) == sorted(f"p{n}-{i}" for n in range(6) for i in range(25))
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []  # none left behind
    users.remove_user(path, "p0-0")
    assert "p0-0" not in users.list_users(path) and len(users.list_users(path)) == 149


def test_a_missing_team_package_is_one_line_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`start --tls`/`--users` and `user add` without the `team` extra: one line saying what to install."""
    import importlib.util

    from jindr_nb.runtime import RegistrySpec
    from jindr_nb.runtime.base import needs, serving_files
    from jindr_nb.runtime.users import add_user

    with pytest.raises(RuntimeFailure) as caught:
        needs("jindr_no_such_package", "start --tls")
    assert str(caught.value) == "start --tls needs the jindr_no_such_package package: pip install 'jindr_nb[team]'"
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in ("cryptography", "bcrypt") else real(name, *a)
    )
    spec = RegistrySpec.make("localhost:5999", tmp_path / "s", tls=True, users=True)
    with pytest.raises(RuntimeFailure, match=r"^start --tls needs the cryptography package"):
        serving_files(spec)
    with pytest.raises(RuntimeFailure, match=r"^user add needs the bcrypt package"):
        add_user(tmp_path / "htpasswd", "alice", "a-long-password")
    assert not (Path(os.environ["JINDR_STATE_DIR"]) / "team" / "5999").exists()  # nothing written
    assert not (tmp_path / "htpasswd").exists()
