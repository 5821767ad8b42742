"""What plain `jindr lsi` does, written with a Python library a user might pick instead.

    python peers.py dxf|oras HOST:PORT [--threads 8]

Run with the bench's peer venv (`.bench/peers`, where `run.py` installs python-dxf and oras).
It reads the catalog, the tags of each repository, one manifest GET per tag (by tag, every
manifest type in Accept), and for an index the platforms it lists (attestation entries left out,
as `jindr lsi` leaves them out), with `--threads` workers. It prints one row per tag, the columns
of `jindr lsi` (registry, repository, tag, digest, media type, platforms), so the benchmark can
check it found every tag. It checks nothing more: a child of an index is not asked for.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
INDEX_TYPES = {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}


def platforms(doc: dict) -> str:
    found = []
    for entry in doc.get("manifests") or []:
        if (entry.get("annotations") or {}).get("vnd.docker.reference.type") == "attestation-manifest":
            continue
        p = entry.get("platform") or {}
        name = "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)
        if name and name != "unknown/unknown":
            found.append(name)
    return ",".join(found)


def row(address: str, repo: str, tag: str, digest: str, body: bytes, content_type: str) -> str:
    doc = json.loads(body)
    media_type = doc.get("mediaType") or content_type.split(";")[0].strip()
    shown = platforms(doc) if media_type in INDEX_TYPES else ""
    return f"{address}  {repo}  {tag}  {digest}  {media_type}  {shown}"


def with_dxf(address: str) -> tuple[Callable[[], Iterable[str]], Callable[[str], list[str]], Callable]:
    """python-dxf: `list_repos`, `list_aliases` and `get_manifest_and_response` (all follow `Link`)."""
    from dxf import DXF, DXFBase

    local = threading.local()

    def repo_client(repo: str) -> DXF:
        # One requests.Session per thread (DXF's context manager holds it), shared by its repositories.
        base = getattr(local, "base", None)
        if base is None:
            base = local.base = DXFBase(address, insecure=True)
            base.__enter__()
        return DXF.from_base(base, repo)

    def catalog() -> Iterable[str]:
        with DXFBase(address, insecure=True) as base:
            return base.list_repos()

    def tags(repo: str) -> list[str]:
        return repo_client(repo).list_aliases() or []

    def manifest(repo: str, tag: str) -> str:
        text, response = repo_client(repo).get_manifest_and_response(tag)
        return row(
            address,
            repo,
            tag,
            response.headers["Docker-Content-Digest"],
            text.encode(),
            response.headers.get("Content-Type", ""),
        )

    return catalog, tags, manifest


def with_oras(address: str) -> tuple[Callable[[], Iterable[str]], Callable[[str], list[str]], Callable]:
    """oras-py: `get_tags`; it has no catalog call and `get_manifest` drops the digest, so the
    catalog and the manifest GET go through the same client's `do_request` (its session and auth)."""
    from oras.provider import Registry

    local = threading.local()

    def client() -> Registry:
        reg = getattr(local, "registry", None)
        if reg is None:
            reg = local.registry = Registry(hostname=address, insecure=True)
        return reg

    def catalog() -> Iterable[str]:
        names: list[str] = []

        def page(response) -> bool:
            new = response.json().get("repositories") or []
            names.extend(new)
            return bool(new)

        client()._do_paginated_request(f"http://{address}/v2/_catalog", callable=page)
        return names

    def tags(repo: str) -> list[str]:
        return client().get_tags(f"{address}/{repo}")

    def manifest(repo: str, tag: str) -> str:
        response = client().do_request(f"http://{address}/v2/{repo}/manifests/{tag}", "GET", headers={"Accept": ACCEPT})
        response.raise_for_status()
        return row(
            address,
            repo,
            tag,
            response.headers["Docker-Content-Digest"],
            response.content,
            response.headers.get("Content-Type", ""),
        )

    return catalog, tags, manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("library", choices=["dxf", "oras"])
    parser.add_argument("address", help="HOST:PORT of a plain-HTTP registry")
    parser.add_argument("--threads", type=int, default=8)
    opts = parser.parse_args(argv)
    catalog, tags, manifest = (with_dxf if opts.library == "dxf" else with_oras)(opts.address)
    repos = list(catalog())
    with ThreadPoolExecutor(opts.threads) as pool:
        tag_lists = list(pool.map(tags, repos))
        pairs = [(repo, tag) for repo, found in zip(repos, tag_lists, strict=True) for tag in sorted(found)]
        rows = list(pool.map(lambda pair: manifest(*pair), pairs))
    sys.stdout.write("".join(r + "\n" for r in rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
