"""DeletePanel and CopyPanel driven from Python by clicking, against real registries."""

from __future__ import annotations

import html
import time
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from jindr_run import jindr
from rig import ImageFactory, free_port, start_registry

from jindr_nb.client import RegistryClient
from jindr_nb.errors import NotFound
from jindr_nb.ops.delete import SPACE_NOTE
from jindr_nb.widgets import CopyPanel, DeletePanel
from jindr_nb.widgets.progress import ProgressBar


@pytest.fixture()
def managed(process_registry: str):
    address = process_registry
    with RegistryClient(address) as client:
        f = ImageFactory(client, seed=8)
        shared = f.index("web/app", ["v1", "v2", "stable"], layer_size=100_000)  # one digest, three tags
        f.index("web/app", "v3", layer_size=10_000)
        f.single("tools/cli", ["1.0", "1.1"])
        for i in range(40):
            f.single(f"bulk/r{i:02d}", "t")
    yield address, shared


def _ready(panel) -> None:
    panel.wait()
    assert " in " in panel.status.value and "tag" in panel.status.value, panel.status.value


def _tick(table, key: str) -> None:
    """Click the checkbox of the row showing `key` (it must be on the current page)."""
    table._checks[table._keys.index(key)].value = True


def test_delete_panel_filter_select_preview_delete_confirm_gc(managed) -> None:
    address, shared = managed
    panel = DeletePanel(address)
    _ready(panel)
    assert "46 tags in 42 repositories" in panel.status.value
    panel.table.filter.value = "web/app:v*"
    assert "(3 of 46 tags" in panel.table.page_label.value
    _tick(panel.table, "web/app:v1")
    _tick(panel.table, "web/app:v2")
    assert "2 selected" in panel.summary.value and "web/app:stable" in panel.summary.value  # kept, said so
    panel.preview_button.click()
    panel.wait()
    assert "preview: 2 tags would be deleted; nothing has changed" in panel.status.value
    plan = panel.last_frame
    assert set(plan[plan["action"] == "would delete"]["tag"]) == {"v1", "v2"}
    assert set(plan[plan["action"] == "kept"]["tag"]) == {"stable"}
    with RegistryClient(address) as c:
        assert sorted(c.tags("web/app")) == ["stable", "v1", "v2", "v3"]
    panel.gc_after.value = True
    panel.delete_button.click()
    assert panel.delete_button.description == "Confirm: delete 2 tags"
    assert panel.delete_button.layout.width == "auto"  # the label is never cut to "Confirm: delete 2…"
    with RegistryClient(address) as c:
        assert sorted(c.tags("web/app")) == ["stable", "v1", "v2", "v3"]  # arming deletes nothing
    panel.delete_button.click()
    panel.wait()
    assert "deleted 2 tags" in panel.status.value and "gc freed" in panel.status.value, panel.status.value
    with RegistryClient(address) as c:
        assert sorted(c.tags("web/app")) == ["stable", "v3"]
        assert c.head_manifest("web/app", "stable")[0] == shared.digest
    result = panel.last_frame
    notes = list(result[result["action"] == "deleted"]["note"])
    assert len(notes) == 2 and all("gc ran: freed" in n for n in notes), notes  # what gc freed, not "at the next gc"
    assert not any(SPACE_NOTE in n for n in result["note"])
    html = panel.output.outputs[0]["data"]["text/html"]
    assert shared.digest in html and "min-width:22em" in html  # full digest kept; the note given room
    assert "web/app:v1" not in set(panel.table.frame["key"]) and panel.table.selected == set()
    assert panel.delete_button.description == "Delete" and panel.progress.bar_style == "success"


def test_delete_without_gc_keeps_the_space_note_and_one_tag_is_singular(managed) -> None:
    address, _ = managed
    panel = DeletePanel(address)
    _ready(panel)
    panel.table.filter.value = "tools/cli:1.1"
    _tick(panel.table, "tools/cli:1.1")
    panel.delete_button.click()
    assert panel.delete_button.description == "Confirm: delete 1 tag"
    assert "click again to delete 1 tag<" in panel.status.value
    panel.delete_button.click()
    panel.wait()
    assert "deleted 1 tag<" in panel.status.value, panel.status.value
    assert any(SPACE_NOTE in n for n in panel.last_frame["note"])  # no gc ran: the space comes back later


