"""examples/walkthrough.ipynb runs from top to bottom, and its synthesis works.

The notebook runs in its own kernel (a separate process, so conftest's JAX settings do not apply there),
started in the repository root: it imports texsynth_jax as checked out (or as installed), without
changing Python's module path. The executed copy is kept in pytest's tmp_path for debugging.
"""

import os
import re

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "examples", "walkthrough.ipynb")
RESULT = re.compile(r"RESULT images=\((\d+), (\d+), (\d+), (\d+)\) first_loss=(\S+) final_loss=(\S+) "
                    r"adam_first=(\S+) adam_final=(\S+)")


def test_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "clear the notebook's outputs before committing"


def test_walkthrough_runs(weights_path, tmp_path, monkeypatch):
    # The kernel inherits this environment: reuse the session's converted weights, draw without a display.
    monkeypatch.setenv("TEXSYNTH_WEIGHTS", weights_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": ROOT}})
    try:
        client.execute()  # raises CellExecutionError, with the cell and traceback, if any cell fails
    finally:
        nbformat.write(nb, str(tmp_path / "walkthrough.ipynb"))

    text = "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                   for out in cell.outputs if out.output_type == "stream")
    match = RESULT.search(text)
    assert match, "the last cell's RESULT line is missing"
    shape = tuple(int(v) for v in match.groups()[:4])
    first, final, adam_first, adam_final = (float(v) for v in match.groups()[4:])
    assert shape == (3, 64, 64, 3)
    # Worst seed: L-BFGS from near-flat grey falls by well over 10x in the notebook's iterations.
    assert final < first / 10, (first, final)
    assert adam_final < adam_first / 3, (adam_first, adam_final)
    figures = sum("image/png" in out.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
                  for out in cell.outputs)
    assert figures >= 7, f"{figures} figures drawn"
