"""RegistryClient against the real registry binary: listing, manifests, blobs, auth, errors."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from authrig import TokenServer, basic_auth_config, credential_helper, docker_config, htpasswd
from rig import ImageFactory, make_layer, start_registry

from jindr_nb.client import Credentials, RegistryClient
from jindr_nb.errors import IntegrityError, NotFound, RegistryUnreachable, Unauthorized, Unsupported
from jindr_nb.models import ACCEPT_MANIFESTS, DOCKER_LIST, OCI_INDEX, parse_manifest


def _many_repos(factory: ImageFactory, client: RegistryClient, count: int) -> list[str]:
    raw, digest, _, _ = factory.image_manifest("base/r000")
    manifest = json.loads(raw)
    names = [f"base/r{i:03d}" for i in range(count)]
    for name in names[1:]:
        for desc in [manifest["config"], *manifest["layers"]]:
            assert client.mount_blob(name, desc["digest"], "base/r000")
        client.put_manifest(name, "latest", raw, manifest["mediaType"])
    client.put_manifest("base/r000", "latest", raw, manifest["mediaType"])
    return names


def test_catalog_follows_pagination_past_the_first_100(client: RegistryClient, factory: ImageFactory) -> None:
    names = _many_repos(factory, client, 150)
    bare = httpx.get(f"{client.base_url}/v2/_catalog")
    assert len(bare.json()["repositories"]) == 100 and 'rel="next"' in bare.headers["Link"]
    assert client.catalog() == sorted(names)


def test_catalog_with_a_small_maxentries_still_lists_everything(tmp_path: Path) -> None:
    reg = start_registry(tmp_path, extra_config="catalog:\n  maxentries: 50\n")
    try:
        with RegistryClient(reg.address) as client:
            assert httpx.get(f"{client.base_url}/v2/_catalog?n=1000").status_code == 400
            names = _many_repos(ImageFactory(client), client, 120)
            assert client.catalog() == sorted(names)
    finally:
        reg.stop()


def test_manifest_by_tag_and_digest_round_trips_bytes(client: RegistryClient, factory: ImageFactory) -> None:
    pushed = factory.index("app", ["latest", "v2"])
    by_tag = client.get_manifest("app", "v2")
    assert by_tag.digest == pushed.digest and by_tag.media_type == OCI_INDEX
    by_digest = client.get_manifest("app", pushed.digest)
    assert by_digest.raw == by_tag.raw
    assert hashlib.sha256(by_tag.raw).hexdigest() == pushed.digest.split(":")[1]
    index = parse_manifest(by_tag.raw, by_tag.media_type, by_tag.digest)
    assert {d.digest for d in index.images} == set(pushed.platforms.values())
    assert {d.digest for d in index.attestations} == set(pushed.attestations)
    assert client.head_manifest("app", "latest")[0] == pushed.digest
    assert client.head_manifest("app", "nope") is None
    assert sorted(client.tags("app")) == ["latest", "v2"]


def test_docker_list_is_not_rewritten_to_a_child(client: RegistryClient, factory: ImageFactory) -> None:
    pushed = factory.index("dl", "1", oci=False)
    got = client.get_manifest("dl", "1")
    assert got.media_type == DOCKER_LIST and got.digest == pushed.digest
    # The trap jindr 1.5.0 falls into: asking only for schema 2 gets the amd64 child instead.
    narrow = httpx.get(
        f"{client.base_url}/v2/dl/manifests/1",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    assert narrow.headers["Docker-Content-Digest"] == pushed.platforms["linux/amd64"]
    assert "application/vnd.oci.image.index.v1+json" in ACCEPT_MANIFESTS


def test_blob_upload_monolithic_chunked_and_mount(client: RegistryClient) -> None:
    import random

    blob, _ = make_layer(300_000, random.Random(3))
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    assert client.head_blob("up/one", digest) is None
    client.upload_blob("up/one", blob, digest)
    assert client.head_blob("up/one", digest) == len(blob)
    assert client.get_blob("up/one", digest) == blob
    chunks = (blob[i : i + 70_000] for i in range(0, len(blob), 70_000))
    client.upload_blob("up/two", chunks, digest, chunk_size=100_000, size=len(blob))
    assert client.get_blob("up/two", digest) == blob
    assert client.mount_blob("up/three", digest, "up/one") is True
    assert client.head_blob("up/three", digest) == len(blob)


def test_upload_with_a_wrong_digest_is_refused(client: RegistryClient) -> None:
    wrong = "sha256:" + "0" * 64
    with pytest.raises(IntegrityError, match="rejected"):
        client.upload_blob("bad", b"some bytes", wrong)


def test_unknown_repository_and_tag_are_not_found_with_advice(client: RegistryClient, factory: ImageFactory) -> None:
    factory.single("known")
    with pytest.raises(NotFound, match="repository unknown not found") as info:
        client.tags("unknown")
    assert info.value.status == 404 and "NAME_UNKNOWN" in info.value.codes
    with pytest.raises(NotFound, match=r"known:nope not found") as info:
        client.get_manifest("known", "nope")
    assert "`jindr lsi REPO` lists its tags" in info.value.line("jindr")  # advice beside the message


def test_a_registry_error_carries_the_request_and_the_registrys_own_errors(
    client: RegistryClient, factory: ImageFactory
) -> None:
    """Method, URL, status and the registry's OCI codes and messages are data, not only words."""
    factory.single("known")
    with pytest.raises(NotFound) as info:
        client.get_manifest("known", "nope")
    error = info.value
    assert error.method == "GET" and error.status == 404 and error.registry == client.registry
    assert error.url == f"{client.base_url}/v2/known/manifests/nope"
    assert error.codes == ("MANIFEST_UNKNOWN",) and len(error.messages) == 1 and error.messages[0]
    with pytest.raises(NotFound) as info:
        client.delete_manifest("known", "sha256:" + "0" * 64)
    assert info.value.method == "DELETE" and info.value.url.endswith("/v2/known/manifests/sha256:" + "0" * 64)


