"""The notebooks are committed with outputs made by the current code, and they still run (nbclient)."""

import importlib.util
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def source_hash() -> str:
    spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOKS / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    return build.source_hash()


@pytest.mark.parametrize("name", ["quickstart", "look_inside"])
def test_committed_outputs_come_from_the_current_code(name):
    recorded = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4).metadata.get("gohsp_hf", {})
    assert recorded.get("source_sha256") == source_hash(), (
        f"notebooks/{name}.ipynb shows outputs of other code than gohsp_hf's current source: run "
        "`python notebooks/build.py` and commit the notebooks"
    )


@pytest.mark.parametrize("name", ["quickstart", "look_inside"])
def test_notebook_runs(name, tmp_path):
    committed = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    code = [cell for cell in committed.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs for cell in code), "commit the notebook with its outputs (notebooks/build.py)"
    shutil.copy(NOTEBOOKS / f"{name}.ipynb", tmp_path)
    notebook = nbformat.read(tmp_path / f"{name}.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "GOHSPViTForImageClassification" in outputs or "masked heads" in outputs
