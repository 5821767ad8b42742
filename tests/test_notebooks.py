"""Every notebook runs top to bottom in a real kernel, with Docker and without; and from Binder's files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import venv
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from rig import free_port

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
ALL = ["quickstart.ipynb", "multi-platform.ipynb", "cleanup.ipynb", "analysis.ipynb"]
TEAM = "team.ipynb"  # needs moto's S3 server (a test dependency), so not in Binder's run of ALL


def test_notebooks_are_committed_without_outputs() -> None:
    for name in [*ALL, TEAM]:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")


def _execute(name: str) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def _text(nb: nbformat.NotebookNode) -> str:
    return "\n".join(_outputs(cell) for cell in nb.cells)


def _outputs(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts.extend(str(v) for k, v in out.get("data", {}).items() if k in ("text/plain", "text/html"))
    return "\n".join(parts)


def _cell(nb: nbformat.NotebookNode, marker: str) -> str:
    """The plain-text outputs of the one code cell whose source contains `marker`."""
    cells = [c for c in nb.cells if c.cell_type == "code" and marker in c.source]
    assert len(cells) == 1, f"{len(cells)} cells contain {marker!r}"
    assert not [o for o in cells[0].outputs if o.output_type == "error"], cells[0].outputs
    return "\n".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in cells[0].outputs)


def _samples() -> dict[str, dict[str, tuple[str, list[dict], dict]]]:
    """What the sample layouts hold, read from their files: for each ref.name, per platform, the
    manifest digest, its layer descriptors and its config (with its own digest as `_digest`;
    attestations left out)."""
    images: dict[str, dict[str, tuple[str, list[dict], dict]]] = {}
    for index_file in sorted((NOTEBOOKS / "data").glob("*/index.json")):
        blobs = index_file.parent / "blobs" / "sha256"

        def read(digest: str, blobs: Path = blobs) -> dict:
            return json.loads((blobs / digest.removeprefix("sha256:")).read_text())

        for entry in json.loads(index_file.read_text())["manifests"]:
            name = entry["annotations"]["org.opencontainers.image.ref.name"]
            top = read(entry["digest"])
            children = top.get("manifests") or [{"digest": entry["digest"], "platform": None}]
            for child in children:
                platform = child["platform"]
                if platform and platform["os"] == "unknown":
                    continue
                manifest = read(child["digest"])
                config = {**read(manifest["config"]["digest"]), "_digest": manifest["config"]["digest"]}
                label = f"{config['os']}/{config['architecture']}"
                images.setdefault(name, {})[label] = (child["digest"], manifest["layers"], config)
    return images


def _check_analysis(nb: nbformat.NotebookNode) -> None:
    """The analysis notebook's layer cells show what the sample files say they should."""
    samples = _samples()
    short = {}  # layer digest -> short id, as the notebook shows it
    users: dict[str, set[str]] = {}  # layer digest -> platform manifests using it
    sizes: dict[str, int] = {}
    for platforms in samples.values():
        for manifest_digest, layers, _ in platforms.values():
            for layer in layers:
                short[layer["digest"]] = layer["digest"][7:19]
                users.setdefault(layer["digest"], set()).add(manifest_digest)
                sizes[layer["digest"]] = layer["size"]
    base = samples["archy:latest"]["linux/amd64"][1][0]["digest"]
    assert base == samples["webapp:2.0"]["linux/arm64"][1][0]["digest"]  # the samples share a base layer
    # The most-shared layers: the base first, with as many users as the files give it.
    shared = _cell(nb, "nlargest(4, 'shared_by')").splitlines()
    row = next(line.split() for line in shared if short[base] in line)
    assert row[1:3] == [short[base], str(len(users[base]))] and len(users[base]) >= 5
    assert shared[1].split()[1] == short[max(users, key=lambda d: len(users[d]))]
    # The biggest layer comes first, with the step that made it (its non-empty history entry).
    biggest = max(sizes, key=sizes.get)
    first_row = _cell(nb, "nlargest(5, 'size')").splitlines()[1].split()
    assert first_row[1:3] == [short[biggest], str(sizes[biggest])]
    # Layers in more than one repository, and what sharing saves.
    across = _cell(nb, "pd.crosstab(layers['layer']")
    assert short[base] in across
    saved = _cell(nb, "sharing saves")
    assert f" {sum(sizes.values())} stored" in saved
    # The history of webapp:1.1 shows its empty steps (ENV, LABEL ...) and the layers' sizes.
    history = _cell(nb, "%jindr history webapp:1.1")
    config = samples["webapp:1.1"]["linux/amd64"][2]
    empty = [h["created_by"] for h in config["history"] if h.get("empty_layer")]
    assert empty and all(step in history for step in empty) and "ENV APP_VERSION=1.1" in empty
    # The config of webapp:2.0's two platforms, side by side.
    side = _cell(nb, "%jindr config webapp:2.0")
    header = side.splitlines()[0].split()
    assert header[0] == "platform" and header[1] in samples["webapp:2.0"]  # platforms are the columns
    for label, (_, _, platform_config) in samples["webapp:2.0"].items():
        assert label in side and platform_config["config"]["User"] in side
        assert platform_config["_digest"][:40] in side  # each platform's own config blob
    # The rebuild: exactly the layers one of the two has, named; the version change, summed up.
    rebuild = _cell(nb, "%jindr diff webapp:1.0 webapp:1.1")
    for platform, (_, old, _) in samples["webapp:1.0"].items():
        new = samples["webapp:1.1"][platform][1]
        changed = {d["digest"] for d in old} ^ {d["digest"] for d in new}
        assert len(changed) == 2 and all(short[d] in rebuild for d in changed)
        kept = {d["digest"] for d in old} & {d["digest"] for d in new}
        assert kept and not any(short[d] in rebuild for d in kept)  # shared layers filtered out
    assert "B adds 1 layer" in rebuild and "ENV APP_VERSION" in rebuild


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


