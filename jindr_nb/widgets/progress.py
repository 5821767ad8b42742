"""A byte progress bar that ends green when its command is done and red, with the error, when it fails.

Cells and panels use the same bar. A panel knows when its command ends and calls `finish`; in a cell
the magic calls `end_in_cell` when its command returns or raises (red with that error, even when the
cell catches it); `in_cell` also finishes the bar from IPython's `post_run_cell` event (red with the
cell's error) or when the next bar of the same cell opens, for a bar whose command was not run by
the magic.
"""

from __future__ import annotations

import html
import threading
import weakref
from typing import Any

import ipywidgets as w

__all__ = ["ProgressBar", "end_in_cell", "human_size", "in_cell", "plural"]

GREEN, RED = "success", "danger"


def human_size(n: float) -> str:
    """Bytes in binary units, KiB for small transfers: 615 B, 12.3 KiB, 4.0 MiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def plural(n: int, word: str, many: str | None = None) -> str:
    """`1 tag`, `2 tags`, `1 repository`, `3 repositories`."""
    if n == 1:
        return f"1 {word}"
    return f"{n} {many or (word[:-1] + 'ies' if word.endswith('y') else word + 's')}"


class ProgressBar:
    """One named transfer: `update(done, total)` from any thread, then `finish()` or `finish(error)`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.done = 0
        self.total: int | None = None
        self.state = "starting"  # starting, moving, finishing, done, failed
        self.error = ""
        self._lock = threading.Lock()
        self.bar = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="30%", min_width="12em"))
        self.label = w.HTML(value=self._text())
        self.widget = w.HBox([self.bar, self.label], layout=w.Layout(align_items="center"))
        self.widget.add_class("jindr-progress")

    def update(self, done: int, total: int) -> None:
        """Bytes moved so far of the bytes to move (the `(done, total)` callback of `cp` and `load`)."""
        with self._lock:
            if self.state in ("done", "failed"):
                return
            self.done, self.total = done, total
            self.state = "finishing" if done >= total else "moving"
            self.bar.max = max(total, 1)
            self.bar.value = self.bar.max if done >= total else min(done, self.bar.max)
            self.bar.bar_style = "info"
            self.label.value = self._text()

    def finish(self, error: str | None = None) -> None:
        """The command ended: a full green bar, or a full red one with the error."""
        with self._lock:
            if self.state in ("done", "failed"):
                return
            if error is None and self.total is not None and self.done < self.total:
                error = "stopped before the transfer ended"
            self.state, self.error = ("failed", error) if error is not None else ("done", "")
            self.bar.max = max(self.total or 0, 1)
            self.bar.value = self.bar.max
            self.bar.bar_style = RED if error is not None else GREEN
            self.label.value = self._text()

    def _text(self) -> str:
        name = f"<code>{html.escape(self.name)}</code>"
        total = self.total
        if self.state == "starting":
            return f"{name}: starting"
        if self.state == "moving":
            return f"{name}: {human_size(self.done)} of {human_size(total or 0)}"
        if self.state == "finishing":
            return f"{name}: {human_size(self.done)} moved, writing manifests and tags"
        if self.state == "done":
            moved = f"{human_size(self.done)} moved" if total else "nothing to move, the blobs were there"
            return f"{name}: done — {moved}"
        where = f" after {human_size(self.done)} of {human_size(total)}" if total else ""
        return f'{name}: <span style="color:#b00020">failed{where}: {html.escape(self.error)}</span>'


_open: weakref.WeakKeyDictionary[Any, list[ProgressBar]] = weakref.WeakKeyDictionary()


def in_cell(shell: Any, bar: ProgressBar) -> ProgressBar:
    """Finish `bar` when its command ends in a cell: at the next bar, or at the cell's end (red on its error)."""
    if shell is None:
        return bar
    if shell not in _open:
        _open[shell] = []

        def ended(result: Any) -> None:
            error = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
            end_in_cell(shell, error)

        shell.events.register("post_run_cell", ended)
    for earlier in _open[shell]:
        earlier.finish()  # its command returned: the magic runs one command at a time
    _open[shell] = [bar]
    return bar


def end_in_cell(shell: Any, error: BaseException | None = None) -> None:
    """The command of the open bar in `shell`'s cell ended: green, or red with `error`'s last line."""
    bars = _open.get(shell)
    if not bars:
        return
    _open[shell] = []
    for earlier in bars[:-1]:
        earlier.finish()
    bars[-1].finish(_one_line(error) if error is not None else None)


def _one_line(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(error).__name__
