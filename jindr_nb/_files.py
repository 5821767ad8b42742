"""Small file-system helpers with no imports of their own (used by the cache and the runtimes)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["private_dirs"]


def private_dirs(path: Path) -> None:
    """`mkdir -p` where every directory created (parents too) is mode 0700; existing ones are left as they are."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
