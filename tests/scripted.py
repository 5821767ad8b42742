"""Scripted HTTP/1.1 servers on loopback: fakes, named as such, for answers a real registry never gives.

`ScriptedServer(script)` listens on 127.0.0.1 and answers each request with the bytes
`script(method, path, body)` returns (None: close the connection without answering). It keeps
connections alive and records every request head exactly as it came off the wire, so a test can
read what jindr really sent. With `tls=TestCA(...)` the same script is served over TLS with a
certificate from a test CA generated here; the client reaches it under `TestCA.NAME`, a name that
resolves to 127.0.0.1 inside this process only (see the `loopback_name` fixture).
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

#: A registry's answer to GET /v2/.
PING = b"HTTP/1.1 200 OK\r\nDocker-Distribution-Api-Version: registry/2.0\r\nContent-Length: 2\r\n\r\n{}"

Script = Callable[..., "bytes | None"]  # (method, path, body) or, with head=True, (method, path, body, head)


class TestCA:
    """A throw-away certificate authority and one server certificate it signed, for `NAME` and
    127.0.0.1. `ca_file` is what a user would put in SSL_CERT_FILE."""

    __test__ = False  # not a test class
    NAME = "hostile.test"

    def __init__(self, directory: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jindr test CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.NAME)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName(self.NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_file = directory / "ca.pem"
        self.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        self.cert_file = directory / "server.pem"
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key_file = directory / "server.key"
        self.key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        context.set_alpn_protocols(["http/1.1"])
        return context


class ScriptedServer:
    """A fake registry: a loopback HTTP/1.1 server whose answers are the bytes `script(method, path,
    body)` returns, or None to close the connection without answering. Keeps connections alive;
    records every request (`requests`) and every request head as it came off the wire (`heads`).
    `tls`: serve over TLS with the test CA's certificate, addressed as `TestCA.NAME:PORT`.
    `head=True`: the script also gets the request head (bytes), to answer by its headers."""

    def __init__(self, script: Script, *, tls: TestCA | None = None, head: bool = False) -> None:
        self.script = script
        self._with_head = head
        self.requests: list[tuple[str, str]] = []
        self.heads: list[bytes] = []  # every request's head, as it came off the wire
        self.errors: list[str] = []  # what the server itself could not parse (a client sending junk)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.tls = tls
        self._context = tls.server_context() if tls is not None else None
        self.address = f"{TestCA.NAME if tls is not None else '127.0.0.1'}:{self.port}"
        self.scheme = "https" if tls is not None else "http"
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []  # one per connection accepted (test_fastpath counts them)
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                self._conns.append(conn)
                thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
                self._threads.append(thread)
            thread.start()

    def _serve(self, raw: socket.socket) -> None:
        conn: socket.socket = raw
        raw.settimeout(30)  # a test that forgets a connection never keeps a thread forever
        if self._context is not None:
            try:
                conn = self._context.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError):
                raw.close()
                return  # the client refused the certificate or hung up
            with self._lock:
                self._conns.append(conn)
        try:
            reader = conn.makefile("rb")
        except OSError:
            return
        with conn, reader:
            while True:
                try:
                    line = reader.readline(65537)
                except OSError:
                    return
                if not line:
                    return
                try:
                    method, path, _ = line.decode("latin-1").split(" ", 2)
                except ValueError:
                    self.errors.append(f"bad request line {line!r}")
                    return
                length = 0
                head = [line]
                try:
                    while (header := reader.readline(65537)) not in (b"\r\n", b"\n", b""):
                        head.append(header)
                        name, _, value = header.decode("latin-1").partition(":")
                        if name.strip().lower() == "content-length":
                            length = int(value)
                    body = reader.read(length) if length else b""
                except (OSError, ValueError):
                    return
                whole = b"".join(head)
                with self._lock:
                    self.heads.append(whole)
                    self.requests.append((method, path))
                answer = self.script(method, path, body, whole) if self._with_head else self.script(method, path, body)
                if answer is None:
                    return
                try:
                    conn.sendall(answer)
                except OSError:
                    return  # the client hung up (as it should on a hostile answer)
                if b"connection: close" in answer.split(b"\r\n\r\n")[0].lower():
                    return

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._conns = self._conns, []
        self.sock.close()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


@pytest.fixture()
def scripted() -> Iterator[Callable[..., ScriptedServer]]:
    """Start scripted servers (`scripted(script, tls=None, head=False)`); all are closed after the test."""
    servers: list[ScriptedServer] = []

    def start(script: Script, *, tls: TestCA | None = None, head: bool = False) -> ScriptedServer:
        servers.append(ScriptedServer(script, tls=tls, head=head))
        return servers[-1]

    yield start
    for server in servers:
        server.close()
