"""Write the small sample images the notebooks load when no Docker is around (OCI image layouts).

Deterministic (fixed timestamps, gzip without mtime, layer bytes from a seeded hash), so re-running
gives the same digests. The images look like what `docker buildx build` pushes: configs carry Env,
Labels, Cmd and a `history` of Dockerfile steps (ENV, LABEL, CMD ... as empty layers), and images
built from the same base share its layers byte for byte.
  archy/    — archy:latest, a two-platform index (linux/amd64, linux/arm64) with BuildKit-style attestations
  tools/    — tools:1.0 and tools:latest, one single-platform image from scratch (shares nothing)
  webapp/   — webapp:2.0, a two-platform Python service on the same base layer as archy
  releases/ — older builds, one layout holding several images (each named repository:tag):
              webapp:1.0 and webapp:1.1 (a rebuild: the app layer, APP_VERSION and the version label
              changed, everything else identical) and api:1.4 (single platform, same base and Python)
Run: python notebooks/data/make_samples.py
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _compact(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _noise(seed: str, size: int) -> bytes:
    """`size` bytes that do not compress (like a binary), the same on every run."""
    return hashlib.shake_256(seed.encode()).digest(size)


def _layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o755
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, compresslevel=9, mtime=0), _digest(tar_bytes)


@dataclass(frozen=True)
class Step:
    """One Dockerfile step as a config's `history` records it; `files` is its layer (None: an empty layer)."""

    created: str
    created_by: str
    files: dict[str, bytes] | None = None


@dataclass
class Build:
    """What a Dockerfile produced for one platform: its steps and the final image config."""

    arch: str
    steps: list[Step]
    config: dict = field(default_factory=dict)

    def then(self, *steps: Step, **config: object) -> Build:
        """A build FROM this one: its steps first, then `steps`; config keys replace this one's."""
        merged = {k: v for k, v in {**self.config, **config}.items() if v is not None}  # None: unset
        return Build(self.arch, [*self.steps, *steps], merged)


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

    def image(self, build: Build) -> dict:
        descs, diff_ids = [], []
        for step in build.steps:
            if step.files is None:
                continue
            blob, diff_id = _layer(step.files)
            descs.append({"mediaType": OCI_LAYER, **self.blob(blob)})
            diff_ids.append(diff_id)
        history = []
        for step in build.steps:
            entry = {"created": step.created, "created_by": step.created_by}
            if step.files is None:
                entry["empty_layer"] = True
            else:
                entry["comment"] = "buildkit.dockerfile.v0"
            history.append(entry)
        config = _compact(
            {
                "architecture": build.arch,
                "os": "linux",
                "created": build.steps[-1].created,
                "config": build.config,
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": history,
            }
        )
        manifest = _compact(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, **self.blob(config)},
                "layers": descs,
            }
        )
        return {
            "mediaType": OCI_MANIFEST,
            **self.blob(manifest),
            "platform": {"architecture": build.arch, "os": "linux"},
        }

    def attestation(self, subject: dict) -> dict:
        statement = _compact(
            {
                "_type": "https://in-toto.io/Statement/v0.1",
                "predicateType": "https://spdx.dev/Document",
                "subject": [{"name": "sample", "digest": {"sha256": subject["digest"][7:]}}],
                "predicate": {"spdxVersion": "SPDX-2.3", "name": "sample"},
            }
        )
        config = _compact(
            {
                "architecture": "unknown",
                "os": "unknown",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [_digest(statement)]},
            }
        )
        layer = {
            "mediaType": "application/vnd.in-toto+json",
            **self.blob(statement),
            "annotations": {"in-toto.io/predicate-type": "https://spdx.dev/Document"},
        }
        manifest = _compact(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, **self.blob(config)},
                "layers": [layer],
            }
        )
        return {
            "mediaType": OCI_MANIFEST,
            **self.blob(manifest),
            "platform": {"architecture": "unknown", "os": "unknown"},
            "annotations": {
                "vnd.docker.reference.digest": subject["digest"],
                "vnd.docker.reference.type": "attestation-manifest",
            },
        }

    def index(self, children: list[dict]) -> dict:
        raw = _compact({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children})
        return {"mediaType": OCI_INDEX, **self.blob(raw)}

    def tag(self, desc: dict, name: str) -> None:
        entry = {k: v for k, v in desc.items() if k != "platform"}
        self.entries.append({**entry, "annotations": {"org.opencontainers.image.ref.name": name}})

    def close(self) -> None:
        self.path.joinpath("index.json").write_bytes(
            _compact({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.entries})
        )


# The base every image but tools starts from: one rootfs layer for both platforms, as a distribution's
# multi-arch base would be if its files did not depend on the CPU (it keeps the samples small).
BASE_LAYER = {
    "etc/os-release": b'NAME="jindr sample base"\nID=sample\nVERSION_ID=3.20\n',
    "bin/busybox": _noise("base busybox", 2048),
}


def base(arch: str) -> Build:
    return Build(
        arch,
        [
            Step("2026-09-01T08:00:00Z", "ADD sample-minirootfs-3.20.tar.gz / # buildkit", BASE_LAYER),
            Step("2026-09-01T08:00:00Z", 'CMD ["/bin/sh"]'),
        ],
        {"Env": [PATH_ENV], "Cmd": ["/bin/sh"]},
    )