def test_sorting_by_column_headers_paging_and_thousands_of_tags(process_registry: str) -> None:
    address = process_registry
    with RegistryClient(address) as client:
        f = ImageFactory(client, seed=3)
        f.index("big/app", "v1", layer_size=200_000)
        f.single("small/app", "v1", layer_size=100)
        f.single("many/tags", [f"t{i:04d}" for i in range(1500)])
    panel = DeletePanel(address)
    _ready(panel)
    table = panel.table
    assert "1502 tags in 3 repositories" in panel.status.value
    assert "page 1 of 61" in table.page_label.value and table.prev.disabled and not table.next.disabled
    started = time.perf_counter()
    table.headers["size"].click()
    one_click = time.perf_counter() - started
    sizes = list(table.shown()["size"])
    assert sizes == sorted(sizes, reverse=True) and table.shown().iloc[0]["repository"] == "big/app"
    assert table.headers["size"].description == "Size ▼" and table._keys[0] == "big/app:v1"  # the first row shown
    table.headers["size"].click()  # again: reversed
    assert list(table.shown()["size"]) == sorted(sizes) and table.headers["size"].description == "Size ▲"
    assert table.headers["repository"].description == "Repository"
    table.last.click()
    assert "page 61 of 61" in table.page_label.value and table.next.disabled
    assert sum(1 for r in table._rows if r.layout.display != "none") == 1502 - 60 * 25
    table.rows_per_page.value = 250
    assert "page 1 of 7" in table.page_label.value and len(table._rows_box.children) == 250
    assert one_click < 1.0, f"one sort of 1502 tags took {one_click:.2f} s"


def test_select_all_range_and_clear(managed) -> None:
    address, _ = managed
    panel = DeletePanel(address)
    _ready(panel)
    table = panel.table
    table.filter.value = "bulk"
    table.select_all.value = True  # the header checkbox: every row the filter shows, on every page
    assert len(table.selected) == 40 and "40 selected" in panel.summary.value
    table.clear.click()
    assert table.selected == set() and table.select_all.value is False
    _tick(table, "bulk/r05:t")
    _tick(table, "bulk/r09:t")
    table.select_range.click()
    assert table.selected == {f"bulk/r{i:02d}:t" for i in range(5, 10)}
    table.headers["repository"].click()  # reversed order: a range follows the order shown
    table.clear.click()
    _tick(table, "bulk/r30:t")
    _tick(table, "bulk/r28:t")
    table.select_range.click()
    assert table.selected == {"bulk/r28:t", "bulk/r29:t", "bulk/r30:t"}
    table.repository.value = "tools/cli"
    table.filter.value = ""
    assert list(table.shown()["tag"]) == ["1.0", "1.1"]  # ties broken by tag, ascending


def test_stale_listing_offers_refresh(managed) -> None:
    address, _ = managed
    panel = DeletePanel(address)
    _ready(panel)
    panel.table.filter.value = "tools/cli"
    _tick(panel.table, "tools/cli:1.0")
    jindr("-r", address, "rmi", "tools/cli:1.0")  # someone else deletes it after the panel listed
    panel.delete_button.click()
    panel.delete_button.click()
    panel.wait()
    status = panel.status.value
    assert "nothing was deleted" in status and "Refresh" in status, status
    assert panel.refresh_button.button_style == "warning" and panel.refresh_button.description == "Refresh the listing"
    assert panel.table.stale == {"tools/cli:1.0"} and "line-through" in panel.table._cells[0].value
    assert panel.progress.bar_style == "danger"
    with RegistryClient(address) as c:
        assert c.tags("tools/cli") == ["1.1"]
    panel.refresh_button.click()
    panel.wait()
    assert "tools/cli:1.0" not in set(panel.table.frame["key"]) and "45 tags" in panel.status.value
    assert panel.refresh_button.button_style == "" and panel.refresh_button.description == "Refresh"


def test_errors_stay_in_the_panel(tmp_path: Path) -> None:
    panel = DeletePanel(f"127.0.0.1:{free_port()}")
    panel.wait()
    assert "no registry answers" in panel.status.value and panel.body.layout.display == "none"
    panel.delete_button.click()
    assert "select at least one tag" in panel.status.value


