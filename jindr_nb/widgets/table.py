"""The image table both panels share: columns with sortable headers, filter, pages, row selection.

Plain ipywidgets: a header row of buttons (click to sort, again to reverse), then one row per tag
(a checkbox and an HTML cell grid with the same column widths). Only the rows of one page exist as
widgets, so a listing of thousands of tags costs a sort, not thousands of widgets.
"""

from __future__ import annotations

import fnmatch
import html
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from ..commands import Result, Session, build_parser, run
from ..errors import JindrError
from .progress import human_size, plural

__all__ = ["COLUMNS", "ImageTable", "PanelBase", "human_size", "plural"]

PAGE = 25
PAGE_SIZES = (25, 50, 100, 250)
CHECK_WIDTH = 34  # px, the checkbox column
#: (column, header, width in px, first direction when its header is clicked: True = ascending)
COLUMNS = (
    ("repository", "Repository", 200, True),
    ("tag", "Tag", 120, True),
    ("platforms", "Platforms", 200, True),
    ("size", "Size", 90, False),
    ("created", "Created", 160, False),
    ("digest", "Digest", 170, True),
)
_SORT_KEY = {"platforms": "_platforms", "repository": "repository", "tag": "tag"}
_CELL = "overflow:hidden;text-overflow:ellipsis;white-space:nowrap;padding:0 6px;"
_GRID = "display:grid;grid-template-columns:" + " ".join(f"{width}px" for _, _, width, _ in COLUMNS) + ";"


class PanelBase:
    """Runs commands through the command table in a background thread, with an in-panel status line."""

    def __init__(self, registry: str | None, *, insecure: bool = False) -> None:
        self.session = Session(registry)
        #: `%jindr --insecure rmi` / `cp`: plain HTTP to registries off this machine, as on the command line.
        self.session.insecure = insecure
        self.status = w.HTML(value="")
        self._worker: threading.Thread | None = None

    def command(self, *argv: str) -> Result:
        """Run one command line of the table (the same handlers as the magic and the CLI)."""
        return run(self.session, build_parser("%jindr", cli=False).parse_args(list(argv)))

    def in_background(self, job: Callable[[], None], busy: str) -> None:
        """Run `job` off the kernel's main thread; errors land in the status line, one line each."""
        self.say(busy)

        def target() -> None:
            try:
                job()
            except JindrError as exc:
                self.failed(exc)
            except Exception as exc:  # noqa: BLE001 - a bug, but the panel must stay usable
                self.say(f"unexpected error: {type(exc).__name__}: {exc}", error=True)

        self._worker = threading.Thread(target=target, daemon=True, name="jindr-panel")
        self._worker.start()

    def failed(self, exc: JindrError) -> None:
        """A command failed: its one line in the status (panels add what to do next)."""
        self.say(str(exc), error=True)

    def wait(self, timeout: float = 120) -> None:
        """Block until the background work is done (for tests and scripts)."""
        if self._worker is not None:
            self._worker.join(timeout)

    def say(self, text: str, *, error: bool = False) -> None:
        colour = "#b00020" if error else "#444"
        self.status.value = f'<span style="color:{colour}">{html.escape(text)}</span>'


def _button(description: str, tooltip: str = "", **kwargs: Any) -> w.Button:
    """A button as wide as its label (ipywidgets' fixed default width cuts long labels)."""
    return w.Button(description=description, tooltip=tooltip or description, layout=w.Layout(width="auto"), **kwargs)


