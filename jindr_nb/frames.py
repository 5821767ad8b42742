"""Result rows → DataFrames (for the magic and widgets) or text and records (for the CLI).

The columns of each result are the fields of its row dataclass, in order; this module owns how
they become typed DataFrame columns. pandas is imported only when a DataFrame is asked for, so
the CLI never pays for it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
import re
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING, Any

from . import models

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["columns", "frame_html", "to_frame", "to_records", "to_text", "to_json"]

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
#: `DataFrame.attrs` key naming the row type of a frame jindr made (pandas carries attrs through
#: selections, filters and sorts, so `df[df.size > 0]` is shown the same way).
MARK = "jindr"


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
    frame.attrs[MARK] = row_type.__name__  # frame_html shows marked frames readably; the values stay raw
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
    """Records as a JSON array, one record a line (times in ISO 8601). Each record goes through the
    json module's C encoder (an `indent` would send all of them through its Python one: 3,600
    `layers` rows took 0.1 s that way)."""
    if not rows:
        return "[]"
    names = columns(row_type)
    values = operator.attrgetter(*names) if len(names) > 1 else (lambda row: (getattr(row, names[0]),))
    # One encoder for every record: `json.dumps(..., default=...)` builds a new one per call.
    encode = json.JSONEncoder(default=_json_default).encode
    return "[\n" + ",\n".join([encode(dict(zip(names, values(row), strict=True))) for row in rows]) + "\n]"


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


# How a frame jindr made is shown in Jupyter: an IPython text/html formatter for DataFrames
# (registered by the magic) calls frame_html. Only the HTML changes; the frame's values, its
# text repr, print() and to_csv() stay raw.

_BYTE_COLUMNS = frozenset(
    {
        "size",
        "unique_size",
        "shared_size",
        "reclaimed_bytes",
        "disk_before",
        "disk_after",
        "disk_freed",
        "bytes_copied",
        "disk_bytes",
        "gc_bytes",
    }
)
_DIGEST = re.compile(r"sha(?:256|512):[0-9a-f]{32,128}\Z")
_MEDIA_TYPES = {
    models.OCI_INDEX: "OCI index",
    models.OCI_MANIFEST: "OCI image",
    models.DOCKER_LIST: "Docker list",
    models.DOCKER_MANIFEST: "Docker image",
    models.OCI_CONFIG: "OCI config",
    models.DOCKER_CONFIG: "Docker config",
    "application/vnd.oci.image.layer.v1.tar": "OCI layer",
    "application/vnd.oci.image.layer.v1.tar+gzip": "OCI layer (gzip)",
    "application/vnd.oci.image.layer.v1.tar+zstd": "OCI layer (zstd)",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "Docker layer (gzip)",
    "application/vnd.in-toto+json": "in-toto",
}
#: The display order of each row type's columns: what a person reads first, then the identifiers.
#: Applied only to a frame with exactly its row type's columns (a selection keeps its own order).
_DISPLAY_ORDER = {
    "ImageRow": ["repository", "tag", "platforms", "missing", "image_id", "digest", "media_type", "registry"],
    "LongImageRow": [
        *("repository", "tag", "platforms", "size", "created", "missing", "image_id", "digest", "media_type"),
        "registry",
    ],
    "PlatformRow": [
        *("repository", "tag", "kind", "platform", "size", "layers", "created", "digest", "media_type"),
        *("os", "architecture", "variant", "config_digest", "registry"),
    ],
    "ActionRow": ["repository", "tag", "action", "note", "digest", "registry"],
    "CopyRow": [
        *("source", "destination", "action", "platforms", "bytes_copied", "seconds", "blobs_copied"),
        *("blobs_skipped", "blobs_mounted", "digest", "previous_digest"),
    ],
    "DuRow": ["repository", "size", "unique_size", "shared_size", "tags", "manifests", "blobs", "broken", "registry"],
    "LayerRow": [
        *("repository", "tag", "platform", "position", "size", "layer_digest", "created_by", "shared_by"),
        *("first_seen", "media_type", "manifest_digest", "registry"),
    ],
    "HistoryRow": [
        *("repository", "tag", "platform", "step", "created", "created_by", "size", "empty_layer", "comment"),
        *("layer_digest", "registry"),
    ],
    "ConfigRow": [
        *("repository", "tag", "platform", "user", "working_dir", "entrypoint", "cmd", "env", "labels"),
        *("exposed_ports", "created", "os", "architecture", "variant", "config_digest", "registry"),
    ],
}
#: What an empty frame of each row type means, said instead of a header-only table.
_EMPTY = {
    "RepoRow": "No repositories",
    "ImageRow": "No tags",
    "LongImageRow": "No tags",
    "PlatformRow": "No manifests",
    "InstanceRow": "No registry is running",
    "GcRow": "Nothing collected",
    "ActionRow": "Nothing deleted",
    "CopyRow": "No images",
    "DuRow": "No repositories",
    "DuTotalRow": "No registry",
    "LayerRow": "No layers",
    "HistoryRow": "No history",
    "ConfigRow": "No images",
    "DiffRow": "No differences",
}
_STYLE = """<style>
.jindr-frame code.jindr-digest { white-space: nowrap; user-select: all; cursor: copy; background: none; }
.jindr-frame code.jindr-digest::after { content: "…"; }
.jindr-frame .jindr-rest { font-size: 0; }
.jindr-frame .jindr-nowrap { white-space: nowrap; }
.jindr-frame .jindr-tree { white-space: pre; text-align: left; font-family: var(--jp-code-font-family, monospace); }
.jindr-frame .jindr-root { font-weight: bold; }
.jindr-frame .jindr-attestation { color: var(--jp-ui-font-color2, #777); }
.jindr-frame .jindr-missing { color: var(--jp-error-color1, #d32f2f); }
.jindr-frame .jindr-bar { display: inline-flex; width: 12em; height: 0.9em; vertical-align: middle; }
.jindr-frame .jindr-unique { background: #1f6feb; }
.jindr-frame .jindr-shared { background: #9ecbff; }
.jindr-frame .jindr-swatch { display: inline-block; width: 0.9em; height: 0.9em; vertical-align: middle; }
.jindr-frame .jindr-legend, .jindr-frame .jindr-empty { font-size: 90%; margin: 0.3em 0; }
</style>"""
_TREE_COLUMN = "image"
_BAR_COLUMN = "space"


def frame_html(frame: Any) -> str | None:
    """The HTML Jupyter shows for a DataFrame: readable for a frame jindr made (`attrs["jindr"]`),
    pandas' own for any other. Sizes in binary units; digests as `sha256:` + 12 hex, the rest hidden
    by CSS but there (one click selects the whole digest) and in the title; short media type names;
    times to the second; the useful columns first; `du` with bars, `inspect` as a tree. Rows are
    limited as pandas limits them (`display.max_rows`, `display.min_rows`)."""
    import pandas as pd

    kind = frame.attrs.get(MARK) if isinstance(frame, pd.DataFrame) else None
    if not isinstance(kind, str) or isinstance(frame.columns, pd.MultiIndex) or not frame.columns.is_unique:
        return frame._repr_html_()
    if not pd.get_option("display.notebook_repr_html"):
        return None
    if frame.empty:
        listed = ", ".join(escape(str(c)) for c in frame.columns)
        what = _EMPTY.get(kind, "No rows") if len(frame.columns) else "No columns"
        note = f"<small>(an empty DataFrame: {listed})</small>"
        return f'<div class="jindr-frame"><p class="jindr-empty">{what} {note}</p></div>'
    order = list(frame.columns)
    row_type = getattr(models, kind, None)
    if (
        kind in _DISPLAY_ORDER
        and isinstance(row_type, type)
        and dataclasses.is_dataclass(row_type)
        and order == columns(row_type)
    ):
        order = _DISPLAY_ORDER[kind]
    positions, shown_rows = _shown_positions(len(frame))
    shown_columns = [
        (str(name), [_html_cell(kind, str(name), v) for v in frame[name].iloc[positions].tolist()]) for name in order
    ]
    names = [name for name, _ in shown_columns]
    bars = kind == "DuRow" and {"unique_size", "shared_size"} <= set(names)
    if bars:  # after the repository, before the numbers it draws
        shown_columns.insert(min(1, len(shown_columns)), (_BAR_COLUMN, _bars(frame, positions)))
    if kind == "PlatformRow" and {"kind", "repository", "tag"} <= set(names):
        tree = _tree(frame)
        shown_columns.insert(0, (_TREE_COLUMN, [tree[i] for i in positions]))
    headers = [escape(name) for name, _ in shown_columns]
    index = [_html_cell(kind, "", v) for v in frame.index[positions].tolist()]
    rows = [list(row) for row in zip(*(values for _, values in shown_columns), strict=True)]
    truncated = shown_rows < len(frame)
    if truncated:  # a filler row where pandas puts its "...": to_html drops it and writes "..."
        half = len(positions) // 2
        rows.insert(half, [""] * len(headers))
        index.insert(half, "")
    shown = pd.DataFrame(rows, columns=headers, index=pd.Index(index, name=_index_name(frame)))
    with pd.option_context("display.max_colwidth", None):
        table = shown.to_html(
            escape=False,
            notebook=True,
            border=0,
            max_rows=len(positions) if truncated else None,
            max_cols=pd.get_option("display.max_columns") or None,
            show_dimensions=False,
        )
    parts = ['<div class="jindr-frame">', _STYLE, table]
    if bars:
        parts.append(
            '<p class="jindr-legend"><span class="jindr-swatch jindr-unique"></span> only this repository (what'
            ' deleting it frees after gc) &nbsp; <span class="jindr-swatch jindr-shared"></span> shared with'
            " other repositories</p>"
        )
    dimensions = pd.get_option("display.show_dimensions")
    if dimensions is True or (dimensions == "truncate" and truncated):
        parts.append(f"<p>{len(frame)} rows × {len(frame.columns)} columns</p>")
    parts.append("</div>")
    return "\n".join(parts)


def _index_name(frame: Any) -> str | None:
    name = frame.index.name
    return None if name is None else escape(str(name))


def _shown_positions(length: int) -> tuple[list[int], int]:
    """The row positions pandas' HTML repr would show, and how many: all, or the first and last
    halves of `display.min_rows` once there are more than `display.max_rows`."""
    import pandas as pd

    max_rows, min_rows = pd.get_option("display.max_rows"), pd.get_option("display.min_rows")
    if not max_rows or length <= max_rows:
        return list(range(length)), length
    half = (min(min_rows, max_rows) if min_rows else max_rows) // 2
    return list(range(half)) + list(range(length - half, length)), 2 * half


def _html_cell(kind: str, name: str, value: Any) -> str:
    """One value as HTML: NA blank, sizes with units, digests, media types, times, lists."""
    if _is_na(value):
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float) and (name in _BYTE_COLUMNS or (kind == "DiffRow" and name in ("a", "b"))):
        n = int(round(value))
        return f'<span class="jindr-nowrap" title="{n:,} bytes">{models.GcRow.binary(n)}</span>'
    if name == "seconds" and isinstance(value, int | float):
        return f"{value:.2f} s"
    if name == "media_type" and isinstance(value, str) and value:
        short = _MEDIA_TYPES.get(value.split(";")[0].strip())
        return f'<span title="{escape(value)}">{escape(short)}</span>' if short else escape(value)
    if name in ("env", "labels") and isinstance(value, list | dict):
        items = [f"{k}={v}" for k, v in value.items()] if isinstance(value, dict) else value
        return "<br>".join(_html_cell(kind, "", item) for item in items)
    return _plain_cell(value)


def _plain_cell(value: Any) -> str:
    if _is_na(value):
        return ""
    if isinstance(value, str):
        if _DIGEST.match(value):
            cut = value.index(":") + 13  # the algorithm and 12 hex digits, as docker shows an image id
            rest = f'<span class="jindr-rest">{value[cut:]}</span>'
            return f'<code class="jindr-digest" title="{value}">{value[:cut]}{rest}</code>'
        return escape(value)
    if isinstance(value, datetime):
        moment = value.astimezone(UTC) if value.tzinfo else value
        return f'<span class="jindr-nowrap" title="{escape(value.isoformat())}">{moment:%Y-%m-%d %H:%M:%S}</span>'
    if isinstance(value, list | tuple):
        return ", ".join(_plain_cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{escape(str(k))}={_plain_cell(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.6g}"
    return escape(str(value))


def _is_na(value: Any) -> bool:
    import pandas as pd

    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _tree(frame: Any) -> list[str]:
    """`inspect`'s rows as a tree: each image's first row (its index, or a single-platform image)
    as the root, the rows after it with the same repository and tag as its children."""
    kinds = frame["kind"].tolist()
    images = list(zip(frame["repository"].tolist(), frame["tag"].tolist(), strict=True))
    platforms = frame["platform"].tolist() if "platform" in frame.columns else [""] * len(kinds)
    labels = []
    for i, (kind, image, platform) in enumerate(zip(kinds, images, platforms, strict=True)):
        root = i == 0 or images[i - 1] != image
        if root:
            text = f"{image[0]}:{image[1]}" if image[1] else image[0]
            suffix = "" if kind == "index" else f" ({platform or kind})"
            labels.append(f'<span class="jindr-tree jindr-root">{escape(text + suffix)}</span>')
            continue
        last = i + 1 == len(kinds) or images[i + 1] != image
        branch = "└─ " if last else "├─ "
        if kind == "attestation":
            text, css = "attestation", "jindr-attestation"
        elif kind == "missing":
            text, css = f"{platform or 'child'} (missing)", "jindr-missing"
        else:
            text, css = platform or kind, ""
        labels.append(f'<span class="jindr-tree {css}">{branch}{escape(str(text))}</span>')
    return labels


def _bars(frame: Any, positions: list[int]) -> list[str]:
    """`du`'s unique and shared sizes as one bar per repository, on the frame's largest total."""
    unique = frame["unique_size"].fillna(0).astype("int64")
    shared = frame["shared_size"].fillna(0).astype("int64")
    scale = int((unique + shared).max()) or 1
    bars = []
    for u, s in zip(unique.iloc[positions].tolist(), shared.iloc[positions].tolist(), strict=True):
        title = f"only here {models.GcRow.binary(u)}, shared {models.GcRow.binary(s)}"
        bars.append(
            f'<span class="jindr-bar" title="{title}">'
            f'<span class="jindr-unique" style="width: {100 * u / scale:.1f}%"></span>'
            f'<span class="jindr-shared" style="width: {100 * s / scale:.1f}%"></span></span>'
        )
    return bars
