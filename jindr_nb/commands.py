"""The one command table: names, aliases, arguments, help and handlers, for every face.

The magic, the CLI and the README reference are all built from `COMMANDS`. A handler parses
nothing itself: it gets an argparse namespace and a `Session`, turns the arguments into values
(references, repository names), calls one thing in `ops` or `runtime`, and returns a `Result`.
What a command does, and what it says about it, lives there.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from . import __version__
from .errors import CommandLineError, InvalidReference
from .models import (
    ActionRow,
    ConfigRow,
    CopyRow,
    DiffRow,
    DuRow,
    DuTotalRow,
    GcRow,
    HistoryRow,
    ImageRow,
    InstanceRow,
    LayerRow,
    LongImageRow,
    PlatformRow,
    RepoRow,
    TrustRow,
    UserRow,
)
from .refs import DEFAULT_REGISTRY, Ref, parse_registry, parse_repository
from .session import Session

__all__ = [
    "COMMANDS",
    "Command",
    "HelpShown",
    "Result",
    "Session",  # lives in session.py; here for the faces and tests that import it with the table
    "build_parser",
    "find_command",
    "panel_for",
    "reference_markdown",
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


# ---- arguments shared by several commands ------------------------------------------------------


def _no_arguments(p: argparse.ArgumentParser) -> None:
    pass


def _no_local(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-local",
        dest="local",
        action="store_false",
        help="always ask the registry's API, even for a registry jindr runs here (whose storage it reads)",
    )


def _jobs(p: argparse.ArgumentParser, default: int, what: str) -> None:
    p.add_argument("-j", "--jobs", type=_positive_int, default=default, help=f"{what} (default {default})")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"expected 1-64, got {value}")
    return value


def _tag(text: str) -> str:
    try:
        return Ref("localhost", "x").with_tag(text).tag or ""
    except InvalidReference as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _confirmed(session: Session, args: argparse.Namespace, question: str) -> bool:
    return args.yes or session.confirm is None or session.confirm(question)


# ---- reading: ls, lsi, inspect, layers, history, config, diff, du ------------------------------


def _args_ls(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="*", help="only repositories matching these shell-style patterns")
    _no_local(p)


def _ls(session: Session, args: argparse.Namespace) -> Result:
    from .ops.listing import list_repositories

    return Result(RepoRow, list_repositories(session.fetcher(local=args.local), args.pattern))


def _args_lsi(p: argparse.ArgumentParser) -> None:
    p.add_argument("repos", nargs="*", metavar="REPO[:TAG]", help="repositories (or single images); default: all")
    p.add_argument("-l", "--long", action="store_true", help="add size (all platforms) and created (newest platform)")
    _jobs(p, 8, "concurrent requests")
    _no_local(p)


def _lsi(session: Session, args: argparse.Namespace) -> Result:
    from .ops.listing import list_images
    from .ops.notices import listing_notice

    refs = [session.ref(text, default_tag=None) for text in args.repos]
    rows: list[Any] = []
    unreadable: list[tuple[str, str]] = []
    for registry, selection in session.by_registry(refs):
        fetcher = session.fetcher(registry, local=args.local)
        rows += list_images(fetcher, selection, long=args.long, jobs=args.jobs, unreadable=unreadable)
    return Result(LongImageRow if args.long else ImageRow, rows, listing_notice(rows, unreadable))


def _args_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image references (repo[:tag], repo@digest)")
    _no_local(p)


def _inspect(session: Session, args: argparse.Namespace) -> Result:
    from .ops.inspect import inspect_images
    from .ops.notices import inspect_notice

    refs = [session.ref(text) for text in args.images]
    rows: list[PlatformRow] = []
    for registry, selection in session.by_registry(refs):
        rows += inspect_images(session.fetcher(registry, local=args.local), selection)
    return Result(PlatformRow, rows, inspect_notice(rows))


def _args_layers(p: argparse.ArgumentParser) -> None:
    p.add_argument("repos", nargs="*", metavar="REPO[:TAG]", help="repositories (or single images); default: all")
    p.add_argument("--attestations", action="store_true", help="also list the layers of attestation manifests")
    _jobs(p, 8, "concurrent requests")
    _no_local(p)


def _layers(session: Session, args: argparse.Namespace) -> Result:
    from .ops.layers import layer_rows, scan
    from .ops.notices import scan_notice

    refs = [session.ref(text, default_tag=None) for text in args.repos]
    scans = [
        scan(session.fetcher(registry, local=args.local), selection, attestations=args.attestations, jobs=args.jobs)
        for registry, selection in session.by_registry(refs)
    ]
    return Result(LayerRow, layer_rows([r for s in scans for r in s.found]), scan_notice(scans))


def _args_history(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image references (repo[:tag], repo@digest)")
    _no_local(p)


def _resolved(session: Session, images: list[str], local: bool) -> list[Any]:
    """Each image walked to its platform images, in the order given (all parsed before any is read)."""
    from .ops.layers import resolve

    refs = [session.ref(text) for text in images]
    return [resolve(session.fetcher(ref.registry, local=local), ref) for ref in refs]


def _history(session: Session, args: argparse.Namespace) -> Result:
    from .ops.layers import history_rows
    from .ops.notices import resolved_notice

    found = _resolved(session, args.images, args.local)
    return Result(HistoryRow, [row for r in found for row in history_rows(r)], resolved_notice(found))


def _config(session: Session, args: argparse.Namespace) -> Result:
    from .ops.layers import config_rows
    from .ops.notices import resolved_notice

    found = _resolved(session, args.images, args.local)
    return Result(ConfigRow, [row for r in found for row in config_rows(r)], resolved_notice(found))


def _args_diff(p: argparse.ArgumentParser) -> None:
    p.usage = "%(prog)s [-h] [--no-local] A B"  # both are needed; the handler says so in words
    p.add_argument("a", nargs="?", metavar="A", help="the image to compare from (repo[:tag], repo@digest)")
    p.add_argument("b", nargs="?", metavar="B", help="the image to compare with (HOST:PORT/repo:tag: another registry)")
    _no_local(p)


def _diff(session: Session, args: argparse.Namespace) -> Result:
    from .ops.diff import diff_images
    from .ops.notices import resolved_notice

    if args.b is None:
        raise CommandLineError("diff needs two images, A and B: e.g. `diff app:1 app:2`, `diff app:1 HOST:PORT/app:1`")
    a, b = _resolved(session, [args.a, args.b], args.local)
    rows, summary = diff_images(a, b)
    return Result(DiffRow, rows, resolved_notice([a, b], before=summary))


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
    from .ops.du import disk_usage
    from .runtime import managed_storage

    repos = [parse_repository(r) for r in args.repos]
    fetcher = session.fetcher(local=args.local)
    usage = disk_usage(fetcher, repos, storage=managed_storage(session.registry))
    if args.total:
        return Result(DuTotalRow, [usage.total], usage.notice(total=True))
    return Result(DuRow, usage.rows, usage.notice())


# ---- running a registry: start, stop, restart, stat, info, gc ----------------------------------


def _args_start(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("-d", "--dir", help="storage directory (default ~/.jindr; created if missing)")
    where.add_argument(
        "--storage",
        metavar="DIR|s3://BUCKET[/PREFIX]",
        help="storage: a directory (as -d), or a bucket on S3-compatible object storage (credentials from "
        "the AWS environment, ~/.aws or --aws-profile; kept in a 0600 config, never in a process's environment)",
    )
    p.add_argument("--s3-endpoint", metavar="URL", default="", help="S3-compatible endpoint (MinIO, Ceph, moto)")
    p.add_argument("--s3-region", metavar="REGION", default="", help="the bucket's region (default: AWS config's)")
    p.add_argument("--aws-profile", metavar="NAME", default="", help="AWS profile whose credentials to use")
    p.add_argument("--create-bucket", action="store_true", help="create the bucket when it does not exist")
    p.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS with a certificate from jindr's local CA (kept under its state directory; `trust` "
        "shows what clients need)",
    )
    p.add_argument("--tls-cert", metavar="PEM", default="", help="serve HTTPS with this certificate (with --tls-key)")
    p.add_argument("--tls-key", metavar="PEM", default="", help="the private key of --tls-cert (unencrypted PEM)")
    p.add_argument(
        "--hostname",
        action="append",
        default=[],
        metavar="NAME",
        help="another name (or address) clients use, for the certificate to cover (repeatable)",
    )
    p.add_argument(
        "--users",
        action="store_true",
        help="require a user name and password (htpasswd, bcrypt; add them with `user add NAME`)",
    )
    p.add_argument(
        "--listen",
        metavar="ADDR",
        default="",
        help="the address to bind (default 127.0.0.1); off loopback only with --tls and --users",
    )
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
    from .runtime import RegistrySpec, start_registry

    password = _from_environment(args.proxy_password_env) if args.proxy_password_env else ""
    bucket = _bucket(args)
    directory = args.dir or (args.storage if bucket is None else None)
    spec = RegistrySpec.make(
        session.registry,
        directory,
        args.name,
        args.proxy,
        args.proxy_username,
        password,
        bucket=bucket,
        tls=args.tls,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        users=args.users,
        listen=args.listen,
        hostnames=tuple(args.hostname),
    )
    row, message = start_registry(
        spec, args.runtime, image=args.image, binary=args.binary, create_bucket=args.create_bucket
    )
    return Result(InstanceRow, [row], message)


def _bucket(args: argparse.Namespace) -> Any:
    """The BucketStorage `--storage s3://...` and its flags name (None for a directory); the S3
    flags without an s3:// storage are refused."""
    s3_flags = [
        flag
        for flag, value in (
            ("--s3-endpoint", args.s3_endpoint),
            ("--s3-region", args.s3_region),
            ("--aws-profile", args.aws_profile),
            ("--create-bucket", args.create_bucket),
        )
        if value
    ]
    text = args.storage or ""
    if text[:3].lower() == "s3:" and not text.startswith("s3://"):
        from .runtime.s3 import redacted

        raise CommandLineError(
            f"invalid --storage {redacted(text)!r}: a bucket is s3://BUCKET[/PREFIX] (lowercase, two slashes); "
            "a directory is a path"
        )
    if not text.startswith("s3://"):
        if s3_flags:
            raise CommandLineError(f"{s3_flags[0]} is for object storage: add --storage s3://BUCKET[/PREFIX]")
        return None
    from .runtime.s3 import bucket_storage

    return bucket_storage(args.storage, endpoint=args.s3_endpoint, region=args.s3_region, profile=args.aws_profile)


