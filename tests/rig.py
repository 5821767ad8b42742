"""Test rig: the real registry binary on a free loopback port, and an image factory.

Used by the tests (through conftest fixtures) and by the benchmarks. Images are built through
jindr's own client upload API, so no Docker is needed to fill a registry.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from jindr_nb.client import RegistryClient
from jindr_nb.models import DOCKER_CONFIG, DOCKER_LIST, DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST

OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
INTOTO = "application/vnd.in-toto+json"


def registry_binary() -> str | None:
    """The CNCF registry binary: $JINDR_REGISTRY_BINARY, `registry` or Debian's `docker-registry`."""
    explicit = os.environ.get("JINDR_REGISTRY_BINARY")
    if explicit:
        return explicit
    return shutil.which("registry") or shutil.which("docker-registry")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


REGISTRY_CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
{delete}  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:{port}
{extra}"""


@dataclass
class LocalRegistry:
    """A registry process on 127.0.0.1 with its own storage directory."""

    workdir: Path
    port: int = 0
    extra_config: str = ""
    #: False: the registry's own default (no `storage.delete` section), where every DELETE is refused.
    deletes: bool = True
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def storage(self) -> Path:
        return self.workdir / "storage"

    def start(self) -> LocalRegistry:
        binary = registry_binary()
        if binary is None:
            raise RuntimeError("no registry binary: apt-get install docker-registry (or set JINDR_REGISTRY_BINARY)")
        self.port = self.port or free_port()
        self.storage.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.yml"
        delete = "  delete:\n    enabled: true\n" if self.deletes else ""
        config.write_text(
            REGISTRY_CONFIG.format(root=self.storage, port=self.port, extra=self.extra_config, delete=delete)
        )
        log = open(self.workdir / "registry.log", "ab")  # noqa: SIM115 - kept open for the process
        env = dict(os.environ, OTEL_TRACES_EXPORTER="none")
        self.proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log, env=env)
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry exited: {(self.workdir / 'registry.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"http://{self.address}/v2/", timeout=1).status_code in (200, 401):
                    return self
            except httpx.HTTPError:
                time.sleep(0.02)
        raise RuntimeError("registry did not answer within 15 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def start_registry(workdir: Path | None = None, extra_config: str = "", *, deletes: bool = True) -> LocalRegistry:
    workdir = Path(workdir or tempfile.mkdtemp(prefix="jindr-reg-"))
    return LocalRegistry(workdir, extra_config=extra_config, deletes=deletes).start()


def make_layer(size: int, rng: random.Random) -> tuple[bytes, str]:
    """A real gzipped tar holding one file of `size` random bytes; returns (blob, diff_id)."""
    payload = rng.randbytes(size)
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w") as tar:
        info = tarfile.TarInfo(f"data-{rng.getrandbits(32):08x}.bin")
        info.size = size
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    tar_bytes = tar_buf.getvalue()
    blob = gzip.compress(tar_bytes, compresslevel=1, mtime=0)
    return blob, "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canon(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass
class Pushed:
    """What the factory pushed: top digest, its media type, platform digests and tags."""

    repository: str
    digest: str
    media_type: str
    platforms: dict[str, str] = field(default_factory=dict)
    attestations: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    size: int = 0
    created: str = ""


class ImageFactory:
    """Builds real images in a registry through `RegistryClient`'s upload API."""

    def __init__(self, client: RegistryClient, seed: int = 1) -> None:
        self.client = client
        self.rng = random.Random(seed)

    def blob(self, repository: str, data: bytes, *, chunk_size: int | None = None) -> str:
        digest = _digest(data)
        if self.client.head_blob(repository, digest) is None:
            self.client.upload_blob(repository, data, digest, chunk_size=chunk_size)
        return digest

    def image_manifest(
        self,
        repository: str,
        platform: tuple[str, str, str] = ("linux", "amd64", ""),
        *,
        oci: bool = True,
        layers: int = 1,
        layer_size: int = 2048,
        created: str | None = None,
        shared_layers: list[tuple[bytes, str]] | None = None,
    ) -> tuple[bytes, str, int, str]:
        """Push layers + config + manifest by digest; return (raw, digest, size, created)."""
        os_, arch, variant = platform
        layer_type = OCI_LAYER if oci else DOCKER_LAYER
        made = list(shared_layers or []) + [make_layer(layer_size, self.rng) for _ in range(layers)]
        layer_descs, diff_ids = [], []
        for blob, diff_id in made:
            layer_descs.append({"mediaType": layer_type, "digest": self.blob(repository, blob), "size": len(blob)})
            diff_ids.append(diff_id)
        created = (
            created
            or f"2026-{self.rng.randint(1, 11):02d}-{self.rng.randint(1, 28):02d}T"
            f"{self.rng.randint(0, 23):02d}:{self.rng.randint(0, 59):02d}:00.123456789Z"
        )
        config = {
            "architecture": arch,
            "os": os_,
            "created": created,
            "config": {"Entrypoint": ["/bin/arch"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": created, "created_by": "jindr_nb test factory"}],
        }
        if variant:
            config["variant"] = variant
        config_raw = _canon(config)
        config_desc = {
            "mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
            "digest": self.blob(repository, config_raw),
            "size": len(config_raw),
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST if oci else DOCKER_MANIFEST,
            "config": config_desc,
            "layers": layer_descs,
        }
        raw = _canon(manifest)
        digest = self.client.put_manifest(repository, _digest(raw), raw, manifest["mediaType"])
        size = len(config_raw) + sum(d["size"] for d in layer_descs)
        return raw, digest, size, created

    def attestation(self, repository: str, subject_digest: str) -> tuple[bytes, str]:
        statement = _canon(
            {
                "_type": "https://in-toto.io/Statement/v0.1",
                "predicateType": "https://spdx.dev/Document",
                "subject": [{"name": "x", "digest": {"sha256": subject_digest.split(":")[1]}}],
            }
        )
        config_raw = _canon(
            {
                "architecture": "unknown",
                "os": "unknown",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [_digest(statement)]},
            }
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": self.blob(repository, config_raw), "size": len(config_raw)},
            "layers": [
                {
                    "mediaType": INTOTO,
                    "digest": self.blob(repository, statement),
                    "size": len(statement),
                    "annotations": {"in-toto.io/predicate-type": "https://spdx.dev/Document"},
                }
            ],
        }
        raw = _canon(manifest)
        return raw, self.client.put_manifest(repository, _digest(raw), raw, OCI_MANIFEST)

    def index(
        self,
        repository: str,
        tags: list[str] | str = "latest",
        platforms: tuple[tuple[str, str, str], ...] = (("linux", "amd64", ""), ("linux", "arm64", "")),
        *,
        oci: bool = True,
        attestations: bool | None = None,
        layers: int | tuple[int, int] = 1,
        layer_size: int = 2048,
    ) -> Pushed:
        """A multi-platform index (OCI, with attestations by default) or Docker manifest list."""
        tags = [tags] if isinstance(tags, str) else tags
        attestations = oci if attestations is None else attestations
        entries, atts = [], []
        pushed = Pushed(repository, "", OCI_INDEX if oci else DOCKER_LIST, tags=list(tags))
        newest = ""
        for plat in platforms:
            n = layers if isinstance(layers, int) else self.rng.randint(*layers)
            raw, digest, size, created = self.image_manifest(repository, plat, oci=oci, layers=n, layer_size=layer_size)
            newest = max(newest, created)
            pushed.size += size
            plat_json = {"architecture": plat[1], "os": plat[0]}
            if plat[2]:
                plat_json["variant"] = plat[2]
            entries.append(
                {
                    "mediaType": OCI_MANIFEST if oci else DOCKER_MANIFEST,
                    "digest": digest,
                    "size": len(raw),
                    "platform": plat_json,
                }
            )
            pushed.platforms["/".join(p for p in plat if p)] = digest
            if attestations:
                araw, adigest = self.attestation(repository, digest)
                atts.append(
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": adigest,
                        "size": len(araw),
                        "platform": {"architecture": "unknown", "os": "unknown"},
                        "annotations": {
                            "vnd.docker.reference.digest": digest,
                            "vnd.docker.reference.type": "attestation-manifest",
                        },
                    }
                )
                pushed.attestations.append(adigest)
        index = {"schemaVersion": 2, "mediaType": pushed.media_type, "manifests": entries + atts}
        raw = _canon(index)
        for tag in tags:
            pushed.digest = self.client.put_manifest(repository, tag, raw, pushed.media_type)
        pushed.created = newest
        return pushed

    def single(
        self,
        repository: str,
        tags: list[str] | str = "latest",
        *,
        oci: bool = False,
        platform: tuple[str, str, str] = ("linux", "amd64", ""),
        layers: int = 1,
        layer_size: int = 2048,
    ) -> Pushed:
        """A single-platform image (Docker schema 2 by default)."""
        tags = [tags] if isinstance(tags, str) else tags
        raw, digest, size, created = self.image_manifest(
            repository, platform, oci=oci, layers=layers, layer_size=layer_size
        )
        media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
        for tag in tags:
            self.client.put_manifest(repository, tag, raw, media_type)
        return Pushed(
            repository, digest, media_type, {"/".join(p for p in platform if p): digest}, [], list(tags), size, created
        )

    def image_with_history(
        self,
        repository: str,
        tags: list[str] | str,
        history: list[dict],
        *,
        platforms: tuple[tuple[str, str, str], ...] = (("linux", "amd64", ""),),
        oci: bool = True,
        layers: list[tuple[bytes, str]] | None = None,
        config: dict | None = None,
        created: str = "2026-03-01T10:00:00Z",
        legacy: bool = False,
    ) -> Pushed:
        """An image whose config history is exactly `history` (entries written as given, so
        `"empty_layer": true` steps and legacy Docker quirks are the caller's to choose), with one
        new random layer per entry not marked `"empty_layer": true` — or exactly `layers` (blob,
        diff_id) when given: shared with other images, or deliberately not lining up with the
        history. `config` is the runtime section (Env, Labels, Cmd, ...). `legacy` adds what old
        Docker wrote besides (`container_config`, `docker_version`, `container`). Several
        `platforms` make an index (a Docker list unless `oci`) over one image each."""
        tags = [tags] if isinstance(tags, str) else tags
        steps = sum(1 for entry in history if entry.get("empty_layer") is not True)
        entries = []
        pushed = Pushed(repository, "", "", tags=list(tags), created=created)
        for plat in platforms:
            made = layers if layers is not None else [make_layer(1024, self.rng) for _ in range(steps)]
            layer_type = OCI_LAYER if oci else DOCKER_LAYER
            layer_descs = [
                {"mediaType": layer_type, "digest": self.blob(repository, blob), "size": len(blob)} for blob, _ in made
            ]
            doc: dict = {"architecture": plat[1], "os": plat[0]}
            if plat[2]:
                doc["variant"] = plat[2]
            doc.update(
                created=created,
                config=dict(config or {}),
                rootfs={"type": "layers", "diff_ids": [diff_id for _, diff_id in made]},
                history=history,
            )
            if legacy:
                doc.update(
                    container="3f2a9c0e8d1b",
                    docker_version="1.13.1",
                    container_config={**(config or {}), "Cmd": ["/bin/sh", "-c", "#(nop) ", "CMD []"]},
                )
            config_raw = _canon(doc)
            manifest = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST if oci else DOCKER_MANIFEST,
                "config": {
                    "mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
                    "digest": self.blob(repository, config_raw),
                    "size": len(config_raw),
                },
                "layers": layer_descs,
            }
            raw = _canon(manifest)
            digest = self.client.put_manifest(repository, _digest(raw), raw, manifest["mediaType"])
            pushed.platforms["/".join(p for p in plat if p)] = digest
            pushed.size += len(config_raw) + sum(d["size"] for d in layer_descs)
            platform_json = {"architecture": plat[1], "os": plat[0], **({"variant": plat[2]} if plat[2] else {})}
            entries.append((raw, manifest["mediaType"], digest, platform_json))
        if len(platforms) == 1:
            raw, pushed.media_type, pushed.digest, _ = entries[0]
        else:
            pushed.media_type = OCI_INDEX if oci else DOCKER_LIST
            index = {
                "schemaVersion": 2,
                "mediaType": pushed.media_type,
                "manifests": [
                    {"mediaType": media_type, "digest": digest, "size": len(child), "platform": platform_json}
                    for child, media_type, digest, platform_json in entries
                ],
            }
            raw = _canon(index)
        for tag in tags:
            pushed.digest = self.client.put_manifest(repository, tag, raw, pushed.media_type)
        return pushed

    def schema1_in_storage(
        self, storage: Path, repository: str, tag: str, *, layer_size: int = 2048
    ) -> tuple[str, str]:
        """A tagged Docker schema 1 image (unsigned, as old registries kept them) written straight into
        a registry's storage — its API no longer takes one; returns (manifest digest, layer digest)."""
        v2 = Path(storage) / "docker" / "registry" / "v2"

        def put_blob(data: bytes) -> str:
            digest = _digest(data)
            path = v2 / "blobs" / "sha256" / digest[7:9] / digest[7:] / "data"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            return digest

        def link(path: Path, digest: str) -> None:
            path.mkdir(parents=True, exist_ok=True)
            (path / "link").write_text(digest)

        layer = put_blob(make_layer(layer_size, self.rng)[0])
        v1 = {"id": f"{self.rng.getrandbits(256):064x}", "created": "2015-01-01T00:00:00Z"}
        doc = {
            "schemaVersion": 1,
            "name": repository,
            "tag": tag,
            "architecture": "amd64",
            "fsLayers": [{"blobSum": layer}],
            "history": [{"v1Compatibility": json.dumps(v1)}],
        }
        digest = put_blob(json.dumps(doc, indent=3).encode())
        base = v2 / "repositories" / repository
        link(base / "_layers" / "sha256" / layer[7:], layer)
        link(base / "_manifests" / "revisions" / "sha256" / digest[7:], digest)
        link(base / "_manifests" / "tags" / tag / "current", digest)
        link(base / "_manifests" / "tags" / tag / "index" / "sha256" / digest[7:], digest)
        return digest, layer


