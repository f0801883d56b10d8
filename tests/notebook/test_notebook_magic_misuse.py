"""The magics in a real Jupyter kernel when used wrongly, mixed, or reloaded (issue 17).

- `%debuggable NAME` of something that is not a function is a one-line
  `UsageError` (IPython shows no traceback for that type), and changes nothing.
- A note printed from inside a `%%eager` cell names the user's cell and does
  not ask the user to exit a scope the magic itself manages; `status()` lists
  the magics' scopes at the user's cell ("Cell In[7]:1"), not at eagerctl's file.
- `%reload_ext eagerctl` keeps `%eager on` (and what `%debuggable` replaced),
  and says so; `%unload_ext` ends it, as documented.

The kernel and its driver are tests/notebook/test_notebook.py's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

pytest.importorskip("jupyter_client")

from test_notebook import SETUP, Kernel, kernel_spec_dir

CELL = r"Cell In\[\d+\]"


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    k = Kernel(kernel_spec_dir(tmp_path_factory.mktemp("kernelspec")))
    try:
        k.run("%load_ext eagerctl")
        k.run(SETUP)
        yield k
    finally:
        k.close()


@pytest.fixture
def nb(kernel: Kernel) -> Iterator[Kernel]:
    clean = ("%load_ext eagerctl\n%eager reset\ntf.config.run_functions_eagerly(False)\n"
             "assert not eagerctl.status().scopes, eagerctl.status()")
    kernel.run(clean)
    yield kernel
    kernel.run(clean)


def test_debuggable_of_something_not_a_function_is_a_one_line_usage_error(nb: Kernel) -> None:
    nb.run("batch_size = 3\n"
           "def scale(x):\n"
           "    return x * 2\n"
           "import functools\n"
           "double = functools.partial(scale)")
    cell = nb.run("%debuggable scale batch_size", check=False)
    assert cell.status == "error"
    assert cell.stderr == (
        "UsageError: %debuggable batch_size: debuggable cannot decorate 3: it decorates tf.functions, "
        "functions, coroutine functions, and instance, class and static methods (including tf.function "
        "methods of Keras models and layers and a layer's call); name a function, tf.function or method "
        "of the notebook instead\n")
    assert cell.stdout == ""  # scale, which came first, was not wrapped either
    assert nb.value("type(scale).__name__, batch_size") == "function 3"
    cell = nb.run("%debuggable double", check=False)
    assert cell.stderr.startswith(
        "UsageError: %debuggable double: debuggable cannot decorate functools.partial(")
    assert cell.stderr.endswith("decorate the function it wraps and take the partial of that instead: "
                                "functools.partial(eagerctl.debuggable(f), ...)\n")
    assert "Traceback" not in cell.stderr
    nb.run("%debuggable scale")  # right use still works
    assert nb.value("type(scale).__name__") == "_Debuggable"
    nb.run("%undebuggable scale")


def test_a_note_from_a_cell_magic_names_the_cell_and_does_not_ask_to_exit_it(nb: Kernel) -> None:
    cell = nb.run("%%eager\n"
                  "inside = mode()\n"
                  "%eager on\n"
                  "print([(s.scope, s.where) for s in eagerctl.status().scopes])")
    lines = cell.stdout.splitlines()
    assert lines[0] == ("eagerctl: every tf.function runs eagerly (its Python body), in every cell and "
                        "thread, until %eager off")
    assert re.fullmatch(rf"eagerctl: note: this cell runs under %%eager \(at {CELL}:1\): its tf.functions "
                        r"run eager until the cell ends; the mode above holds from the next cell", lines[1])
    # Both scopes are where the user's cell entered them: the magic's line, and the line of %eager on.
    assert re.fullmatch(rf"\[\('%%eager', '{CELL}:1'\), \('%eager on', '{CELL}:3'\)\]", lines[2])
    assert "_ipython.py" not in cell.stdout and "exit it" not in cell.stdout
    assert nb.value("mode()") == "eager"  # %eager on, from the next cell on
    cell = nb.run("%%graph\n%eager off")
    assert re.search(rf"this cell runs under %%graph \(at {CELL}:1\): its tf.functions run graph until the "
                     "cell ends", cell.stdout)
    assert nb.value("mode()") == "graph"


def test_a_note_about_a_scope_entered_by_hand_still_asks_to_exit_it(nb: Kernel) -> None:
    nb.run("hand = eagerctl.graph_scope()\nhand.__enter__()")
    cell = nb.run("%eager on")
    assert re.search(rf"eagerctl: note: graph_scope\(\) \(entered at {CELL}:2\) is still active in this "
                     "context and decides here: tf.functions called from these cells run graph; exit it, or "
                     "run %eager reset", cell.stdout), cell.stdout
    nb.run("hand.__exit__(None, None, None)")
    assert nb.value("mode()") == "eager"


def test_reload_ext_keeps_the_mode_and_says_so(nb: Kernel) -> None:
    nb.run("%eager on\n"
           "def shift(x):\n"
           "    return x + 1\n"
           "%debuggable shift")
    cell = nb.run("%reload_ext eagerctl")
    assert cell.stdout == "eagerctl: reloaded; %eager on still holds (%eager off ends it)\n"
    assert nb.value("mode(), mode_in_thread(), tf.config.functions_run_eagerly()") == "eager eager True"
    assert nb.value("[(s.scope, s.kind) for s in eagerctl.status().scopes]") == "[('%eager on', 'process')]"
    # The reloaded magics work on what the extension did before.
    assert nb.run("%undebuggable shift").stdout == "eagerctl: shift is no longer @debuggable\n"
    assert nb.run("%eager off").stdout == "eagerctl: tf.functions follow TensorFlow's own flag again: graph\n"
    assert nb.value("mode(), tf.config.functions_run_eagerly(), eagerctl.status().scopes") == "graph False ()"
    # Reloading with no mode set says nothing; unloading ends a mode, as documented.
    assert nb.run("%reload_ext eagerctl").stdout == ""
    nb.run("%eager graph\ntf.config.run_functions_eagerly(True)")
    assert nb.value("mode()") == "graph"
    try:
        nb.run("%unload_ext eagerctl")
        assert nb.value("mode(), eagerctl.status().scopes") == "eager ()"  # TensorFlow's own flag
    finally:
        nb.run("%load_ext eagerctl\ntf.config.run_functions_eagerly(False)")