def _from_environment(name: str) -> str:
    """The value of the environment variable a flag names (a secret kept off the command line)."""
    if name not in os.environ:
        raise CommandLineError(f"environment variable {name} is not set")
    return os.environ[name]


def _args_stop(p: argparse.ArgumentParser) -> None:
    p.add_argument("-G", "--no-gc", action="store_true", help="stop without garbage-collecting first")


def _stop(session: Session, args: argparse.Namespace) -> Result:
    from .ops.gc import stop_registry

    rows, message = stop_registry(session.registry, gc=not args.no_gc)
    return Result(InstanceRow, rows, message)


def _restart(session: Session, args: argparse.Namespace) -> Result:
    from .runtime import restart

    return Result(InstanceRow, [restart(session.registry)])


def _status(session: Session, args: argparse.Namespace) -> Result:
    from .runtime import status_row

    row = status_row(session.registry)
    return Result(InstanceRow, [row], ok=row.status == "running")


def _info(session: Session, args: argparse.Namespace) -> Result:
    from .runtime import managed_instances, measured

    return Result(InstanceRow, measured(managed_instances()))


def _args_gc(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true", help="show what would be removed; change nothing")


def _gc(session: Session, args: argparse.Namespace) -> Result:
    from .ops.gc import collect_at

    return Result(GcRow, [collect_at(session.registry, dry_run=args.dry_run)])


# ---- a team registry: user, trust --------------------------------------------------------------


def _args_user(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", metavar="action", title="actions", required=True)
    add = actions.add_parser("add", help="add a user, or give one a new password", description="Add a user.")
    add.add_argument("user", metavar="NAME", help="the user name")
    given = add.add_mutually_exclusive_group()
    given.add_argument("--password-stdin", action="store_true", help="read the password from stdin (one line)")
    given.add_argument(
        "--password-env", metavar="VAR", default="", help="the environment variable holding the password"
    )
    remove = actions.add_parser("remove", aliases=["rm"], help="remove a user", description="Remove a user.")
    remove.add_argument("user", metavar="NAME", help="the user name")
    actions.add_parser("list", aliases=["ls"], help="list the users", description="List the users.")


def _user(session: Session, args: argparse.Namespace) -> Result:
    from .runtime import users_files
    from .runtime.users import add_user, list_users, read_password, remove_user

    files = users_files(session.registry)  # this registry's, then its replicas' (one set of logins)
    (registry, path), replicas = files[0], files[1:]
    if args.action in ("list", "ls"):
        return Result(UserRow, [UserRow(registry, name, "listed") for name in list_users(path)])
    if args.action in ("remove", "rm"):
        remove_user(path, args.user)  # an unknown name is refused here, before any replica changes
        for _, theirs in replicas:
            if args.user in list_users(theirs):
                remove_user(theirs, args.user)
        return Result(UserRow, [UserRow(r, args.user, "removed") for r, _ in files])
    password = read_password(env=args.password_env, stdin=args.password_stdin)
    replaced = add_user(path, args.user, password)
    for _, theirs in replicas:
        add_user(theirs, args.user, password)
    return Result(UserRow, [UserRow(r, args.user, "replaced" if replaced else "added") for r, _ in files])


def _args_trust(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", nargs="?", metavar="REGISTRY", help="a TLS registry jindr runs (default: -r's)")
    p.add_argument(
        "--install",
        action="store_true",
        help="also put the CA where Docker and Podman/skopeo look on their own (certs.d; needs root)",
    )
    p.add_argument(
        "--docker-certs-d",
        metavar="DIR",
        default="/etc/docker/certs.d",
        help="Docker's certs.d for --install (default /etc/docker/certs.d)",
    )
    p.add_argument(
        "--containers-certs-d",
        metavar="DIR",
        default="/etc/containers/certs.d",
        help="Podman's and skopeo's certs.d for --install (default /etc/containers/certs.d)",
    )


def _trust(session: Session, args: argparse.Namespace) -> Result:
    from pathlib import Path

    from .runtime import trust_rows

    registry = parse_registry(args.target) if args.target else session.registry
    roots = (Path(args.docker_certs_d), Path(args.containers_certs_d)) if args.install else None
    return Result(TrustRow, trust_rows(registry, install=roots))


# ---- deleting: rmi, rmr ------------------------------------------------------------------------


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


def _rmi(session: Session, args: argparse.Namespace) -> Result:
    from .ops.delete import plan_deletion
    from .runtime import deletes_tags

    if not args.images:
        raise CommandLineError(
            "rmi needs at least one IMAGE (in a notebook, `%jindr rmi` alone opens the cleanup panel)"
        )
    refs = [session.ref(text) for text in args.images]
    deletion = plan_deletion(session.client, session.by_registry(refs), with_index=args.with_index)
    if args.dry_run:
        return Result(ActionRow, deletion.rows())
    if not _confirmed(session, args, deletion.question()):
        return Result(ActionRow, deletion.rows(), "nothing deleted")
    # After a question the user may have taken minutes over: the registries must still be as planned.
    outcome = deletion.carry_out(tag_delete_api=deletes_tags, recheck=bool(session.confirm) and not args.yes)
    return Result(ActionRow, outcome.rows, outcome.error, ok=not outcome.error)


def _args_rmr(p: argparse.ArgumentParser) -> None:
    p.add_argument("repos", nargs="+", metavar="REPO", help="repositories to delete whole")
    p.add_argument("--dry-run", action="store_true", help="show the plan; delete nothing")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation (CLI on a terminal)")


def _rmr(session: Session, args: argparse.Namespace) -> Result:
    from .ops.delete import plan_removal
    from .runtime import running

    repos = list(dict.fromkeys(parse_repository(r) for r in args.repos))
    removal = plan_removal(session.client(), repos, running(session.registry))
    if args.dry_run:
        return Result(ActionRow, removal.rows())
    if not _confirmed(session, args, f"delete the repositories {', '.join(repos)} and every image in them?"):
        return Result(ActionRow, removal.rows(), "nothing deleted")
    outcome = removal.carry_out()
    return Result(ActionRow, outcome.rows, outcome.error or outcome.message, ok=not outcome.error)


# ---- moving images: cp, cpe, load, save --------------------------------------------------------


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
    _jobs(p, 4, "parallel blob transfers")


def _sources(session: Session, args: argparse.Namespace) -> tuple[list[Ref], str]:
    """The images `cp`/`cpe` copy (IMAGE, then its repository's other TAGs), and the destination
    repository's name (`--to`, else the same)."""
    src = session.ref(args.image)
    refs = [src] + [src.with_tag(t) for t in args.tags if t != src.tag]
    return refs, parse_repository(args.to) if args.to else src.repository


def _cp(session: Session, args: argparse.Namespace) -> Result:
    from .ops.copy import copy_images

    if args.image is None or args.destination is None:
        raise CommandLineError("cp needs IMAGE and REGISTRY (in a notebook, `%jindr cp` alone opens the copy panel)")
    refs, repository = _sources(session, args)
    dst = session.client(parse_registry(args.destination))
    src = session.client(refs[0].registry)
    rows = copy_images(src, refs, dst, repository, tags=args.tag, jobs=args.jobs, progress=session.progress)
    return Result(CopyRow, rows)


def _args_cpe(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE", help="the image to copy (repo[:tag] in the current registry)")
    p.add_argument("tags", nargs="*", metavar="TAG", help="more tags of the same repository to copy")
    p.add_argument("--region", help="AWS region (default: the profile's)")
    p.add_argument("--keep", type=_positive_int, default=4, help="images the lifecycle policy keeps (default 4)")
    _copy_options(p, "ECR repository")


def _cpe(session: Session, args: argparse.Namespace) -> Result:
    from .ops.copy import copy_to_ecr

    refs, repository = _sources(session, args)
    rows, message = copy_to_ecr(
        session.client(refs[0].registry),
        refs,
        repository,
        region=args.region,
        keep=args.keep,
        tags=args.tag,
        jobs=args.jobs,
        progress=session.progress,
    )
    return Result(CopyRow, rows, message)


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

    from .ops.layout import save

    ref = session.ref(args.image)
    return Result(CopyRow, [save(session.client(ref.registry), ref, Path(args.path).expanduser())])


# ---- the table ---------------------------------------------------------------------------------

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
        "user",
        ("users",),
        "Users of a registry started with --users: `user add NAME`, `user remove NAME`, `user list`.",
        _args_user,
        _user,
    ),
    Command(
        "trust",
        (),
        "What each client needs to trust a TLS registry jindr runs (SSL_CERT_FILE, Docker's certs.d, "
        "--cert-dir); --install puts it in place.",
        _args_trust,
        _trust,
    ),
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


def build_parser(
    prog: str = "jindr", *, cli: bool = True, argv: Sequence[str] | None = None
) -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per command (aliases included). Given the `argv`
    it will parse, only the sub-parser of the command that names is built when that is plain to
    see (the 21 others cost ~5 ms of every command's start); the whole table otherwise (help, a
    misspelt or missing command, anything before it but the top-level options)."""
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
    named = _named_command(argv, cli=cli) if argv is not None else None
    for command in COMMANDS if named is None else [named]:
        child = sub.add_parser(command.name, aliases=list(command.aliases), help=command.help, description=command.help)
        command.arguments(child)
        child.set_defaults(_handler=command.handler)
        parser.commands.update(dict.fromkeys((command.name, *command.aliases), child))
    return parser


#: Top-level options that take a value, and those that take none (`--json` in the CLI only).
_VALUED = ("-r", "--registry")
_FLAGS = ("--insecure", "--debug")


def _named_command(argv: Sequence[str], *, cli: bool) -> Command | None:
    """The command `argv` runs, when the words before it are top-level options this parser takes."""
    flags = (*_FLAGS, "--json") if cli else _FLAGS
    words = iter(argv)
    for word in words:
        if word in _VALUED:
            next(words, None)
        elif word.startswith("--registry=") or (word.startswith("-r") and not word.startswith("--")):
            continue  # `--registry=X`, `-rX`
        elif word in flags:
            continue
        elif word.startswith("-"):
            return None  # -h, -v, an unknown option: the whole table answers it
        else:
            return next((c for c in COMMANDS if word == c.name or word in c.aliases), None)
    return None


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
    handler: Handler = args._handler
    return handler(session, args)


def reference_markdown() -> str:
    """The README's command reference: each command's own `--help` text (`make readme` writes it)."""
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