def fill_storage(root: Path, repos: int, tags: int, *, prefix: str = "load") -> dict[str, str]:
    """Write `repos` x `tags` small images straight into a registry storage tree (the registry's own
    layout), for load tests that would otherwise spend minutes pushing. Start the registry after.

    Returns {"repo:tag": digest}. Every tag is its own image (own config, so own digest) over one
    shared layer.
    """
    v2 = root / "docker" / "registry" / "v2"

    def put_blob(data: bytes) -> str:
        digest = _digest(data)
        hexpart = digest.split(":", 1)[1]
        path = v2 / "blobs" / "sha256" / hexpart[:2] / hexpart / "data"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return digest

    def link(path: Path, digest: str) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / "link").write_text(digest)

    layer, diff_id = make_layer(256, random.Random(repos * 1000 + tags))
    layer_digest = put_blob(layer)
    found: dict[str, str] = {}
    for i in range(repos):
        repo = f"{prefix}/r{i:04d}"
        base = v2 / "repositories" / repo
        link(base / "_layers" / "sha256" / layer_digest[7:], layer_digest)
        for t in range(tags):
            config = _canon(
                {
                    "architecture": "amd64",
                    "os": "linux",
                    "created": f"2026-01-01T00:{t:02d}:{i % 60:02d}Z",
                    "config": {"Labels": {"repo": repo, "tag": str(t)}},
                    "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                }
            )
            config_digest = put_blob(config)
            link(base / "_layers" / "sha256" / config_digest[7:], config_digest)
            manifest = _canon(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
                    "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": len(layer)}],
                }
            )
            digest = put_blob(manifest)
            link(base / "_manifests" / "revisions" / "sha256" / digest[7:], digest)
            tag_dir = base / "_manifests" / "tags" / f"v{t}"
            link(tag_dir / "current", digest)
            link(tag_dir / "index" / "sha256" / digest[7:], digest)
            found[f"{repo}:v{t}"] = digest
    return found


def write_counts(stem: str, **record: object) -> None:
    """Record how many cases a reliability module tried: tests/.counts/STEM.json (the README's table)."""
    import json

    out = Path(__file__).parent / ".counts"
    out.mkdir(exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n")
