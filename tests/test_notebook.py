"""examples/walkthrough.ipynb runs from top to bottom, its synthesis works, and it is stored with its outputs
(pictures included) so that a reader on a code host sees them without running it: after editing it, store
it again with `python examples/execute.py`.

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


def outputs_of(nb):
    """(stream text, number of PNG figures) of a notebook's code cells."""
    cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    text = "".join(out.get("text", "") for cell in cells for out in cell.outputs if out.output_type == "stream")
    return text, sum("image/png" in out.get("data", {}) for cell in cells for out in cell.outputs)


def test_stored_with_its_outputs():
    """Every code cell ran, in order, in the stored copy, and its pictures are there."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    counts = [cell.execution_count for cell in nb.cells if cell.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), "store it run top to bottom: python examples/execute.py"
    assert not any(out.output_type == "error" for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs)
    text, figures = outputs_of(nb)
    assert RESULT.search(text) and "CUSTOM gram_+_mean_colour" in text and "GUIDED" in text and figures >= 8, figures


def test_walkthrough_runs(weights_path, tmp_path, monkeypatch):
    # The kernel inherits this environment: reuse the session's converted weights, draw without a display.
    monkeypatch.setenv("TEXSYNTH_WEIGHTS", weights_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:  # run from scratch: the stored outputs must not count
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": ROOT}})
    try:
        client.execute()  # raises CellExecutionError, with the cell and traceback, if any cell fails
    finally:
        nbformat.write(nb, str(tmp_path / "walkthrough.ipynb"))

    text, figures = outputs_of(nb)
    match = RESULT.search(text)
    assert match, "the last cell's RESULT line is missing"
    shape = tuple(int(v) for v in match.groups()[:4])
    first, final, adam_first, adam_final = (float(v) for v in match.groups()[4:])
    assert shape == (3, 64, 64, 3)
    # Worst seed: L-BFGS from near-flat grey falls by well over 10x in the notebook's iterations.
    assert final < first / 10, (first, final)
    assert adam_final < adam_first / 3, (adam_first, adam_final)
    assert figures >= 7, f"{figures} figures drawn"
    # The registered term is used: it brings the output's mean colour closer to the source's.
    gaps = dict(re.findall(r"CUSTOM (\S+) gap=(\S+)", text))
    assert float(gaps["gram_+_mean_colour"]) < float(gaps["gram_alone"]) / 2, gaps
    # The guided target built by hand: the disc takes the blue negative's colours, the rest the photo's.
    disc, rest = (float(v) for v in re.search(r"GUIDED disc_blue=(\S+) rest_blue=(\S+)", text).groups())
    assert disc > rest + 0.1, (disc, rest)