def python(arch: str) -> Build:
    """The Python runtime on the base: its layer differs per platform (compiled code)."""
    runtime = {"usr/bin/python3": _noise(f"python3 {arch}", 1024), "usr/lib/python3.12/os.py": b"import sys\n" * 30}
    return base(arch).then(
        Step("2026-09-10T09:30:00Z", "ENV PYTHONUNBUFFERED=1"),
        Step("2026-09-10T09:30:00Z", "RUN /bin/sh -c apk add --no-cache python3 py3-pip # buildkit", runtime),
        Env=[PATH_ENV, "PYTHONUNBUFFERED=1"],
        Cmd=["python3"],
    )


def service(arch: str, name: str, version: str, built: tuple[str, str], packages: tuple[str, ...], app: bytes) -> Build:
    """A Python service: dependencies, then code, then version ENV and LABEL, user, port and command.

    `built` is (when the dependency steps ran, when the rest ran): a rebuild that finds them in the
    build cache keeps their layers and their original times, as BuildKit does.
    """
    cached, created = built
    requirements = "".join(f"{p.replace('-', '==', 1)}\n" for p in packages).encode()
    deps = {f"usr/lib/python3.12/site-packages/{p}/__init__.py": _noise(f"package {p}", 256) for p in packages}
    return python(arch).then(
        Step(cached, "WORKDIR /srv"),
        Step(cached, "COPY requirements.txt /srv/ # buildkit", {"srv/requirements.txt": requirements}),
        Step(cached, "RUN /bin/sh -c pip install --no-cache-dir -r requirements.txt # buildkit", deps),
        Step(created, "COPY app/ /srv/app/ # buildkit", {f"srv/app/{name}.py": app}),
        Step(created, f"ENV APP_VERSION={version}"),
        Step(created, f"LABEL org.opencontainers.image.version={version}"),
        Step(created, "USER app"),
        Step(created, "EXPOSE map[8080/tcp:{}]"),
        Step(created, f'CMD ["python3", "-m", "app.{name}"]'),
        Env=[PATH_ENV, "PYTHONUNBUFFERED=1", f"APP_VERSION={version}"],
        Cmd=["python3", "-m", f"app.{name}"],
        WorkingDir="/srv",
        User="app",
        ExposedPorts={"8080/tcp": {}},
        Labels={
            "org.opencontainers.image.source": f"https://git.example.com/team/{name}",
            "org.opencontainers.image.title": name,
            "org.opencontainers.image.version": version,
        },
    )


NOV, OCT_1 = "2026-11-01T12:00:00Z", "2026-10-01T09:00:00Z"
WEB_DEPS_1 = ("flask-3.0.3", "jinja2-3.1.4")
WEB_DEPS_2 = ("flask-3.1.0", "jinja2-3.1.4", "gunicorn-23.0")


def webapp(arch: str, version: str, built: tuple[str, str], deps: tuple[str, ...]) -> Build:
    app = f"VERSION = {version!r}\n\ndef main():\n    print('webapp', VERSION)\n".encode() * 4
    return service(arch, "webapp", version, built, deps, app)


def main() -> None:
    archy = Layout(HERE / "archy")
    built = {
        arch: archy.image(
            base(arch).then(
                Step(NOV, "COPY arch.txt / # buildkit", {"arch.txt": f"{uname}\n".encode()}),
                Step(NOV, 'ENTRYPOINT ["/bin/arch"]'),
                Entrypoint=["/bin/arch"],
                Cmd=None,
            )
        )
        for arch, uname in (("amd64", "x86_64"), ("arm64", "aarch64"))
    }
    amd, arm = built["amd64"], built["arm64"]
    archy.tag(archy.index([amd, arm, archy.attestation(amd), archy.attestation(arm)]), "archy:latest")
    archy.close()

    tools = Layout(HERE / "tools")
    tool = {"usr/bin/tool": b"#!/bin/sh\necho tool 1.0\n"}
    one = tools.image(
        Build(
            "amd64",
            [
                Step("2026-08-01T10:00:00Z", "COPY tool /usr/bin/tool # buildkit", tool),
                Step("2026-08-01T10:00:00Z", 'ENTRYPOINT ["/usr/bin/tool"]'),
            ],
            {"Entrypoint": ["/usr/bin/tool"]},
        )
    )
    tools.tag(one, "tools:1.0")
    tools.tag(one, "tools:latest")
    tools.close()

    web = Layout(HERE / "webapp")
    children = [web.image(webapp(arch, "2.0", (NOV, NOV), WEB_DEPS_2)) for arch in ("amd64", "arm64")]
    web.tag(web.index(children), "webapp:2.0")
    web.close()

    releases = Layout(HERE / "releases")
    for version, built in (("1.0", (OCT_1, OCT_1)), ("1.1", (OCT_1, "2026-10-15T16:20:00Z"))):
        children = [releases.image(webapp(arch, version, built, WEB_DEPS_1)) for arch in ("amd64", "arm64")]
        releases.tag(releases.index(children), f"webapp:{version}")
    app = b"from http.server import HTTPServer\n\ndef main():\n    print('api 1.4')\n" * 3
    api = service("amd64", "api", "1.4", ("2026-10-20T11:45:00Z",) * 2, ("fastapi-0.115", "pydantic-2.9"), app)
    releases.tag(releases.image(api), "api:1.4")
    releases.close()

    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file() and p.suffix != ".py")
    print(f"samples written under {HERE} ({total} bytes)")


if __name__ == "__main__":
    main()
