"""Run walkthrough.ipynb top to bottom and store it with its outputs (pictures included), as committed.

    python examples/execute.py            # from the repository root, with texsynth_jax installed (pip install -e .)
"""

import os

import nbclient
import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))
NOTEBOOK = os.path.join(HERE, "walkthrough.ipynb")

if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=1200, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(HERE)}}).execute()
    nbformat.write(nb, NOTEBOOK)
    print(f"stored {NOTEBOOK} with its outputs")
