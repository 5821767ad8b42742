"""HTTPS with certificate checks by default off loopback; plain HTTP only with --insecure, said aloud.

The real registry binary serves TLS with a self-signed certificate for `registry.test`; the test
resolves that name to 127.0.0.1 inside this process, so no traffic leaves loopback.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from rig import ImageFactory, free_port, registry_binary

from jindr_nb.cli import main
from jindr_nb.client import RegistryClient
from jindr_nb.client import transport as transport_module
from jindr_nb.commands import Session

NAME = "registry.test"


@pytest.fixture()
def loopback_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """`registry.test` resolves to 127.0.0.1 in this process (and nowhere else)."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - socket's signature
        return real("127.0.0.1" if host == NAME else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture()
def tls_registry(tmp_path: Path, loopback_name: None):
    """The registry binary serving HTTPS on 127.0.0.1 with a certificate for registry.test."""
    binary = registry_binary()
    if binary is None:
        pytest.fail("the registry binary is missing: apt-get install docker-registry")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={NAME}"]
        + ["-addext", f"subjectAltName=DNS:{NAME}", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    port = free_port()
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: "
        f"{tmp_path / 'storage'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {cert}\n    key: {key}\n"
    )
    with open(tmp_path / "registry.log", "ab") as log:
        proc = subprocess.Popen(
            [binary, "serve", str(config)], stdout=log, stderr=log, env=dict(os.environ, OTEL_TRACES_EXPORTER="none")
        )
    try:
        context = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as raw:
                    with context.wrap_socket(raw, server_hostname=NAME):
                        break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError((tmp_path / "registry.log").read_text()[-2000:]) from None
                time.sleep(0.05)
        yield f"{NAME}:{port}", cert
    finally:
        proc.terminate()
        proc.wait(10)


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def test_https_with_an_untrusted_certificate_is_refused(tls_registry: tuple[str, Path]) -> None:
    address, _ = tls_registry
    rc, out, err = _cli("-r", address, "ls")
    assert rc == 1 and out == ""
    assert err.count("\n") == 1 and address in err and "certificate" in err.lower(), err


def test_https_with_a_trusted_certificate_works(
    tls_registry: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    address, cert = tls_registry
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # how a user trusts a private CA
    monkeypatch.setattr(transport_module, "_TLS_CONTEXT", None)  # built once per process: rebuild it here
    with RegistryClient(address) as c:
        assert c.base_url == f"https://{address}"
        pushed = ImageFactory(c).single("secure/app", ["v1"])
    rc, out, err = _cli("-r", address, "lsi", "secure/app")
    assert rc == 0 and err == "", err
    assert "secure/app" in out and pushed.digest in out, out


def test_insecure_is_needed_and_said_aloud(tls_registry: tuple[str, Path]) -> None:
    address, _ = tls_registry
    # --insecure means plain HTTP: this port speaks TLS, so it fails, but after saying what it does.
    rc, out, err = _cli("--insecure", "-r", address, "ls")
    lines = err.strip().split("\n")
    assert lines[0] == f"jindr: warning: speaking plain HTTP to {address}: no TLS, as asked by --insecure", err
    assert rc == 1 and len(lines) == 2 and address in lines[1], err


def test_insecure_reaches_a_plain_http_registry_off_loopback(loopback_name: None, tmp_path: Path) -> None:
    """A plain-HTTP registry under a name that is not loopback: refused without --insecure, used with it."""
    from rig import LocalRegistry

    reg = LocalRegistry(tmp_path).start()
    try:
        with RegistryClient(reg.address) as c:
            pushed = ImageFactory(c).single("plain/app", ["v1"])
        address = f"{NAME}:{reg.port}"
        rc, out, err = _cli("-r", address, "lsi")
        assert rc == 1 and "--insecure" in err and err.count("\n") == 1, err  # HTTPS to an HTTP port
        rc, out, err = _cli("--insecure", "-r", address, "lsi")
        assert rc == 0 and pushed.digest in out, (out, err)
        assert err.startswith(f"jindr: warning: speaking plain HTTP to {address}"), err
    finally:
        reg.stop()


def test_which_registries_get_plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []
    session = Session()
    session.notice = said.append
    try:
        for name in ("localhost:5001", "127.0.0.1:5000", "127.1.2.3:80", "[::1]:5000"):
            assert session.client(name).base_url == f"http://{name}"
        for name in ("registry.example.com", "10.0.0.5:5000", "ghcr.io", "localhost.example.com:5000"):
            client = session.client(name)
            assert client.base_url == f"https://{name}" and client._t.http_options["verify"] is True
        assert said == []
        insecure = Session()
        insecure.notice = said.append
        insecure.insecure = True
        assert insecure.client("10.0.0.5:5000").base_url == "http://10.0.0.5:5000"
        assert insecure.client("localhost:5001").base_url == "http://localhost:5001"
        assert said == ["jindr: warning: speaking plain HTTP to 10.0.0.5:5000: no TLS, as asked by --insecure"]
        monkeypatch.setenv("JINDR_INSECURE_REGISTRIES", "build.lan:5000")
        assert session.client("build.lan:5000").base_url == "http://build.lan:5000"
        assert session.client("other.lan:5000").base_url == "https://other.lan:5000"
        insecure.close()
    finally:
        session.close()
