"""The one command table: names, aliases, arguments, help and handlers, for every face.

The magic, the CLI and the README reference are all built from `COMMANDS`. A handler parses
nothing itself: it gets an argparse namespace and a `Session`, calls `ops`, and returns a `Result`.
"""

from __future__ import annotations

import argparse
import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__
from .errors import CommandLineError, ImageUnavailable, RuntimeFailure
from .refs import DEFAULT_REGISTRY, Ref, is_loopback, parse_ref, parse_registry

if TYPE_CHECKING:
    from .client import RegistryClient
    from .ops.cache import ContentCache
    from .ops.fetch import Fetcher

__all__ = [
    "COMMANDS",
    "Command",
    "HelpShown",
    "Result",
    "Session",
    "build_parser",
    "find_command",
    "panel_for",
    "run",
]


@dataclass
class Result:
    """What a command returns: rows of one type, a message for the user, and success for exit codes."""

    row_type: type
    rows: list[Any] = field(default_factory=list)
    message: str = ""
    ok: bool = True


class HelpShown(Exception):
    """Raised instead of exiting after `--help` or `--version` printed: the face returns nothing."""


class Session:
    """Long-lived state of a face: the default registry, pooled clients, and the content cache."""

    def __init__(
        self,
        registry: str | None = None,
        *,
        cache: ContentCache | None = None,
        confirm: Callable[[str], bool] | None = None,
    ) -> None:
        self.registry = parse_registry(registry or os.environ.get("JINDR_REGISTRY") or DEFAULT_REGISTRY)
        self._cache = cache
        self._clients: dict[str, RegistryClient] = {}
        #: Asked before a destructive command acts (the CLI on a terminal); None acts without asking.
        self.confirm = confirm
        #: Makes a progress callback (done, total) for a named task; the faces supply bars or lines.
        self.progress: Callable[[str], Callable[[int, int], None] | None] = lambda name: None
        #: `--insecure` given: registries off loopback may be spoken to over plain HTTP.
        self.insecure = False
        #: Tells the user something that is not a result (a warning); the faces print it to stderr.
        self.notice: Callable[[str], None] = _to_stderr

    @property
    def cache(self) -> ContentCache:
        if self._cache is None:
            from .ops.cache import ContentCache, default_cache_dir

            self._cache = ContentCache(default_cache_dir())
        return self._cache

    def client(self, registry: str | None = None) -> RegistryClient:
        """The pooled client for `registry` (default: the session's).

        Loopback registries are spoken to over plain HTTP; every other one over HTTPS with the
        certificate verified, unless `--insecure` (or JINDR_INSECURE_REGISTRIES) says otherwise.
        """
        from .client import RegistryClient, default_insecure

        name = registry or self.registry
        insecure = not is_loopback(name) and (self.insecure or name in default_insecure())
        key = f"{name} (plain http)" if insecure else name
        if key not in self._clients:
            if insecure:
                why = "--insecure" if self.insecure else "JINDR_INSECURE_REGISTRIES"
                self.notice(f"jindr: warning: speaking plain HTTP to {name}: no TLS, as asked by {why}")
            self._clients[key] = RegistryClient(name, insecure=insecure)
        return self._clients[key]

    def fetcher(self, registry: str | None = None, *, local: bool = True) -> Fetcher:
        """Reads through the registry's storage when jindr runs it here (`local`), else its API."""
        from .ops.fetch import Fetcher

        client = self.client(registry)
        if local:
            from .runtime import local_storage

            storage = local_storage(client.registry)
            if storage is not None:
                from .client.storage import StorageReader

                return Fetcher(StorageReader(storage, client), self.cache)  # type: ignore[arg-type]
        return Fetcher(client, self.cache)

    def ref(self, text: str, *, default_tag: str | None = "latest") -> Ref:
        """Parse a reference typed by the user, relative to the session's registry."""
        return parse_ref(text, self.registry, default_tag=default_tag)

    def with_registry(self, registry: str) -> Session:
        """A view of this session on another default registry, sharing its clients and cache."""
        registry = parse_registry(registry)
        self.cache  # noqa: B018 - built here so that every view shares this one (and its open file)
        view = copy.copy(self)
        view.registry = registry
        return view

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        if self._cache is not None:
            self._cache.close()


def _to_stderr(text: str) -> None:
    import sys

    print(text, file=sys.stderr)


Handler = Callable[[Session, argparse.Namespace], Result]


@dataclass(frozen=True)
class Command:
    """One command of the table."""

    name: str
    aliases: tuple[str, ...]
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    handler: Handler
    #: In a notebook, the command without its positional arguments opens this widget panel.
    panel: str = ""


# ---- handlers ------------------------------------------------------------------------------


