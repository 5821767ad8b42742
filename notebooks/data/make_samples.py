"""Write the small sample images the notebooks load when no Docker is around (OCI image layouts).

Deterministic (fixed timestamps, gzip without mtime), so re-running gives the same digests.
  archy/    — a two-platform index (linux/amd64, linux/arm64) with a BuildKit-style attestation
  tools/    — a single-platform image, two tags in one layout (1.0 and latest)
  webapp/   — a two-platform image sharing its base layer with archy (for `du`)
Run: python notebooks/data/make_samples.py
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CREATED = "2026-11-01T12:00:00Z"


def _compact(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o755
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, compresslevel=9, mtime=0), _digest(tar_bytes)


class Layout:
    def __init__(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)
        (path / "blobs" / "sha256").mkdir(parents=True)
        (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self.path = path
        self.entries: list[dict] = []

    def blob(self, data: bytes) -> dict:
        digest = _digest(data)
        (self.path / "blobs" / "sha256" / digest[7:]).write_bytes(data)
        return {"digest": digest, "size": len(data)}

    def image(self, arch: str, layers: list[dict[str, bytes]], entrypoint: list[str]) -> dict:
        descs, diff_ids = [], []
        for files in layers:
            blob, diff_id = _layer(files)
            descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **self.blob(blob)})
            diff_ids.append(diff_id)
        config = _compact({"architecture": arch, "os": "linux", "created": CREATED,
                           "config": {"Entrypoint": entrypoint},
                           "rootfs": {"type": "layers", "diff_ids": diff_ids},
                           "history": [{"created": CREATED, "created_by": "make_samples.py"}]})
        manifest = _compact({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                             "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                        **self.blob(config)},
                             "layers": descs})
        return {"mediaType": "application/vnd.oci.image.manifest.v1+json", **self.blob(manifest),
                "platform": {"architecture": arch, "os": "linux"}}

    def attestation(self, subject: dict) -> dict:
        statement = _compact({"_type": "https://in-toto.io/Statement/v0.1",
                              "predicateType": "https://spdx.dev/Document",
                              "subject": [{"name": "sample", "digest": {"sha256": subject["digest"][7:]}}],
                              "predicate": {"spdxVersion": "SPDX-2.3", "name": "sample"}})
        config = _compact({"architecture": "unknown", "os": "unknown", "config": {},
                           "rootfs": {"type": "layers", "diff_ids": [_digest(statement)]}})
        manifest = _compact({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                             "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                        **self.blob(config)},
                             "layers": [{"mediaType": "application/vnd.in-toto+json", **self.blob(statement),
                                         "annotations": {"in-toto.io/predicate-type": "https://spdx.dev/Document"}}]})
        return {"mediaType": "application/vnd.oci.image.manifest.v1+json", **self.blob(manifest),
                "platform": {"architecture": "unknown", "os": "unknown"},
                "annotations": {"vnd.docker.reference.digest": subject["digest"],
                                "vnd.docker.reference.type": "attestation-manifest"}}

    def index(self, children: list[dict]) -> dict:
        raw = _compact({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": children})
        return {"mediaType": "application/vnd.oci.image.index.v1+json", **self.blob(raw)}

    def tag(self, desc: dict, name: str) -> None:
        entry = {k: v for k, v in desc.items() if k != "platform"}
        self.entries.append({**entry, "annotations": {"org.opencontainers.image.ref.name": name}})

    def close(self) -> None:
        (self.path / "index.json").write_bytes(_compact({"schemaVersion": 2,
                                                         "mediaType": "application/vnd.oci.image.index.v1+json",
                                                         "manifests": self.entries}))


BASE = {"etc/os-release": b'NAME="jindr sample base"\nID=sample\n', "bin/README": b"sample base layer\n" * 64}


def main() -> None:
    archy = Layout(HERE / "archy")
    amd = archy.image("amd64", [BASE, {"arch.txt": b"x86_64\n"}], ["/bin/arch"])
    arm = archy.image("arm64", [BASE, {"arch.txt": b"aarch64\n"}], ["/bin/arch"])
    archy.tag(archy.index([amd, arm, archy.attestation(amd), archy.attestation(arm)]), "archy:latest")
    archy.close()

    tools = Layout(HERE / "tools")
    one = tools.image("amd64", [{"usr/bin/tool": b"#!/bin/sh\necho tool 1.0\n"}], ["/usr/bin/tool"])
    tools.tag(one, "tools:1.0")
    tools.tag(one, "tools:latest")
    tools.close()

    web = Layout(HERE / "webapp")
    children = [web.image(arch, [BASE, {"srv/app.py": f"print('hello from {arch}')\n".encode() * 40}],
                          ["python3", "/srv/app.py"]) for arch in ("amd64", "arm64")]
    web.tag(web.index(children), "webapp:2.0")
    web.close()
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    print(f"samples written under {HERE} ({total} bytes)")


if __name__ == "__main__":
    main()
