"""Content-addressed cache of manifests (by digest) and config blobs: they never change.

Two levels: a bounded in-memory map for the life of the kernel or CLI, and files under the user's
cache directory (`$JINDR_CACHE_DIR`, else `$XDG_CACHE_HOME/jindr_nb`, else `~/.cache/jindr_nb`).
Everything read back is checked against its digest, so a corrupt file is a miss, not a wrong answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import weakref
from collections import OrderedDict
from pathlib import Path

from .._files import private_dirs
from ..models import is_digest

__all__ = ["ContentCache", "default_cache_dir"]

_MAX_PARSED = 200_000
#: Summary-store key prefix of the stamps a storage reader gave for verified manifest bytes.
_STAMP = "stamp-v2:"
#: Stamps kept per digest: one per storage holding the manifest (a few registries jindr runs).
_MAX_STAMPS = 4


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
        #: Stamp of the storage file whose bytes this process verified, by manifest digest (`put_stamp`),
        #: and the digests whose stamp there is on disk already (`keep_stamp`).
        self._stamps: dict[str, tuple[int, ...]] = {}
        self._stamps_kept: set[str] = set()
        self._appender: _Appender | None = None
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

    def put_summary(self, digest: str, summary: dict, *, replace: bool = False) -> None:
        """Remember a derived record; on disk it is one line appended to `summaries-v3.jsonl` (the
        last line of a key wins when read back). A key already known is kept unless `replace`."""
        with self._lock:
            if self._summaries is None:
                self._summaries = self._load_summaries()
            if digest in self._summaries and (not replace or self._summaries[digest] == summary):
                return
            self._summaries[digest] = summary
            self._append(digest, summary)

    def _append(self, key: str, record: dict) -> None:
        """One line for `record` under `key` to the summaries file (the caller holds the lock)."""
        if not self._disk_ok or self.directory is None:
            return
        line = (json.dumps({"d": key, **record}, separators=(",", ":")) + "\n").encode()
        try:
            if self._appender is None:
                private_dirs(self.directory)
                self._appender = _Appender(self.directory / "summaries-v3.jsonl")
                # Written and closed with the cache even when nobody calls close() (a panel's session).
                self._closer = weakref.finalize(self, self._appender.close)
            self._appender.add(line)
        except OSError:
            self._disk_ok = False

    def verified(self, digest: str, stamp: tuple[int, ...] | None) -> bool:
        """True when a storage reader's `stamp` of the file holding manifest `digest` is one
        `put_stamp` recorded (in this process, or kept on disk by `keep_stamp`): the file is
        unchanged since its bytes were verified against `digest`, so they need no second read and
        hash. None (a reader with no stamps, a missing file) is never."""
        if stamp is None:
            return False
        if self._stamps.get(digest) == stamp:
            return True
        record = self.get_summary(_STAMP + digest)
        known = record.get("v") if record is not None else None
        return isinstance(known, list) and _stamp_text(stamp) in known

    def stored_summary(self, digest: str, stamp: tuple[int, ...]) -> dict | None:
        """`get_summary(digest)` when it has the manifest's media type and `verified(digest, stamp)`
        holds — what a listing from storage needs to answer a tag without reading its manifest —
        else None. One lock, not the two the separate calls take (a listing asks it per tag)."""
        with self._lock:
            if self._summaries is None:
                self._summaries = self._load_summaries()
            summary = self._summaries.get(digest)
            if summary is None or not summary.get("m"):
                return None
            if self._stamps.get(digest) == stamp:
                return summary
            record = self._summaries.get(_STAMP + digest)
            known = record.get("v") if record is not None else None
            if not (isinstance(known, list) and _stamp_text(stamp) in known):
                return None
            # Kept on disk already: the next look is one compare — unless this process holds a
            # stamp of its own for the digest (another storage's, perhaps only in the file's tail,
            # which `_summaries` does not see): that one stays, or its storage would miss each time.
            if digest not in self._stamps and len(self._stamps) < _MAX_PARSED:
                self._stamps[digest] = tuple(stamp)
                self._stamps_kept.add(digest)
            return summary

    def put_stamp(self, digest: str, stamp: tuple[int, ...]) -> None:
        """Record, for this process, that the file with `stamp` held bytes verified against `digest`."""
        if len(self._stamps) >= _MAX_PARSED:
            self._stamps.clear()  # bounded like the parsed manifests it vouches for
            self._stamps_kept.clear()
        if self._stamps.get(digest) != stamp:
            self._stamps[digest] = stamp
            self._stamps_kept.discard(digest)

    def keep_stamp(self, digest: str) -> None:
        """Keep on disk the stamp `put_stamp` recorded for `digest` (with up to three others: one per
        storage holding the manifest): for the manifests a later process answers for through their
        stamp alone (a listing's tags, from their summaries)."""
        stamp = self._stamps.get(digest)
        if stamp is None or digest in self._stamps_kept:
            return
        record = self.get_summary(_STAMP + digest)  # what the file held when this process read it
        known = record.get("v") if record is not None else None
        known = known if isinstance(known, list) else []
        text = _stamp_text(stamp)
        with self._lock:
            self._stamps_kept.add(digest)
            if text not in known:  # written, not kept in memory again: `_stamps` answers here
                self._append(_STAMP + digest, {"v": [*known[-(_MAX_STAMPS - 1) :], text]})

    def flush(self) -> None:
        """Write the records still pending (a command calls it as it ends: another process sharing
        the cache directory sees them from then on)."""
        with self._lock:
            if self._appender is not None:
                try:
                    self._appender.flush()
                except OSError:
                    self._disk_ok = False

    def close(self) -> None:
        """Write what is pending and close the summaries file (reopened on the next record)."""
        with self._lock:
            if self._closer is not None:
                try:
                    self._closer()  # writes and closes once, and never again at collection
                except OSError:
                    self._disk_ok = False
                self._closer = None
                self._appender = None

    def _load_summaries(self) -> dict[str, dict]:
        found: dict[str, dict] = {}
        if self.directory is None:
            return found
        try:
            data = (self.directory / "summaries-v3.jsonl").read_bytes()
        except OSError:
            return found
        # One parse for the whole file (a listing of thousands of tags starts here) when every line
        # is one whole object, as `put_summary` writes them; else line by line, so that a torn or
        # foreign line is only a miss and never runs into the next.
        lines = [line for line in data.splitlines() if line.strip()]
        records: list = []
        if all(line[:1] == b"{" and line[-1:] == b"}" for line in lines):
            try:
                records = json.loads(b"[" + b",".join(lines) + b"]")
            except ValueError:
                records = []
        if len(records) != len(lines):
            records = []
            for line in lines:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
        for record in records:
            try:
                found[record.pop("d")] = record
            except (KeyError, AttributeError, TypeError):
                continue
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
        import tempfile  # here: only writes to the cache directory need it, not a listing's start

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
            self._stamps.clear()
            self._stamps_kept.clear()

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


def _stamp_text(stamp: tuple[int, ...]) -> str:
    """A stamp as kept on disk: its numbers joined by `:` (one short string reads back faster, and
    takes less memory, than a list of five large numbers, ten thousand times)."""
    return ":".join(map(str, stamp))


class _Appender:
    """Lines appended to one file, written in batches (a cold listing records thousands: one
    write per line was a tenth of its time). `O_APPEND`: two kernels sharing the cache interleave
    whole batches, never mix their lines."""

    _BATCH = 64 * 1024

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._pending: list[bytes] = []
        self._size = 0

    def add(self, line: bytes) -> None:
        self._pending.append(line)
        self._size += len(line)
        if self._size >= self._BATCH:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._size = 0
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _matches(raw: bytes, digest: str) -> bool:
    algorithm, _, expected = digest.partition(":")
    try:
        return hashlib.new(algorithm, raw).hexdigest() == expected
    except ValueError:
        return False