def test_progress_bar_states() -> None:
    bar = ProgressBar("web/app:v1")
    assert "starting" in bar.label.value
    bar.update(0, 3000)
    assert "0 B of 2.9 KiB" in bar.label.value and bar.bar.value == 0
    bar.update(1500, 3000)
    assert "1.5 KiB of 2.9 KiB" in bar.label.value and bar.bar.bar_style == "info"
    bar.update(3000, 3000)
    assert bar.bar.value == bar.bar.max and bar.bar.bar_style != "success"  # the tags are not written yet
    bar.finish()
    assert bar.bar.bar_style == "success" and bar.bar.value == bar.bar.max and "done — 2.9 KiB moved" in bar.label.value
    empty = ProgressBar("x")
    empty.update(0, 0)  # every blob already at the destination
    empty.finish()
    assert (
        empty.bar.bar_style == "success" and empty.bar.value == empty.bar.max and "nothing to move" in empty.label.value
    )
    failed = ProgressBar("y")
    failed.finish("no registry answers at 127.0.0.1:9")
    assert failed.bar.bar_style == "danger" and failed.bar.value == failed.bar.max
    assert "failed: no registry answers at 127.0.0.1:9" in failed.label.value
    cut = ProgressBar("z")
    cut.update(100, 4096)
    cut.finish()  # ended without an error but short of the total: never shown as done
    assert cut.bar.bar_style == "danger" and "after 100 B of 4.0 KiB" in cut.label.value


def test_copy_panel_bars_green_when_done_red_on_failure_ecr_fields_only_when_chosen(managed, tmp_path: Path) -> None:
    address, shared = managed
    dst = start_registry(tmp_path / "dst")
    try:
        panel = CopyPanel(address)
        _ready(panel)
        assert panel.ecr_fields.layout.display == "none" and panel.destination.layout.display == ""
        panel.to_ecr.value = True
        assert panel.ecr_fields.layout.display == "" and panel.destination.layout.display == "none"
        panel.to_ecr.value = False
        assert panel.ecr_fields.layout.display == "none"
        panel.copy_button.click()
        assert "select at least one image" in panel.status.value
        panel.table.check("web/app:v1", "tools/cli:1.0")
        panel.copy_button.click()
        assert "enter a destination" in panel.status.value
        panel.destination.value = dst.address
        panel.extra_tags.value = "stable"
        panel.copy_button.click()
        panel.wait()
        assert "copied 2 images" in panel.status.value, panel.status.value
        bars = [box.children for box in panel.bars.children]
        assert len(bars) == 2
        for bar, label in bars:
            assert bar.bar_style == "success" and bar.value == bar.max, label.value
            assert "done" in label.value and ("KiB" in label.value or "nothing to move" in label.value), label.value
        with RegistryClient(dst.address) as c:
            assert c.head_manifest("web/app", "v1")[0] == shared.digest
            assert c.head_manifest("web/app", "stable")[0] == shared.digest
            assert sorted(c.tags("tools/cli")) == ["1.0", "stable"]
        panel.destination.value = f"127.0.0.1:{free_port()}"  # nothing answers there
        panel.copy_button.click()
        panel.wait()
        assert len(panel.bars.children) == 1, "the first failure stops the copy"
        bar, label = panel.bars.children[0].children
        assert bar.bar_style == "danger" and bar.value == bar.max and "failed" in label.value, label.value
        assert "starting" not in label.value
        assert "1 image not attempted" in panel.status.value and "#b00020" in panel.status.value
    finally:
        dst.stop()


