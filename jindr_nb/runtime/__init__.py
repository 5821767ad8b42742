"""Running registries on this machine: docker (or Podman's Docker API), or the registry binary.

Besides the runtimes themselves, the policies every face shares: which runtime `auto` means and
when it falls back to the binary (`start_registry`), which registry jindr runs where
(`find_managed`, `running`), the rows `status` and `info` show (`status_row`, `measured`), and
what the registry software running there can do (`deletes_tags`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ImageUnavailable, JindrError, RuntimeFailure
from ..models import InstanceRow, TrustRow
from .base import DEFAULT_STORAGE, RegistrySpec, Runtime, check_bucket, dir_size, state_dir
from .process import ProcessRuntime, find_binary
from .s3 import BucketStorage

if TYPE_CHECKING:
    from ..client import Credentials

__all__ = [
    "DEFAULT_STORAGE",
    "ClientSettings",
    "ProcessRuntime",
    "client_settings",
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
    "trust_rows",
    "users_file",
    "users_files",
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
    spec: RegistrySpec,
    runtime: str = "auto",
    *,
    image: str | None = None,
    binary: str | None = None,
    create_bucket: bool = False,
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
    notes = _storage_notes(spec, create_bucket)
    notes += _users_of_replicas(spec)
    try:
        row = chosen.start(spec)
    except ImageUnavailable as exc:
        found_binary = find_binary(binary)
        if runtime != "auto" or not found_binary:
            raise
        row = ProcessRuntime(binary).start(spec)
        notes.append(_fell_back(exc, found_binary))
    notes += _listen_notes(spec)
    return measured([row])[0], "\n".join(notes)


def _users_of_replicas(spec: RegistrySpec) -> list[str]:
    """A registry started with --users on a storage other registries jindr runs already serve with
    users gets their users (replicas behind one address must accept the same logins)."""
    from .base import team_dir, write_private

    mine = team_dir(spec.registry, create=False) / "htpasswd"
    if not spec.users or mine.exists():
        return []
    for other in _same_storage(spec):
        theirs = team_dir(other, create=False) / "htpasswd"
        if theirs.exists():
            write_private(mine, theirs.read_text())
            return [f"users copied from {other}, which serves the same storage (`user add` changes both)"]
    return []


def _same_storage(spec: RegistrySpec) -> list[str]:
    """The other registries jindr runs (running or paused) on `spec`'s storage."""
    mine = spec.storage_key()
    found = []
    for runtime in _candidates():
        for row in runtime.instances():
            other = runtime.spec_of(row.registry)
            if row.registry != spec.registry and other is not None and other.storage_key() == mine:
                found.append(row.registry)
    return found


def users_files(registry: str) -> list[tuple[str, Path]]:
    """(registry, htpasswd file) pairs `user add/remove` edit: the registry's own first, then those of
    its replicas started with --users (a login must work whichever replica a load balancer picks)."""
    from .base import team_dir

    files = [(registry, users_file(registry))]
    for other in replicas(registry)[1:]:
        found = find_managed(other)
        spec = found[0].spec_of(other) if found is not None else None
        if spec is not None and spec.users:
            files.append((other, team_dir(other) / "htpasswd"))
    return files


def _storage_notes(spec: RegistrySpec, create_bucket: bool) -> list[str]:
    """Check (or create, when asked) the bucket before anything starts; what to tell the user."""
    if spec.bucket is None:
        return []
    import os

    from .s3 import registry_environment, resolve_credentials

    resolve_credentials(spec.bucket.profile)  # "no AWS credentials found", before any request
    notes = registry_environment(os.environ)[1]
    if check_bucket(spec, create=create_bucket):
        notes.insert(0, f"created bucket {spec.bucket.location.bucket}")
    return notes


def _listen_notes(spec: RegistrySpec) -> list[str]:
    """A registry bound to one address off loopback is not at localhost: say how to reach it."""
    from .base import dial_host

    host = dial_host(spec.listen)
    if host == "127.0.0.1":
        return []
    return [f"listening on {host}:{spec.port} only: use -r {host}:{spec.port} (--listen 0.0.0.0 serves localhost too)"]


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
    """The storage directory of the registry jindr runs (running or not) at `registry`, else None
    (None too for one on object storage: see `managed_bucket`)."""
    found = find_managed(registry)
    spec = found[0].spec_of(registry) if found is not None else None
    return spec.storage if spec is not None and spec.bucket is None else None


def managed_bucket(registry: str) -> BucketStorage | None:
    """The object storage of the registry jindr runs (running or not) at `registry`, or None when it
    runs none there or keeps its storage on the filesystem.

    Cheap on purpose (listings ask it first): jindr's own records, no engine asked, so a Docker
    engine that stopped answering cannot turn a listing's "unreachable" into an engine error.
    """
    from .base import from_serving

    serving = _recorded_serving(registry)
    if serving is None:
        return None
    bucket = from_serving(serving).get("bucket")
    return bucket if isinstance(bucket, BucketStorage) else None


