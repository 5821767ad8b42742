"""Images made by the real clients users push with: Podman (`podman manifest push --all`, OCI and
Docker v2s2 formats) and skopeo (`skopeo copy --all`), all from Debian's packages.

Podman builds `FROM scratch` + `COPY` images for linux/amd64 and linux/arm64 (no emulation needed),
with storage of its own under the test's directory (vfs driver), so nothing touches the machine's
Podman storage. With CI set a missing tool fails the test instead of skipping it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

PLATFORMS = ("amd64", "arm64")


def need_tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = f"{name} is missing: apt-get install {package} (make test does)"
        if os.environ.get("CI"):
            pytest.fail(f"{message} — CI needs it")
        pytest.skip(message)
    return found


@dataclass
class Podman:
    """A private Podman store holding one two-platform manifest list, `localhost/jindr-test:multi`."""

    root: Path

    def run(self, *args: str, timeout: float = 120) -> str:
        cmd = [
            "podman",
            "--root",
            str(self.root / "root"),
            "--runroot",
            str(self.root / "run"),
            "--storage-driver",
            "vfs",
            *args,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_tool_env(self.root))
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(args[:3])} failed: {done.stderr.strip()[-800:]}")
        return done.stdout

    def build(self) -> Podman:
        self.run("manifest", "create", "localhost/jindr-test:multi")
        for arch in PLATFORMS:
            context = self.root / f"ctx-{arch}"
            context.mkdir(parents=True)
            (context / "arch.txt").write_text(f"built for linux/{arch}\n")
            (context / "Containerfile").write_text("FROM scratch\nCOPY arch.txt /arch.txt\n")
            self.run("build", "-q", "--platform", f"linux/{arch}", "-t", f"localhost/jindr-test:{arch}", str(context))
            self.run("manifest", "add", "localhost/jindr-test:multi", f"containers-storage:localhost/jindr-test:{arch}")
        return self

    def push(self, registry: str, repository: str, tag: str, fmt: str) -> None:
        """`podman manifest push --all --format FMT` (oci or v2s2) to a plain-HTTP registry."""
        self.run(
            "manifest",
            "push",
            "--all",
            "--format",
            fmt,
            "--tls-verify=false",
            "localhost/jindr-test:multi",
            f"docker://{registry}/{repository}:{tag}",
        )


def _tool_env(workdir: Path) -> dict[str, str]:
    """Podman's and skopeo's environment: an empty auth file of their own (the tests point
    DOCKER_CONFIG at a directory that does not exist, which they take for a missing auth file)."""
    auth = workdir / "auth.json"
    if not auth.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        auth.write_text("{}")
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_CONFIG"}
    return {**env, "REGISTRY_AUTH_FILE": str(auth)}


def skopeo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = _tool_env(Path(tempfile.gettempdir()) / "jindr-test-skopeo")
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=timeout, env=env)


def skopeo_copy_all(source: str, destination: str) -> None:
    """`skopeo copy --all` between two docker:// references on plain-HTTP registries."""
    done = skopeo(
        "copy",
        "--all",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        f"docker://{source}",
        f"docker://{destination}",
    )
    if done.returncode != 0:
        raise AssertionError(f"skopeo copy --all {source} {destination} failed: {done.stderr.strip()[-800:]}")


def pulls_whole(reference: str, into: Path) -> subprocess.CompletedProcess[str]:
    """`skopeo copy --all docker://REF oci:DIR`: every manifest and blob the tag reaches must be there."""
    return skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{reference}", f"oci:{into}:x")


def raw_manifest(reference: str) -> dict:
    done = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{reference}")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