def _no_local(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-local",
        dest="local",
        action="store_false",
        help="always ask the registry's API, even for a registry jindr runs here (whose storage it reads)",
    )


def _args_ls(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="*", help="only repositories matching these shell-style patterns")
    _no_local(p)


def _ls(session: Session, args: argparse.Namespace) -> Result:
    from fnmatch import fnmatchcase

    from .models import RepoRow
    from .ops.listing import list_repositories

    rows = list_repositories(session.fetcher(local=args.local))
    if args.pattern:
        rows = [r for r in rows if any(fnmatchcase(r.repository, pat) for pat in args.pattern)]
    return Result(RepoRow, rows)


def _args_lsi(p: argparse.ArgumentParser) -> None:
    p.add_argument("repos", nargs="*", metavar="REPO[:TAG]", help="repositories (or single images); default: all")
    p.add_argument("-l", "--long", action="store_true", help="add size (all platforms) and created (newest platform)")
    p.add_argument("-j", "--jobs", type=_positive_int, default=8, help="concurrent requests (default 8)")
    _no_local(p)


def _lsi(session: Session, args: argparse.Namespace) -> Result:
    from .models import ImageRow, LongImageRow
    from .ops.listing import list_images

    refs = [session.ref(text, default_tag=None) for text in args.repos]
    row_type = LongImageRow if args.long else ImageRow
    rows: list[Any] = []
    unreadable: list[tuple[str, str]] = []
    for registry in _registries(session, refs):
        selection = [r for r in refs if r.registry == registry]
        fetcher = session.fetcher(registry, local=args.local)
        rows.extend(list_images(fetcher, selection, long=args.long, jobs=args.jobs, unreadable=unreadable))
    from .ops.listing import TORN

    broken = [f"{r.repository}:{r.tag or r.digest}" for r in rows if r.missing]
    torn = [f"{r.repository}:{r.tag}" for r in rows if TORN in r.missing]
    notes = [_broken_notice(broken, torn)] if broken else []
    if unreadable:
        names = ", ".join(name for name, _ in unreadable[:3]) + (
            f" and {len(unreadable) - 3} more" if len(unreadable) > 3 else ""
        )
        notes.append(
            f"warning: {len(unreadable)} {'tag' if len(unreadable) == 1 else 'tags'} left out ({names}): "
            f"{unreadable[0][1]} — `inspect` one of them for the reason"
        )
    return Result(row_type, rows, "; ".join(notes))


def _args_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image references (repo[:tag], repo@digest)")
    _no_local(p)


def _inspect(session: Session, args: argparse.Namespace) -> Result:
    from .models import PlatformRow
    from .ops.inspect import inspect_images

    refs = [session.ref(text) for text in args.images]
    rows: list[Any] = []
    for registry in _registries(session, refs):
        selection = [r for r in refs if r.registry == registry]
        rows.extend(inspect_images(session.fetcher(registry, local=args.local), selection))
    broken = list(
        dict.fromkeys(f"{r.repository}:{r.tag}" if r.tag else r.repository for r in rows if r.kind == "missing")
    )
    return Result(PlatformRow, rows, _broken_notice(broken) if broken else "")


def _args_layers(p: argparse.ArgumentParser) -> None:
    p.add_argument("repos", nargs="*", metavar="REPO[:TAG]", help="repositories (or single images); default: all")
    p.add_argument("--attestations", action="store_true", help="also list the layers of attestation manifests")
    p.add_argument("-j", "--jobs", type=_positive_int, default=8, help="concurrent requests (default 8)")
    _no_local(p)


def _layers(session: Session, args: argparse.Namespace) -> Result:
    from .models import LayerRow
    from .ops.layers import layer_rows, scan

    refs = [session.ref(text, default_tag=None) for text in args.repos]
    found, torn, notes = [], [], []
    for registry in _registries(session, refs):
        selection = [r for r in refs if r.registry == registry]
        fetcher = session.fetcher(registry, local=args.local)
        scanned = scan(fetcher, selection, attestations=args.attestations, jobs=args.jobs)
        found.extend(scanned.found)
        torn.extend(scanned.torn)
        notes.append(scanned.unreadable_notice())
    broken = [r.name for r in found if r.missing] + torn
    notes.insert(0, _broken_notice(broken, torn) if broken else "")
    return Result(LayerRow, layer_rows(found), "; ".join(n for n in notes if n))


