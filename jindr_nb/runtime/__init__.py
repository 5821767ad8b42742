"""Running registries on this machine: docker (or Podman's Docker API), or the registry binary."""

from __future__ import annotations

from ..errors import RuntimeFailure
from ..models import InstanceRow
from .base import DEFAULT_STORAGE, RegistrySpec, Runtime, state_dir
from .process import ProcessRuntime, find_binary

__all__ = [
    "DEFAULT_STORAGE",
    "ProcessRuntime",
    "find_binary",
    "RegistrySpec",
    "Runtime",
    "find_managed",
    "local_storage",
    "managed_instances",
    "select",
    "state_dir",
]

RUNTIMES = ("auto", "docker", "process")


def select(name: str = "auto", *, image: str | None = None, binary: str | None = None) -> Runtime:
    """The runtime called `name`; `auto` is docker when an engine answers, else the registry binary."""
    if name == "process":
        return ProcessRuntime(binary)
    if name == "docker":
        from .docker import DockerRuntime

        return DockerRuntime(image=image)
    if name != "auto":
        raise RuntimeFailure(f"unknown runtime {name!r}: choose auto, docker or process")
    from .docker import DockerRuntime, engine_answers

    if engine_answers():
        return DockerRuntime(image=image, remember_pulls=find_binary(binary) is not None)
    if find_binary(binary):
        return ProcessRuntime(binary)
    raise RuntimeFailure(
        "no way to run a registry here: no Docker engine answers and no registry binary was found — "
        "start Docker (or Podman's API with DOCKER_HOST), or install the binary "
        "(Debian/Ubuntu: apt-get install docker-registry) and use --runtime process"
    )


def _candidates() -> list[Runtime]:
    found: list[Runtime] = [ProcessRuntime()]
    from .docker import DockerRuntime, engine_answers

    if engine_answers():
        found.append(DockerRuntime())
    return found


def find_managed(registry: str) -> tuple[Runtime, InstanceRow] | None:
    """The runtime running (or holding a paused) `registry`, with its row; None when jindr runs none there.

    A container jindr started on an engine that stopped answering comes back with status
    `engine down`: acting on it then fails with the engine's own one-line error.
    """
    candidates = _candidates()
    for runtime in candidates:
        if runtime.spec_of(registry) is not None:
            row = runtime.status(registry)
            if row is None:
                spec = runtime.spec_of(registry)
                row = InstanceRow(
                    registry, runtime.name, "", "stopped", str(spec.storage) if spec else "", 0, "", "", "registry", ""
                )
            return runtime, row
    if not any(r.name == "docker" for r in candidates) and _docker_recorded(registry):
        from .docker import DockerRuntime, engine_down_rows

        down = engine_down_rows(registry)
        if down:
            return DockerRuntime(), down[0]
    return None


def managed_instances() -> list[InstanceRow]:
    """Every registry jindr runs on this machine, whichever runtime (those whose engine is down too)."""
    rows: list[InstanceRow] = []
    candidates = _candidates()
    for runtime in candidates:
        rows.extend(runtime.instances())
    if not any(r.name == "docker" for r in candidates) and _docker_recorded(None):
        from .docker import engine_down_rows

        rows.extend(engine_down_rows())
    return sorted(rows, key=lambda r: r.registry)


def _docker_recorded(registry: str | None) -> bool:
    """True when jindr's own records say it started a container (for `registry`, or any): cheap, no engine."""
    from .base import port_of

    directory = state_dir() / "docker"
    if registry is None:
        return directory.is_dir() and any(directory.glob("*.json"))
    return (directory / f"{port_of(registry)}.json").exists()


def local_storage(registry: str) -> str | None:
    """The storage directory of `registry` when jindr runs it here and can read it, else None.

    Cheap on purpose (it runs before every listing): a verified pid file for the process runtime;
    for docker, the engine is asked only when jindr's own record says it started a container there.
    """
    from pathlib import Path

    from .base import port_of

    spec = ProcessRuntime().spec_of(registry)
    if spec is not None and ProcessRuntime().status(registry) is not None:
        return str(spec.storage) if _readable(spec.storage) else None
    record = state_dir() / "docker" / f"{port_of(registry)}.json"
    if record.exists():
        from .docker import DockerRuntime, engine_answers

        if engine_answers():
            runtime = DockerRuntime()
            if runtime.status(registry) is not None:
                spec = runtime.spec_of(registry)
                if spec is not None and _readable(Path(spec.storage)):
                    return str(spec.storage)
    return None


def _readable(path: object) -> bool:
    import os

    repos = os.path.join(str(path), "docker", "registry", "v2")
    return os.access(str(path), os.R_OK | os.X_OK) and (
        not os.path.exists(repos) or os.access(repos, os.R_OK | os.X_OK)
    )
