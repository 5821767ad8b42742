"""Run a notebook headless in a real kernel and print what it shows (tables as text); `make demo` uses it."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def main(path: str) -> int:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": "."}})
    try:
        client.execute()
    finally:
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                print("\n" + "".join(cell.source).splitlines()[0])
                continue
            print(f"\n>>> {cell.source}")
            for out in cell.get("outputs", []):
                text = out.get("text") or out.get("data", {}).get("text/plain") or ""
                if out.get("output_type") == "error":
                    text = f"{out['ename']}: {out['evalue']}"
                print(text.rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else str(Path("quickstart.ipynb"))))