class ImageTable:
    """Every tag of a registry as a table: filter, repository, sort by any column, pages, selection."""

    def __init__(self, on_change: Callable[[], None] | None = None, page_size: int = PAGE) -> None:
        self.frame: Any = None  # pandas DataFrame of the listing
        self.selected: set[str] = set()  # "repo:tag" keys
        self.stale: set[str] = set()  # keys the registry no longer has (found out by a command)
        self.page = 0
        self.page_size = page_size
        self.sort_by, self.ascending = "repository", True
        self.on_change = on_change
        self._ticked: list[str] = []  # the last rows ticked, for "Select range"
        self.filter = w.Text(
            placeholder="substring or glob, e.g. team/*:v1*",
            description="Filter",
            layout=w.Layout(width="28em"),
        )
        self.filter.add_class("jindr-filter")
        self.repository = w.Dropdown(options=["(all)"], value="(all)", description="Repository")
        self.rows_per_page = w.Dropdown(
            options=sorted({*PAGE_SIZES, page_size}),
            value=page_size,
            description="Rows per page",
            style={"description_width": "initial"},
            layout=w.Layout(width="auto"),
        )
        self.select_all = w.Checkbox(
            indent=False,
            description="",
            tooltip="select every row the filter shows, on every page",
            layout=w.Layout(width=f"{CHECK_WIDTH}px", margin="0"),
        )
        self.select_all.add_class("jindr-select-all")
        self.select_range = _button(
            "Select range", "select every row between the last two rows ticked, in the order shown, on every page"
        )
        self.clear = _button("Clear selection")
        self.first = _button("First page")
        self.prev = _button("Previous page")
        self.next = _button("Next page")
        self.last = _button("Last page")
        self.page_label = w.Label()
        self.page_label.add_class("jindr-page")
        self.headers = {
            column: w.Button(
                description=title,
                tooltip=f"sort by {column}; click again to reverse",
                layout=w.Layout(width=f"{width}px", margin="0"),
            )
            for column, title, width, _ in COLUMNS
        }
        for column, button in self.headers.items():
            button.add_class("jindr-sort")
            button.on_click(lambda _, column=column: self.sort(column))
        self.header = w.HBox([self.select_all, *self.headers.values()], layout=w.Layout(align_items="center"))
        self.header.add_class("jindr-header")
        self._checks: list[w.Checkbox] = []
        self._cells: list[w.HTML] = []
        self._rows: list[w.HBox] = []
        self._keys: list[str | None] = []
        self._rows_box = w.VBox()
        self._syncing = False
        self._ensure_rows(page_size)
        self.select_all.observe(lambda change: self._all_toggled(change["new"]), names="value")
        for control in (self.filter, self.repository):
            control.observe(lambda _: self._refilter(), names="value")
        self.rows_per_page.observe(lambda change: self._resize(change["new"]), names="value")
        self.select_range.on_click(lambda _: self._range_clicked())
        self.clear.on_click(lambda _: self._set_selection(set()))
        self.first.on_click(lambda _: self._turn(-(10**9)))
        self.prev.on_click(lambda _: self._turn(-1))
        self.next.on_click(lambda _: self._turn(1))
        self.last.on_click(lambda _: self._turn(10**9))
        self.widget = w.VBox(
            [
                w.HBox([self.filter, self.repository, self.rows_per_page]),
                w.HBox(
                    [self.select_range, self.clear, self.first, self.prev, self.page_label, self.next, self.last],
                    layout=w.Layout(align_items="center"),
                ),
                w.VBox([self.header, self._rows_box], layout=w.Layout(overflow="auto")),  # scrolls when narrow
            ]
        )
        self.widget.add_class("jindr-table")
        self._shown: Any = None
        self._show_headers()

    def load(self, frame: Any) -> None:
        """Show a listing (the `lsi -l` DataFrame); keeps the selection of rows that still exist."""
        frame = frame.copy()
        frame["key"] = frame["repository"] + ":" + frame["tag"]
        frame["_platforms"] = frame["platforms"].map(", ".join)
        self.frame = frame
        self.selected &= set(frame["key"])
        self.stale = set()
        self._ticked = [k for k in self._ticked if k in self.selected]
        self.repository.options = ["(all)", *sorted(frame["repository"].unique())]
        self._refilter()

    def shown(self) -> Any:
        """The rows that match the filter, in sort order (all pages)."""
        frame = self.frame
        if frame is None:
            return None
        pattern = self.filter.value.strip()
        if pattern:
            if any(c in pattern for c in "*?["):
                frame = frame[frame["key"].map(lambda k: fnmatch.fnmatchcase(k, pattern))]
            else:
                frame = frame[frame["key"].str.contains(pattern, regex=False)]
        if self.repository.value != "(all)":
            frame = frame[frame["repository"] == self.repository.value]
        first = _SORT_KEY.get(self.sort_by, self.sort_by)
        by = [first] + [c for c in ("repository", "tag") if c != first]
        ascending = [self.ascending] + [True] * (len(by) - 1)
        return frame.sort_values(by=by, ascending=ascending, na_position="last", kind="stable")

    def selection(self) -> Any:
        """The selected rows."""
        return self.frame[self.frame["key"].isin(self.selected)] if self.frame is not None else None

    def sort(self, column: str) -> None:
        """What a click on a column's header does: sort by it, or reverse it when it already sorts."""
        if column == self.sort_by:
            self.ascending = not self.ascending
        else:
            self.sort_by = column
            self.ascending = next(first for name, _, _, first in COLUMNS if name == column)
        self._show_headers()
        self._refilter()

    def check(self, *keys: str) -> None:
        """Tick rows by `repo:tag`, in order (what clicks on their boxes do)."""
        for key in keys:
            self._tick(key)
        self._set_selection(self.selected | set(keys))

    def select_between(self, a: str, b: str) -> None:
        """Select every shown row from `a` to `b` (both `repo:tag`), in the order shown, on every page."""
        keys = list(self._shown["key"]) if self._shown is not None else []
        if a not in keys or b not in keys:
            return
        i, j = sorted((keys.index(a), keys.index(b)))
        self._set_selection(self.selected | set(keys[i : j + 1]))

    def mark_stale(self, keys: set[str]) -> None:
        """Rows the registry no longer has: struck through until the next listing."""
        self.stale = set(keys)
        self._render()

    def _show_headers(self) -> None:
        for column, title, _, _ in COLUMNS:
            arrow = (" ▲" if self.ascending else " ▼") if column == self.sort_by else ""
            self.headers[column].description = title + arrow
            self.headers[column].button_style = "info" if column == self.sort_by else ""

    def _ensure_rows(self, n: int) -> None:
        width = sum(c[2] for c in COLUMNS)
        while len(self._rows) < n:
            i = len(self._rows)
            check = w.Checkbox(indent=False, description="", layout=w.Layout(width=f"{CHECK_WIDTH}px", margin="0"))
            check.observe(lambda change, i=i: self._toggled(i, change["new"]), names="value")
            cells = w.HTML(layout=w.Layout(width=f"{width}px", margin="0"))
            row = w.HBox([check, cells], layout=w.Layout(align_items="center"))
            row.add_class("jindr-row")  # stable hooks for browser tests and user CSS
            self._checks.append(check)
            self._cells.append(cells)
            self._rows.append(row)
            self._keys.append(None)

    def _resize(self, size: int) -> None:
        self.page_size = size
        self._ensure_rows(size)
        self.page = 0
        self._render()

    def _refilter(self) -> None:
        self._shown = self.shown()
        self.page = 0
        self._render()

    def _turn(self, step: int) -> None:
        if self._shown is None:
            return
        pages = max(1, -(-len(self._shown) // self.page_size))
        self.page = min(max(0, self.page + step), pages - 1)
        self._render()

    def _render(self) -> None:
        shown = self._shown
        if shown is None:
            return
        pages = max(1, -(-len(shown) // self.page_size))
        start = self.page * self.page_size
        part = shown.iloc[start : start + self.page_size]
        self.page_label.value = (
            f"page {self.page + 1} of {pages} ({len(shown)} of {plural(len(self.frame), 'tag')}"
            f", {len(self.selected)} selected)"
        )
        self.first.disabled = self.prev.disabled = self.page == 0
        self.next.disabled = self.last.disabled = self.page >= pages - 1
        self._syncing = True
        try:
            self._rows_box.children = self._rows[: self.page_size]
            for i in range(self.page_size):
                if i < len(part):
                    row = part.iloc[i]
                    self._keys[i] = row["key"]
                    self._checks[i].value = row["key"] in self.selected
                    self._cells[i].value = self._row_html(row)
                    self._rows[i].layout.display = ""
                else:
                    self._keys[i] = None
                    self._cells[i].value = ""
                    self._rows[i].layout.display = "none"
            self.select_all.value = bool(len(shown)) and set(shown["key"]) <= self.selected
        finally:
            self._syncing = False

    def _row_html(self, row: Any) -> str:
        created = row["created"]
        when = created.strftime("%Y-%m-%d %H:%M:%S") if created is not None and str(created) != "NaT" else "—"
        platforms = html.escape(row["_platforms"]) or "—"
        if len(row.get("missing", [])):
            lost = html.escape(", ".join(row["missing"]))
            platforms += f' <span style="color:#b00020">(missing: {lost})</span>'
        size = row["size"]
        digest = html.escape(row["digest"])
        cells = [
            (html.escape(row["repository"]), html.escape(row["repository"]), ""),
            (html.escape(row["tag"]), html.escape(row["tag"]), ""),
            (platforms, html.escape(row["_platforms"]), ""),
            (human_size(size) if size == size else "—", f"{size} bytes" if size == size else "", "text-align:right;"),
            (when, str(created), ""),
            (f'<code style="user-select:all">{digest}</code>', digest, ""),
        ]
        body = "".join(
            f'<span class="jindr-cell-{column}" style="{_CELL}{extra}" title="{title}">{text}</span>'
            for (column, *_), (text, title, extra) in zip(COLUMNS, cells, strict=True)
        )
        style = _GRID
        if row["key"] in self.stale:
            style += "text-decoration:line-through;color:#888;"
        elif row["key"] in self.selected:
            style += "background:rgba(33,150,243,0.12);"
        return f'<div class="jindr-cells" data-key="{html.escape(row["key"])}" style="{style}">{body}</div>'

    def _tick(self, key: str) -> None:
        self._ticked = [*[k for k in self._ticked if k != key], key][-2:]

    def _toggled(self, i: int, value: bool) -> None:
        key = self._keys[i]
        if self._syncing or key is None:
            return
        if value:
            self._tick(key)
        else:
            self._ticked = [k for k in self._ticked if k != key]
        self._set_selection(self.selected | {key} if value else self.selected - {key})

    def _all_toggled(self, value: bool) -> None:
        if self._syncing or self._shown is None:
            return
        keys = set(self._shown["key"])
        self._set_selection(self.selected | keys if value else self.selected - keys)

    def _range_clicked(self) -> None:
        if len(self._ticked) == 2:
            self.select_between(*self._ticked)

    def _set_selection(self, keys: set[str]) -> None:
        self.selected = set(keys)
        self._render()
        if self.on_change:
            self.on_change()
