"""Real container engines for the tests: dockerd (started when none answers) and Podman's API.

No image can be pulled here, so the registry image is built offline from Debian's registry
binary: a root filesystem with the binary, its libc and loader, and a config, imported with the
official image's entrypoint and default command (`serve /etc/docker/registry/config.yml`).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import docker

TEST_IMAGE = "localhost/jindr-test/registry:2.8.2"  # fully qualified: Docker and Podman agree on it

IMAGE_CONFIG = b"""version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
"""


def _engine(base_url: str | None = None) -> docker.DockerClient | None:
    from jindr_nb.runtime.docker import unix_engine_pings

    # The SDK leaves its socket open when the engine does not answer while it builds a client.
    if not unix_engine_pings(base_url[len("unix://") :] if base_url else "/var/run/docker.sock"):
        return None
    try:
        client = docker.DockerClient(base_url=base_url, timeout=60) if base_url else docker.from_env(timeout=60)
    except Exception:  # noqa: BLE001 - any failure means "not answering"
        return None
    try:
        client.ping()
        return client
    except Exception:  # noqa: BLE001
        client.close()
        return None


def ensure_dockerd(log_dir: Path) -> docker.DockerClient | None:
    """The Docker engine at the default socket, starting `dockerd` (as root) when none answers."""
    client = _engine()
    if client is not None or os.geteuid() != 0 or not shutil.which("dockerd"):
        return client
    with open(log_dir / "dockerd.log", "ab") as log:
        # Detached (`setsid -f` forks and returns at once): dockerd outlives the test run as a daemon
        # and is not a child this process must reap.
        subprocess.run(["setsid", "-f", "dockerd"], stdout=log, stderr=log, check=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        client = _engine()
        if client is not None:
            return client
        time.sleep(0.5)
    return None


def ensure_podman(workdir: Path) -> tuple[docker.DockerClient, str, subprocess.Popen[bytes]] | None:
    """Podman's Docker-compatible API on a private socket, with runc (crun fails on setrlimit here)."""
    if not shutil.which("podman"):
        return None
    import resource

    # Podman asks for RLIMIT_NOFILE/NPROC above this sandbox's hard limits and the container fails
    # to start ("error setting rlimit"): ask for what the machine allows instead.
    nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 16384)
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 4096)
    conf = workdir / "containers.conf"
    conf.write_text(
        f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        '[engine]\nruntime = "runc"\n'
    )
    sock = workdir / "podman.sock"
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    with open(workdir / "podman.log", "ab") as log:
        proc = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{sock}"],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        client = _engine(f"unix://{sock}") if sock.exists() else None
        if client is not None:
            return client, f"unix://{sock}", proc
        time.sleep(0.2)
    proc.terminate()
    return None


def _add_file(tar: tarfile.TarFile, source: str | Path, arcname: str, mode: int = 0o755) -> None:
    data = Path(os.path.realpath(source)).read_bytes()
    info = tarfile.TarInfo(arcname)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, arcname: str) -> None:
    info = tarfile.TarInfo(arcname)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
    tar.addfile(info)


def registry_rootfs(binary: str) -> bytes:
    """A tar of the smallest root filesystem the dynamically linked registry binary runs in."""
    libs = []
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            libs.append(path)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for directory in (
            "bin",
            "etc",
            "etc/docker",
            "etc/docker/registry",
            "var",
            "var/lib",
            "var/lib/registry",
            "tmp",
            "lib",
            "lib64",
            "lib/x86_64-linux-gnu",
        ):
            _add_dir(tar, directory)
        _add_file(tar, binary, "bin/registry")
        for lib in libs:
            _add_file(tar, lib, lib.lstrip("/"))
        for name, data in (
            ("etc/docker/registry/config.yml", IMAGE_CONFIG),
            ("etc/hosts", b"127.0.0.1 localhost\n::1 localhost\n"),
            ("etc/nsswitch.conf", b"hosts: files dns\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build_registry_image(client: docker.DockerClient, binary: str, tag: str = TEST_IMAGE) -> str:
    """Import the offline registry image into `client`'s engine (once)."""
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    repository, _, version = tag.rpartition(":")
    client.api.import_image_from_data(
        registry_rootfs(binary),
        repository=repository,
        tag=version,
        changes=[
            'ENTRYPOINT ["/bin/registry"]',
            'CMD ["serve", "/etc/docker/registry/config.yml"]',
            "EXPOSE 5000",
            'VOLUME ["/var/lib/registry"]',
            "LABEL org.opencontainers.image.version=2.8.2",
        ],
    )
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        # Podman's compatible API names an import `:latest` whatever tag was asked for.
        client.images.get(f"{repository}:latest").tag(repository, version)
        client.images.get(tag)
    return tag
