"""Content-addressed cache of manifests (by digest) and config blobs: they never change.

Two levels: a bounded in-memory map for the life of the kernel or CLI, and files under the user's
cache directory (`$JINDR_CACHE_DIR`, else `$XDG_CACHE_HOME/jindr_nb`, else `~/.cache/jindr_nb`).
Everything read back is checked against its digest, so a corrupt file is a miss, not a wrong answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import weakref
from collections import OrderedDict
from pathlib import Path

from .._files import private_dirs
from ..models import is_digest

__all__ = ["ContentCache", "default_cache_dir"]

_MAX_PARSED = 200_000


def default_cache_dir() -> Path:
    """Where the on-disk cache lives."""
    explicit = os.environ.get("JINDR_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jindr_nb"


class ContentCache:
    """`get(digest)` / `put(digest, media_type, raw)`; thread-safe; `directory=None` keeps it in memory."""

    def __init__(self, directory: Path | str | None = None, *, max_memory: int = 64 * 1024 * 1024) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.max_memory = max_memory
        self._memory: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._disk_ok = self.directory is not None
        self._summaries: dict[str, dict] | None = None
        self._append_fd: int | None = None
        self._closer: weakref.finalize | None = None
        #: Parsed manifests by digest, for the life of the kernel or CLI: what a digest holds never
        #: changes, and parsing the same JSON again is most of a repeated listing's time.
        self._parsed: dict[str, object] = {}

    def parsed(self, digest: str) -> object | None:
        """A parsed manifest kept for `digest` (None: parse it yourself and `keep_parsed` it)."""
        return self._parsed.get(digest)

    def keep_parsed(self, digest: str, value: object) -> None:
        if len(self._parsed) >= _MAX_PARSED:
            self._parsed.clear()  # bounded: a fresh start costs one parse per manifest
        self._parsed[digest] = value

    def get_summary(self, digest: str) -> dict | None:
        """A small derived record for a manifest digest (immutable, like the content it describes)."""
        with self._lock:
            if self._summaries is None:
                self._summaries = self._load_summaries()
            return self._summaries.get(digest)

    def put_summary(self, digest: str, summary: dict) -> None:
        """Remember a derived record; on disk it is one line appended to `summaries-v3.jsonl`."""
        with self._lock:
            if self._summaries is None:
                self._summaries = self._load_summaries()
            if digest in self._summaries:
                return
            self._summaries[digest] = summary
            if not self._disk_ok or self.directory is None:
                return
            line = (json.dumps({"d": digest, **summary}, separators=(",", ":")) + "\n").encode()
            try:
                if self._append_fd is None:
                    private_dirs(self.directory)
                    # O_APPEND: concurrent writers (two kernels) interleave whole lines, never mix them.
                    # Opened once per cache, not per record: a cold listing appends thousands.
                    self._append_fd = os.open(
                        self.directory / "summaries-v3.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600
                    )
                    # Closed with the cache even when nobody calls close() (a panel's session).
                    self._closer = weakref.finalize(self, os.close, self._append_fd)
                os.write(self._append_fd, line)
            except OSError:
                self._disk_ok = False

    def close(self) -> None:
        """Close the summaries file (reopened on the next record)."""
        with self._lock:
            if self._closer is not None:
                self._closer()  # closes the file once, and never again at collection
                self._closer = None
                self._append_fd = None

    def _load_summaries(self) -> dict[str, dict]:
        found: dict[str, dict] = {}
        if self.directory is None:
            return found
        try:
            data = (self.directory / "summaries-v3.jsonl").read_bytes()
        except OSError:
            return found
        for line in data.splitlines():
            try:
                record = json.loads(line)
                found[record.pop("d")] = record
            except (ValueError, KeyError, AttributeError, TypeError):
                continue  # a torn or foreign line is only a miss
        return found

    def get(self, digest: str, *, disk: bool = True) -> tuple[str, bytes] | None:
        """(media type, bytes) for `digest`, or None; `disk=False` looks in memory only."""
        with self._lock:
            hit = self._memory.get(digest)
            if hit is not None:
                self._memory.move_to_end(digest)
                return hit
        path = self._path(digest) if disk else None
        if path is None:
            return None
        try:
            data = path.read_bytes()
        except OSError:
            return None
        media_type, sep, raw = data.partition(b"\n")
        if not sep or not _matches(raw, digest):
            return None
        entry = (media_type.decode("utf-8", "replace"), raw)
        self._remember(digest, entry)
        return entry

    def put(self, digest: str, media_type: str, raw: bytes, *, persist: bool = True) -> None:
        """Store content already verified against `digest` (in memory only unless `persist`)."""
        with self._lock:
            if digest in self._memory:
                return  # stored already (on disk too, unless the disk refused)
        self._remember(digest, (media_type, raw))
        path = self._path(digest) if persist else None
        if path is None or path.exists():
            return
        try:
            private_dirs(path.parent)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(media_type.encode() + b"\n" + raw)
            os.replace(tmp, path)
        except OSError:
            # A read-only or full cache directory must not break listing: keep going in memory.
            self._disk_ok = False

    def clear_memory(self) -> None:
        with self._lock:
            self._memory.clear()
            self._bytes = 0
            self._parsed.clear()

    def _remember(self, digest: str, entry: tuple[str, bytes]) -> None:
        with self._lock:
            if digest in self._memory:
                return
            self._memory[digest] = entry
            self._bytes += len(entry[1])
            while self._bytes > self.max_memory and self._memory:
                _, (_, old) = self._memory.popitem(last=False)
                self._bytes -= len(old)

    def _path(self, digest: str) -> Path | None:
        if not self._disk_ok or self.directory is None:
            return None
        if not is_digest(digest):  # the algorithm too becomes a path component: `../../x:abc` must not
            return None
        algorithm, _, hexpart = digest.partition(":")
        return Path(f"{self.directory}/{algorithm}/{hexpart[:2]}/{hexpart}")


def _matches(raw: bytes, digest: str) -> bool:
    algorithm, _, expected = digest.partition(":")
    try:
        return hashlib.new(algorithm, raw).hexdigest() == expected
    except ValueError:
        return False
