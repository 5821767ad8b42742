"""TLS for a registry jindr runs: a local CA and server certificate, or the user's own pair, and trust.

Layout under the directory it is given (the registry's state directory):

    ca.crt  ca.key          the local CA, made once and kept (clients trust this one file)
    server.crt  server.key  the registry's certificate (leaf then CA), re-issued when it no longer
                            covers the names asked for or nears its end

Keys are created 0600 in 0700 directories. `cryptography` is imported inside the functions that
use it, so `import jindr_nb` stays cheap.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._files import private_dirs
from ..errors import InvalidReference, RuntimeFailure
from ..refs import parse_registry
from .base import write_private

if TYPE_CHECKING:
    from cryptography import x509

__all__ = [
    "DEFAULT_HOSTS",
    "TLSFiles",
    "ca_bundle",
    "cert_dir",
    "check_hosts",
    "fingerprint",
    "host_of",
    "http_section",
    "install_ca",
    "local_ca",
    "user_pair",
]

#: What every certificate jindr makes covers: the loopback names a local client uses.
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
#: Where Docker looks for a registry's CA (`HOST:PORT/ca.crt` below it); Podman and skopeo read
#: /etc/containers/certs.d (or ~/.config/containers/certs.d when rootless) the same way.
DOCKER_CERTS_D = Path("/etc/docker/certs.d")

CA_DAYS = 3650
SERVER_DAYS = 397  # what browsers accept for a leaf; a local CA could go longer, nothing gains from it
RENEW_BEFORE = dt.timedelta(days=30)
CLOCK_SKEW = dt.timedelta(minutes=5)  # not-before a little in the past, for clients whose clock lags


@dataclass(frozen=True)
class TLSFiles:
    """The files a TLS registry serves with, and the CA its clients trust (None: a public CA's job)."""

    certificate: Path
    key: Path
    ca: Path | None


def host_of(registry: str) -> str:
    """`localhost` for localhost:5001, `::1` for [::1]:5000: the name a certificate must cover."""
    registry = parse_registry(registry)
    if registry.startswith("["):
        return registry[1 : registry.index("]")]
    return registry.rsplit(":", 1)[0] if ":" in registry else registry


def _normal_hosts(hosts: Iterable[str], defaults: bool = True) -> list[str]:
    """(DEFAULT_HOSTS plus) `hosts`, each a DNS name (lower case) or an IP address (canonical), once."""
    out: list[str] = []
    for raw in (*(DEFAULT_HOSTS if defaults else ()), *hosts):
        host = raw.strip().strip("[]")
        try:
            host = str(ipaddress.ip_address(host))
        except ValueError:
            host = host.lower().rstrip(".")
            labels = host.split(".")
            if not host or len(host) > 253 or not all(_dns_label(label) for label in labels):
                raise InvalidReference(
                    f"invalid TLS host name {raw!r}: use a DNS name (letters, digits, '-', '.') or an IP address"
                ) from None
        if host not in out:
            out.append(host)
    return out


def check_hosts(hosts: Iterable[str]) -> list[str]:
    """`--hostname` values checked (DNS names or IP addresses, canonical, once): refused before anything is made."""
    return _normal_hosts(hosts, defaults=False)


def _dns_label(label: str) -> bool:
    return 0 < len(label) <= 63 and label[0] != "-" and label[-1] != "-" and all(c.isalnum() or c == "-" for c in label)


def local_ca(
    directory: Path, hosts: Iterable[str] = (), *, ca_dir: Path | None = None, now: dt.datetime | None = None
) -> TLSFiles:
    """The local CA (in `ca_dir`, default `directory`) and a server certificate for DEFAULT_HOSTS +
    `hosts` under `directory`.

    The CA is made once and reused; the server certificate is reused while it covers every host
    asked for, was issued by this CA, and is more than RENEW_BEFORE from its end. A `ca_dir` apart
    lets every registry share one CA (replicas behind one name, one thing for clients to trust)
    and keeps its key out of the directory a registry's container sees.
    """
    import fcntl

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    wanted = _normal_hosts(hosts)
    now = now or dt.datetime.now(dt.UTC)
    private_dirs(directory)
    ca_dir = ca_dir or directory
    private_dirs(ca_dir)
    # Two starts at once must not each make a CA (the second would orphan the first's certificate).
    with open(ca_dir / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ca_cert, ca_key = _load_or_make_ca(ca_dir, now)
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    try:
        leaf = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        reuse = (
            _same_public_key(leaf, key)
            and leaf.issuer == ca_cert.subject
            and _signed_by(leaf, ca_cert)
            and all(_covers(leaf, host) for host in wanted)
            and leaf.not_valid_after_utc - RENEW_BEFORE > now
        )
    except (OSError, ValueError, IndexError):
        reuse = False
    if not reuse:
        _issue_server(directory, ca_cert, ca_key, wanted, now)
    key_path.chmod(0o600)
    return TLSFiles(cert_path, key_path, ca_dir / "ca.crt")


def _load_or_make_ca(directory: Path, now: dt.datetime) -> tuple[x509.Certificate, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    # A ca.key without ca.crt is a first start cut short (the key is written first): no client can
    # trust a CA whose certificate was never written, so it is made afresh.
    if cert_path.exists():
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise RuntimeFailure(
                f"the local CA in {directory} cannot be read ({exc}); remove ca.crt and ca.key there to make a new "
                "one (clients that trusted the old CA must trust the new one)"
            ) from None
        if not _same_public_key(cert, key):
            raise RuntimeFailure(
                f"{cert_path} and {key_path} do not belong together; remove both to make a new local CA"
            )
        if cert.not_valid_after_utc <= now:
            raise RuntimeFailure(f"the local CA {cert_path} has expired; remove ca.crt and ca.key to make a new one")
        key_path.chmod(0o600)
        return cert, key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "jindr"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"jindr local CA {os.urandom(4).hex()}"),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    # The key first: a ca.crt without its key is never left behind for the next start to trip on.
    write_private(key_path, _key_pem(key))
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _issue_server(directory: Path, ca_cert: x509.Certificate, ca_key: Any, hosts: list[str], now: dt.datetime) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + dt.timedelta(days=SERVER_DAYS), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_private(directory / "server.key", _key_pem(key))
    pem = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
    _write_public(directory / "server.crt", pem)


def user_pair(cert: Path, key: Path, hosts: Iterable[str] = (), *, now: dt.datetime | None = None) -> TLSFiles:
    """`--tls-cert/--tls-key` checked: PEM, the key matches, in date, and covering every host asked for.

    The CA that clients trust is the certificate itself when it is self-signed; otherwise its
    issuer's business (None).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    now = now or dt.datetime.now(dt.UTC)
    try:
        chain = x509.load_pem_x509_certificates(Path(cert).read_bytes())
    except OSError as exc:
        raise InvalidReference(f"cannot read --tls-cert {cert}: {exc.strerror}") from None
    except ValueError:
        raise InvalidReference(f"--tls-cert {cert} is not a PEM certificate (-----BEGIN CERTIFICATE-----)") from None
    try:
        private = serialization.load_pem_private_key(Path(key).read_bytes(), password=None)
    except OSError as exc:
        raise InvalidReference(f"cannot read --tls-key {key}: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise InvalidReference(
            f"--tls-key {key} is not an unencrypted PEM private key (decrypt it first: openssl pkey -in KEY -out NEW)"
        ) from None
    leaf = chain[0]
    if not _same_public_key(leaf, private):
        raise InvalidReference(f"--tls-key {key} is not the key of --tls-cert {cert}: give the matching pair")
    if leaf.not_valid_after_utc <= now:
        raise InvalidReference(f"--tls-cert {cert} expired on {leaf.not_valid_after_utc:%Y-%m-%d}: renew it")
    if leaf.not_valid_before_utc > now + CLOCK_SKEW:
        raise InvalidReference(
            f"--tls-cert {cert} is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC: check the clock"
        )
    missing = [h for h in _normal_hosts(hosts, defaults=False) if not _covers(leaf, h)]
    if missing:
        raise InvalidReference(
            f"--tls-cert {cert} does not cover {', '.join(missing)} (it names {', '.join(_names(leaf)) or 'nothing'}): "
            "issue one with those names in its subjectAltName"
        )
    self_signed = leaf.issuer == leaf.subject and _signed_by(leaf, leaf)
    return TLSFiles(Path(cert), Path(key), Path(cert) if self_signed else None)


def http_section(files: TLSFiles) -> dict[str, str]:
    """The registry config's `http.tls` section."""
    return {"certificate": str(files.certificate), "key": str(files.key)}


def fingerprint(path: Path) -> str:
    """SHA-256 of the first certificate in a PEM file, as `sha256:HEX` (what `trust` shows)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    try:
        cert = x509.load_pem_x509_certificates(Path(path).read_bytes())[0]
    except (OSError, ValueError) as exc:
        raise RuntimeFailure(f"cannot read the certificate {path}: {exc}") from None
    return "sha256:" + cert.fingerprint(hashes.SHA256()).hex()


def ca_bundle(files: TLSFiles, path: Path) -> Path:
    """A CA file for SSL_CERT_FILE: the system's CAs plus ours (SSL_CERT_FILE replaces, it does not add)."""
    if files.ca is None:
        raise RuntimeFailure("this registry serves a certificate from a CA of your own: clients trust that CA already")
    ours = files.ca.read_bytes()
    system = ssl.get_default_verify_paths().cafile or ssl.get_default_verify_paths().openssl_cafile
    try:
        theirs = Path(system).read_bytes() if system else b""
    except OSError:
        theirs = b""
    _write_public(path, theirs.rstrip(b"\n") + b"\n" + ours if theirs else ours)
    return path


def install_ca(files: TLSFiles, registry: str, root: Path = DOCKER_CERTS_D) -> Path:
    """Write the CA as `root/HOST:PORT/ca.crt` (Docker's certs.d; containers' certs.d has the same layout)."""
    if files.ca is None:
        raise RuntimeFailure("this registry serves a certificate from a CA of your own: clients trust that CA already")
    target = Path(root) / parse_registry(registry) / "ca.crt"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_public(target, files.ca.read_bytes())
    except PermissionError:
        raise RuntimeFailure(
            f"cannot write {target}: it belongs to root; run `sudo install -D -m 0644 {files.ca} {target}`"
        ) from None
    except OSError as exc:
        raise RuntimeFailure(f"cannot write {target}: {exc.strerror}; choose another certs.d root") from None
    return target


def cert_dir(files: TLSFiles, directory: Path) -> Path:
    """A directory holding `ca.crt`, for `skopeo --cert-dir` / `podman --cert-dir` (a *.crt there is a CA)."""
    if files.ca is None:
        raise RuntimeFailure("this registry serves a certificate from a CA of your own: clients trust that CA already")
    private_dirs(directory)
    _write_public(directory / "ca.crt", files.ca.read_bytes())
    return directory


def _covers(cert: x509.Certificate, host: str) -> bool:
    """True when the certificate's subjectAltName names `host` (an IP exactly; a DNS name exactly or by a
    one-label wildcard, RFC 6125 6.4.3), the check a TLS client makes; the subject CN is not consulted."""
    from cryptography import x509

    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        return address in sans.get_values_for_type(x509.IPAddress)
    for name in sans.get_values_for_type(x509.DNSName):
        name = name.lower().rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def _names(cert: x509.Certificate) -> list[str]:
    from cryptography import x509

    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(v) for v in sans.get_values_for_type(x509.DNSName) + sans.get_values_for_type(x509.IPAddress)]


def _same_public_key(cert: x509.Certificate, key: Any) -> bool:
    from cryptography.hazmat.primitives import serialization

    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        return bool(cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki))
    except AttributeError:
        return False


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _key_pem(key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _write_public(path: Path, data: bytes) -> None:
    """A certificate: world-readable (it is public), replaced atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    os.replace(tmp, path)
