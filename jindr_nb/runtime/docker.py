"""The registry in a container, through the docker SDK (Docker Engine, or Podman's Docker API).

jindr finds its containers by label, whatever the image: `jindr_nb.registry` holds the address
and `jindr_nb.storage` the bind-mounted storage. The port is published on 127.0.0.1 only, and
settings go through the registry's own REGISTRY_* variables so that registry:2 and registry:3
images behave the same.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ImageUnavailable, RuntimeFailure
from ..models import InstanceRow
from ..refs import is_loopback
from .base import (
    RegistrySpec,
    Serving,
    bind_address,
    check_bucket,
    dial_host,
    from_serving,
    make_storage,
    port_holder,
    port_of,
    proxy_credentials,
    registry_config,
    serving_files,
    state_dir,
    team_dir,
    wait_port_free,
    wait_ready,
    write_private,
)

__all__ = ["DEFAULT_IMAGE", "PULL_MEMORY_S", "DockerRuntime", "engine_answers", "engine_down_rows", "pull_failed_at"]

DEFAULT_IMAGE = "registry:3"
#: How long a failed pull of the registry image is remembered: auto starts use the binary meanwhile
#: without asking Docker again. `start --runtime docker` always pulls (and forgets the failure).
PULL_MEMORY_S = 3600.0
LABEL_REGISTRY = "jindr_nb.registry"
LABEL_STORAGE = "jindr_nb.storage"
LABEL_UPSTREAM = "jindr_nb.upstream"
#: How it serves besides storage (RegistrySpec.serving: bucket, TLS, users, listen; no secret).
LABEL_SERVING = "jindr_nb.serving"
CONTAINER_ROOT = "/var/lib/registry"
CONTAINER_PORT = 5000
# A proxy's password reaches the registry in a config file mounted read-only here, never in the
# container's environment, which `docker inspect` shows to anyone who can reach the engine.
SECRET_CONFIG = "/etc/jindr/config.yml"
#: jindr's TLS files and htpasswd for the registry (team_dir), mounted read-only as a directory so
#: that an htpasswd replaced by `user add` is seen at once (a file mount would keep the old inode).
TEAM_MOUNT = "/etc/jindr/team"
USER_CERT, USER_KEY = "/etc/jindr/tls/cert.pem", "/etc/jindr/tls/key.pem"
# An image reference as Docker spells it: no spaces, quotes or shell characters reach the engine.
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}")


def engine_answers(timeout: float = 2.0) -> bool:
    """True when a Docker-compatible engine answers at $DOCKER_HOST (or the default socket)."""
    if _socket_missing():
        return False  # nothing to ask, and importing the docker SDK costs ~0.25 s
    try:
        client = _shared_client()
        return bool(client.ping())
    except RuntimeFailure:
        return False
    except Exception:  # noqa: BLE001 - the engine went away since the client was made
        stale = _CLIENTS.pop(os.environ.get("DOCKER_HOST", ""), None)
        if stale is not None:
            stale.close()
        return False


class DockerRuntime:
    """Registries as containers; `client` is a docker SDK client (built lazily from the environment)."""

    name = "docker"

    def __init__(self, client: Any = None, image: str | None = None, *, remember_pulls: bool = False) -> None:
        self._client = client
        #: True (the auto runtime): a pull that failed within PULL_MEMORY_S is not tried again.
        self.remember_pulls = remember_pulls
        self.image = image or os.environ.get("JINDR_REGISTRY_IMAGE") or DEFAULT_IMAGE
        if not _IMAGE.fullmatch(self.image):
            raise RuntimeFailure(f"invalid registry image {self.image!r}: expected NAME[:TAG][@DIGEST]")

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = _shared_client()
        return self._client

    def start(self, spec: RegistrySpec, *, progress: Callable[[str], None] | None = None) -> InstanceRow:
        from docker.errors import APIError, DockerException, NotFound

        existing = self._container(spec.registry)
        if existing is not None:
            if existing.status == "running":
                return self._row(existing)
            try:
                existing.remove(force=True)  # a stopped leftover of ours: start afresh
            except DockerException:
                pass
        if not wait_port_free(spec.port, 2.0):
            holder = port_holder(spec.port) or self._holder(spec.port)
            raise RuntimeFailure(
                f"port {spec.port} is already in use{' by ' + holder if holder else ''}; "
                "choose another with -r localhost:PORT"
            )
        team = _team(spec)
        if team:
            if spec.bucket is not None:
                check_bucket(spec)
            else:
                make_storage(spec.storage)
            serving = serving_files(spec)
        else:
            make_storage(spec.storage)
            serving = Serving()
        self._ensure_image(progress)
        host_network = _host_network(spec)
        env = {
            "REGISTRY_STORAGE_DELETE_ENABLED": "true",
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": CONTAINER_ROOT,
            "REGISTRY_HTTP_ADDR": bind_address(spec.listen, spec.port) if host_network else f"0.0.0.0:{CONTAINER_PORT}",
            "REGISTRY_LOG_ACCESSLOG_DISABLED": "true",
            "OTEL_TRACES_EXPORTER": "none",
        }
        volumes = {str(spec.storage): {"bind": CONTAINER_ROOT, "mode": "rw"}} if spec.bucket is None else {}
        command: list[str] | None = None
        created = False
        if spec.proxy_url:
            env["REGISTRY_PROXY_REMOTEURL"] = spec.proxy_url
        if team or spec.proxy_username:
            # The whole config in a 0600 file mounted read-only: S3 keys and a proxy's password
            # never reach the container's environment, which `docker inspect` shows.
            env = {k: v for k, v in env.items() if not k.startswith("REGISTRY_")}
            secret = _secret_path(spec.registry)
            # Another registry jindr runs on this port under another name (`127.0.0.1:P` beside
            # `localhost:P`) shares the path: a failed start removes only a file it created.
            created = not secret.exists()
            write_private(secret, self._config_text(spec, serving, env_addr=_addr(spec, host_network)))
            volumes[str(secret)] = {"bind": SECRET_CONFIG, "mode": "ro"}
            volumes.update(_serving_mounts(spec))
            command = ["serve", SECRET_CONFIG]  # both image kinds: entrypoint `registry` + this
        labels = {
            LABEL_REGISTRY: spec.registry,
            LABEL_STORAGE: str(spec.storage),
            LABEL_UPSTREAM: spec.proxy_url,
            LABEL_SERVING: json.dumps(spec.serving(), sort_keys=True),
        }
        kwargs: dict[str, Any] = {
            "name": spec.name,
            "detach": True,
            "environment": env,
            "labels": labels,
            "volumes": volumes,
            "restart_policy": {"Name": "no"},
        }
        if command is not None:
            kwargs["command"] = command
        if host_network:
            # A loopback upstream or S3 endpoint is only reachable from the host's network namespace.
            kwargs["network_mode"] = "host"
        else:
            kwargs["ports"] = {f"{CONTAINER_PORT}/tcp": (spec.listen, spec.port)}
        # The 0600 config this start wrote (it may hold S3 keys or a proxy's password): removed when
        # the engine refuses the container, or the registry in it never answers.
        written = command is not None and created
        try:
            container = self.client.containers.run(self.image, **kwargs)
        except APIError as exc:
            if written:
                _secret_path(spec.registry).unlink(missing_ok=True)
            if exc.status_code == 409:
                raise RuntimeFailure(
                    f"a container named {spec.name!r} already exists; remove it or pass -n NAME"
                ) from None
            raise RuntimeFailure(f"docker could not start the registry: {_short(exc)}") from None

        def alive() -> bool:
            try:
                container.reload()
            except NotFound:
                return False
            return container.status in ("created", "running")

        def logs() -> str:
            try:
                return " | ".join(container.logs(tail=5).decode(errors="replace").strip().splitlines())
            except DockerException:
                return ""

        try:
            wait_ready(spec.registry, 30, alive, logs, tls=serving.context(), host=dial_host(spec.listen))
        except RuntimeFailure:
            try:
                container.remove(force=True)
            except DockerException:
                pass
            if written:
                _secret_path(spec.registry).unlink(missing_ok=True)
            raise
        container.reload()
        _record(spec.registry, container.name, spec.shown_storage, self.image, spec.serving())
        return self._row(container)

    def _config_text(self, spec: RegistrySpec, serving: Serving, *, env_addr: str, image: str = "") -> str:
        """The registry's whole config as the container sees it (paths inside its mounts); `image`
        (default: this runtime's) tells the registry's version, which the S3 section depends on."""
        return registry_config(
            spec,
            env_addr,
            CONTAINER_ROOT,
            serving=serving,
            inside=lambda path: _inside(spec, path),
            version=self._image_version(image or self.image),
        )

    def _image_version(self, image: str) -> str:
        try:
            return str((self.client.images.get(image).labels or {}).get("org.opencontainers.image.version", ""))
        except Exception:  # noqa: BLE001 - unknown: the S3 section then assumes a current registry
            return ""

    def stop(self, registry: str) -> InstanceRow | None:
        from docker.errors import DockerException

        container = self._container(registry)
        if container is None:
            return None
        row = self._row(container)
        try:
            container.stop(timeout=10)
            container.remove()
        except DockerException as exc:
            raise RuntimeFailure(f"docker could not stop {container.name}: {_short(exc)}") from None
        row.status = "stopped"
        _record(registry, None)
        _secret_path(registry).unlink(missing_ok=True)
        return row

    def status(self, registry: str) -> InstanceRow | None:
        container = self._container(registry)
        if container is None:
            return None
        row = self._row(container)
        return row if row.status == "running" else None

    def instances(self) -> list[InstanceRow]:
        from docker.errors import DockerException

        try:
            found = self.client.containers.list(all=True, filters={"label": LABEL_REGISTRY})
        except DockerException as exc:
            raise RuntimeFailure(f"docker could not list containers: {_short(exc)}") from None
        return [self._row(c) for c in found]

    def spec_of(self, registry: str) -> RegistrySpec | None:
        container = self._container(registry)
        if container is None:
            return None
        labels = container.labels
        config = container.attrs.get("Config", {})
        env = dict(e.split("=", 1) for e in config.get("Env", []) if "=" in e)
        # Credentials: in the mounted config file; containers from before 0.7.0 had them in env.
        username, password = env.get("REGISTRY_PROXY_USERNAME", ""), env.get("REGISTRY_PROXY_PASSWORD", "")
        if SECRET_CONFIG in (config.get("Cmd") or []):
            username, password = proxy_credentials(_secret_path(registry))
        try:
            serving = from_serving(json.loads(labels.get(LABEL_SERVING) or "{}"))
        except ValueError:
            serving = {}
        return RegistrySpec(
            registry,
            Path(labels[LABEL_STORAGE]),
            container.name,
            labels.get(LABEL_UPSTREAM, ""),
            username,
            password,
            **serving,
        )

    def garbage_collect(self, registry: str, *, dry_run: bool) -> str:
        """Run `garbage-collect` in a one-off container on the stopped registry's storage."""
        from docker.errors import DockerException

        spec = self.spec_of(registry)
        container = self._container(registry)
        if spec is None or container is None:
            raise RuntimeFailure(f"no docker registry for {registry}")
        image = container.attrs.get("Config", {}).get("Image") or self.image
        env = {
            "REGISTRY_STORAGE_DELETE_ENABLED": "true",
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": CONTAINER_ROOT,
            "OTEL_TRACES_EXPORTER": "none",
        }
        volumes = {str(spec.storage): {"bind": CONTAINER_ROOT, "mode": "rw"}} if spec.bucket is None else {}
        network = "none"
        if _team(spec):
            # The registry's own config (S3 keys asked of boto3 afresh); the bucket must be reachable.
            secret = _secret_path(registry)
            text = self._config_text(spec, serving_files(spec), env_addr=_addr(spec, False), image=image)
            write_private(secret, text)
            volumes[str(secret)] = {"bind": SECRET_CONFIG, "mode": "ro"}
            volumes.update(_serving_mounts(spec))
            env = {"OTEL_TRACES_EXPORTER": "none"}
            config_path = SECRET_CONFIG
            if spec.bucket is not None:
                network = "host" if _host_network(spec) else "bridge"
        else:
            config_path = self._config_path(image)
        command = ["garbage-collect", config_path] + (["--dry-run"] if dry_run else [])
        try:
            out = self.client.containers.run(
                image,
                command,
                remove=True,
                environment=env,
                network_mode=network,
                volumes=volumes,
                stdout=True,
                stderr=True,
            )
        except DockerException as exc:
            raise RuntimeFailure(f"garbage-collect failed: {_short(exc)}") from None
        return out.decode(errors="replace") if isinstance(out, bytes) else str(out)

    def pause(self, registry: str) -> None:
        """Stop (not remove) the container; `resume` starts it again with the same settings."""
        container = self._container(registry)
        if container is not None and container.status == "running":
            container.stop(timeout=10)

    def resume(self, registry: str) -> InstanceRow:
        container = self._container(registry)
        if container is None:
            raise RuntimeFailure(f"the container for {registry} disappeared during maintenance")
        spec = self.spec_of(registry)
        assert spec is not None
        serving = serving_files(spec) if _team(spec) else Serving()
        if _team(spec):
            # Written again before it starts: S3 credentials rotated since are the ones it gets.
            image = container.attrs.get("Config", {}).get("Image") or self.image
            text = self._config_text(spec, serving, env_addr=_addr(spec, _host_network(spec)), image=image)
            write_private(_secret_path(registry), text)
        container.start()

        def alive() -> bool:
            container.reload()
            return container.status in ("created", "running")

        wait_ready(
            registry,
            30,
            alive,
            lambda: container.logs(tail=5).decode(errors="replace"),
            tls=serving.context(),
            host=dial_host(spec.listen),
        )
        container.reload()
        return self._row(container)

    def _config_path(self, image: str) -> str:
        """The config file the image's default command serves (2.x and 3.x differ)."""
        try:
            cmd = self.client.images.get(image).attrs.get("Config", {}).get("Cmd") or []
        except Exception:  # noqa: BLE001 - fall back to the 2.x location
            cmd = []
        for arg in reversed(cmd):
            if arg.endswith((".yml", ".yaml")):
                return str(arg)
        return "/etc/docker/registry/config.yml"

    def _container(self, registry: str) -> Any:
        from docker.errors import DockerException

        try:
            found = self.client.containers.list(all=True, filters={"label": f"{LABEL_REGISTRY}={registry}"})
        except DockerException as exc:
            raise RuntimeFailure(f"docker could not list containers: {_short(exc)}") from None
        return found[0] if found else None

    def _ensure_image(self, progress: Callable[[str], None] | None) -> None:
        from docker.errors import DockerException, ImageNotFound

        try:
            self.client.images.get(self.image)
            return
        except ImageNotFound:
            pass
        except DockerException as exc:  # e.g. 400 "invalid reference format"
            raise ImageUnavailable(
                f"docker cannot use the image {self.image!r}: {_short(exc)}", image=self.image
            ) from None
        tried = pull_failed_at(self.image) if self.remember_pulls else None
        if tried is not None:
            raise ImageUnavailable(f"docker could not pull {self.image} recently", image=self.image, tried_at=tried)
        repository, _, tag = self.image.rpartition(":") if ":" in self.image.split("/")[-1] else (self.image, "", "")
        try:
            for event in self.client.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
                if progress is not None and isinstance(event, dict):
                    progress(" ".join(str(event.get(k, "")) for k in ("id", "status", "progress")).strip())
            self.client.images.get(self.image)
        except DockerException as exc:
            _remember_pull(self.image, _short(exc))
            raise ImageUnavailable(
                f"could not pull {self.image} ({_short(exc)}); pass --image with an image you have, "
                "or use --runtime process",
                image=self.image,
            ) from None
        _remember_pull(self.image, None)

    def _holder(self, port: int) -> str:
        try:
            for container in self.client.containers.list():
                for bindings in (container.ports or {}).values():
                    for binding in bindings or []:
                        if str(binding.get("HostPort")) == str(port):
                            return f"container {container.name}"
        except Exception:  # noqa: BLE001 - only a hint for the message
            return ""
        return ""

    def _row(self, container: Any) -> InstanceRow:
        labels = container.labels or {}
        storage = labels.get(LABEL_STORAGE, "")
        try:
            bucket = (json.loads(labels.get(LABEL_SERVING) or "{}").get("bucket") or {}).get("url")
        except (ValueError, AttributeError):
            bucket = None
        storage = str(bucket) if bucket else storage
        image = container.attrs.get("Config", {}).get("Image", "")
        upstream = labels.get(LABEL_UPSTREAM, "")
        return InstanceRow(
            registry=labels.get(LABEL_REGISTRY, ""),
            runtime=self.name,
            name=container.name,
            status="running" if container.status == "running" else container.status,
            storage=storage,
            size=0,  # `runtime.measured` fills it for the commands that show it: walking the storage is not free
            image=image,
            version=(container.image.labels or {}).get("org.opencontainers.image.version", "")
            if container.image is not None
            else "",
            mode="proxy" if upstream else "registry",
            upstream=upstream,
        )


_CLIENTS: dict[str, Any] = {}


def _shared_client() -> Any:
    """One docker SDK client per engine address for the life of the process (kernel or CLI)."""
    import docker
    from docker.errors import DockerException

    key = os.environ.get("DOCKER_HOST", "")
    if _socket_missing():
        # Checked first: the SDK leaks its socket when the engine is absent at construction, and a
        # client kept from before the engine stopped would fail with requests' errors, not docker's.
        stale = _CLIENTS.pop(key, None)
        if stale is not None:
            stale.close()
        raise RuntimeFailure(_no_engine(ConnectionError(f"nothing answers at {key or '/var/run/docker.sock'}")))
    client = _CLIENTS.get(key)
    if client is not None:
        return client
    try:
        client = docker.from_env(timeout=30)
    except DockerException as exc:
        raise RuntimeFailure(_no_engine(exc)) from None
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001 - DockerException or requests' connection errors
        client.close()
        raise RuntimeFailure(_no_engine(exc)) from None
    _CLIENTS[key] = client
    return client


def _socket_missing() -> bool:
    """True when the engine's unix socket is absent or nothing answers on it.

    Asked with a socket of our own (always closed) before the SDK builds a client: the SDK asks
    the engine its API version while it is constructed and, when that fails, leaves its socket
    open (a stale `docker.sock` after `dockerd` stopped is the common case).
    """
    host = os.environ.get("DOCKER_HOST", "")
    if host and not host.startswith("unix://"):
        return False  # tcp:// or ssh://: the SDK's own errors say enough
    return not unix_engine_pings(host[len("unix://") :] if host else "/var/run/docker.sock")


def unix_engine_pings(path: str, timeout: float = 2.0) -> bool:
    """True when an engine at the unix socket `path` answers `GET /_ping` with 200."""
    import socket

    if not os.path.exists(path):
        return False
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        head = sock.recv(64)
    except OSError:
        return False
    finally:
        sock.close()
    return head.startswith(b"HTTP/1.") and head[9:12] == b"200"


def _no_engine(exc: BaseException) -> str:
    return (
        f"no Docker engine answers ({_short(exc)}); start Docker, set DOCKER_HOST "
        "(Podman: unix:///run/podman/podman.sock), or use --runtime process"
    )


def _team(spec: RegistrySpec) -> bool:
    """True when `spec` needs the whole config file: S3, TLS, users or another bind address."""
    return spec.bucket is not None or spec.tls or spec.users or spec.listen != "127.0.0.1"


def _host_network(spec: RegistrySpec) -> bool:
    """The host's network namespace for a loopback upstream or S3 endpoint (moto, MinIO on this
    machine): nothing else reaches them from a container. Published ports otherwise."""
    loopback_proxy = bool(spec.proxy_url) and _loopback_url(spec.proxy_url)
    loopback_s3 = spec.bucket is not None and bool(spec.bucket.endpoint) and _loopback_url(spec.bucket.endpoint)
    return loopback_proxy or loopback_s3


def _addr(spec: RegistrySpec, host_network: bool) -> str:
    return bind_address(spec.listen, spec.port) if host_network else f"0.0.0.0:{CONTAINER_PORT}"


def _serving_mounts(spec: RegistrySpec) -> dict[str, dict[str, str]]:
    """Read-only mounts of the TLS files and htpasswd the config names (see `_inside`)."""
    volumes: dict[str, dict[str, str]] = {}
    if spec.tls or spec.users:
        volumes[str(team_dir(spec.registry))] = {"bind": TEAM_MOUNT, "mode": "ro"}
    if spec.tls_cert:
        volumes[spec.tls_cert] = {"bind": USER_CERT, "mode": "ro"}
        volumes[spec.tls_key] = {"bind": USER_KEY, "mode": "ro"}
    return volumes


def _inside(spec: RegistrySpec, path: Path) -> str:
    """Where the container sees a host path of the registry's serving files."""
    if spec.tls_cert and str(path) == spec.tls_cert:
        return USER_CERT
    if spec.tls_key and str(path) == spec.tls_key:
        return USER_KEY
    return f"{TEAM_MOUNT}/{Path(path).relative_to(team_dir(spec.registry, create=False))}"


def _record(
    registry: str, container: str | None, storage: str = "", image: str = "", serving: dict | None = None
) -> None:
    """jindr's own note that it runs a container for `registry` (lets listing skip the engine otherwise).

    It also names the engine, storage and image, so that `status` and `info` can still say what
    jindr started there when that engine stops answering.
    """
    import json

    from .base import port_of, private_dirs, state_dir

    directory = state_dir() / "docker"
    private_dirs(directory)
    path = directory / f"{port_of(registry)}.json"
    if container is None:
        path.unlink(missing_ok=True)
        return
    record = {
        "registry": registry,
        "container": container,
        "docker_host": os.environ.get("DOCKER_HOST", ""),
        "storage": storage,
        "image": image,
        "serving": serving or {},
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(record))


ENGINE_DOWN = "engine down"


def engine_down_rows(registry: str | None = None) -> list[InstanceRow]:
    """Rows for the containers jindr started on an engine that no longer answers (status `engine down`).

    The registry in such a container is not reachable (Docker stops its containers when it stops),
    and nothing about it can be changed until the engine is back: `start` then recovers it.
    """
    import json

    from .base import port_of, state_dir

    directory = state_dir() / "docker"
    paths = [directory / f"{port_of(registry)}.json"] if registry else sorted(directory.glob("*.json"))
    current = os.environ.get("DOCKER_HOST", "")
    rows = []
    for path in paths:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict) or not record.get("registry"):
            continue
        if registry is not None and record["registry"] != registry:
            continue
        host = str(record.get("docker_host", current))
        if host == current:
            down = not engine_answers()
        elif host.startswith("unix://"):
            down = not unix_engine_pings(host[len("unix://") :])
        else:
            continue  # another tcp:// or ssh:// engine: not ours to judge from here
        if down:
            rows.append(
                InstanceRow(
                    registry=str(record["registry"]),
                    runtime="docker",
                    name=str(record.get("container", "")),
                    status=ENGINE_DOWN,
                    storage=str(record.get("storage", "")),
                    size=0,
                    image=str(record.get("image", "")),
                    version="",
                    mode="registry",
                    upstream="",
                )
            )
    return rows


