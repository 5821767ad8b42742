"""Fixtures: the real registry binary on loopback, a client, an image factory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from rig import ImageFactory, LocalRegistry, registry_binary, start_registry  # noqa: E402
from scripted import scripted  # noqa: E402, F401 - the scripted-server fixture (a fake), for every module

from jindr_nb.client import RegistryClient  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the user's cache, docker config or registry setting."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("JINDR_CACHE_DIR", str(home / "cache"))
    monkeypatch.setenv("JINDR_STATE_DIR", str(home / "state"))
    monkeypatch.setenv("DOCKER_CONFIG", str(home / ".docker"))
    monkeypatch.delenv("JINDR_REGISTRY", raising=False)
    monkeypatch.delenv("JINDR_DOCKER_CONFIG", raising=False)


@pytest.fixture(params=["splice", "stream"])
def blob_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """Both ways `cp` moves a blob: the kernel relay (os.splice, the default between plain-HTTP
    registries) and the stream through Python (TLS, redirects, or JINDR_SPLICE=0). Afterwards the
    test must have used the way it stands for: bytes that really went through os.splice, or none
    (the relay's own count of spliced bytes, so a kernel that refuses splice fails the splice runs)."""
    from jindr_nb.client.relay import spliced

    monkeypatch.delenv("JINDR_SPLICE", raising=False)
    if request.param == "stream":
        monkeypatch.setenv("JINDR_SPLICE", "0")
    before = spliced.value
    yield str(request.param)
    moved = spliced.value - before
    if request.param == "splice":
        assert moved > 0, "no blob bytes went through the kernel relay (os.splice)"
    else:
        assert moved == 0, f"JINDR_SPLICE=0 but {moved} bytes were spliced"


def _need_binary() -> str:
    binary = registry_binary()
    if binary is None:
        message = "the registry binary is missing: apt-get install docker-registry (make test does this)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


@pytest.fixture(scope="session")
def shared_registry(tmp_path_factory: pytest.TempPathFactory) -> LocalRegistry:
    """One registry for read-only tests, filled once (see `populated`)."""
    _need_binary()
    reg = start_registry(tmp_path_factory.mktemp("shared-registry"))
    yield reg
    reg.stop()


@pytest.fixture()
def registry(tmp_path: Path) -> LocalRegistry:
    """A fresh, empty registry for a test that writes."""
    _need_binary()
    reg = start_registry(tmp_path / "registry")
    yield reg
    reg.stop()


@pytest.fixture()
def client(registry: LocalRegistry) -> RegistryClient:
    with RegistryClient(registry.address) as c:
        yield c


@pytest.fixture()
def factory(client: RegistryClient) -> ImageFactory:
    return ImageFactory(client)


@pytest.fixture(scope="session")
def populated(shared_registry: LocalRegistry) -> dict:
    """The shared registry with an OCI index (2 tags, attestations), a Docker list and a single image."""
    with RegistryClient(shared_registry.address) as c:
        f = ImageFactory(c, seed=7)
        images = {
            "oci": f.index("multi/oci", ["latest", "v1"], layers=(1, 3)),
            "list": f.index("multi/docker", ["1.0"], oci=False),
            "single": f.single("plain", ["latest"]),
            "arm": f.single("armv7", ["edge"], oci=True, platform=("linux", "arm", "v7")),
        }
    return {"registry": shared_registry, "images": images}


def _need(what: str, message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing in CI: {message}")
    pytest.skip(message)


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory):
    """The real Docker Engine (dockerd started here when none answers) with the offline registry image."""
    from engines import build_registry_image, ensure_dockerd

    client = ensure_dockerd(tmp_path_factory.mktemp("dockerd"))
    if client is None:
        _need("Docker", "no Docker engine answers and dockerd could not be started (apt-get install docker.io)")
    image = build_registry_image(client, _need_binary())
    return client, image


@pytest.fixture(scope="session")
def podman_engine(tmp_path_factory: pytest.TempPathFactory):
    """Podman's Docker-compatible API on a private socket, with the offline registry image."""
    from engines import build_registry_image, ensure_podman

    found = ensure_podman(tmp_path_factory.mktemp("podman"))
    if found is None:
        _need("Podman", "podman is not installed or its API service did not start (apt-get install podman runc)")
    client, host, proc = found
    image = build_registry_image(client, _need_binary())
    yield client, image, host
    client.close()
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright (never `playwright install`: it cannot download here)."""
    from browser import CHROMIUM_ARGS, chromium_path

    path = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        path = None
    if path is None:
        _need(
            "Chromium or Playwright",
            "Chromium or Playwright is missing (apt-get install chromium; pip install playwright)",
        )
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def process_registry(tmp_path: Path) -> str:
    """A registry that jindr itself runs (process runtime, storage under tmp_path); its address."""
    from jindr_run import jindr
    from rig import free_port

    _need_binary()
    address = f"localhost:{free_port()}"
    jindr("-r", address, "start", "--runtime", "process", "-d", str(tmp_path / "storage"))
    yield address
    jindr("-r", address, "stop", "-G")


_SESSION_STARTED = 0.0


def pytest_sessionstart(session: pytest.Session) -> None:
    import time

    global _SESSION_STARTED
    _SESSION_STARTED = time.time()


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest's TerminalReporter
    """Print the case counts that the reliability modules wrote during this run (tests/.counts/)."""
    counts = Path(__file__).parent / ".counts"
    fresh = [p for p in sorted(counts.glob("*.json")) if p.stat().st_mtime >= _SESSION_STARTED]
    if fresh:
        terminalreporter.section("reliability cases tried")
        import json

        for path in fresh:
            record = json.loads(path.read_text())
            numbers = ", ".join(f"{k} {v}" for k, v in record.items() if isinstance(v, int))
            terminalreporter.write_line(f"{path.stem}: {numbers}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # noqa: ANN201 - pytest hook
    """Keep each phase's report on the test item (`item.rep_call`), so fixtures can see the outcome."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


#: What a test needs beyond Python and the registry binary: a container engine or a browser.
_ENGINE_FIXTURES = frozenset({"docker_engine", "podman_engine", "podman", "private_dockerd"})
_ENGINE_PARAMS = frozenset({"docker", "podman"})
_ENGINE_MODULES = frozenset({"test_browser", "test_browser_frames"})


def needs_engine(item: pytest.Item) -> bool:
    """True for a test that needs Docker, Podman or a browser: by its fixtures, by a parameter that
    picks an engine (fixtures that ask for one with getfixturevalue), or by its module."""
    if _ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        picked = {v.split("-")[0] for v in callspec.params.values() if isinstance(v, str)}
        if _ENGINE_PARAMS & picked:  # "docker", "podman", "podman-oci", "podman-v2s2" ...
            return True
    return item.module is not None and item.module.__name__ in _ENGINE_MODULES


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`JINDR_TEST_SCOPE=no-engines` (make test, on the Pythons other than the main one): only the
    tests that need no container engine or browser — deselected, not skipped, and counted."""
    if os.environ.get("JINDR_TEST_SCOPE") != "no-engines":
        return
    keep = [item for item in items if not needs_engine(item)]
    dropped = [item for item in items if needs_engine(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