def _stderr(nb: nbformat.NotebookNode) -> list[str]:
    """What the cells wrote to stderr (a red box in Jupyter), one entry per cell that did."""
    return [
        f"{cell.source.splitlines()[0]!r}: {out.text.strip()}"
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if out.output_type == "stream" and out.name == "stderr"
    ]


@pytest.mark.parametrize("name", ALL)
def test_notebook_runs(name: str, engine: str) -> None:
    nb = _execute(name)
    text = _text(nb)
    assert _stderr(nb) == []  # no red boxes in a clean run (Docker's build chatter included)
    runtime = "docker" if engine == "docker" else "process"
    assert f">{runtime}<" in text or f" {runtime} " in text  # the start cell's row names the runtime chosen
    if name == "quickstart.ipynb":
        assert "linux/amd64" in text and "attestation" in text and "reclaimed" in text
        if engine == "docker":
            assert "pushed it as" in text and "hello" in _cell(nb, "%jindr lsi -l")  # built and pushed with docker
    if name == "analysis.ipynb":
        assert "shared_size" in text and "gc_bytes" in text and "(on disk)" not in text
        _check_analysis(nb)
    from jindr_run import jindr

    assert jindr("-r", os.environ["JINDR_REGISTRY"], "status").ok is False  # each stops what it started


def test_cleanup_leaves_running_a_registry_it_did_not_start(
    process_registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The panel (and the browser test that drives it after Run All) needs a registry that was running to stay up."""
    from jindr_run import jindr

    monkeypatch.setenv("JINDR_REGISTRY", process_registry)
    nb = _execute("cleanup.ipynb")
    assert _stderr(nb) == []
    assert "was running before this notebook: left running" in _cell(nb, "before.status[0]")
    assert jindr("-r", process_registry, "status").ok is True
    assert "tools" in {row.repository for row in jindr("-r", process_registry, "ls").rows}  # its work is there


def test_make_lab_starts_headless_as_root_with_lab_args(tmp_path: Path) -> None:
    """`make lab LAB_ARGS=...` serves the notebooks with the port and token given, no browser, as root too."""
    port, token = free_port(), "t" + os.urandom(8).hex()
    jupyter = {
        f"JUPYTER{name}": str(tmp_path / name.lower().strip("_"))
        for name in ("_CONFIG_DIR", "_RUNTIME_DIR", "_DATA_DIR", "LAB_SETTINGS_DIR", "LAB_WORKSPACES_DIR")
    }
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    log = tmp_path / "lab.log"
    with log.open("wb") as out:
        lab = subprocess.Popen(
            # -o: use this venv as it is (the target would otherwise reinstall it when pyproject.toml is newer)
            [
                "make",
                "--no-print-directory",
                "-o",
                f"{sys.prefix}/.notebook",
                "lab",
                f"VENV={sys.prefix}",
                f"LAB_ARGS=--ip=127.0.0.1 --port={port} --port-retries=0 --IdentityProvider.token={token}",
            ],
            cwd=ROOT,
            env={**env, **jupyter},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    import httpx

    try:
        deadline = time.monotonic() + 60
        while True:
            assert lab.poll() is None, log.read_text()[-3000:]
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/contents", headers={"Authorization": f"token {token}"})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "JupyterLab did not answer within 60 s"
                time.sleep(0.3)
        assert answer.status_code == 200
        assert {item["name"] for item in answer.json()["content"]} >= set(ALL)  # the notebooks directory
        assert httpx.get(f"http://127.0.0.1:{port}/api/contents").status_code == 403  # the token is required
        httpx.post(f"http://127.0.0.1:{port}/api/shutdown", headers={"Authorization": f"token {token}"})
        assert lab.wait(30) == 0
    finally:
        if lab.poll() is None:
            os.killpg(lab.pid, signal.SIGTERM)
            lab.wait(10)
    command = log.read_text().splitlines()[0].split()  # make echoes the command it ran
    assert "--no-browser" in command and ("--allow-root" in command) is (os.geteuid() == 0)
    assert f"--port={port}" in command


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


def test_team_notebook_runs_on_moto_with_tls_and_users(engine: str) -> None:
    """notebooks/team.ipynb: start on S3 (moto) with TLS and users, a user, trust, an anonymous
    401, login, push, list, du, a delete and gc, stop — with Docker and without."""
    nb = _execute(TEAM)
    text = _text(nb)
    assert _stderr(nb) == []
    registry = os.environ["JINDR_REGISTRY"]
    started = _cell(nb, "%jindr start --storage s3://")
    assert "s3://team-images/registry" in started and "running" in started
    assert ("docker" if engine == "docker" else "process") in started
    assert "alice" in _cell(nb, "%jindr user list") and "added" in _cell(nb, "%jindr user add alice")
    assert "anonymous, over verified HTTPS: 401 Unauthorized" in _cell(nb, "httpx.get(")
    listed = _cell(nb, "%jindr lsi -l")
    assert all(tag in listed for tag in ("api", "tools", "webapp", "1.1", "linux/arm64"))
    assert "in the bucket" in _cell(nb, "%jindr du")
    gc = _cell(nb, "%jindr gc")
    assert "deleted" in gc and "tools" in gc
    assert "team-secret" not in text  # the AWS secret key the notebook made up: in no output
    from jindr_run import jindr

    assert jindr("-r", registry, "status").ok is False  # it stopped what it started