def test_registry_down_says_how_to_start_one() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with RegistryClient(f"127.0.0.1:{port}", retries=1) as client:
        with pytest.raises(RegistryUnreachable, match="no registry answers at ") as info:
            client.catalog()
    assert info.value.line("jindr").endswith(f"start one there: `jindr -r 127.0.0.1:{port} start`")


class _Html(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        body = b"<html><body>hello</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def html_server() -> str:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Html)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_something_that_is_not_a_registry(html_server: str) -> None:
    with RegistryClient(html_server) as client:
        with pytest.raises(RegistryUnreachable, match="not a registry"):
            client.catalog()


def test_a_port_that_closes_at_once() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    stop = threading.Event()

    def slam() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                conn.close()
            except OSError:
                pass

    threading.Thread(target=slam, daemon=True).start()
    try:
        with RegistryClient(f"127.0.0.1:{sock.getsockname()[1]}", retries=1) as client:
            with pytest.raises(RegistryUnreachable, match="closed the connection"):
                client.catalog()
    finally:
        stop.set()
        sock.close()


def test_schema1_is_unsupported() -> None:
    raw = json.dumps({"schemaVersion": 1, "name": "x", "tag": "1", "fsLayers": []}).encode()
    with pytest.raises(Unsupported, match="schema 1"):
        parse_manifest(raw, "application/vnd.docker.distribution.manifest.v1+prettyjws", "sha256:" + "a" * 64)


@pytest.fixture()
def basic_registry(tmp_path: Path):
    path = htpasswd(tmp_path / "htpasswd", "alice", "s3cret-pass")
    reg = start_registry(tmp_path / "reg", extra_config=basic_auth_config(path))
    yield reg
    reg.stop()


def test_basic_auth_from_docker_config(basic_registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with RegistryClient(basic_registry.address) as anonymous:
        with pytest.raises(Unauthorized, match="docker login"):
            anonymous.catalog()
    monkeypatch.setenv(
        "DOCKER_CONFIG", str(docker_config(tmp_path / "dc", basic_registry.address, "alice", "s3cret-pass"))
    )
    with RegistryClient(basic_registry.address) as client:
        ImageFactory(client).single("private")
        assert client.catalog() == ["private"]
    bad = Credentials("alice", "wrong")
    with RegistryClient(basic_registry.address, credentials=bad) as client:
        with pytest.raises(Unauthorized) as info:
            client.catalog()
        assert "wrong" not in str(info.value) and "wrong" not in repr(bad)


def test_basic_auth_from_a_credential_helper(basic_registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    credential_helper(tmp_path / "bin", "jindrtest", basic_registry.address, "alice", "s3cret-pass")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{__import__('os').environ['PATH']}")
    cfg = tmp_path / "dc"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"credHelpers": {basic_registry.address: "jindrtest"}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(cfg))
    with RegistryClient(basic_registry.address) as client:
        ImageFactory(client).single("viahelper")
        assert client.catalog() == ["viahelper"]
    (cfg / "config.json").write_text(json.dumps({"credsStore": "jindrtest"}))
    with RegistryClient(basic_registry.address) as client:
        assert client.catalog() == ["viahelper"]


def test_bearer_token_challenge(tmp_path: Path) -> None:
    tokens = TokenServer(tmp_path, "bob", "tok-pass")
    reg = start_registry(tmp_path / "reg", extra_config=tokens.registry_config())
    try:
        with RegistryClient(reg.address, credentials=Credentials("bob", "tok-pass")) as client:
            pushed = ImageFactory(client).index("secure/app", "v1")
            assert client.get_manifest("secure/app", "v1").digest == pushed.digest
            assert client.tags("secure/app") == ["v1"]
            before = tokens.requests
            client.get_manifest("secure/app", pushed.digest)
            assert tokens.requests == before  # the token for this scope is reused
        with RegistryClient(reg.address, credentials=Credentials("bob", "nope")) as client:
            with pytest.raises(Unauthorized, match="refused the credentials"):
                client.tags("secure/app")
    finally:
        reg.stop()
        tokens.close()


def test_tags_that_look_like_digest_prefixes(client: RegistryClient, factory: ImageFactory) -> None:
    pushed = factory.single("odd", ["sha256", "shared", "sha512x"])
    for tag in ("sha256", "shared", "sha512x"):
        assert client.get_manifest("odd", tag).digest == pushed.digest


@pytest.mark.parametrize(
    ("call", "bad"),
    [
        (lambda c, bad: c.get_manifest("plain", bad), "v1/../v1"),
        (lambda c, bad: c.head_manifest("plain", bad), "latest/../../x"),
        (lambda c, bad: c.delete_manifest("plain", bad), "sha256:../../x"),
        (lambda c, bad: c.get_blob("plain", bad), "v1"),
        (lambda c, bad: c.head_blob("plain", bad), "sha256:ab/../cd"),
        (lambda c, bad: c.tags(bad), "../v2/_catalog"),
        (lambda c, bad: c.get_manifest(bad, "latest"), "Plain"),
        (lambda c, bad: c.get_manifest("plain", bad), "x\r\nX-Injected: 1"),
    ],
)
def test_a_name_that_is_not_one_never_becomes_a_url(client: RegistryClient, call, bad: str) -> None:
    """Names come from catalogs and manifests a registry sent: `v1/../v1` would be fetched as `v1`."""
    client.ping()
    before = client.requests_sent
    with pytest.raises(IntegrityError, match="refusing to put it in a URL") as caught:
        call(client, bad)
    assert client.requests_sent == before
    assert "\n" not in str(caught.value) and "\r" not in str(caught.value)
