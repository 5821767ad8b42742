"""The panels in JupyterLab, in a real (headless) Chromium: filter, select, delete, confirm; copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from browser import Lab, run_all
from rig import ImageFactory, free_port, start_registry

from jindr_nb.client import RegistryClient

ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "notebooks" / "img"


@pytest.fixture()
def registry_with_images(process_registry: str):
    address = process_registry
    with RegistryClient(address) as client:
        f = ImageFactory(client, seed=12)
        shared = f.index("web/app", ["v1", "v2", "stable"], layer_size=60_000)  # the biggest web/app:v* tags
        f.index("web/app", "v3")
        f.single("tools/cli", "1.0")
    yield address, shared


def _row(panel, key: str):  # noqa: ANN001, ANN202 - Playwright locators
    """The visible table row showing `key` (repo:tag)."""
    return panel.locator(".jindr-row:visible", has=panel.page.locator(f'.jindr-cells[data-key="{key}"]'))


def _full_width(locator) -> bool:  # noqa: ANN001 - a Playwright locator
    """A progress bar filled to the end of its track."""
    return locator.evaluate("el => el.getBoundingClientRect().width >= el.parentElement.clientWidth - 1")


def _lab(tmp_path: Path, notebook: str, source: str, registry: str) -> Lab:
    root = tmp_path / "root"
    root.mkdir()
    if source:
        (root / notebook).write_text(source)
    else:
        shutil.copy(ROOT / "notebooks" / notebook, root / notebook)
        shutil.copytree(ROOT / "notebooks" / "data", root / "data")  # the samples it loads
    return Lab(root, tmp_path / "home", {"JINDR_REGISTRY": registry}, free_port())


def _screenshot(page, panel, name: str, tmp_path: Path) -> None:  # noqa: ANN001
    shot = tmp_path / name
    panel.screenshot(path=str(shot))
    print(f"screenshot: {shot}")
    IMG.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, IMG / name)  # the README shows the last run's


def test_delete_panel_in_jupyterlab(browser, registry_with_images, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    address, shared = registry_with_images
    lab = _lab(tmp_path, "cleanup.ipynb", "", address)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(lab.url("cleanup.ipynb"))
        run_all(page)
        panel = page.locator(".jindr-panel").first
        expect(panel.locator(".jindr-status")).to_contain_text("tags in", timeout=60_000)
        assert page.get_by_text("VBox(children=").count() == 0, "widget manager not loaded"
        header = panel.locator(".jindr-header")
        for title in ("Repository", "Tag", "Platforms", "Size", "Created", "Digest"):
            expect(header.get_by_role("button", name=title)).to_be_visible()  # real columns
        panel.locator(".jindr-filter input").fill("web/app:v")
        panel.locator(".jindr-filter input").press("Enter")
        expect(panel.locator(".jindr-page")).to_contain_text("(3 of ")  # the kernel has re-rendered
        header.get_by_role("button", name="Size").click()
        expect(header.get_by_role("button", name="Size ▼")).to_be_visible()  # sorted, largest first
        rows = panel.locator(".jindr-row:visible .jindr-cells")
        expect(rows.first).to_have_attribute("data-key", "web/app:v1")
        expect(rows.nth(2)).to_have_attribute("data-key", "web/app:v3")  # the smallest last
        for key in ("web/app:v1", "web/app:v2"):  # the two largest
            _row(panel, key).locator("input[type=checkbox]").check()
        expect(panel).to_contain_text("2 selected")
        expect(panel).to_contain_text("web/app:stable")  # the sibling that will be kept is named
        panel.get_by_role("button", name="Preview", exact=True).click()
        expect(panel.locator(".jindr-status")).to_contain_text("2 tags would be deleted", timeout=60_000)
        expect(panel.locator(".jindr-output")).to_contain_text("would delete")
        panel.get_by_role("button", name="Delete", exact=True).click()
        confirm = panel.get_by_role("button", name="Confirm: delete 2 tags", exact=True)
        expect(confirm).to_be_visible()
        assert confirm.evaluate("el => el.scrollWidth <= el.clientWidth"), "the Confirm label is cut"
        confirm.click()
        expect(panel.locator(".jindr-status")).to_contain_text("deleted 2 tags", timeout=60_000)
        result = panel.locator(".jindr-output .jindr-result")
        expect(result).to_contain_text("deleted")
        tallest = result.evaluate("t => Math.max(...[...t.tBodies[0].rows].map(r => r.getBoundingClientRect().height))")
        line = result.evaluate("t => parseFloat(getComputedStyle(t).lineHeight) || 20")
        assert tallest < 2.5 * line, f"a result row is {tallest} px tall: the note is squeezed"
        _screenshot(page, panel, "delete-panel.png", tmp_path)
    finally:
        lab.stop()
    with RegistryClient(address) as c:
        assert sorted(c.tags("web/app")) == ["stable", "v3"]
        assert c.head_manifest("web/app", "stable")[0] == shared.digest


COPY_NOTEBOOK = """{"cells": [
 {"cell_type": "code", "execution_count": null, "metadata": {}, "outputs": [], "source": ["%load_ext jindr_nb"]},
 {"cell_type": "code", "execution_count": null, "metadata": {}, "outputs": [], "source": ["%jindr cp"]}],
 "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}},
 "nbformat": 4, "nbformat_minor": 5}"""


def test_copy_panel_in_jupyterlab(browser, registry_with_images, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    address, shared = registry_with_images
    dst = start_registry(tmp_path / "dst")
    lab = _lab(tmp_path, "copy.ipynb", COPY_NOTEBOOK, address)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(lab.url("copy.ipynb"))
        run_all(page)
        panel = page.locator(".jindr-panel").first
        expect(panel.locator(".jindr-status")).to_contain_text("tags in", timeout=60_000)
        expect(panel.get_by_placeholder("eu-west-1 (default: profile)")).to_be_hidden()  # ECR fields: not chosen
        panel.get_by_label("AWS ECR instead").check()
        expect(panel.get_by_placeholder("eu-west-1 (default: profile)")).to_be_visible()
        panel.get_by_label("AWS ECR instead").uncheck()
        expect(panel.get_by_placeholder("eu-west-1 (default: profile)")).to_be_hidden()
        for key in ("web/app:v1", "tools/cli:1.0"):
            _row(panel, key).locator("input[type=checkbox]").check()
        destination = panel.get_by_placeholder("host:port, e.g. localhost:5002")
        destination.fill(dst.address)
        destination.press("Enter")
        panel.get_by_role("button", name="Copy", exact=True).click()
        expect(panel.locator(".jindr-status")).to_contain_text("copied 2 images", timeout=60_000)
        bars = panel.locator(".jindr-progress")
        expect(bars).to_have_count(2)
        expect(bars.locator(".progress-bar-success")).to_have_count(2)
        for i in range(2):
            assert _full_width(bars.nth(i).locator(".progress-bar-success")), "a finished bar is not full"
            expect(bars.nth(i)).to_contain_text("done")
        expect(bars.first).to_contain_text("KiB")
        _screenshot(page, panel, "copy-panel.png", tmp_path)
        destination.fill(f"127.0.0.1:{free_port()}")  # nothing answers there
        destination.press("Enter")
        panel.get_by_role("button", name="Copy", exact=True).click()
        expect(panel.locator(".jindr-status")).to_contain_text("not attempted", timeout=60_000)
        expect(bars).to_have_count(1)
        expect(bars.locator(".progress-bar-danger")).to_have_count(1)  # red, not "starting"
        assert _full_width(bars.locator(".progress-bar-danger"))
        expect(bars).to_contain_text("failed")
        expect(bars).not_to_contain_text("starting")
    finally:
        lab.stop()
        with RegistryClient(dst.address) as c:
            digest = c.head_manifest("web/app", "v1")
            cli = c.tags("tools/cli")
        dst.stop()
    assert digest is not None and digest[0] == shared.digest and cli == ["1.0"]
