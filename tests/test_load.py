"""Load: 2,000 repositories x 5 tags, listed whole, also while the copy engine writes to them
(one writer thread copying, one after another, while the main thread lists).

The tags are written into the storage tree before the registry starts (pushing 10,000 images
through the API would take minutes here); everything after that goes through jindr and the real
registry. Peak memory and times for the same load are in `make bench` (tests/benchmarks/loadbench.py).
"""

from __future__ import annotations

import threading
from pathlib import Path

from jindr_run import jindr
from rig import fill_storage, free_port, write_counts

REPOS, TAGS = 2000, 5


def _count(cases: list[str]) -> None:
    write_counts("load", load_cases=len(cases), cases=cases)


def test_two_thousand_repositories(tmp_path: Path) -> None:
    cases: list[str] = []
    storage = tmp_path / "storage"
    pushed = fill_storage(storage, REPOS, TAGS)
    address = f"localhost:{free_port()}"
    jindr("-r", address, "start", "--runtime", "process", "-d", str(storage))
    try:
        repos = jindr("-r", address, "ls").rows
        assert sorted(r.repository for r in repos) == sorted({k.split(":")[0] for k in pushed})
        cases.append(f"ls: {len(repos)} of {REPOS} repositories (past the registry's 1000-per-page)")

        for how in ([], ["--no-local"]):
            rows = jindr("-r", address, "lsi", *how).rows
            listed = {f"{r.repository}:{r.tag}": r.digest for r in rows}
            assert listed == pushed, (
                f"lsi {how}: {len(listed)} rows, {len(set(listed.items()) ^ set(pushed.items()))} differ"
            )
            cases.append(f"lsi {' '.join(how) or '(from storage)'}: {len(rows)} of {REPOS * TAGS} tags, digests equal")

        # Listings while the copy engine writes new tags into the same registry.
        source_digest = pushed["load/r0000:v0"]
        errors: list[BaseException] = []
        copies = [f"live/c{i % 10}:t{i}" for i in range(60)]

        def writer() -> None:
            try:
                for target in copies:
                    name, tag = target.split(":")
                    jindr("-r", address, "cp", "load/r0000:v0", address, "--to", name, "--tag", tag)
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        thread = threading.Thread(target=writer)
        thread.start()
        listings = 0
        while thread.is_alive() or listings < 2:
            for how in ([], ["--no-local"]):
                rows = jindr("-r", address, "lsi", *how).rows
                listed = {f"{r.repository}:{r.tag}": r.digest for r in rows}
                assert {k: listed.get(k) for k in pushed} == pushed, "an existing tag went missing or changed"
                live = {k: v for k, v in listed.items() if k.startswith("live/")}
                assert set(live.values()) <= {source_digest}, "a tag being written was listed with a wrong digest"
                listings += 1
        thread.join()
        assert not errors, errors
        final = {f"{r.repository}:{r.tag}": r.digest for r in jindr("-r", address, "lsi", "live/c0", "live/c9").rows}
        assert {k: final.get(k) for k in copies if k.startswith(("live/c0:", "live/c9:"))} == {
            k: source_digest for k in copies if k.startswith(("live/c0:", "live/c9:"))
        }
        every = {f"{r.repository}:{r.tag}" for r in jindr("-r", address, "lsi").rows}
        assert set(copies) <= every
        cases.append(f"{listings} listings during 60 copies into the same registry: consistent, every copy landed")
    finally:
        jindr("-r", address, "stop", "-G")
        _count(cases)