def test_cell_progress_bars_green_then_red(managed, tmp_path: Path) -> None:
    from jindr_nb.magics import _progress_bar

    address, shared = managed
    dst = start_registry(tmp_path / "dst")
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "jindr_nb")
    magics = ip.magics_manager.registry["JindrMagics"]
    made = []

    def bars(name: str):
        made.append(_progress_bar(name).__self__)
        return made[-1].update

    try:
        ip.run_line_magic("config", f"JindrMagics.registry = {address!r}")
        magics.session.progress = bars  # what a kernel's session gets; a plain shell has none
        ok = ip.run_cell(f"%jindr cp web/app:v1 {dst.address}\n%jindr cp tools/cli:1.0 {dst.address}")
        assert ok.success and len(made) == 2
        assert all(b.bar.bar_style == "success" and b.bar.value == b.bar.max for b in made)
        assert "KiB moved" in made[0].label.value, made[0].label.value
        failed = ip.run_cell(f"%jindr cp web/app:v3 127.0.0.1:{free_port()}")
        assert not failed.success and len(made) == 3
        assert made[2].bar.bar_style == "danger" and "failed" in made[2].label.value, made[2].label.value
        assert made[0].bar.bar_style == "success"  # an earlier cell's bar stays as it ended
    finally:
        ip.run_line_magic("config", "JindrMagics.registry = ''")
        magics.session.progress = lambda name: None
        dst.stop()


def test_a_cp_error_caught_in_the_cell_leaves_its_bar_red(managed, tmp_path: Path) -> None:
    """Every byte moved, then the destination refused the manifest (the fault proxy, a fake for that
    answer only, in front of a real registry): the cell catches the error and goes on, so IPython sees
    no error at the cell's end — the bar must be red with the error all the same, and a copy that
    worked is green as soon as its line returns, before the cell ends."""
    from faultproxy import FaultProxy, Rule

    from jindr_nb.magics import _progress_bar

    address, _ = managed
    dst = start_registry(tmp_path / "dst")
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "jindr_nb")
    magics = ip.magics_manager.registry["JindrMagics"]
    made: list[ProgressBar] = []

    def bars(name: str):
        made.append(_progress_bar(name).__self__)
        return made[-1].update

    try:
        ip.run_line_magic("config", f"JindrMagics.registry = {address!r}")
        magics.session.progress = bars  # what a kernel's session gets; a plain shell has none
        ip.user_ns["made"] = made
        with FaultProxy(dst.address) as proxy:
            refused = proxy.plan(Rule("PUT", r"/manifests/", "status", status=400))
            cell = (
                "from jindr_nb.errors import JindrError\n"
                "try:\n"
                f"    %jindr cp web/app:v1 {proxy.address}\n"
                "except JindrError as exc:\n"
                "    caught = exc\n"
                "after = made[-1].bar.bar_style\n"
            )
            result = ip.run_cell(cell)
        assert result.success, result.error_in_exec
        assert refused.faulted >= 1
        [bar] = made
        assert bar.total and bar.done == bar.total, (bar.done, bar.total)  # all of it moved
        assert ip.user_ns["after"] == "danger"  # red when the line failed, not only at the cell's end
        assert bar.state == "failed" and bar.bar.bar_style == "danger" and bar.bar.value == bar.bar.max
        error = str(ip.user_ns["caught"]).splitlines()[-1]
        assert "failed" in bar.label.value and html.escape(error) in bar.label.value, bar.label.value
        assert "done" not in bar.label.value
        with RegistryClient(dst.address) as c, pytest.raises(NotFound):
            c.tags("web/app")  # no manifest, no tag arrived there: red is the truth
        ok = ip.run_cell(f"%jindr cp tools/cli:1.0 {dst.address}\nafter = made[-1].bar.bar_style\n")
        assert ok.success and len(made) == 2 and ip.user_ns["after"] == "success"
        assert made[0].bar.bar_style == "danger"  # the earlier bar stays as it ended
    finally:
        ip.run_line_magic("config", "JindrMagics.registry = ''")
        magics.session.progress = lambda name: None
        ip.user_ns.pop("made", None)
        dst.stop()


def test_magic_without_arguments_opens_the_panels(managed) -> None:
    address, _ = managed
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "jindr_nb")
    panel = ip.run_line_magic("jindr", f"-r {address} rmi")
    assert isinstance(panel, DeletePanel)
    panel.wait()
    copy = ip.run_line_magic("jindr", f"-r {address} cp")
    assert isinstance(copy, CopyPanel)
    copy.wait()
    assert not panel.session.insecure and not copy.session.insecure
    insecure = ip.run_line_magic("jindr", f"--insecure -r {address} cp")  # the flag reaches the panel
    insecure.wait()
    assert insecure.session.insecure
    from jindr_nb.errors import CommandLineError

    with pytest.raises(CommandLineError, match="opens the cleanup panel"):
        jindr("-r", address, "rmi")
