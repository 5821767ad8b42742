"""Every notebook runs top to bottom in a real kernel, with Docker and without; and from Binder's files."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from rig import free_port

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
ALL = ["quickstart.ipynb", "multi-platform.ipynb", "cleanup.ipynb", "analysis.ipynb"]


def test_notebooks_are_committed_without_outputs() -> None:
    for name in ALL:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")


def _execute(name: str) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def _text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.extend(str(v) for k, v in out.get("data", {}).items() if k in ("text/plain", "text/html"))
    return "\n".join(parts)


@pytest.fixture(params=["docker", "no-docker"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    if request.param == "docker":
        _, image = request.getfixturevalue("docker_engine")
        monkeypatch.delenv("DOCKER_HOST", raising=False)
        monkeypatch.setenv("JINDR_REGISTRY_IMAGE", image)
    else:
        monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    monkeypatch.setenv("JINDR_REGISTRY", f"localhost:{free_port()}")
    monkeypatch.setenv("JINDR_STORAGE", str(tmp_path / "storage"))
    return request.param


@pytest.mark.parametrize("name", ALL)
def test_notebook_runs(name: str, engine: str) -> None:
    nb = _execute(name)
    text = _text(nb)
    runtime = "docker" if engine == "docker" else "process"
    assert f">{runtime}<" in text or f" {runtime} " in text  # the start cell's row names the runtime chosen
    if name == "quickstart.ipynb":
        assert "linux/amd64" in text and "attestation" in text and "reclaimed" in text
        if engine == "docker":
            assert "hello" in text  # pushed with docker
    if name == "analysis.ipynb":
        assert "shared_size" in text and "gc_bytes" in text and "(on disk)" not in text
    from jindr_run import jindr

    assert jindr("-r", os.environ["JINDR_REGISTRY"], "status").ok is (name == "cleanup.ipynb")
    if name == "cleanup.ipynb":
        jindr("-r", os.environ["JINDR_REGISTRY"], "stop", "-G")


def test_binder_environment_runs_the_notebooks_without_docker(tmp_path: Path) -> None:
    env_dir = tmp_path / "binder-venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", str(ROOT / "binder" / "requirements.txt"), "nbconvert"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    post = subprocess.run(
        ["bash", str(ROOT / "binder" / "postBuild")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PATH": f"{env_dir / 'bin'}:{os.environ['PATH']}"},
    )
    assert post.returncode == 0, post.stderr[-2000:]
    env = {
        **os.environ,
        "PATH": f"{env_dir / 'bin'}:{os.environ['PATH']}",
        "DOCKER_HOST": "unix:///nonexistent.sock",
        "JINDR_REGISTRY": f"localhost:{free_port()}",
        "JINDR_STORAGE": str(tmp_path / "storage"),
    }
    for name in ALL:
        out = tmp_path / name
        done = subprocess.run(
            [
                str(env_dir / "bin" / "jupyter"),
                "nbconvert",
                "--to",
                "notebook",
                "--execute",
                f"--output={out}",
                str(NOTEBOOKS / name),
            ],
            cwd=NOTEBOOKS,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "process" in out.read_text()
    subprocess.run(
        [str(env_dir / "bin" / "jindr"), "-r", env["JINDR_REGISTRY"], "stop", "-G"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert sys.executable not in str(python)
