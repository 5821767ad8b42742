"""DeletePanel and CopyPanel driven from Python by clicking, against real registries."""

from __future__ import annotations

from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from jindr_run import jindr
from rig import ImageFactory, free_port, start_registry

from jindr_nb.client import RegistryClient
from jindr_nb.widgets import CopyPanel, DeletePanel


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
    assert "tags in" in panel.status.value, panel.status.value


def test_delete_panel_filter_select_preview_delete_confirm(managed) -> None:
    address, shared = managed
    panel = DeletePanel(address)
    _ready(panel)
    assert "46 tags in" in panel.status.value
    panel.table.filter.value = "web/app:v*"
    assert "(3 of 46 tags)" in panel.table.page_label.value
    panel.table.check("web/app:v1", "web/app:v2")
    assert "2 selected" in panel.summary.value and "web/app:stable" in panel.summary.value  # kept, said so
    panel.preview_button.click()
    panel.wait()
    assert "nothing has changed" in panel.status.value
    with RegistryClient(address) as c:
        assert sorted(c.tags("web/app")) == ["stable", "v1", "v2", "v3"]
    panel.gc_after.value = True
    panel.delete_button.click()
    assert panel.delete_button.description == "Confirm: delete 2 tags"
    with RegistryClient(address) as c:
        assert sorted(c.tags("web/app")) == ["stable", "v1", "v2", "v3"]  # arming deletes nothing
    panel.delete_button.click()
    panel.wait()
    assert "deleted 2 tags" in panel.status.value and "gc reclaimed" in panel.status.value
    with RegistryClient(address) as c:
        assert sorted(c.tags("web/app")) == ["stable", "v3"]
        assert c.head_manifest("web/app", "stable")[0] == shared.digest
    assert "web/app:v1" not in set(panel.table.frame["key"]) and panel.table.selected == set()
    assert panel.delete_button.description == "Delete"


def test_delete_panel_paging_sorting_select_all(managed) -> None:
    address, _ = managed
    panel = DeletePanel(address)
    _ready(panel)
    assert "page 1 of 2" in panel.table.page_label.value
    panel.table.next.click()
    assert "page 2 of 2" in panel.table.page_label.value
    panel.table.sort.value = "size (largest first)"
    first = panel.table.shown().iloc[0]
    assert first["repository"] == "web/app" and first["tag"] in ("v1", "v2", "stable")
    panel.table.filter.value = "bulk"
    panel.table.select_shown.click()
    assert len(panel.table.selected) == 40 and "40 selected" in panel.summary.value
    panel.table.clear.click()
    assert panel.table.selected == set()
    panel.table.repository.value = "tools/cli"
    panel.table.filter.value = ""
    assert list(panel.table.shown()["tag"]) == ["1.0", "1.1"]


def test_errors_stay_in_the_panel(tmp_path: Path) -> None:
    panel = DeletePanel(f"127.0.0.1:{free_port()}")
    panel.wait()
    assert "no registry answers" in panel.status.value and panel.body.layout.display == "none"
    panel.delete_button.click()
    assert "select at least one tag" in panel.status.value


def test_copy_panel_copies_selected_images_with_a_bar_each(managed, tmp_path: Path) -> None:
    address, shared = managed
    dst = start_registry(tmp_path / "dst")
    try:
        panel = CopyPanel(address)
        _ready(panel)
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
        assert len(panel.bars.children) >= 2
        with RegistryClient(dst.address) as c:
            assert c.head_manifest("web/app", "v1")[0] == shared.digest
            assert c.head_manifest("web/app", "stable")[0] == shared.digest
            assert sorted(c.tags("tools/cli")) == ["1.0", "stable"]
    finally:
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
