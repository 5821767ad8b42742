"""DeletePanel and CopyPanel: cleanup and copy by pointing and clicking, in plain ipywidgets.

No registry logic lives here: every action is a command line of the command table (the same
handlers as `%jindr` and `jindr`), run in a background thread so the kernel keeps serving the
panel's own widget messages while it works.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as w
from IPython.display import display

from ..frames import to_frame
from .table import ImageTable, PanelBase, human_size

__all__ = ["CopyPanel", "DeletePanel"]


class _ListingPanel(PanelBase):
    """A panel over the image table: loads the listing in the background, shows errors in-panel."""

    title = ""

    def __init__(self, registry: str | None = None, *, insecure: bool = False) -> None:
        super().__init__(registry, insecure=insecure)
        self.table = ImageTable(on_change=self._selection_changed)
        self.summary = w.HTML()
        self.output = w.Output()
        self.last_frame: Any = None
        self.refresh_button = w.Button(description="Refresh")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.body = w.VBox([self.table.widget, self.summary])
        self.widget = w.VBox(
            [
                w.HTML(f"<h3>{self.title} — {html.escape(self.session.registry)}</h3>"),
                w.HBox([self.refresh_button, self.status]),
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
            result = self.command("lsi", "-l")
            frame = to_frame(result.rows, result.row_type)
            self.table.load(frame)
            self.body.layout.display = ""
            self._selection_changed()
            self.say(f"{len(frame)} tags in {frame['repository'].nunique() if len(frame) else 0} repositories")

        self.in_background(job, f"listing {self.session.registry} …")

    def show_frame(self, frame: Any) -> None:
        """Put a DataFrame in the panel's output area.

        Set as the Output widget's data rather than displayed inside `with output:`, because this runs
        in a worker thread, where the kernel would route display calls to the most recent cell.
        """
        self.last_frame = frame
        self.output.outputs = (
            {
                "output_type": "display_data",
                "data": {"text/html": frame.to_html(index=False, max_rows=200), "text/plain": frame.to_string()},
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
        self.preview_button = w.Button(description="Preview")
        self.delete_button = w.Button(description="Delete", button_style="danger")
        self.cancel_button = w.Button(description="Cancel")
        self.gc_after = w.Checkbox(
            value=False,
            description="run gc afterwards (registries jindr runs here)",
            style={"description_width": "initial"},
            layout=w.Layout(width="auto"),
        )
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="30%"))
        self._armed = False
        super().__init__(registry, insecure=insecure)
        self.cancel_button.layout.display = "none"
        self.progress.layout.display = "none"
        self.preview_button.on_click(lambda _: self.preview())
        self.delete_button.on_click(lambda _: self.delete())
        self.cancel_button.on_click(lambda _: self._disarm())
        self.body.children = [
            *self.body.children,
            w.HBox([self.preview_button, self.delete_button, self.cancel_button, self.gc_after, self.progress]),
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
            self.say(f"preview: {len(images)} tags would be deleted; nothing has changed")

        self.in_background(job, "planning …")

    def delete(self) -> None:
        """First click arms; the second ("Confirm: delete N tags") deletes."""
        images = self._args()
        if not images:
            self.say("select at least one tag first", error=True)
            return
        if not self._armed:
            self._armed = True
            self.delete_button.description = f"Confirm: delete {len(images)} tags"
            self.cancel_button.layout.display = ""
            self.say(f"click again to delete {len(images)} tags")
            return
        self._disarm()

        def job() -> None:
            self.progress.layout.display = ""
            self.progress.max, self.progress.value = 1, 0
            self.progress.bar_style = ""
            result = self.command("rmi", *images)
            self.progress.value = 1
            self.progress.bar_style = "success" if result.ok else "danger"
            frame = to_frame(result.rows, result.row_type)
            gone = sum(1 for r in result.rows if r.action == "deleted" and r.tag)
            message = f"deleted {gone} tags" if result.ok else f"{result.message} (deleted {gone} tags)"
            if self.gc_after.value and result.ok:
                gc = self.command("gc").rows[0]
                message += f"; gc reclaimed {gc.describe()}"
            self.show_frame(frame)
            self.table.selected.clear()
            listing = self.command("lsi", "-l")
            self.table.load(to_frame(listing.rows, listing.row_type))
            self._selection_changed()
            self.say(message, error=not result.ok)

        self.in_background(job, f"deleting {len(images)} tags …")

    def _disarm(self) -> None:
        if getattr(self, "_armed", False) or self.delete_button.description != "Delete":
            self._armed = False
            self.delete_button.description = "Delete"
            self.cancel_button.layout.display = "none"


class CopyPanel(_ListingPanel):
    """Pick images, a destination (a registry, or AWS ECR), extra tags; copy with a bar per image."""

    title = "Copy images"

    def __init__(self, registry: str | None = None, *, insecure: bool = False) -> None:
        self.destination = w.Text(placeholder="host:port, e.g. localhost:5002", description="To registry")
        self.to_ecr = w.Checkbox(value=False, description="AWS ECR instead", style={"description_width": "initial"})
        self.region = w.Text(placeholder="eu-west-1 (default: profile)", description="Region")
        self.keep = w.BoundedIntText(value=4, min=1, max=64, description="Keep")
        self.extra_tags = w.Text(placeholder="also tag each copy as ... (space separated)", description="Extra tags")
        self.copy_button = w.Button(description="Copy", button_style="primary")
        self.bars = w.VBox()
        super().__init__(registry, insecure=insecure)
        self.copy_button.on_click(lambda _: self.copy())
        self.body.children = [
            *self.body.children,
            w.HBox([self.destination, self.to_ecr]),
            w.HBox([self.region, self.keep]),
            self.extra_tags,
            self.copy_button,
            self.bars,
        ]

    def copy(self) -> None:
        images = sorted(self.table.selected)
        if not images:
            self.say("select at least one image first", error=True)
            return
        if not self.to_ecr.value and not self.destination.value.strip():
            self.say("enter a destination registry (host:port) or tick AWS ECR", error=True)
            return
        extra = [arg for tag in self.extra_tags.value.split() for arg in ("--tag", tag)]

        def job() -> None:
            rows = []
            row_type: Any = None
            self.bars.children = []
            for image in images:
                self.session.progress = self._bar
                if self.to_ecr.value:
                    argv = ["cpe", image, *extra, "--keep", str(self.keep.value)]
                    if self.region.value.strip():
                        argv += ["--region", self.region.value.strip()]
                else:
                    argv = ["cp", image, self.destination.value.strip(), *extra]
                result = self.command(*argv)
                rows.extend(result.rows)
                row_type = result.row_type
            self.show_frame(to_frame(rows, row_type))
            self.say(f"copied {len(images)} images")

        self.in_background(job, f"copying {len(images)} images …")

    def _bar(self, name: str) -> Callable[[int, int], None]:
        bar = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="30%"))
        label = w.Label(value=f"{name}: starting")
        self.bars.children = [*self.bars.children, w.HBox([bar, label])]

        def update(done: int, total: int) -> None:
            bar.max = max(total, 1)
            bar.value = min(done, bar.max)
            label.value = f"{name}: {human_size(done)} of {human_size(total)}"
            if done >= total:
                bar.bar_style = "success"

        return update
