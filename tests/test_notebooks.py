"""The example notebooks run top to bottom (nbclient) and show their pictures: each one
must produce at least one PNG image output, as Jupyter would display it."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))


def png_outputs(notebook) -> int:
    """How many cell outputs carry an image/png (what Jupyter shows as a picture)."""
    return sum(
        1
        for cell in notebook.cells
        for out in cell.get("outputs", [])
        if out.get("output_type") in ("display_data", "execute_result") and "image/png" in out.get("data", {})
    )


def test_the_notebooks_exist():
    assert len(NOTEBOOKS) >= 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_shows_pictures(path, tmp_path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        assert not cell.get("outputs"), f"{path.name}: commit notebooks without outputs"
    client = NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [out for cell in notebook.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors
    assert png_outputs(notebook) >= 1, f"{path.name}: no picture was displayed"
    # a cell that ends in a plot call must show its picture, not "<Figure size ...>"
    for cell in notebook.cells:
        lines = [line for line in cell.source.strip().splitlines() if line.strip()] if cell.cell_type == "code" else []
        if lines and ".plot(" in lines[-1] and not lines[-1].lstrip().startswith(("#", "_ =")):
            assert png_outputs(nbformat.from_dict({"cells": [cell]})) >= 1, f"{path.name}: no picture from {lines[-1]!r}"
