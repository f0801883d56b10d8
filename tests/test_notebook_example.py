"""examples/debugging_in_a_notebook.ipynb runs top to bottom in a real kernel, and shows what it says.

Executed with nbclient, as `jupyter nbconvert --execute` would, on a kernel that
runs this venv's python (ipykernel 7 with TF 2.21, ipykernel 6 with TF 2.13), so
the example never goes stale. Only the cell tagged `raises-exception` may fail.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import nbclient
import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "debugging_in_a_notebook.ipynb"


def _text(cell: Any, stream: str) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == stream)


def _cell(nb: Any, source_start: str) -> Any:
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(source_start)]
    return cell


def test_the_example_notebook_runs_and_shows_the_debugging_story(tmp_path: Path) -> None:
    spec = tmp_path / "kernels" / "eagerctl-example"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "eagerctl example", "language": "python",
        "env": {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)},
    }))
    km = KernelManager(kernel_name="eagerctl-example",
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")]))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, km=km, timeout=300, allow_errors=False,
                            resources={"metadata": {"path": str(ROOT / "examples")}}).execute()

    first = _cell(nb, "import numpy")
    assert _text(first, "stdout") == "loss: inf\nweights finite: False\n"

    marked = _cell(nb, "%debuggable relative_error")
    assert _text(marked, "stdout") == ("eagerctl: relative_error is @debuggable: its calls run the Python "
                                       "body eagerly (%undebuggable relative_error to undo)\n")
    assert "the tf.function(s) train_step were already traced, and their graphs hold the old body of " \
           "relative_error" in _text(marked, "stderr")

    (error,) = [o for o in _cell(nb, "%%eager").outputs if o.output_type == "error"]
    assert error.ename == "FloatingPointError"
    assert error.evalue.startswith("@debuggable relative_error (check_numerics=True): outputs holds "
                                   "non-finite values: 0 NaN and 1 Inf among 1 value(s)")

    zeros = _cell(nb, "print(\"targets that are exactly 0:\"")
    assert _text(zeros, "stdout") == "targets that are exactly 0: 4\n"

    (compared,) = [o for o in _cell(nb, "def relative_error").outputs if o.output_type == "execute_result"]
    assert compared.data["text/plain"].startswith("compare(train_step): graph and eager MATCH")
    assert '<table class="eagerctl-compare"' in compared.data["text/html"]

    (shown,) = [o for o in _cell(nb, "%eager").outputs if o.output_type == "display_data"]
    assert "active scopes    none" in shown.data["text/plain"]
    assert "<i>no active scopes</i>" in shown.data["text/html"]
