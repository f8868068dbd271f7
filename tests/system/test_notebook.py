"""docs/examples/tour.ipynb runs from top to bottom, and every technique's cell draws a picture."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "docs" / "examples" / "tour.ipynb"
TECHNIQUES = {"cam", "activations", "filters", "maximize", "dream", "reconstruct"}


@pytest.mark.slow
def test_tour_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    # The kernel is this Python (the venv's), whatever kernelspecs the machine has elsewhere.
    kernels = tmp_path / "kernels"
    (kernels / "python3").mkdir(parents=True)
    (kernels / "python3" / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (test)", "language": "python",
    }))
    specs = KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)
    manager = KernelManager(kernel_name="python3", kernel_spec_manager=specs)
    work = tmp_path / "work"  # the kernel's working folder, and where tempfile writes
    work.mkdir()
    monkeypatch.setenv("TMPDIR", str(work))
    monkeypatch.setenv("MPLBACKEND", "Agg")

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, km=manager, timeout=300,
                                     resources={"metadata": {"path": str(work)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, if a cell fails

    drawn = {cell.metadata["technique"]: any("image/png" in output.get("data", {})
                                             for output in cell.outputs)
             for cell in notebook.cells if "technique" in cell.metadata}
    assert set(drawn) == TECHNIQUES
    assert [t for t, ok in drawn.items() if not ok] == [], "technique cells without a picture"
