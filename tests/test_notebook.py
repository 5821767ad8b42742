"""`%jindr` in a real Jupyter kernel (nbclient): DataFrames out, and a progress bar while copying."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient
from rig import ImageFactory, start_registry

from jindr_nb.client import RegistryClient


def test_cp_in_a_kernel_shows_a_progress_bar_and_returns_the_frame(registry, tmp_path) -> None:
    dst = start_registry(tmp_path / "dst")
    try:
        with RegistryClient(registry.address) as c:
            pushed = ImageFactory(c).index("app", "v1", layer_size=200_000)
        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_code_cell("%load_ext jindr_nb"),
            nbformat.v4.new_code_cell(f"df = %jindr -r {registry.address} cp app:v1 {dst.address}\ndf"),
            nbformat.v4.new_code_cell(
                f"listed = %jindr -r {dst.address} lsi\nprint(list(listed.digest), list(df.digest))"
            ),
        ]
        NotebookClient(nb, timeout=120, kernel_name="python3").execute()
        copy_outputs = nb.cells[1].outputs
        widgets = [o for o in copy_outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
        assert len(widgets) == 1  # one bar for the one copy
        frame = [o for o in copy_outputs if "text/html" in o.get("data", {})]
        assert frame and "blobs_copied" in frame[-1]["data"]["text/html"]  # the DataFrame is displayed
        assert nb.cells[2].outputs[0]["text"].strip() == f"['{pushed.digest}'] ['{pushed.digest}']"
        assert not any(o.get("output_type") == "error" for cell in nb.cells for o in cell.outputs)
    finally:
        dst.stop()


def test_errors_in_a_kernel_are_one_line(registry) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext jindr_nb"),
        nbformat.v4.new_code_cell(f"%jindr -r {registry.address} inspect nope:1"),
    ]
    with pytest.raises(Exception) as info:
        NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    shown = "".join(o.get("text", "") + "".join(o.get("traceback", [])) for o in nb.cells[1].outputs)
    assert shown.startswith("NotFound: manifest nope:1 not found") and shown.strip().count("\n") == 0
    assert "Traceback" not in shown
    assert "CellExecutionError" in type(info.value).__name__