def _recorded_serving(registry: str) -> dict | None:
    """What jindr's records say the registry at `registry` serves with (`RegistrySpec.serving`):
    the process runtime's state file, else the docker runtime's record; None when neither has one,
    or when `registry` names another host (a loopback name, its --listen address or a --hostname
    are its own; `myhost:5000` elsewhere is not the registry jindr runs on port 5000)."""
    import ipaddress
    import json

    from .base import port_of

    try:
        port = port_of(registry)
    except ValueError:
        return None
    host = registry.rsplit(":", 1)[0].strip("[]") if not registry.endswith("]") else registry.strip("[]")
    for path in (state_dir() / "process" / str(port) / "state.json", state_dir() / "docker" / f"{port}.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        serving = record.get("serving") if isinstance(record, dict) else None
        if not isinstance(serving, dict):
            continue
        names = {"localhost", str(serving.get("listen", "")), *(str(h) for h in serving.get("hostnames") or ())}
        try:
            ours = host in names or ipaddress.ip_address(host).is_loopback
        except ValueError:
            ours = host in names
        return serving if ours else None
    return None


def replicas(registry: str) -> list[str]:
    """Every registry jindr runs on the same storage as `registry` (itself first), running or paused:
    gc and rmr put them all read-only while they work. Same storage: the same bucket, prefix and
    endpoint, or the same directory."""
    found = find_managed(registry)
    spec = found[0].spec_of(registry) if found is not None else None
    if spec is None:
        return []
    mine = spec.storage_key()
    same = [registry]
    candidates = _candidates()
    for runtime in candidates:
        for row in runtime.instances():
            if row.registry == spec.registry or row.registry in same:
                continue
            other = runtime.spec_of(row.registry)
            if other is not None and other.storage_key() == mine:
                same.append(row.registry)
    if not any(r.name == "docker" for r in candidates):
        unreachable = [r for r in _docker_records_on(mine) if r not in same]
        if unreachable:
            raise RuntimeFailure(
                f"jindr runs {', '.join(unreachable)} on the same storage in Docker, which does not answer: "
                "it could not be made read-only — start Docker (or stop that registry) and try again; nothing changed"
            )
    return same


def _docker_records_on(key: tuple[str, str]) -> list[str]:
    """The registries jindr's own Docker records place on the storage `key` (no engine asked)."""
    import json

    from .base import from_serving

    found = []
    for path in sorted((state_dir() / "docker").glob("*.json")):
        try:
            record = json.loads(path.read_text())
            spec = RegistrySpec(
                str(record["registry"]), Path(str(record.get("storage") or "")), **from_serving(record.get("serving"))
            )
        except (OSError, ValueError, KeyError, TypeError, JindrError):
            continue
        if spec.storage_key() == key:
            found.append(spec.registry)
    return found


@dataclass(frozen=True)
class ClientSettings:
    """How jindr's own client speaks to a registry it runs: HTTPS trusting `ca` (None: the system's
    CAs, a certificate of the user's own), and whether users must log in."""

    tls: bool
    ca: str | None
    users: bool

    def login(self) -> Credentials | None:
        """JINDR_USERNAME with the password in the variable JINDR_PASSWORD_ENV names, when users are
        on; None (Docker's config is then read on the first 401) when JINDR_USERNAME is not set."""
        import os

        from ..client import Credentials
        from ..errors import InvalidReference

        username = os.environ.get("JINDR_USERNAME", "")
        if not self.users or not username:
            return None
        variable = os.environ.get("JINDR_PASSWORD_ENV", "")
        password = os.environ.get(variable, "") if variable else ""
        if not password:
            raise InvalidReference(
                "JINDR_USERNAME is set but no password: set JINDR_PASSWORD_ENV to the name of a variable holding it"
                + (f" (${variable} is empty or not set)" if variable else "")
            )
        return Credentials(username, password)


def client_settings(registry: str) -> ClientSettings | None:
    """The TLS and users of the registry jindr runs at `registry` (None when it runs none there, or
    one on plain HTTP without users). Cheap: jindr's own records, no engine asked."""
    serving = _recorded_serving(registry)
    if serving is None or not (serving.get("tls") or serving.get("users")):
        return None
    ca = _ca_of(registry, serving) if serving.get("tls") else None
    return ClientSettings(bool(serving.get("tls")), ca, bool(serving.get("users")))


def _ca_of(registry: str, serving: dict) -> str | None:
    """The CA file clients trust for a TLS registry jindr runs: its local CA, or a self-signed pair itself."""
    from .base import local_ca_dir

    if not serving.get("tls_cert"):
        return str(local_ca_dir() / "ca.crt")
    from ..errors import JindrError
    from .tls import user_pair

    try:
        files = user_pair(Path(str(serving["tls_cert"])), Path(str(serving.get("tls_key", ""))), [])
    except JindrError:
        return None  # a pair that went bad since it started: the system's CAs decide
    return str(files.ca) if files.ca is not None else None


def users_file(registry: str) -> Path:
    """The htpasswd file of the registry jindr runs at `registry` with `--users` (the registry
    reads it again when it changes: `user add` and `user remove` take effect at once)."""
    from .base import team_dir

    spec = _managed_spec(registry)
    if not spec.users:
        raise RuntimeFailure(
            f"the registry at {registry} was started without --users: stop it (`stop -G`) and start it again "
            "with --users, then add users"
        )
    return team_dir(registry) / "htpasswd"


def _managed_spec(registry: str) -> RegistrySpec:
    found = find_managed(registry)
    spec = found[0].spec_of(registry) if found is not None else None
    if spec is None:
        raise RuntimeFailure(f"no registry that jindr runs at {registry}; start one with `start`")
    return spec


def trust_rows(registry: str, *, install: tuple[Path, Path] | None = None) -> list[TrustRow]:
    """What each client needs to trust the TLS registry jindr runs at `registry`: a bundle for
    SSL_CERT_FILE, a --cert-dir for Podman and skopeo (both under jindr's state directory), and
    Docker's and containers' certs.d entries, written there when `install` gives their roots."""
    from .base import serving_files, team_dir
    from .tls import ca_bundle, cert_dir, fingerprint, install_ca

    spec = _managed_spec(registry)
    if not spec.tls:
        raise RuntimeFailure(f"the registry at {registry} serves plain HTTP: start it with --tls to serve HTTPS")
    files = serving_files(spec).tls
    assert files is not None
    if files.ca is None:
        raise RuntimeFailure(
            f"the registry at {registry} serves a certificate from a CA of your own: clients trust that CA already"
        )
    ca_print = fingerprint(files.ca)
    where = team_dir(registry) / "trust"
    bundle = ca_bundle(files, _made(where) / "bundle.pem")
    rows = [
        TrustRow(registry, "jindr, Python, curl", f"SSL_CERT_FILE={bundle}", str(bundle), False, ca_print),
        TrustRow(
            registry,
            "podman, skopeo",
            f"--cert-dir {cert_dir(files, where / 'certs')}",
            str(where / "certs"),
            False,
            ca_print,
        ),
    ]
    for name in _served_names(spec):
        for client, root in (
            ("docker", install[0] if install else DOCKER_CERTS_D),
            ("podman, skopeo", install[1] if install else CONTAINERS_CERTS_D),
        ):
            target = install_ca(files, name, root=root) if install else root / name / "ca.crt"
            rows.append(TrustRow(name, client, f"certs.d: {target}", str(target), install is not None, ca_print))
    return rows


DOCKER_CERTS_D = Path("/etc/docker/certs.d")
CONTAINERS_CERTS_D = Path("/etc/containers/certs.d")


def _made(directory: Path) -> Path:
    from .base import private_dirs

    private_dirs(directory)
    return directory


def _served_names(spec: RegistrySpec) -> list[str]:
    """The HOST:PORT names clients may use for `spec`: its own, then its --listen address and hostnames."""
    from .base import dial_host

    names = [spec.registry]
    listen = dial_host(spec.listen)
    for host in ([listen] if listen != "127.0.0.1" else []) + [h for h in spec.hostnames]:
        bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host
        name = f"{bracketed}:{spec.port}"
        if name not in names:
            names.append(name)
    return names


def measured(rows: list[InstanceRow]) -> list[InstanceRow]:
    """`rows` with `size` filled in: bytes on disk under each one's storage directory, or the bytes
    a bucket holds under the registry's prefix (one paginated listing; 0 when it cannot be read)."""
    for row in rows:
        if row.storage.startswith("s3://"):
            row.size = _bucket_size(row.registry)
        else:
            row.size = dir_size(Path(row.storage)) if row.storage else 0
    return rows


def _bucket_size(registry: str) -> int:
    bucket = managed_bucket(registry)
    if bucket is None:
        return 0
    try:
        client = bucket.client()
        total = 0
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket.location.bucket,
            Prefix=bucket.location.root + "docker/registry/v2/",  # the tree only
        )
        for page in pages:
            total += sum(int(item.get("Size", 0)) for item in page.get("Contents", []))
        return total
    except Exception:  # noqa: BLE001 - a size is not worth an error: the bucket may be unreachable now
        return 0


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
                    storage=spec.shown_storage if spec else "",
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
        return str(spec.storage) if spec.bucket is None and _readable(spec.storage) else None
    record = state_dir() / "docker" / f"{port_of(registry)}.json"
    if record.exists():
        from .docker import DockerRuntime, engine_answers

        if engine_answers():
            runtime = DockerRuntime()
            if runtime.status(registry) is not None:
                spec = runtime.spec_of(registry)
                if spec is not None and spec.bucket is None and _readable(Path(spec.storage)):
                    return str(spec.storage)
    return None


def _readable(path: object) -> bool:
    import os

    repos = os.path.join(str(path), "docker", "registry", "v2")
    return os.access(str(path), os.R_OK | os.X_OK) and (
        not os.path.exists(repos) or os.access(repos, os.R_OK | os.X_OK)
    )