def _loopback_url(url: str) -> bool:
    from urllib.parse import urlsplit

    netloc = urlsplit(url).netloc
    return bool(netloc) and is_loopback(netloc)


def _pull_memory() -> Path:
    return state_dir() / "docker" / "pulls.json"


def pull_failed_at(image: str) -> float | None:
    """When a pull of `image` last failed (time.time()), if less than PULL_MEMORY_S ago; else None."""
    try:
        at = float(json.loads(_pull_memory().read_text())[image]["failed_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return at if 0 <= time.time() - at < PULL_MEMORY_S else None


def _remember_pull(image: str, reason: str | None) -> None:
    """Record that pulling `image` failed just now (and why), or forget it (`reason` None)."""
    path = _pull_memory()
    try:
        known = json.loads(path.read_text())
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    if reason is None and image not in known:
        return
    if reason is None:
        del known[image]
    else:
        known[image] = {"failed_at": time.time(), "reason": reason}
    try:
        write_private(path, json.dumps(known, indent=1) + "\n")
    except OSError:
        pass  # only a shortcut for the next start: a read-only state dir costs a pull attempt, no more


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def _secret_path(registry: str) -> Path:
    """The 0600 config holding a proxy registry's upstream credentials (state dir, 0700)."""
    return state_dir() / "docker" / str(port_of(registry)) / "config.yml"
