"""The one-line warnings that go with a command's rows: broken, torn and unreadable tags.

Every reading command (`lsi`, `inspect`, `layers`, `history`, `config`, `diff`, `du`) says the
same thing about the same trouble, in the same words, with what to do next; the words live here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ..models import ImageRow, LongImageRow, PlatformRow
from .listing import TORN

if TYPE_CHECKING:
    from .layers import Resolved, Scan

__all__ = ["broken_notice", "inspect_notice", "listing_notice", "resolved_notice", "scan_notice"]


def _listed(items: Sequence[str]) -> str:
    return ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")


def broken_notice(names: Sequence[str], torn: Sequence[str] = ()) -> str:
    """One line naming broken tags (an index listing manifests the registry lost) and torn ones
    (listed, their own manifest gone), each with what to do ("" for none)."""
    parts = []
    lost = [n for n in names if n not in torn]
    if lost:
        parts.append(
            f"warning: {len(lost)} broken {'tag' if len(lost) == 1 else 'tags'} ({_listed(lost)}): the index lists "
            "manifests the registry no longer has, so it will not pull — `inspect` shows which; push the image "
            "again or `rmi` the tag"
        )
    if torn:
        parts.append(
            f"warning: {len(torn)} torn {'tag' if len(torn) == 1 else 'tags'} ({_listed(torn)}): listed, but the "
            "manifest is gone (a delete the registry did not finish); the API cannot remove it: `rmr` on a "
            "registry jindr runs does, else its operator"
        )
    return "; ".join(parts)


def listing_notice(rows: Iterable[ImageRow | LongImageRow], unreadable: Sequence[tuple[str, str]]) -> str:
    """`lsi`'s line: broken and torn tags among `rows`, then the tags left out as `unreadable`."""
    rows = list(rows)
    broken = [f"{r.repository}:{r.tag or r.digest}" for r in rows if r.missing]
    torn = [f"{r.repository}:{r.tag}" for r in rows if TORN in r.missing]
    notes = [broken_notice(broken, torn)] if broken else []
    if unreadable:
        names = ", ".join(name for name, _ in unreadable[:3]) + (
            f" and {len(unreadable) - 3} more" if len(unreadable) > 3 else ""
        )
        notes.append(
            f"warning: {len(unreadable)} {'tag' if len(unreadable) == 1 else 'tags'} left out ({names}): "
            f"{unreadable[0][1]} — `inspect` one of them for the reason"
        )
    return "; ".join(notes)


def inspect_notice(rows: Iterable[PlatformRow]) -> str:
    """`inspect`'s line: the images with a `missing` row, each named once."""
    broken = list(
        dict.fromkeys(f"{r.repository}:{r.tag}" if r.tag else r.repository for r in rows if r.kind == "missing")
    )
    return broken_notice(broken)


def scan_notice(scans: Sequence[Scan]) -> str:
    """`layers`' line: broken and torn tags over every scan, then each scan's unreadable tags."""
    found = [r for s in scans for r in s.found]
    torn = [t for s in scans for t in s.torn]
    broken = [r.name for r in found if r.missing] + torn
    notes = [broken_notice(broken, torn), *(s.unreadable_notice() for s in scans)]
    return "; ".join(n for n in notes if n)


def resolved_notice(found: Iterable[Resolved], before: str | None = None) -> str:
    """`history`, `config` and `diff`: the resolved images that are broken ("" for none); `before`,
    when given, is a line of the command's own that comes first."""
    broken = [r.name for r in found if r.missing]
    if before is None:
        return broken_notice(broken)
    return "; ".join([before, broken_notice(broken)]) if broken else before
