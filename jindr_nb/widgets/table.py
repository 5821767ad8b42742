"""The filterable, sortable, paged image table that both panels share (plain ipywidgets)."""

from __future__ import annotations

import fnmatch
import html
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from ..commands import Result, Session, build_parser, run
from ..errors import JindrError

__all__ = ["ImageTable", "PanelBase", "human_size"]

PAGE = 25
SORTS = {
    "name": (["repository", "tag"], [True, True]),
    "size (largest first)": (["size", "repository", "tag"], [False, True, True]),
    "age (oldest first)": (["created", "repository", "tag"], [True, True, True]),
    "age (newest first)": (["created", "repository", "tag"], [False, True, True]),
}


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


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
                self.say(str(exc), error=True)
            except Exception as exc:  # noqa: BLE001 - a bug, but the panel must stay usable
                self.say(f"unexpected error: {type(exc).__name__}: {exc}", error=True)

        self._worker = threading.Thread(target=target, daemon=True, name="jindr-panel")
        self._worker.start()

    def wait(self, timeout: float = 120) -> None:
        """Block until the background work is done (for tests and scripts)."""
        if self._worker is not None:
            self._worker.join(timeout)

    def say(self, text: str, *, error: bool = False) -> None:
        colour = "#b00020" if error else "#444"
        self.status.value = f'<span style="color:{colour}">{html.escape(text)}</span>'


class ImageTable:
    """Every tag of a registry: filter (substring or glob on repo:tag), repository, sort, pages, selection."""

    def __init__(self, on_change: Callable[[], None] | None = None, page_size: int = PAGE) -> None:
        self.frame: Any = None  # pandas DataFrame of the listing
        self.selected: set[str] = set()  # "repo:tag" keys
        self.page = 0
        self.page_size = page_size
        self.on_change = on_change
        self.filter = w.Text(placeholder="filter: substring or glob, e.g. team/*:v1*", description="Filter")
        self.repository = w.Dropdown(options=["(all)"], value="(all)", description="Repository")
        self.sort = w.Dropdown(options=list(SORTS), value="name", description="Sort by")
        self.select_shown = w.Button(description="Select all shown", tooltip="select every row matching the filter")
        self.clear = w.Button(description="Clear selection")
        self.prev = w.Button(description="◀", layout=w.Layout(width="3em"))
        self.next = w.Button(description="▶", layout=w.Layout(width="3em"))
        self.page_label = w.Label()
        self.page_label.add_class("jindr-page")
        self.header = w.HTML()
        self._checks = [w.Checkbox(indent=False, layout=w.Layout(width="2em")) for _ in range(page_size)]
        self._labels = [w.HTML() for _ in range(page_size)]
        self._rows = [w.HBox([c, lab]) for c, lab in zip(self._checks, self._labels, strict=True)]
        for row in self._rows:
            row.add_class("jindr-row")  # stable hooks for browser tests and user CSS
        self.filter.add_class("jindr-filter")
        self._keys: list[str | None] = [None] * page_size
        self._syncing = False
        for i, check in enumerate(self._checks):
            check.observe(lambda change, i=i: self._toggled(i, change["new"]), names="value")
        for control in (self.filter, self.repository, self.sort):
            control.observe(lambda _: self._refilter(), names="value")
        self.select_shown.on_click(lambda _: self._select(True))
        self.clear.on_click(lambda _: self._select(False))
        self.prev.on_click(lambda _: self._turn(-1))
        self.next.on_click(lambda _: self._turn(1))
        self.widget = w.VBox(
            [
                w.HBox([self.filter, self.repository, self.sort]),
                w.HBox([self.select_shown, self.clear, self.prev, self.page_label, self.next]),
                self.header,
                w.VBox(self._rows),
            ]
        )
        self._shown: Any = None

    def load(self, frame: Any) -> None:
        """Show a listing (the `lsi -l` DataFrame); keeps the selection of rows that still exist."""
        frame = frame.copy()
        frame["key"] = frame["repository"] + ":" + frame["tag"]
        self.frame = frame
        self.selected &= set(frame["key"])
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
        by, ascending = SORTS[self.sort.value]
        return frame.sort_values(by=by, ascending=ascending, na_position="last")

    def selection(self) -> Any:
        """The selected rows."""
        return self.frame[self.frame["key"].isin(self.selected)] if self.frame is not None else None

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
        self.page_label.value = f"page {self.page + 1} of {pages} ({len(shown)} of {len(self.frame)} tags)"
        self.header.value = "<b>repository:tag — platforms — size — created — digest</b>"
        self._syncing = True
        try:
            for i in range(self.page_size):
                if i < len(part):
                    row = part.iloc[i]
                    created = (
                        row["created"].strftime("%Y-%m-%d %H:%M")
                        if row["created"] is not None and str(row["created"]) != "NaT"
                        else "—"
                    )
                    self._keys[i] = row["key"]
                    self._checks[i].value = row["key"] in self.selected
                    self._labels[i].value = (
                        f"<code>{html.escape(row['key'])}</code> — {html.escape(', '.join(row['platforms']))}"
                        f" — {human_size(row['size'])} — {created} — <code>{row['image_id']}</code>"
                    )
                    self._rows[i].layout.display = ""
                else:
                    self._keys[i] = None
                    self._labels[i].value = ""
                    self._rows[i].layout.display = "none"
        finally:
            self._syncing = False

    def _toggled(self, i: int, value: bool) -> None:
        if self._syncing or self._keys[i] is None:
            return
        key = self._keys[i]
        if value:
            self.selected.add(key)
        else:
            self.selected.discard(key)
        if self.on_change:
            self.on_change()

    def _select(self, value: bool) -> None:
        if self._shown is None:
            return
        keys = set(self._shown["key"])
        self.selected = self.selected | keys if value else self.selected - keys
        self._render()
        if self.on_change:
            self.on_change()

    def check(self, *keys: str) -> None:
        """Select rows by `repo:tag` (what a click on their boxes does)."""
        self.selected |= set(keys)
        self._render()
        if self.on_change:
            self.on_change()
