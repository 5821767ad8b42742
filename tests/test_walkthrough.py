"""The seed's own walkthrough, for real: docker build, tag, push, list, stop, start, pull back."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from rig import ImageFactory, free_port

from jindr_nb.client import RegistryClient


def docker(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
    return done.stdout


@pytest.fixture()
def ip() -> InteractiveShell:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "jindr_nb")
    return shell


@pytest.mark.parametrize("runtime", ["docker", "process"])
def test_seed_walkthrough(runtime: str, docker_engine, ip: InteractiveShell, tmp_path: Path) -> None:
    _, image = docker_engine
    if not shutil.which("docker"):
        pytest.fail("the docker CLI is missing (apt-get install docker.io)")
    address = f"localhost:{free_port()}"
    storage = tmp_path / "storage"
    extra = f"--image {image}" if runtime == "docker" else ""
    started = ip.run_line_magic("jindr", f"-r {address} start --runtime {runtime} -d {storage} {extra}")
    assert list(started.status) == ["running"]
    try:
        context = tmp_path / "ctx"
        context.mkdir()
        (context / "arch.txt").write_text(f"built for {address}\n")
        (context / "Dockerfile").write_text("FROM scratch\nCOPY arch.txt /arch.txt\n")
        tag = f"archy-{runtime}-{address.rsplit(':', 1)[1]}"
        docker("build", "-q", "-t", tag, ".", cwd=context)
        docker("tag", tag, f"{address}/archy")
        docker("push", f"{address}/archy")
        listed = ip.run_line_magic("jindr", f"-r {address} lsi")
        assert list(zip(listed.repository, listed.tag, strict=True)) == [("archy", "latest")]
        assert list(listed.platforms) == [["linux/amd64"]]
        pushed_digest = listed.digest.iloc[0]

        ip.run_line_magic("jindr", f"-r {address} stop")
        ip.run_line_magic("jindr", f"-r {address} start --runtime {runtime} -d {storage} {extra}")
        again = ip.run_line_magic("jindr", f"-r {address} lsi")
        assert list(again.digest) == [pushed_digest]  # persisted across stop/start

        docker("rmi", f"{address}/archy", tag)
        docker("pull", f"{address}/archy")
        repo_digests = docker("image", "inspect", "--format", "{{json .RepoDigests}}", f"{address}/archy")
        assert pushed_digest in repo_digests
    finally:
        ip.run_line_magic("jindr", f"-r {address} stop -G")
        subprocess.run(["docker", "rmi", "-f", f"{address}/archy"], capture_output=True)


def test_docker_manifest_multi_platform(docker_engine, ip: InteractiveShell, tmp_path: Path) -> None:
    _, image = docker_engine
    address = f"localhost:{free_port()}"
    ip.run_line_magic("jindr", f"-r {address} start --runtime docker --image {image} -d {tmp_path / 's'}")
    try:
        with RegistryClient(address) as client:
            f = ImageFactory(client, seed=21)
            amd = f.single("multi", "amd64", platform=("linux", "amd64", ""))
            arm = f.single("multi", "arm64", platform=("linux", "arm64", "v8"))
        docker(
            "manifest", "create", "--insecure", f"{address}/multi:1", f"{address}/multi:amd64", f"{address}/multi:arm64"
        )
        docker("manifest", "push", "--insecure", "--purge", f"{address}/multi:1")
        frame = ip.run_line_magic("jindr", f"-r {address} inspect multi:1")
        assert list(frame.kind) == ["index", "image", "image"]
        assert set(frame.platform[1:]) == {"linux/amd64", "linux/arm64/v8"}
        assert set(frame.digest[1:]) == {amd.digest, arm.digest}
    finally:
        ip.run_line_magic("jindr", f"-r {address} stop -G")
