"""Result rows → DataFrames (for the magic and widgets) or text and records (for the CLI).

The columns of each result are the fields of its row dataclass, in order; this module owns how
they become typed DataFrame columns. pandas is imported only when a DataFrame is asked for, so
the CLI never pays for it.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["columns", "to_frame", "to_records", "to_text", "to_json"]

_INT_COLUMNS = frozenset(
    {
        "size",
        "layers",
        "blobs_copied",
        "blobs_skipped",
        "blobs_mounted",
        "bytes_copied",
        "tags",
        "manifests",
        "blobs",
        "unique_size",
        "shared_size",
        "manifests_deleted",
        "blobs_deleted",
        "reclaimed_bytes",
        "disk_before",
        "disk_after",
        "disk_freed",
        "broken",
        "repositories",
        "disk_bytes",
        "gc_blobs",
        "gc_bytes",
        "position",
        "shared_by",
        "step",
    }
)
_TIME_COLUMNS = frozenset({"created"})


def columns(row_type: type) -> list[str]:
    """The column names of a row type, in order."""
    return [f.name for f in dataclasses.fields(row_type)]


def to_records(rows: list[Any], row_type: type) -> list[dict[str, Any]]:
    """Rows as dicts, columns in order."""
    names = columns(row_type)
    return [{name: getattr(row, name) for name in names} for row in rows]


def to_frame(rows: list[Any], row_type: type) -> pd.DataFrame:
    """A DataFrame with the row type's columns (also when empty) and typed size/time columns."""
    import pandas as pd

    names = columns(row_type)
    frame = pd.DataFrame([[getattr(row, n) for n in names] for row in rows], columns=names)
    for name in names:
        if name in _INT_COLUMNS:
            # "Int64" (nullable) where a figure can be unknown: du --total's disk columns off this machine.
            frame[name] = frame[name].astype("Int64" if frame[name].isna().any() else "int64")
        elif name in _TIME_COLUMNS:
            frame[name] = pd.to_datetime(frame[name], utc=True)
    return frame


def to_text(rows: list[Any], row_type: type) -> str:
    """An aligned plain-text table (no index column); numbers right-aligned."""
    names = columns(row_type)
    cells = [[_cell(getattr(row, n)) for n in names] for row in rows]
    widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(names)]
    numeric = [name in _INT_COLUMNS for name in names]

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(names)] + [line(r) for r in cells])


def to_json(rows: list[Any], row_type: type) -> str:
    """Records as a JSON array (times in ISO 8601)."""
    return json.dumps(to_records(rows, row_type), default=_json_default, indent=1)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
