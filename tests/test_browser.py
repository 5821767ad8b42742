"""The panels in JupyterLab, in a real (headless) Chromium: filter, select, delete, confirm; copy."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from browser import CHROMIUM_ARGS, Lab, chromium_path, run_all
from rig import ImageFactory, free_port, start_registry

from jindr_nb.client import RegistryClient

ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "notebooks" / "img"


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        path = None
    if path is None:
        message = "Chromium or Playwright is missing (apt-get install chromium; pip install playwright)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def registry_with_images(process_registry: str):
    address = process_registry
    with RegistryClient(address) as client:
        f = ImageFactory(client, seed=12)
        shared = f.index("web/app", ["v1", "v2", "stable"])
        f.index("web/app", "v3")
        f.single("tools/cli", "1.0")
    yield address, shared


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
        panel.locator(".jindr-filter input").fill("web/app:v")
        panel.locator(".jindr-filter input").press("Enter")
        expect(panel.locator(".jindr-page")).to_contain_text("(3 of ")  # the kernel has re-rendered
        for tag in ("web/app:v1", "web/app:v2"):
            panel.locator(".jindr-row:visible", has_text=f"{tag} ").locator("input[type=checkbox]").check()
        expect(panel).to_contain_text("web/app:stable")  # the sibling that will be kept is named
        panel.get_by_role("button", name="Delete", exact=True).click()
        panel.get_by_role("button", name="Confirm: delete 2 tags").click()
        expect(panel.locator(".jindr-status")).to_contain_text("deleted 2 tags", timeout=60_000)
        expect(panel.locator(".jindr-output")).to_contain_text("deleted")
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
        for tag in ("web/app:v1", "tools/cli:1.0"):
            panel.locator(".jindr-row:visible", has_text=f"{tag} ").locator("input[type=checkbox]").check()
        panel.get_by_placeholder("host:port, e.g. localhost:5002").fill(dst.address)
        panel.get_by_placeholder("host:port, e.g. localhost:5002").press("Enter")
        panel.get_by_role("button", name="Copy", exact=True).click()
        expect(panel.locator(".jindr-status")).to_contain_text("copied 2 images", timeout=60_000)
        _screenshot(page, panel, "copy-panel.png", tmp_path)
    finally:
        lab.stop()
        with RegistryClient(dst.address) as c:
            digest = c.head_manifest("web/app", "v1")
            cli = c.tags("tools/cli")
        dst.stop()
    assert digest is not None and digest[0] == shared.digest and cli == ["1.0"]