def _args_history(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image references (repo[:tag], repo@digest)")
    _no_local(p)


def _resolved(session: Session, images: list[str], local: bool) -> list[Any]:
    """Each image walked to its platform images, in the order given (all parsed before any is read)."""
    from .ops.layers import resolve

    refs = [session.ref(text) for text in images]
    return [resolve(session.fetcher(ref.registry, local=local), ref) for ref in refs]


def _history(session: Session, args: argparse.Namespace) -> Result:
    from .models import HistoryRow
    from .ops.layers import history_rows

    found = _resolved(session, args.images, args.local)
    broken = [r.name for r in found if r.missing]
    return Result(HistoryRow, [row for r in found for row in history_rows(r)], _broken_notice(broken) if broken else "")


def _config(session: Session, args: argparse.Namespace) -> Result:
    from .models import ConfigRow
    from .ops.layers import config_rows

    found = _resolved(session, args.images, args.local)
    broken = [r.name for r in found if r.missing]
    return Result(ConfigRow, [row for r in found for row in config_rows(r)], _broken_notice(broken) if broken else "")


def _args_diff(p: argparse.ArgumentParser) -> None:
    p.usage = "%(prog)s [-h] [--no-local] A B"  # both are needed; the handler says so in words
    p.add_argument("a", nargs="?", metavar="A", help="the image to compare from (repo[:tag], repo@digest)")
    p.add_argument("b", nargs="?", metavar="B", help="the image to compare with (HOST:PORT/repo:tag: another registry)")
    _no_local(p)


def _diff(session: Session, args: argparse.Namespace) -> Result:
    from .models import DiffRow
    from .ops.diff import diff_images

    if args.b is None:
        raise CommandLineError("diff needs two images, A and B: e.g. `diff app:1 app:2`, `diff app:1 HOST:PORT/app:1`")
    a, b = _resolved(session, [args.a, args.b], args.local)
    rows, summary = diff_images(a, b)
    broken = [r.name for r in (a, b) if r.missing]
    return Result(DiffRow, rows, "; ".join([summary, _broken_notice(broken)]) if broken else summary)


def _args_start(p: argparse.ArgumentParser) -> None:
    p.add_argument("-d", "--dir", help="storage directory (default ~/.jindr; created if missing)")
    p.add_argument("-n", "--name", default="", help="container name (default jindr-PORT)")
    p.add_argument(
        "--runtime",
        choices=("auto", "docker", "process"),
        default="auto",
        help="how to run it: docker (Docker or Podman's API), process (the registry binary), "
        "auto (docker when an engine answers, else process)",
    )
    p.add_argument("--image", help="registry image for docker (default $JINDR_REGISTRY_IMAGE or registry:3)")
    p.add_argument(
        "--binary", help="registry binary for process (default $JINDR_REGISTRY_BINARY, registry, docker-registry)"
    )
    p.add_argument("--proxy", metavar="URL", default="", help="run as a pull-through cache of this registry")
    p.add_argument("--proxy-username", default="", help="user name for the upstream registry")
    p.add_argument(
        "--proxy-password-env",
        metavar="VAR",
        default="",
        help="environment variable holding the upstream password (never on the command line)",
    )


def _start(session: Session, args: argparse.Namespace) -> Result:
    from .models import InstanceRow
    from .runtime import RegistrySpec, find_managed, select

    password = ""
    if args.proxy_password_env:
        if args.proxy_password_env not in os.environ:
            raise CommandLineError(f"environment variable {args.proxy_password_env} is not set")
        password = os.environ[args.proxy_password_env]
    spec = RegistrySpec.make(session.registry, args.dir, args.name, args.proxy, args.proxy_username, password)
    found = find_managed(spec.registry)
    if found is not None and found[1].status == "running":
        return Result(
            InstanceRow, _sized([found[1]]), f"a registry is already running at {spec.registry}; nothing changed"
        )
    runtime = select(args.runtime, image=args.image, binary=args.binary)
    try:
        row = runtime.start(spec)
    except ImageUnavailable as exc:
        from .runtime import ProcessRuntime, find_binary

        binary = find_binary(args.binary)
        if args.runtime != "auto" or not binary:
            raise
        # auto: Docker answers but has no registry image and cannot pull one (offline): the binary will do.
        row = ProcessRuntime(args.binary).start(spec)
        return Result(InstanceRow, _sized([row]), _fell_back(exc, binary))
    return Result(InstanceRow, _sized([row]))


def _fell_back(exc: ImageUnavailable, binary: str) -> str:
    """The one line `start` says when the auto runtime used the binary because Docker cannot pull."""
    import time

    line = f"Docker cannot pull {exc.image} here; using {binary} — `--runtime process` skips this check"
    if exc.tried_at is None:
        return line
    ago = max(1, round((time.time() - exc.tried_at) / 60))
    return f"{line} (the pull failed {ago} min ago; `--runtime docker` tries it again)"


def _sized(rows: list[Any]) -> list[Any]:
    """Instance rows with `size` measured (bytes on disk under each storage directory)."""
    from pathlib import Path

    from .runtime.base import dir_size

    for row in rows:
        row.size = dir_size(Path(row.storage)) if row.storage else 0
    return rows


def _args_stop(p: argparse.ArgumentParser) -> None:
    p.add_argument("-G", "--no-gc", action="store_true", help="stop without garbage-collecting first")


def _stop(session: Session, args: argparse.Namespace) -> Result:
    from .models import InstanceRow
    from .ops.gc import collect
    from .runtime import find_managed

    found = find_managed(session.registry)
    if found is None:
        return Result(InstanceRow, [], f"no registry that jindr runs at {session.registry}; nothing to stop")
    runtime, _ = found
    message = ""
    if not args.no_gc:
        try:
            gc = collect(runtime, session.registry, bring_back=False)
            message = f"garbage collection reclaimed {gc.describe()}"
        except RuntimeFailure as exc:
            message = f"{exc}; stopped without collecting (run `gc` after the next `start`)"
    row = runtime.stop(session.registry)
    return Result(InstanceRow, _sized([row] if row else []), message)


def _restart(session: Session, args: argparse.Namespace) -> Result:
    from .models import InstanceRow
    from .runtime import find_managed

    found = find_managed(session.registry)
    if found is None:
        raise RuntimeFailure(f"no registry that jindr runs at {session.registry}; start one with `start`")
    runtime, _ = found
    runtime.pause(session.registry)
    return Result(InstanceRow, _sized([runtime.resume(session.registry)]))


def _status(session: Session, args: argparse.Namespace) -> Result:
    from .models import InstanceRow
    from .runtime import find_managed

    found = find_managed(session.registry)
    if found is not None and found[1].status == "running":
        return Result(InstanceRow, _sized([found[1]]), ok=True)
    row = found[1] if found is not None else InstanceRow(session.registry, "", "", "not running", "", 0, "", "", "", "")
    return Result(InstanceRow, _sized([row]), ok=False)


def _info(session: Session, args: argparse.Namespace) -> Result:
    from .models import InstanceRow
    from .runtime import managed_instances

    return Result(InstanceRow, _sized(managed_instances()))


def _args_gc(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true", help="show what would be removed; change nothing")


def _gc(session: Session, args: argparse.Namespace) -> Result:
    from .models import GcRow
    from .ops.gc import collect
    from .runtime import find_managed

    found = find_managed(session.registry)
    if found is None:
        raise RuntimeFailure(
            f"jindr can only garbage-collect a registry it runs; none at {session.registry} (`info` lists them)"
        )
    return Result(GcRow, [collect(found[0], session.registry, dry_run=args.dry_run)])


def _no_arguments(p: argparse.ArgumentParser) -> None:
    pass


def _args_rmi(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="*", metavar="IMAGE", help="repo:tag (that tag only) or repo@digest (the manifest)")
    p.add_argument("--dry-run", action="store_true", help="show the plan; delete nothing")
    p.add_argument(
        "--with-index",
        action="store_true",
        help="repo@digest of a platform image or attestation inside a tagged index: delete the index and its "
        "tags too (without it such a digest is refused: deleting it alone would break the index)",
    )
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation (CLI on a terminal)")


def _confirmed(session: Session, args: argparse.Namespace, question: str) -> bool:
    return args.yes or session.confirm is None or session.confirm(question)


def _rmi(session: Session, args: argparse.Namespace) -> Result:
    from .models import ActionRow
    from .ops.delete import delete_all, plan_images

    if not args.images:
        raise CommandLineError(
            "rmi needs at least one IMAGE (in a notebook, `%jindr rmi` alone opens the cleanup panel)"
        )
    refs = [session.ref(text) for text in args.images]
    plans = []
    for registry in _registries(session, refs):  # plan everything before touching anything
        client = session.client(registry)
        selection = [r for r in refs if r.registry == registry]
        plans.append((client, plan_images(client, selection, with_index=args.with_index)))
    if args.dry_run:
        return Result(ActionRow, [row for _, plan in plans for row in plan.rows("would delete")])
    names = [f"{t.repository}:{t.tag}" for _, p in plans for t in p.tag_deletes]
    for _, p in plans:
        for d in p.digest_deletes:
            tags = [*(t for i in d.indexes for t in i.tags), *d.tags]
            indexes = f", {len(d.indexes)} index(es)" if d.indexes else ""
            names.append(f"{d.repository}@{d.digest[:19]}… (tags: {', '.join(tags) or 'none'}{indexes})")
    if not _confirmed(session, args, f"delete {', '.join(names)}?"):
        return Result(ActionRow, [row for _, plan in plans for row in plan.rows("would delete")], "nothing deleted")

    def replan(client: Any, plan: Any) -> Any:
        return plan_images(client, [r for r in refs if r.registry == client.registry], with_index=args.with_index)

    # After a question the user may have taken minutes over: the registries must still be as planned.
    outcome = delete_all(
        plans, tag_delete_api=_deletes_tags, replan=replan if session.confirm and not args.yes else None
    )
    return Result(ActionRow, outcome.rows, outcome.error, ok=not outcome.error)


def _deletes_tags(registry: str) -> bool:
    """Registry 3 deletes a single tag through the API; only trusted for registries jindr runs."""
    from .runtime import find_managed

    found = find_managed(registry)
    return found is not None and found[1].version.split(".")[0].isdigit() and int(found[1].version.split(".")[0]) >= 3


def _args_rmr(p: argparse.ArgumentParser) -> None:
    p.add_argument("repos", nargs="+", metavar="REPO", help="repositories to delete whole")
    p.add_argument("--dry-run", action="store_true", help="show the plan; delete nothing")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation (CLI on a terminal)")


def _rmr(session: Session, args: argparse.Namespace) -> Result:
    from .models import ActionRow
    from .ops.delete import SPACE_NOTE, delete_repositories, plan_repositories
    from .ops.gc import collect
    from .refs import parse_repository
    from .runtime import find_managed

    repos = list(dict.fromkeys(parse_repository(r) for r in args.repos))
    client = session.client()
    found = find_managed(session.registry)
    local = found is not None and found[1].status == "running"
    # Every repository must exist (and, through the API, the registry must accept deletes) before anything goes.
    plans = plan_repositories(client, repos, probe=not local)
    planned = [row for p in plans for row in p.rows("would delete", "", torn_removed=local)]
    if args.dry_run:
        return Result(ActionRow, planned)
    if not _confirmed(session, args, f"delete the repositories {', '.join(repos)} and every image in them?"):
        return Result(ActionRow, planned, "nothing deleted")
    if local:
        gc = collect(found[0], session.registry, remove_repositories=repos)
        note = "repository removed from storage"
        message = f"{len(repos)} repositories removed; garbage collection reclaimed {gc.describe()}"
    else:
        error = delete_repositories(client, plans)
        note = f"manifest deleted; {SPACE_NOTE} of the registry"
        message = error or (
            "the repository names stay in the catalog until the registry's operator removes them "
            "(the registry API cannot delete a repository)"
        )
        if error:
            rows = [row for p in plans for row in p.rows("deleted", note)]
            return Result(ActionRow, rows, f"{error}; the rest was not attempted", ok=False)
    rows = [row for p in plans for row in p.rows("deleted", note, torn_removed=local)]
    return Result(ActionRow, rows, message)


def _args_cp(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", nargs="?", metavar="IMAGE", help="the image to copy (repo[:tag] in the current registry)")
    p.add_argument("destination", nargs="?", metavar="REGISTRY", help="the destination registry (host[:port])")
    p.add_argument("tags", nargs="*", metavar="TAG", help="more tags of the same repository to copy")
    _copy_options(p, "destination repository")


def _copy_options(p: argparse.ArgumentParser, what: str) -> None:
    """Options `cp` and `cpe` share."""
    p.add_argument("--to", metavar="NAME", help=f"{what} name (default: the same name)")
    p.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="TAG",
        type=_tag,
        help="also tag each copy as TAG at the destination (repeatable)",
    )
    p.add_argument("-j", "--jobs", type=_positive_int, default=4, help="parallel blob transfers (default 4)")


def _tag(text: str) -> str:
    from .errors import InvalidReference
    from .refs import Ref

    try:
        return Ref("localhost", "x").with_tag(text).tag or ""
    except InvalidReference as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _copy_rows(session: Session, args: argparse.Namespace, dst: Any, dst_repo: str) -> list[Any]:
    from .ops.copy import copy_image

    src_ref = session.ref(args.image)
    refs = [src_ref] + [src_ref.with_tag(t) for t in args.tags if t != src_ref.tag]
    src = session.client(src_ref.registry)
    rows = []
    for ref in refs:
        target = Ref(dst.registry, dst_repo, ref.tag, None)
        rows.append(
            copy_image(src, ref, dst, target, tags=args.tag, jobs=args.jobs, progress=session.progress(str(ref)))
        )
    return rows


def _cp(session: Session, args: argparse.Namespace) -> Result:
    from .models import CopyRow
    from .refs import parse_repository

    if args.image is None or args.destination is None:
        raise CommandLineError("cp needs IMAGE and REGISTRY (in a notebook, `%jindr cp` alone opens the copy panel)")
    src_ref = session.ref(args.image)
    dst = session.client(parse_registry(args.destination))
    dst_repo = parse_repository(args.to) if args.to else src_ref.repository
    return Result(CopyRow, _copy_rows(session, args, dst, dst_repo))


def _args_cpe(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE", help="the image to copy (repo[:tag] in the current registry)")
    p.add_argument("tags", nargs="*", metavar="TAG", help="more tags of the same repository to copy")
    p.add_argument("--region", help="AWS region (default: the profile's)")
    p.add_argument("--keep", type=_positive_int, default=4, help="images the lifecycle policy keeps (default 4)")
    _copy_options(p, "ECR repository")


def _cpe(session: Session, args: argparse.Namespace) -> Result:
    from .client import RegistryClient
    from .ecr import ecr_target
    from .models import CopyRow
    from .refs import parse_repository

    src_ref = session.ref(args.image)
    repository = parse_repository(args.to) if args.to else src_ref.repository
    target = ecr_target(repository, region=args.region, keep=args.keep)
    with RegistryClient(target.registry, credentials=target.credentials) as dst:
        rows = _copy_rows(session, args, dst, repository)
    state = "created with the lifecycle policy" if target.created else "exists"
    return Result(CopyRow, rows, f"ECR repository {repository} in {target.region}: {state}")


def _args_load(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "path",
        metavar="PATH",
        help="a `docker save` tarball, or an OCI image layout (directory or tar); PATH:NAME picks one image",
    )
    p.add_argument(
        "image",
        nargs="?",
        metavar="IMAGE",
        help="repo[:tag] for the image (default: the archive's own names); one image only, unless --all",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--name",
        metavar="NAME",
        help="the image to load from an archive holding several: its ref.name or RepoTag, or its digest",
    )
    which.add_argument(
        "--all",
        dest="all_images",
        action="store_true",
        help="load every image, each under its own name (with IMAGE a repository: its own tag there)",
    )


def _load(session: Session, args: argparse.Namespace) -> Result:
    from .models import CopyRow
    from .ops.layout import archive_path, load

    path, name = archive_path(args.path)
    if name is not None and args.name is not None and name != args.name:
        raise CommandLineError(f"PATH:NAME names {name!r} but --name says {args.name!r}: give one of them")
    name = args.name if args.name is not None else name
    target = session.ref(args.image, default_tag=None) if args.image is not None else None
    client = session.client(target.registry if target else None)
    progress = session.progress(str(args.path))
    rows = load(client, path, target, name=name, all_images=args.all_images, progress=progress)
    return Result(CopyRow, rows)


def _args_save(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE", help="the image to save (repo[:tag] or repo@digest)")
    p.add_argument("path", metavar="PATH", help="a new directory, or a file ending in .tar")


def _save(session: Session, args: argparse.Namespace) -> Result:
    from pathlib import Path

    from .models import CopyRow
    from .ops.layout import save

    ref = session.ref(args.image)
    return Result(CopyRow, [save(session.client(ref.registry), ref, Path(args.path).expanduser())])


def _args_du(p: argparse.ArgumentParser) -> None:
    p.add_argument("repos", nargs="*", metavar="REPO", help="repositories (default: all)")
    p.add_argument(
        "--total",
        action="store_true",
        help="one row for the whole registry instead: distinct manifests and blobs, their size, broken tags, "
        "and for a registry jindr runs here the disk it takes and what gc would reclaim now",
    )
    _no_local(p)


def _du(session: Session, args: argparse.Namespace) -> Result:
    from .models import DuRow, DuTotalRow
    from .ops.du import disk_usage
    from .refs import parse_repository
    from .runtime import find_managed

    repos = [parse_repository(r) for r in args.repos]
    usage = disk_usage(session.fetcher(local=args.local), repos)
    total = usage.total
    found = find_managed(session.registry)
    spec = found[0].spec_of(session.registry) if found is not None else None
    if spec is not None:
        from .client.storage import StorageLayout
        from .ops.gc import plan
        from .runtime.base import dir_size

        would = plan(StorageLayout(spec.storage))
        total.disk_bytes = dir_size(spec.storage)
        total.gc_blobs = len(would.blobs)
        total.gc_bytes = sum(size for _, size in would.blobs)
    notes = [_broken_notice(usage.broken, usage.torn)] if usage.broken else []
    if args.total:
        return Result(DuTotalRow, [total], "; ".join(notes))
    from .models import GcRow

    line = (
        f"registry total: {total.repositories} repositories, {total.manifests} manifests, {total.blobs} blobs, "
        f"{GcRow.binary(total.size)}"
    )
    if total.disk_bytes is not None:
        line += f"; {GcRow.binary(total.disk_bytes)} on disk, gc would reclaim {GcRow.binary(total.gc_bytes or 0)} now"
    return Result(DuRow, usage.rows, "; ".join([*notes, line + " (`du --total` as a table)"]))


def _broken_notice(names: list[str], torn: list[str] | None = None) -> str:
    """One line naming broken tags (an index listing manifests the registry lost) and torn ones
    (listed, their own manifest gone), each with what to do."""

    def listed(items: list[str]) -> str:
        return ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")

    torn = torn or []
    parts = []
    lost = [n for n in names if n not in torn]
    if lost:
        parts.append(
            f"warning: {len(lost)} broken {'tag' if len(lost) == 1 else 'tags'} ({listed(lost)}): the index lists "
            "manifests the registry no longer has, so it will not pull — `inspect` shows which; push the image "
            "again or `rmi` the tag"
        )
    if torn:
        parts.append(
            f"warning: {len(torn)} torn {'tag' if len(torn) == 1 else 'tags'} ({listed(torn)}): listed, but the "
            "manifest is gone (a delete the registry did not finish); the API cannot remove it: `rmr` on a "
            "registry jindr runs does, else its operator"
        )
    return "; ".join(parts)


def _registries(session: Session, refs: list[Ref]) -> list[str]:
    if not refs:
        return [session.registry]
    return list(dict.fromkeys(r.registry for r in refs))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"expected 1-64, got {value}")
    return value


COMMANDS: tuple[Command, ...] = (
    Command("start", ("up",), "Start a registry (docker, Podman or the registry binary).", _args_start, _start),
    Command("stop", ("down",), "Garbage-collect (unless -G), then stop the registry.", _args_stop, _stop),
    Command("restart", (), "Restart the registry exactly as it was.", _no_arguments, _restart),
    Command(
        "stat",
        ("status",),
        "Status of the registry (CLI exit status 0 if running, 1 otherwise).",
        _no_arguments,
        _status,
    ),
    Command(
        "info", ("ps",), "List the registries jindr runs on this machine, whichever runtime.", _no_arguments, _info
    ),
    Command(
        "gc", (), "Garbage-collect the registry safely (paused while it runs) and report what went.", _args_gc, _gc
    ),
    Command(
        "rmi",
        ("delimage",),
        "Delete images: repo:tag removes that tag only, repo@digest the manifest.",
        _args_rmi,
        _rmi,
        panel="DeletePanel",
    ),
    Command("rmr", ("delrepo",), "Delete repositories with every image in them.", _args_rmr, _rmr),
    Command(
        "cp",
        ("copy",),
        "Copy an image from the local registry to another docker registry.",
        _args_cp,
        _cp,
        panel="CopyPanel",
    ),
    Command("cpe", ("copy2ecr",), "Copy an image from the local registry to AWS ECR.", _args_cpe, _cpe),
    Command(
        "load",
        (),
        "Push an image from a `docker save` tarball or an OCI image layout, without Docker.",
        _args_load,
        _load,
    ),
    Command(
        "save",
        (),
        "Write an image as an OCI image layout (a directory, or a tar when PATH ends in .tar).",
        _args_save,
        _save,
    ),
    Command("du", (), "Where the space goes: per repository, shared layers counted honestly.", _args_du, _du),
    Command("ls", ("repos",), "List repositories in the registry.", _args_ls, _ls),
    Command("lsi", ("images",), "List images (one row per tag) in the specified repos.", _args_lsi, _lsi),
    Command(
        "ins", ("inspect",), "Inspect specified images: the index, then one row per platform.", _args_inspect, _inspect
    ),
    Command(
        "layers",
        (),
        "One row per layer of every tag and platform: digest, media type, size, the history step that made it, "
        "how many images share it and where it first appeared. Example: `layers app` (every tag of app).",
        _args_layers,
        _layers,
    ),
    Command(
        "history",
        (),
        "The config history of an image, one row per step and platform, with the layer each step made. "
        "Example: `history app:1.0`.",
        _args_history,
        _history,
    ),
    Command(
        "config",
        (),
        "What each platform image runs: user, working dir, entrypoint, cmd, env, labels, ports, side by side. "
        "Example: `config app:1.0 app:2.0`.",
        _args_history,
        _config,
    ),
    Command(
        "diff",
        (),
        "Compare two images per platform: layers shared, only in A, only in B, and the config fields that changed. "
        "Example: `diff app:1 app:2`.",
        _args_diff,
        _diff,
    ),
)


def find_command(name: str) -> Command:
    """The command called `name` or one of its aliases."""
    for command in COMMANDS:
        if name == command.name or name in command.aliases:
            return command
    raise _unknown_command(name, [n for c in COMMANDS for n in (c.name, *c.aliases)])


def _unknown_command(name: str, names: list[str], usage: str = "") -> CommandLineError:
    close = _closest(name, names)
    if close:
        return CommandLineError(f"unknown command {name!r}; did you mean {close}?", usage=usage)
    return CommandLineError(f"unknown command {name!r}", usage=usage, hint="`{prog} --help` lists the commands")


def _closest(word: str, candidates: list[str]) -> str:
    """The candidate `word` is most likely a misspelling of ("" when none is close)."""
    import difflib

    found = difflib.get_close_matches(word, candidates, n=1)
    return found[0] if found else ""


# ---- parsing -------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so a kernel never sees SystemExit.

    Options must be spelled out: no prefix matching (`ls --n 5` must not mean `--no-local`). A
    misspelt command, choice or option gets "did you mean ...?"; an option the command does not
    know is refused with that command's usage (argparse would show the top-level one).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.commands: dict[str, argparse.ArgumentParser] = {}

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        import sys

        argv = list(sys.argv[1:] if args is None else args)
        parsed, extras = self.parse_known_args(argv, namespace)
        if extras:
            name = getattr(parsed, "command", None) or ""
            child = self.commands.get(name)
            after = name in argv and extras[0] in argv[argv.index(name) :]
            blamed = child if isinstance(child, _Parser) and after else self
            blamed.unrecognized(extras)
        return parsed

    def unrecognized(self, extras: list[str]) -> NoReturn:
        """Refuse arguments this parser does not take, naming the option that was probably meant."""
        options = [o for action in self._actions for o in action.option_strings]
        guesses = [_closest(e.split("=", 1)[0], options) for e in extras if e.startswith("-")]
        meant = next((g for g in guesses if g), "")
        self.error(f"unrecognized arguments: {' '.join(extras)}" + (f"; did you mean {meant}?" if meant else ""))

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        # argparse's own check lists every choice (27 command names); a close one is more help.
        if action.choices is None or value in action.choices:
            return
        names = [str(c) for c in action.choices]
        if isinstance(action, argparse._SubParsersAction):
            raise _unknown_command(str(value), names, usage=self.format_usage().strip())
        close = _closest(str(value), names)
        if not close:
            super()._check_value(action, value)
        raise argparse.ArgumentError(
            action, f"invalid choice: {value!r}; did you mean {close}? (choose from {', '.join(names)})"
        )

    def error(self, message: str) -> NoReturn:
        raise CommandLineError(message, usage=self.format_usage().strip())

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if status == 0:
            raise HelpShown()
        raise CommandLineError((message or "").strip() or f"exit {status}", usage=self.format_usage().strip())


def build_parser(prog: str = "jindr", *, cli: bool = True) -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per command (aliases included)."""
    parser = _Parser(
        prog=prog,
        description="Interact with a local docker registry.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--version", action="version", version=f"jindr_nb {__version__}")
    parser.add_argument(
        "-r",
        "--registry",
        help=f"The registry to use (host[:port]). Default: $JINDR_REGISTRY or {DEFAULT_REGISTRY}.",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="speak plain HTTP (no TLS) to the registries off this machine that this command names "
        "(loopback always uses HTTP; others use HTTPS with certificate checks unless this is given)",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    if cli:
        parser.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    sub = parser.add_subparsers(dest="command", metavar="command", title="Commands", required=True)
    for command in COMMANDS:
        child = sub.add_parser(command.name, aliases=list(command.aliases), help=command.help, description=command.help)
        command.arguments(child)
        child.set_defaults(_handler=command.handler)
        parser.commands.update(dict.fromkeys((command.name, *command.aliases), child))
    return parser


def panel_for(args: argparse.Namespace) -> str:
    """The panel a notebook opens for this command line ("" when it should just run)."""
    command = find_command(args.command)
    if not command.panel:
        return ""
    given = [v for k, v in vars(args).items() if k in ("images", "image", "destination") and v not in (None, [])]
    return "" if given else command.panel


def run(session: Session, args: argparse.Namespace) -> Result:
    """Run a parsed command line in `session`."""
    if args.registry is not None:
        session = session.with_registry(args.registry)
    if getattr(args, "insecure", False):
        session = session.with_registry(session.registry)
        session.insecure = True
    return args._handler(session, args)  # type: ignore[no-any-return]


def reference_markdown() -> str:
    """The README's command reference: each command's own `--help` text (`make readme` writes it)."""
    import os

    parser = build_parser("jindr", cli=True)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parts = []
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal: fix the width for a stable README
    try:
        for command in COMMANDS:
            heading = f"`{command.name}`" + "".join(f" / `{a}`" for a in command.aliases)
            text = sub.choices[command.name].format_help().strip()
            parts.append(f"#### {heading}\n\n```\n{text}\n```\n")
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(parts)
