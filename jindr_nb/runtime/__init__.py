"""Running registries on this machine: docker (or Podman's Docker API), or the registry binary.

Besides the runtimes themselves, the policies every face shares: which runtime `auto` means and
when it falls back to the binary (`start_registry`), which registry jindr runs where
(`find_managed`, `running`), the rows `status` and `info` show (`status_row`, `measured`), and
what the registry software running there can do (`deletes_tags`).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ImageUnavailable, RuntimeFailure
from ..models import InstanceRow
from .base import DEFAULT_STORAGE, RegistrySpec, Runtime, dir_size, state_dir
from .process import ProcessRuntime, find_binary
from .s3 import BucketStorage

__all__ = [
    "DEFAULT_STORAGE",
    "ProcessRuntime",
    "find_binary",
    "RegistrySpec",
    "Runtime",
    "deletes_tags",
    "find_managed",
    "local_storage",
    "managed_bucket",
    "managed_instances",
    "managed_storage",
    "measured",
    "replicas",
    "restart",
    "running",
    "select",
    "start_registry",
    "state_dir",
    "status_row",
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


def start_registry(
    spec: RegistrySpec, runtime: str = "auto", *, image: str | None = None, binary: str | None = None
) -> tuple[InstanceRow, str]:
    """Start `spec` with the runtime called `runtime`, unless a registry jindr runs is already running
    there; the row (measured) and a line for the user ("" when there is nothing to say).

    `auto` on a Docker that has no registry image and cannot pull one (offline) falls back to the
    registry binary when there is one, and says so; a runtime named explicitly never falls back.
    """
    found = find_managed(spec.registry)
    if found is not None and found[1].status == "running":
        return measured([found[1]])[0], f"a registry is already running at {spec.registry}; nothing changed"
    chosen = select(runtime, image=image, binary=binary)
    try:
        row = chosen.start(spec)
    except ImageUnavailable as exc:
        found_binary = find_binary(binary)
        if runtime != "auto" or not found_binary:
            raise
        row = ProcessRuntime(binary).start(spec)
        return measured([row])[0], _fell_back(exc, found_binary)
    return measured([row])[0], ""


def _fell_back(exc: ImageUnavailable, binary: str) -> str:
    """The one line `start` says when the auto runtime used the binary because Docker cannot pull."""
    import time

    line = f"Docker cannot pull {exc.image} here; using {binary} — `--runtime process` skips this check"
    if exc.tried_at is None:
        return line
    ago = max(1, round((time.time() - exc.tried_at) / 60))
    return f"{line} (the pull failed {ago} min ago; `--runtime docker` tries it again)"


def restart(registry: str) -> InstanceRow:
    """Stop the registry jindr runs at `registry` and start it again exactly as it was (measured row)."""
    found = find_managed(registry)
    if found is None:
        raise RuntimeFailure(f"no registry that jindr runs at {registry}; start one with `start`")
    runtime, _ = found
    runtime.pause(registry)
    return measured([runtime.resume(registry)])[0]


def status_row(registry: str) -> InstanceRow:
    """The row `status` shows (measured): the registry jindr runs at `registry`, or a row saying
    `not running` when it runs none there."""
    found = find_managed(registry)
    if found is not None:
        return measured([found[1]])[0]
    return InstanceRow(
        registry=registry,
        runtime="",
        name="",
        status="not running",
        storage="",
        size=0,
        image="",
        version="",
        mode="",
        upstream="",
    )


def running(registry: str) -> Runtime | None:
    """The runtime of the registry jindr runs at `registry` when it is running now, else None."""
    found = find_managed(registry)
    return found[0] if found is not None and found[1].status == "running" else None


def managed_storage(registry: str) -> Path | None:
    """The storage directory of the registry jindr runs (running or not) at `registry`, else None."""
    found = find_managed(registry)
    spec = found[0].spec_of(registry) if found is not None else None
    return spec.storage if spec is not None else None


def managed_bucket(registry: str) -> BucketStorage | None:
    """The object storage of the registry jindr runs (running or not) at `registry`, or None when it
    runs none there or keeps its storage on the filesystem."""
    return None  # wired by `start --storage s3://...` (issue 15)


def replicas(registry: str) -> list[str]:
    """Every registry jindr runs on the same storage as `registry` (itself first), running or paused:
    gc and rmr put them all read-only while they work."""
    return [registry] if find_managed(registry) is not None else []


def measured(rows: list[InstanceRow]) -> list[InstanceRow]:
    """`rows` with `size` filled in: bytes on disk under each one's storage directory."""
    for row in rows:
        row.size = dir_size(Path(row.storage)) if row.storage else 0
    return rows


def deletes_tags(registry: str) -> bool:
    """True when the registry at `registry` deletes a single tag through the API (`DELETE
    /manifests/<tag>`, registry 3 and later). Trusted only for registries jindr runs, whose version
    it knows; for any other registry False (jindr then re-points the tag before deleting a digest)."""
    found = find_managed(registry)
    return found is not None and major_version(found[1].version) >= 3


def major_version(version: str) -> int:
    """The major number of a registry's version as the runtimes record it (`3` for `3.0.0`); 0 when
    unknown (empty, or not starting with a number)."""
    major = version.split(".")[0]
    return int(major) if major.isdecimal() else 0


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
                    registry=registry,
                    runtime=runtime.name,
                    name="",
                    status="stopped",
                    storage=str(spec.storage) if spec else "",
                    size=0,
                    image="",
                    version="",
                    mode="registry",
                    upstream="",
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
