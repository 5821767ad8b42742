"""DeletePanel and CopyPanel: cleanup and copy by pointing and clicking, in plain ipywidgets.

No registry logic lives here: every action is a command line of the command table (the same
handlers as `%jindr` and `jindr`), run in a background thread so the kernel keeps serving the
panel's own widget messages while it works.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import ipywidgets as w
from IPython.display import display

from ..errors import JindrError, NotFound
from ..frames import to_frame
from ..ops.delete import SPACE_NOTE
from .progress import ProgressBar
from .table import ImageTable, PanelBase, _button, human_size, plural

__all__ = ["CopyPanel", "DeletePanel", "result_html"]

_NOWRAP = "white-space:nowrap"
_DIGEST = "display:inline-block;max-width:14em;overflow:hidden;text-overflow:ellipsis;vertical-align:bottom;"


def _cell(column: str) -> Callable[[Any], str]:
    """How one column of a result frame is shown: digests cut with the full value kept, sizes in units."""
    if "digest" in column:
        return lambda v: (
            f'<code style="{_DIGEST}user-select:all" title="{html.escape(str(v))}">{html.escape(str(v))}</code>'
        )
    if column in ("size", "reclaimed_bytes", "bytes_copied") or column.startswith("disk_"):
        return lambda v: f'<span style="{_NOWRAP}" title="{v} bytes">{human_size(v)}</span>'
    if column == "note":
        return lambda v: f'<span style="display:inline-block;min-width:22em">{html.escape(str(v))}</span>'
    return lambda v: f'<span style="{_NOWRAP}">{html.escape(", ".join(v) if isinstance(v, list) else str(v))}</span>'


def result_html(frame: Any, max_rows: int = 200) -> str:
    """A result frame as an HTML table a person can read: one line per row, the note given room."""
    formatters = {column: _cell(column) for column in frame.columns}
    return frame.to_html(index=False, max_rows=max_rows, formatters=formatters, escape=False, classes="jindr-result")


class _ListingPanel(PanelBase):
    """A panel over the image table: loads the listing in the background, shows errors in-panel."""

    title = ""

    def __init__(self, registry: str | None = None, *, insecure: bool = False) -> None:
        super().__init__(registry, insecure=insecure)
        self.table = ImageTable(on_change=self._selection_changed)
        self.summary = w.HTML()
        self.output = w.Output()
        self.last_frame: Any = None
        self.refresh_button = _button("Refresh", "list the registry again")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.body = w.VBox([self.table.widget, self.summary])
        self.widget = w.VBox(
            [
                w.HTML(f"<h3>{self.title} — {html.escape(self.session.registry)}</h3>"),
                w.HBox([self.refresh_button, self.status], layout=w.Layout(align_items="center")),
                self.body,
                self.output,
            ]
        )
        self.body.layout.display = "none"
        self.widget.add_class("jindr-panel")
        self.status.add_class("jindr-status")
        self.output.add_class("jindr-output")
        self.refresh()

    def _ipython_display_(self) -> None:
        display(self.widget)

    def refresh(self) -> None:
        """Load (or reload) the listing in the background."""

        def job() -> None:
            self._relist()
            frame = self.table.frame
            repositories = frame["repository"].nunique() if len(frame) else 0
            self.say(f"{plural(len(frame), 'tag')} in {plural(repositories, 'repository')}")

        self.in_background(job, f"listing {self.session.registry} …")

    def _relist(self) -> None:
        result = self.command("lsi", "-l")
        self.table.load(to_frame(result.rows, result.row_type))
        self.body.layout.display = ""
        self.refresh_button.description, self.refresh_button.button_style = "Refresh", ""
        self._selection_changed()

    def offer_refresh(self) -> None:
        """The listing is out of date: the Refresh button says so."""
        self.refresh_button.description = "Refresh the listing"
        self.refresh_button.button_style = "warning"

    def show_frame(self, frame: Any) -> None:
        """Put a DataFrame in the panel's output area.

        Set as the Output widget's data rather than displayed inside `with output:`, because this runs
        in a worker thread, where the kernel would route display calls to the most recent cell.
        """
        self.last_frame = frame
        self.output.outputs = (
            {
                "output_type": "display_data",
                "data": {"text/html": result_html(frame), "text/plain": frame.to_string()},
                "metadata": {},
            },
        )

    def _selection_changed(self) -> None:
        chosen = self.table.selection()
        if chosen is None or chosen.empty:
            self.summary.value = "<i>nothing selected</i>"
            return
        unique = chosen.drop_duplicates("digest")
        self.summary.value = f"<b>{len(chosen)} selected</b>, {human_size(unique['size'].sum())}"


class DeletePanel(_ListingPanel):
    """Pick tags, preview what deleting them means, delete after an explicit confirmation."""

    title = "Delete images"

    def __init__(self, registry: str | None = None, *, insecure: bool = False) -> None:
        self.preview_button = _button("Preview", "show what deleting the selected tags would do; changes nothing")
        self.delete_button = _button("Delete", "delete the selected tags (asks to confirm)", button_style="danger")
        self.cancel_button = _button("Cancel", "do not delete")
        self.gc_after = w.Checkbox(
            value=False,
            description="run gc afterwards (registries jindr runs here)",
            style={"description_width": "initial"},
            layout=w.Layout(width="auto"),
        )
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="20%"))
        self._armed = False
        super().__init__(registry, insecure=insecure)
        self.cancel_button.layout.display = "none"
        self.progress.layout.display = "none"
        self.preview_button.on_click(lambda _: self.preview())
        self.delete_button.on_click(lambda _: self.delete())
        self.cancel_button.on_click(lambda _: self._disarm())
        self.body.children = [
            *self.body.children,
            w.HBox(
                [self.preview_button, self.delete_button, self.cancel_button, self.gc_after, self.progress],
                layout=w.Layout(align_items="center", flex_flow="row wrap"),
            ),
        ]

    def _args(self) -> list[str]:
        return sorted(self.table.selected)

    def _selection_changed(self) -> None:
        super()._selection_changed()
        self._disarm()
        chosen = self.table.selection()
        if chosen is None or chosen.empty or self.table.frame is None:
            return
        frame = self.table.frame
        siblings = frame[frame["digest"].isin(set(chosen["digest"])) & ~frame["key"].isin(self.table.selected)]
        if len(siblings):
            kept = ", ".join(sorted(siblings["key"]))
            self.summary.value += (
                f"<br>Other tags share a selected digest and will be <b>kept</b> (only the selected tags go): "
                f"<code>{html.escape(kept)}</code>"
            )

    def preview(self) -> None:
        """Show the dry-run plan."""
        images = self._args()
        if not images:
            self.say("select at least one tag first", error=True)
            return

        def job() -> None:
            result = self.command("rmi", "--dry-run", *images)
            self.show_frame(to_frame(result.rows, result.row_type))
            self.say(f"preview: {plural(len(images), 'tag')} would be deleted; nothing has changed")

        self.in_background(job, "planning …")

    def delete(self) -> None:
        """First click arms; the second ("Confirm: delete N tags") deletes."""
        images = self._args()
        if not images:
            self.say("select at least one tag first", error=True)
            return
        if not self._armed:
            self._armed = True
            self.delete_button.description = f"Confirm: delete {plural(len(images), 'tag')}"
            self.delete_button.tooltip = f"delete {', '.join(images)}"
            self.cancel_button.layout.display = ""
            self.say(f"click again to delete {plural(len(images), 'tag')}")
            return
        self._disarm()
        self._deleting = images

        def job() -> None:
            self.progress.layout.display = ""
            self.progress.max, self.progress.value = 1, 0
            self.progress.bar_style = "info"
            result = self.command("rmi", *images)
            self.progress.value = 1
            self.progress.bar_style = "success" if result.ok else "danger"
            frame = to_frame(result.rows, result.row_type)
            gone = sum(1 for r in result.rows if r.action == "deleted" and r.tag)
            message = f"deleted {plural(gone, 'tag')}"
            if not result.ok:
                message = f"{result.message} (deleted {plural(gone, 'tag')})"
            if self.gc_after.value and result.ok:
                freed = self.command("gc").rows[0].describe()
                message += f"; gc freed {freed}"
                note = f"gc ran: freed {freed}"
                frame["note"] = frame["note"].str.replace(SPACE_NOTE, note, regex=False)
            self.show_frame(frame)
            self.table.selected.clear()
            self._relist()
            self.say(message, error=not result.ok)

        self.in_background(job, f"deleting {plural(len(images), 'tag')} …")

    def failed(self, exc: JindrError) -> None:
        images = getattr(self, "_deleting", [])
        self._deleting = []
        if self.progress.layout.display != "none":
            self.progress.value = self.progress.max
            self.progress.bar_style = "danger"
        if isinstance(exc, NotFound) and images:
            # The registry changed since the listing: those rows are gone; say so and offer a new listing.
            text = str(exc)
            gone = {key for key in images if re.search(re.escape(key) + r"(?![\w.-])", text)}
            self.table.mark_stale(gone)
            self.offer_refresh()
            self.say(f"{text} — the registry changed since this listing; Refresh lists it again", error=True)
            return
        super().failed(exc)

    def _disarm(self) -> None:
        if getattr(self, "_armed", False) or self.delete_button.description != "Delete":
            self._armed = False
            self.delete_button.description = "Delete"
            self.delete_button.tooltip = "delete the selected tags (asks to confirm)"
            self.cancel_button.layout.display = "none"


class CopyPanel(_ListingPanel):
    """Pick images, a destination (a registry, or AWS ECR), extra tags; copy with a bar per image."""

    title = "Copy images"

    def __init__(self, registry: str | None = None, *, insecure: bool = False) -> None:
        self.destination = w.Text(placeholder="host:port, e.g. localhost:5002", description="To registry")
        self.to_ecr = w.Checkbox(value=False, description="AWS ECR instead", style={"description_width": "initial"})
        self.region = w.Text(placeholder="eu-west-1 (default: profile)", description="Region")
        self.keep = w.BoundedIntText(
            value=4, min=1, max=64, description="Keep newest", style={"description_width": "initial"}
        )
        self.extra_tags = w.Text(placeholder="also tag each copy as ... (space separated)", description="Extra tags")
        self.copy_button = _button("Copy", "copy the selected images", button_style="primary")
        self.bars = w.VBox()
        self.ecr_fields = w.HBox([self.region, self.keep])
        self._current: ProgressBar | None = None
        super().__init__(registry, insecure=insecure)
        self.copy_button.on_click(lambda _: self.copy())
        self.to_ecr.observe(lambda _: self._show_destination(), names="value")
        self._show_destination()
        self.body.children = [
            *self.body.children,
            w.HBox([self.destination, self.to_ecr], layout=w.Layout(align_items="center")),
            self.ecr_fields,
            self.extra_tags,
            w.HBox([self.copy_button]),
            self.bars,
        ]

    def _show_destination(self) -> None:
        ecr = self.to_ecr.value
        self.ecr_fields.layout.display = "" if ecr else "none"
        self.destination.layout.display = "none" if ecr else ""

    def copy(self) -> None:
        images = sorted(self.table.selected)
        if not images:
            self.say("select at least one image first", error=True)
            return
        if not self.to_ecr.value and not self.destination.value.strip():
            self.say("enter a destination registry (host:port) or tick AWS ECR instead", error=True)
            return
        extra = [arg for tag in self.extra_tags.value.split() for arg in ("--tag", tag)]

        def job() -> None:
            rows: list[Any] = []
            row_type: Any = None
            self.bars.children = []
            self.session.progress = self._bar
            for n, image in enumerate(images):
                if self.to_ecr.value:
                    argv = ["cpe", image, *extra, "--keep", str(self.keep.value)]
                    if self.region.value.strip():
                        argv += ["--region", self.region.value.strip()]
                else:
                    argv = ["cp", image, self.destination.value.strip(), *extra]
                self._current = None
                try:
                    result = self.command(*argv)
                except JindrError as exc:
                    bar = self._current or self._new_bar(image)
                    bar.finish(str(exc))
                    if rows:
                        self.show_frame(to_frame(rows, row_type))
                    left = len(images) - n - 1
                    rest = f"; {plural(left, 'image')} not attempted" if left else ""
                    done = f"copied {n} of {plural(len(images), 'image')}; " if n else ""
                    self.say(f"{done}{image}: {exc}{rest}", error=True)
                    return
                if self._current is not None:
                    self._current.finish()
                rows.extend(result.rows)
                row_type = result.row_type
            self.show_frame(to_frame(rows, row_type))
            self.say(f"copied {plural(len(images), 'image')}")

        self.in_background(job, f"copying {plural(len(images), 'image')} …")

    def _new_bar(self, name: str) -> ProgressBar:
        bar = ProgressBar(name)
        self.bars.children = [*self.bars.children, bar.widget]
        return bar

    def _bar(self, name: str) -> Callable[[int, int], None]:
        if self._current is not None:
            self._current.finish()  # one command copying several tags: the one before has returned
        bar = self._current = self._new_bar(name)
        return bar.update
