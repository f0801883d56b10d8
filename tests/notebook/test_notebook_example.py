"""examples/debugging_in_a_notebook.ipynb is stored executed, and shows what it does today.

Its intro says "what you see here is what it does": the notebook is kept with its
outputs, so a reader on GitHub sees them without running it. This test runs it
top to bottom in a real kernel with nbclient, as `jupyter nbconvert --execute`
would, on a kernel that runs this venv's python (ipykernel 7 with TF 2.21,
ipykernel 6 with TF 2.13), and checks

- the debugging story itself (the loss is inf, check_numerics names the output,
  the fix matches in compare(), ...);
- that the stored notebook was executed (every code cell, in order), and that each
  cell's stored outputs are what it prints now: text, errors (type and message),
  and the text and HTML of displayed results. Measurements (times, speed ratios)
  and addresses are compared loosely, with the docs examples' normalisation.
  The stored outputs show TF 2.21 with Keras 3; with Keras 2 (TF 2.13) only the
  story is checked, as for the docs pages.

After a change that alters what the notebook shows, store it again with
`EAGERCTL_UPDATE_NOTEBOOK=1 .venv/bin/python -m pytest -n 0 tests/notebook/test_notebook_example.py`
(and read the diff). Only the cell tagged `raises-exception` may fail.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import sys
import sysconfig
from pathlib import Path
from typing import Any

import nbclient
import nbformat
from helpers import normalise
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "examples" / "debugging_in_a_notebook.ipynb"
UPDATE = os.environ.get("EAGERCTL_UPDATE_NOTEBOOK") == "1"
STORED_KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def _text(cell: Any, stream: str) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == stream)


def _cell(nb: Any, source_start: str) -> Any:
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(source_start)]
    return cell


def _keras_major() -> int:
    import keras

    return int(str(keras.__version__).split(".")[0])


def _execute(tmp_path: Path) -> Any:
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
    fresh = copy.deepcopy(nb)
    for cell in fresh.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbclient.NotebookClient(fresh, km=km, timeout=300, allow_errors=False, record_timing=False,
                            resources={"metadata": {"path": str(ROOT / "examples")}}).execute()
    fresh.metadata.kernelspec = STORED_KERNELSPEC  # not this test's kernel
    return nb, fresh


def _without_local_paths(nb: Any) -> Any:
    """The notebook as stored: tracebacks name this machine's site-packages as `.../site-packages`."""
    stored = copy.deepcopy(nb)
    site = sysconfig.get_paths()["purelib"]
    for cell in stored.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                output.traceback = [line.replace(site, ".../site-packages") for line in output.traceback]
    return stored


def _shown(cell: Any) -> list[tuple[str, ...]]:
    """What a reader sees of a code cell's outputs, normalised; consecutive stream chunks joined."""
    shown: list[tuple[str, ...]] = []
    streams: dict[str, str] = {}
    for output in [*cell.outputs, None]:
        if output is not None and output.output_type == "stream":
            streams[output.name] = streams.get(output.name, "") + output.text
            continue
        shown.extend((f"stream {name}", *normalise(text)) for name, text in sorted(streams.items()))
        streams = {}
        if output is None:
            break
        if output.output_type == "error":
            shown.append(("error", output.ename, *normalise(output.evalue)))
        else:
            data = output.get("data", {})
            shown.append((output.output_type, *normalise(data.get("text/plain", "")),
                          *normalise(data.get("text/html", ""))))
    return shown


def test_the_example_notebook_runs_and_shows_the_debugging_story(tmp_path: Path) -> None:
    stored, nb = _execute(tmp_path)
    if UPDATE:
        nbformat.write(_without_local_paths(nb), NOTEBOOK)
        stored = nbformat.read(NOTEBOOK, as_version=4)

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
    assert not any("eagerctl/_" in line for line in error.traceback)  # ends in the user's code

    zeros = _cell(nb, "print(\"targets that are exactly 0:\"")
    assert _text(zeros, "stdout") == "targets that are exactly 0: 4\n"

    (compared,) = [o for o in _cell(nb, "def relative_error").outputs if o.output_type == "execute_result"]
    assert compared.data["text/plain"].startswith("compare(train_step): graph and eager MATCH")
    assert '<table class="eagerctl-compare"' in compared.data["text/html"]

    (shown,) = [o for o in _cell(nb, "%eager").outputs if o.output_type == "display_data"]
    assert "active scopes    none" in shown.data["text/plain"]
    assert "<i>no active scopes</i>" in shown.data["text/html"]

    # Stored executed, and what it shows is what it does now.
    code = [(old, new) for old, new in zip(stored.cells, nb.cells, strict=True) if new.cell_type == "code"]
    counts = [old.get("execution_count") for old, _ in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"the stored notebook is not executed top to bottom (execution counts {counts}); store it with "
        "EAGERCTL_UPDATE_NOTEBOOK=1")
    assert stored.metadata.get("kernelspec") == STORED_KERNELSPEC
    if _keras_major() < 3:
        return  # the stored outputs show Keras 3 (layer and variable names differ in Keras 2)
    stale = []
    for old, new in code:
        if _shown(old) != _shown(new):
            diff = difflib.unified_diff([repr(x) for x in _shown(old)], [repr(x) for x in _shown(new)],
                                        "stored", "now", lineterm="")
            stale.append(f"cell {new.source.splitlines()[0]!r}:\n" + "\n".join(diff))
    assert not stale, ("the stored outputs are stale (store them again with EAGERCTL_UPDATE_NOTEBOOK=1):\n"
                       + "\n\n".join(stale))
