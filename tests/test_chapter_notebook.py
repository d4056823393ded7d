"""docs/chapter.ipynb, executed end to end by a real Jupyter kernel at the reduced size of its first cell."""

import json
import os
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "chapter.ipynb"


def test_the_notebook_is_stored_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(not c["outputs"] and c["execution_count"] is None for c in code)
    assert "DEEPFIT_CHAPTER_SIZE" in "".join(code[0]["source"])


def test_the_notebooks_first_run_is_the_small_size(monkeypatch):
    """Opened and run as it is, the notebook takes a couple of minutes; the full size is one variable away."""
    first = "".join(next(c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code")["source"])
    monkeypatch.delenv("DEEPFIT_CHAPTER_SIZE", raising=False)
    small: dict = {}
    exec(first, small)
    assert (small["SIZE"], small["N_TRAIN"], small["EPOCHS"], small["SEEDS"]) == ("small", 2_000, 2, 2)
    full: dict = {}
    exec(first.replace('"small")', '"full")', 1), full)
    assert (full["SIZE"], full["N_TRAIN"], full["EPOCHS"], full["SEEDS"]) == ("full", 55_000, 10, 5)


@pytest.mark.slow
def test_the_chapter_runs_in_a_jupyter_kernel(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    src = str(Path(__file__).resolve().parents[1] / "src")
    monkeypatch.setenv("DEEPFIT_CHAPTER_SIZE", "small")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    # The kernel is this interpreter (its environment), whatever kernels Jupyter has installed.
    client.kernel_manager_class = "jupyter_client.manager.KernelManager"
    client.km = client.kernel_manager_class(kernel_name="python3")
    client.km.kernel_cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # figures inline
    html = "".join(o["data"].get("text/html", "") for o in outputs if "data" in o)
    assert "selu" in html and "relu" in html  # the comparison's report, inline
    text = "".join(o.get("text", "") for o in outputs)
    assert "keras 3" in text and "backend jax" in text
