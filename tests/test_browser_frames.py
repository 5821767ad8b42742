"""The frames as a person sees them: quickstart.ipynb and analysis.ipynb run in JupyterLab, in a
real (headless) Chromium 1280 px wide — full digests one click away, sizes with units, `size` and
`created` of `lsi -l` on screen without scrolling, every `%jindr` line of a cell with its frame,
du's bars, inspect's tree."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from browser import Lab, run_all
from rig import free_port

ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "notebooks" / "img"
UNIT = re.compile(r"^\d+(\.\d)? (B|KiB|MiB|GiB)$")
WIDTH = 1280


def _run_notebook(browser, tmp_path: Path, notebook: str):  # noqa: ANN001, ANN202 - Playwright objects
    """Serve a copy of the notebook (and its sample images), run all its cells without Docker on a
    fresh registry, and wait until the last cell has run."""
    from conftest import _need_binary
    from playwright.sync_api import expect

    _need_binary()
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(ROOT / "notebooks" / notebook, root / notebook)
    shutil.copytree(ROOT / "notebooks" / "data", root / "data")
    env = {
        "JINDR_REGISTRY": f"localhost:{free_port()}",
        "JINDR_STORAGE": str(tmp_path / "storage"),
        "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",  # the process runtime: no engine needed
    }
    lab = Lab(root, tmp_path / "home", env, free_port())
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
    page.goto(lab.url(notebook))
    run_all(page)
    cells = page.locator(".jp-CodeCell")
    expect(cells.last.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]:"), timeout=180_000)
    expect(page.locator(".jp-InputPrompt", has_text="[*]")).to_have_count(0, timeout=60_000)
    assert page.locator(".jp-OutputArea-output", has_text="Traceback").count() == 0, "a cell failed"
    return lab, page


def _cell(page, source: str):  # noqa: ANN001, ANN202
    """The code cell whose input is `source` (its first line, for a longer cell)."""
    for cell in page.locator(".jp-CodeCell").all():
        lines = cell.locator(".jp-InputArea-editor").inner_text().strip().splitlines()
        if "\n".join(lines[: source.count("\n") + 1]) == source and lines:
            return cell
    raise AssertionError(f"no cell {source!r}")


def _screenshot(element, name: str, tmp_path: Path) -> None:  # noqa: ANN001
    shot = tmp_path / name
    element.screenshot(path=str(shot))
    print(f"screenshot: {shot}")
    IMG.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, IMG / name)  # the README shows the last run's


def _digest_one_click_away(page, frame) -> None:  # noqa: ANN001
    """Each digest shows as sha256 + 12 hex; its title and text are the whole digest, and one
    click selects all of it (what Ctrl+C then copies)."""
    digests = frame.locator("code.jindr-digest")
    assert digests.count() > 0
    for i in range(digests.count()):
        code = digests.nth(i)
        full = code.get_attribute("title")
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", full) and code.text_content() == full
        assert code.locator(".jindr-rest").bounding_box()["width"] < 1  # the last 52 hex digits: hidden, not gone
        whole = code.evaluate(  # the same digest with nothing hidden, in the same place
            "e => { const c = e.cloneNode(true); c.querySelector('.jindr-rest').style.fontSize = 'inherit';"
            " e.after(c); const w = c.getBoundingClientRect().width; c.remove(); return w; }"
        )
        assert code.bounding_box()["width"] < 0.35 * whole  # "sha256:0123456789ab…": 20 of the 71 characters
    first = digests.first
    first.click()
    assert page.evaluate("() => window.getSelection().toString()") == first.get_attribute("title")


def test_quickstart_frames_in_jupyterlab(browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    lab, page = _run_notebook(browser, tmp_path, "quickstart.ipynb")
    try:
        listing = _cell(page, "images = %jindr lsi -l\nimages").locator(".jindr-frame")
        expect(listing).to_be_visible()
        headers = [h.strip() for h in listing.locator("thead th").all_inner_texts()]
        assert headers[1:6] == ["repository", "tag", "platforms", "size", "created"]
        area = listing.locator("xpath=ancestor::div[contains(@class, 'jp-OutputArea-output')]").first
        right = min(area.bounding_box()["x"] + area.bounding_box()["width"], WIDTH)
        for name in ("size", "created"):  # on screen, without scrolling sideways
            th = listing.locator("thead th", has_text=re.compile(f"^{name}$"))
            box = th.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= right, (name, box, right)
        column = headers.index("size")
        sizes = listing.locator(f"tbody tr td:nth-child({column + 1})").all_inner_texts()
        assert sizes and all(UNIT.match(s.strip()) for s in sizes), sizes
        created = listing.locator(f"tbody tr td:nth-child({headers.index('created') + 1})").all_inner_texts()
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", c.strip()) for c in created), created
        types = listing.locator(f"tbody tr td:nth-child({headers.index('media_type') + 1})").all_inner_texts()
        assert set(types) <= {"OCI index", "OCI image", "Docker list", "Docker image"}, types
        _digest_one_click_away(page, listing)

        # Three `%jindr load` lines in one cell: three frames, in the cell's order, each after its bar.
        loads = _cell(page, "%jindr load data/archy\n%jindr load data/tools\n%jindr load data/webapp")
        frames = loads.locator(".jindr-frame")
        expect(frames).to_have_count(3)
        shown = []
        for i in range(3):  # each frame is its own line's: the source column names the sample it loaded
            heads = [h.strip() for h in frames.nth(i).locator("thead th").all_inner_texts()]
            column = heads.index("source") + 1
            shown.append({s.strip() for s in frames.nth(i).locator(f"tbody td:nth-child({column})").all_inner_texts()})
        assert shown == [{"data/archy"}, {"data/tools"}, {"data/webapp"}], shown
        outputs = loads.locator(".jp-OutputArea-output")
        kinds = [
            "bar" if o.locator(".jindr-progress").count() else "frame" if o.locator(".jindr-frame").count() else ""
            for o in outputs.all()
        ]
        assert [k for k in kinds if k] == ["bar", "frame"] * 3, kinds
        expect(loads.locator(".jindr-progress .progress-bar-success")).to_have_count(3)

        tree = _cell(page, "%jindr inspect archy").locator(".jindr-frame")
        expect(tree.locator(".jindr-root")).to_have_text("archy:latest")
        branches = [t.strip() for t in tree.locator(".jindr-tree").all_inner_texts()]
        assert branches[0] == "archy:latest" and branches[-1].startswith("└─ ")
        assert "├─ linux/amd64" in branches and any(b.endswith("attestation") for b in branches), branches
        expect(tree.locator(".jindr-attestation").first).to_be_visible()
        page.evaluate("() => window.getSelection().removeAllRanges()")
        _screenshot(_cell(page, "%jindr inspect archy").locator(".jp-OutputArea"), "inspect.png", tmp_path)
        _digest_one_click_away(page, tree)

        gc = _cell(page, "%jindr gc").locator(".jindr-frame")
        gc_headers = [h.strip() for h in gc.locator("thead th").all_inner_texts()]
        reclaimed = gc.locator(f"tbody td:nth-child({gc_headers.index('reclaimed_bytes') + 1})").inner_text()
        assert UNIT.match(reclaimed.strip()), reclaimed
    finally:
        page.close()
        lab.stop()


def test_analysis_du_bars_in_jupyterlab(browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    lab, page = _run_notebook(browser, tmp_path, "analysis.ipynb")
    try:
        du = _cell(page, "%jindr du").locator(".jindr-frame")
        expect(du.locator(".jindr-legend")).to_contain_text("shared with other repositories")
        rows = du.locator("tbody tr")
        assert rows.count() >= 4 and du.locator(".jindr-bar").count() == rows.count()
        headers = [h.strip() for h in du.locator("thead th").all_inner_texts()]
        assert headers[1:3] == ["repository", "space"]
        widths = []
        for i in range(rows.count()):
            bar = rows.nth(i).locator(".jindr-bar")
            expect(bar).to_be_visible()
            unique = bar.locator(".jindr-unique").bounding_box()["width"]
            shared = bar.locator(".jindr-shared").bounding_box()["width"]
            widths.append((unique, shared))
            assert unique + shared <= bar.bounding_box()["width"] + 1
        assert any(s > 0 for _, s in widths) and any(u > 0 for u, _ in widths)  # the samples share layers
        assert max(u + s for u, s in widths) > 0.9 * du.locator(".jindr-bar").first.bounding_box()["width"]
        for column in ("size", "unique_size", "shared_size"):
            texts = du.locator(f"tbody td:nth-child({headers.index(column) + 1})").all_inner_texts()
            assert all(UNIT.match(t.strip()) for t in texts), (column, texts)
        _screenshot(_cell(page, "%jindr du").locator(".jp-OutputArea"), "du.png", tmp_path)

        picked = _cell(page, "images = %jindr lsi -l")
        headers = [h.strip() for h in picked.locator(".jindr-frame thead th").all_inner_texts()]
        assert headers[1:] == ["repository", "tag", "image_id", "platforms", "size", "created"]  # the cell's order
        sizes = picked.locator(f".jindr-frame tbody td:nth-child({headers.index('size') + 1})").all_inner_texts()
        assert all(UNIT.match(s.strip()) for s in sizes), sizes
        config = _cell(page, "config = %jindr config webapp:2.0").locator(".jindr-frame")  # transposed, still ours
        _digest_one_click_away(page, config)
    finally:
        page.close()
        lab.stop()


def test_multi_platform_notebook_in_jupyterlab(browser, tmp_path: Path) -> None:
    """The fourth notebook: an index's tree and its platforms, as a person reads them."""
    from playwright.sync_api import expect

    lab, page = _run_notebook(browser, tmp_path, "multi-platform.ipynb")
    try:
        tree = _cell(page, "%jindr inspect archy:latest").locator(".jindr-frame")
        expect(tree.locator(".jindr-root")).to_have_text("archy:latest")
        branches = [t.strip() for t in tree.locator(".jindr-tree").all_inner_texts()]
        assert "├─ linux/amd64" in branches and any("linux/arm64" in b for b in branches), branches
        sizes = tree.locator("tbody td", has_text=UNIT).count()
        assert sizes >= 3  # the index and its platforms, with units
        _digest_one_click_away(page, tree)
        listing = _cell(page, "%jindr lsi archy").locator(".jindr-frame")
        headers = [h.strip() for h in listing.locator("thead th").all_inner_texts()]
        platforms = listing.locator(f"tbody td:nth-child({headers.index('platforms') + 1})").inner_text()
        assert "linux/amd64" in platforms and "linux/arm64" in platforms, platforms
    finally:
        page.close()
        lab.stop()
