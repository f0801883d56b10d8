"""The IPython extension in a real Jupyter kernel (ipykernel 7 on TF 2.21, ipykernel 6 on TF 2.13).

One kernel per module, started from this venv's own python through a kernelspec
written to a temporary directory and driven with `jupyter_client`, as Jupyter
and Colab drive it: each `run()` is one cell. Every test starts from a clean
kernel state (`%eager reset`, TensorFlow's flag off) and checks what
`tf.function` calls really did: a probe records `tf.executing_eagerly()` each
time its Python body runs (compiled, the body runs only while tracing).
"""

from __future__ import annotations

import json
import queue
import re
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120.0

SETUP = """
import threading
import tensorflow as tf
import eagerctl

runs = []

@tf.function
def probe(x):
    runs.append(tf.executing_eagerly())
    return x * 2

def mode():
    before = len(runs)
    assert float(probe(tf.constant(1.0))) == 2.0
    return "eager" if len(runs) > before and runs[-1] else "graph"

def mode_in_thread():
    out = []
    thread = threading.Thread(target=lambda: out.append(mode()))
    thread.start()
    thread.join()
    return out[0]
"""


class Cell:
    """What one executed cell produced."""

    def __init__(self) -> None:
        self.status = ""
        self.stdout = ""
        self.stderr = ""
        self.ename = ""
        self.evalue = ""
        self.results: list[dict[str, Any]] = []  # execute_result / display_data bundles

    @property
    def text(self) -> str:
        return "\n".join(str(r.get("text/plain", "")) for r in self.results)

    def __repr__(self) -> str:
        return (f"Cell(status={self.status!r}, ename={self.ename!r}, evalue={self.evalue!r}, "
                f"stdout={self.stdout!r}, stderr={self.stderr[-2000:]!r}, results={self.results!r})")


def kernel_spec_dir(tmp: Path) -> Path:
    """A kernelspec that runs this interpreter (the venv under test), not whatever `python3` is on PATH."""
    spec = tmp / "kernels" / "eagerctl-test"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "eagerctl test kernel",
        "language": "python",
        "env": {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)},
    }))
    return tmp / "kernels"


class Kernel:
    def __init__(self, kernels_dir: Path) -> None:
        self.km = KernelManager(kernel_name="eagerctl-test",
                                kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels_dir)]))
        self.km.start_kernel(cwd=str(ROOT))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=TIMEOUT)

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)

    def run(self, code: str, *, interrupt_when: str | None = None, check: bool = True) -> Cell:
        """Execute one cell; with `interrupt_when`, send a real SIGINT once stdout shows that text."""
        msg_id = self.kc.execute(code)
        cell = Cell()
        interrupted = False
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"cell did not finish in {TIMEOUT} s: {code!r}; {cell!r}") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                if content["name"] == "stdout":
                    cell.stdout += content["text"]
                else:
                    cell.stderr += content["text"]
                if interrupt_when and not interrupted and interrupt_when in cell.stdout:
                    self.km.interrupt_kernel()  # SIGINT to the kernel process, as Jupyter's stop button
                    interrupted = True
            elif kind in ("execute_result", "display_data"):
                cell.results.append(content["data"])
            elif kind == "error":
                cell.ename, cell.evalue = content["ename"], content["evalue"]
            elif kind == "status" and content["execution_state"] == "idle":
                break
        reply = self.kc.get_shell_msg(timeout=TIMEOUT)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.kc.get_shell_msg(timeout=TIMEOUT)
        cell.status = reply["content"]["status"]
        if cell.status == "error":
            cell.ename = cell.ename or reply["content"].get("ename", "")
            cell.evalue = cell.evalue or reply["content"].get("evalue", "")
        if check and cell.status != "ok":
            raise AssertionError(f"cell failed: {code!r}\n{cell!r}")
        return cell

    def value(self, expression: str) -> str:
        """The printed value of an expression evaluated in a cell of its own."""
        return self.run(f"print({expression})").stdout.strip()


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
    """The shared kernel, clean before and after the test."""
    clean = ("%eager reset\ntf.config.run_functions_eagerly(False)\n"
             "assert not eagerctl.status().scopes, eagerctl.status()")
    kernel.run(clean)
    yield kernel
    kernel.run(clean)


def test_the_extension_loads_with_the_kernels_ipykernel(nb: Kernel) -> None:
    from importlib.metadata import version

    major = nb.value("__import__('importlib.metadata').metadata.version('ipykernel').split('.')[0]")
    assert major == version("ipykernel").split(".")[0]
    nb.run("magics = get_ipython().magics_manager.magics")
    assert nb.value("[k in magics['line'] for k in ('eager', 'debuggable', 'undebuggable')]") \
        == "[True, True, True]"
    assert nb.value("[k in magics['cell'] for k in ('eager', 'graph')]") == "[True, True]"


def test_eager_on_graph_off_set_the_mode_of_every_following_cell_and_thread(nb: Kernel) -> None:
    assert nb.value("mode(), mode_in_thread(), tf.config.functions_run_eagerly()") == "graph graph False"
    cell = nb.run("%eager on")
    assert cell.stdout.startswith("eagerctl: every tf.function runs eagerly")
    for _ in range(2):  # several later cells, each its own asyncio task in ipykernel 7
        assert nb.value("mode(), mode_in_thread(), tf.config.functions_run_eagerly(), eagerctl.is_eager()") \
            == "eager eager True True"
    # %eager graph wins over TensorFlow's flag set by hand...
    nb.run("%eager off\ntf.config.run_functions_eagerly(True)")
    assert nb.value("mode(), mode_in_thread()") == "eager eager"
    nb.run("%eager graph")
    assert nb.value("mode(), mode_in_thread(), tf.config.functions_run_eagerly()") == "graph graph False"
    # ...and %eager off gives the flag back to what it was set to (the baseline).
    cell = nb.run("%eager off")
    assert cell.stdout == "eagerctl: tf.functions follow TensorFlow's own flag again: eager\n"
    assert nb.value("mode(), tf.config.functions_run_eagerly()") == "eager True"


def test_eager_alone_shows_status_as_an_html_table_and_as_text(nb: Kernel) -> None:
    nb.run("%eager on")
    cell = nb.run("%eager\nx = 1")  # shown even when it is not the cell's last line
    assert len(cell.results) == 1
    bundle = cell.results[0]
    assert '<table class="eagerctl-status"' in bundle["text/html"]
    assert '>%eager on</td>' in bundle["text/html"]  # the scope, listed
    assert "<b>eager</b>" in bundle["text/html"]  # effective here
    text = bundle["text/plain"]
    assert "process flag     eager" in text and "active scopes    1" in text and "%eager on" in text
    assert nb.run("%eager status").results[0]["text/plain"] == text


def test_unknown_eager_argument_is_a_usage_error_that_changes_nothing(nb: Kernel) -> None:
    nb.run("%eager on")
    cell = nb.run("%eager eagerly", check=False)
    assert cell.status == "error"
    assert "UsageError: %eager eagerly: unknown; use one of:" in cell.stderr
    assert "%eager reset" in cell.stderr
    assert nb.value("mode()") == "eager"


def test_cell_magics_set_the_mode_of_one_cell_and_display_its_last_expression(nb: Kernel) -> None:
    cell = nb.run("%%eager\nfirst = mode()\nprint(first, mode_in_thread(), eagerctl.is_eager())\nfirst + '!'")
    assert cell.stdout == "eager graph True\n"  # local to the cell: a thread it starts keeps the kernel's
    assert cell.results[0]["text/plain"] == "'eager!'"
    assert nb.value("mode(), eagerctl.is_eager()") == "graph False"
    nb.run("%eager on")
    assert nb.run("%%graph\nprint(mode(), tf.config.functions_run_eagerly())").stdout == "graph True\n"
    assert nb.value("mode()") == "eager"
    # magics inside the cell body still work
    assert nb.run("%%eager\nx = %time mode()\nprint(x)").stdout.endswith("eager\n")
    cell = nb.run("%%eager\nimport asyncio\nawait asyncio.sleep(0)", check=False)
    assert ("UsageError: %%eager and %%graph cannot run a cell with top-level await; in a normal cell, write "
            "`async with eagerctl.eager_scope():` (or graph_scope()) around the awaited code") in cell.stderr


def test_a_cell_that_raises_leaves_the_mode_as_before_and_fails_the_cell(nb: Kernel) -> None:
    cell = nb.run("%%eager\nprint(mode())\nraise ValueError('bad batch')", check=False)
    assert (cell.status, cell.ename, cell.evalue) == ("error", "ValueError", "bad batch")
    assert cell.stdout == "eager\n"
    assert nb.value("mode(), eagerctl.is_eager()") == "graph False"
    cell = nb.run("with eagerctl.eager_scope():\n    mode()\n    1 / 0", check=False)
    assert cell.ename == "ZeroDivisionError"
    assert nb.value("mode()") == "graph"
    cell = nb.run("%%eager\ndef broken(:", check=False)
    assert (cell.status, cell.ename) == ("error", "SyntaxError")
    assert nb.value("mode(), eagerctl.status().scopes") == "graph ()"


LOOP = """
import time
@tf.function
def slow_step(x):
    time.sleep(0.02)  # runs only when the body runs eagerly
    return x + 1
slow_step(tf.constant(0))
print("started", flush=True)
for _ in range(100_000):
    slow_step(tf.constant(0)) if eagerctl.is_eager() else time.sleep(0.02)
"""


def test_ctrl_c_in_a_cell_magic_leaves_the_kernel_in_its_mode_before_the_cell(nb: Kernel) -> None:
    cell = nb.run("%%eager\n" + LOOP, interrupt_when="started", check=False)
    assert (cell.status, cell.ename) == ("error", "KeyboardInterrupt")
    assert nb.value("mode(), eagerctl.is_eager(), tf.config.functions_run_eagerly(), eagerctl.status().scopes"
                    ) == "graph False False ()"
    nb.run("%eager on")
    cell = nb.run("%%graph\n" + LOOP.replace("if eagerctl.is_eager()", "if not eagerctl.is_eager()"),
                  interrupt_when="started", check=False)
    assert cell.ename == "KeyboardInterrupt"
    assert nb.value("mode(), mode_in_thread(), tf.config.functions_run_eagerly()") == "eager eager True"
    nb.run("%eager off")
    cell = nb.run("with eagerctl.eager_scope():\n" + textwrap.indent(LOOP, "    "), interrupt_when="started",
                  check=False)  # a plain `with` block, no magic
    assert cell.ename == "KeyboardInterrupt"
    assert nb.value("mode(), eagerctl.status().scopes") == "graph ()"


def test_ctrl_c_undoes_scopes_the_interrupted_cell_entered_and_left(nb: Kernel) -> None:
    code = ("s = eagerctl.eager_scope()\ns.__enter__()\n"
            "p = eagerctl.graph_scope(process=True)\np.__enter__()\n" + LOOP)
    cell = nb.run(code, interrupt_when="started", check=False)
    assert cell.ename == "KeyboardInterrupt"
    # where each was entered, a line of the cell said as IPython says it (not the kernel's temp file)
    assert re.search(r"eagerctl: the interrupted cell left 2 scope\(s\) active: eager_scope\(True\) entered "
                     r"at Cell In\[\d+\]:2; graph_scope\(process=True\) entered at Cell In\[\d+\]:4\. ",
                     cell.stderr), cell.stderr
    assert "Exited: tf.functions run graph here, as before the cell" in cell.stderr
    assert nb.value("mode(), s.active, p.active, eagerctl.status().scopes") == "graph False False ()"
    # a scope entered before the interrupted cell is the kernel's mode before it: it stays
    nb.run("s = eagerctl.eager_scope()\ns.__enter__()")
    cell = nb.run(LOOP, interrupt_when="started", check=False)
    assert cell.ename == "KeyboardInterrupt" and "interrupted cell left" not in cell.stderr
    assert nb.value("mode(), s.active") == "eager True"
    nb.run("s.__exit__(None, None, None)")


def test_a_scope_entered_by_hand_exits_in_a_later_cell(nb: Kernel) -> None:
    nb.run("s = eagerctl.eager_scope()\ns.__enter__()")
    for _ in range(2):  # in force, and listed: the cell task that entered it is done, its context is not
        assert nb.value("mode(), eagerctl.is_eager(), tf.config.functions_run_eagerly(), "
                        "[i.scope for i in eagerctl.status().scopes]") \
            == "eager True False ['eager_scope(True)']"
    nb.run("g = eagerctl.graph_scope()\ng.__enter__()")
    assert nb.value("mode()") == "graph"
    nb.run("s.__exit__(None, None, None)")  # out of order, two cells later
    assert nb.value("mode()") == "graph"
    nb.run("g.__exit__(None, None, None)")
    assert nb.value("mode(), s.active, g.active, eagerctl.status().scopes") == "graph False False ()"
    # nothing is left that would keep the hook in place
    nb.run("eagerctl.uninstall_hook()\neagerctl.install_hook()")
    assert nb.value("mode()") == "graph"


def test_eager_reset_is_the_way_back_from_a_scope_left_entered(nb: Kernel) -> None:
    nb.run("s = eagerctl.eager_scope()\ns.__enter__()\np = eagerctl.eager_scope(process=True)\np.__enter__()")
    nb.run("%eager on")
    assert nb.value("mode(), len(eagerctl.status().scopes)") == "eager 3"
    cell = nb.run("%eager reset")
    assert cell.stdout == ("eagerctl: no scope active in this kernel's cells, TensorFlow's flag at its "
                           "baseline: graph\n")
    assert nb.value("mode(), mode_in_thread(), tf.config.functions_run_eagerly(), eagerctl.status().scopes") \
        == "graph graph False ()"
    nb.run("s.__exit__(None, None, None)\np.__exit__(None, None, None)")  # exiting them later is quiet
    nb.run("eagerctl.uninstall_hook()\neagerctl.install_hook()")


def test_a_scope_that_cannot_exit_here_names_the_notebook_remedy(nb: Kernel) -> None:
    # A cell with top-level await runs in a copy of the kernel's context: a scope entered
    # there never reaches the next cells, and exiting it from them is refused.
    nb.run("import asyncio\nawait asyncio.sleep(0)\na = eagerctl.eager_scope()\na.__enter__()\nprint(mode())")
    assert nb.value("mode()") == "graph"
    cell = nb.run("a.__exit__(None, None, None)", check=False)
    assert cell.ename == "EagerctlError"
    assert "eager_scope(True) cannot exit in thread 'MainThread'" in cell.evalue
    assert "%eager reset drops every scope" in cell.stderr
    assert ("For a mode that lasts across cells use %eager on / %eager off; for part of one cell, "
            "a `with` block") in cell.stderr
    assert nb.value("mode()") == "graph"


DEFINE_STEP = """
@tf.function
def train_step(x):
    return loss_fn(x) * 2.0
"""


def test_debuggable_magic_wraps_unwraps_and_names_the_already_traced_callers(nb: Kernel) -> None:
    nb.run("body_runs = []\n"
           "def loss_fn(x):\n"
           "    body_runs.append(tf.executing_eagerly())\n"
           "    return tf.reduce_sum(x * x)\n"
           "original = loss_fn\n" + DEFINE_STEP +
           "x = tf.constant([1.0, 2.0])\n"
           "print(float(train_step(x)), body_runs)")
    cell = nb.run("%debuggable loss_fn")
    assert cell.stdout == ("eagerctl: loss_fn is @debuggable: its calls run the Python body eagerly "
                           "(%undebuggable loss_fn to undo)\n")
    assert ("EagerctlWarning: %debuggable loss_fn: loss_fn runs eagerly where it is called from now on, but "
            "the tf.function(s) train_step were already traced, and their graphs hold the old body of "
            "loss_fn: calls of them keep running it. Re-run the cell that defines train_step to trace it "
            "again.") in cell.stderr
    assert nb.value("float(loss_fn(x)), body_runs") == "5.0 [False, True]"  # a direct call: eager
    assert nb.value("float(train_step(x)), body_runs") == "10.0 [False, True]"  # the old graph: body not run
    nb.run(DEFINE_STEP)  # re-run the defining cell, as the warning says
    # traced again: the call of loss_fn is an eager island, its body runs at every call of train_step
    assert nb.value("float(train_step(x)), float(train_step(x)), body_runs[2:].count(True)") == "10.0 10.0 2"
    cell = nb.run("%undebuggable loss_fn")
    assert cell.stdout == "eagerctl: loss_fn is no longer @debuggable\n"
    assert "the tf.function(s) train_step were already traced" in cell.stderr
    assert nb.value("loss_fn is original") == "True"
    cell = nb.run("%undebuggable loss_fn", check=False)
    assert "UsageError: %undebuggable loss_fn: <function loss_fn at" in cell.stderr
    assert "is not @debuggable; nothing to undo" in cell.stderr
    cell = nb.run("%debuggable no_such_fn", check=False)
    assert ("UsageError: %debuggable no_such_fn: name 'no_such_fn' is not defined in the notebook's "
            "namespace; run the cell that defines it first") in cell.stderr


def test_debuggable_magic_on_a_method_and_a_tf_function_with_options(nb: Kernel) -> None:
    nb.run("class Scaler:\n"
           "    @tf.function\n"
           "    def scale(self, x):\n"
           "        return x * 3.0 if tf.executing_eagerly() else x * 2.0\n"
           "scaler = Scaler()\n"
           "original = Scaler.__dict__['scale']\n"
           "print(float(scaler.scale(tf.constant(1.0))))")
    nb.run("%debuggable Scaler.scale --check-numerics")
    assert nb.value("float(scaler.scale(tf.constant(1.0))), Scaler.scale._self_debuggable.check_numerics") \
        == "3.0 True"
    cell = nb.run("%debuggable Scaler.scale --fast", check=False)
    assert "unknown option '--fast'" in cell.stderr
    nb.run("%undebuggable Scaler.scale")
    assert nb.value("float(scaler.scale(tf.constant(1.0))), Scaler.__dict__['scale'] is original") \
        == "2.0 True"
    assert nb.value("mode()") == "graph"  # traced (the first call) and compiled
    nb.run("%debuggable probe")  # a tf.function of the namespace
    assert nb.value("mode(), probe.experimental_get_tracing_count()") == "eager 1"
    nb.run("%undebuggable probe")
    assert nb.value("mode()") == "graph"


def test_compare_result_renders_as_html_and_text(nb: Kernel) -> None:
    cell = nb.run("w = tf.Variable([1.0, 2.0])\n"
                  "@tf.function\n"
                  "def step(x):\n"
                  "    w.assign_add(x)\n"
                  "    return tf.reduce_sum(w)\n"
                  "eagerctl.compare(step, tf.constant([0.5, 0.5]), repeat=1)")
    bundle = cell.results[0]
    assert bundle["text/plain"].startswith("compare(step): graph and eager MATCH")
    assert '<table class="eagerctl-compare"' in bundle["text/html"]
    assert "<b>graph and eager MATCH</b>" in bundle["text/html"]
    assert nb.value("w.numpy()") == "[1. 2.]"  # compare restores what it touched


KERAS_MODEL = """
import numpy as np
import keras

calls = []

def squared_error(y_true, y_pred):
    calls.append(tf.executing_eagerly())
    return tf.reduce_mean(tf.square(y_true - y_pred))

keras.utils.set_random_seed(0)
xs = np.linspace(-1, 1, 32, dtype="float32").reshape(-1, 1)
ys = 3 * xs
model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss=squared_error)
model.fit(xs, ys, epochs=1, batch_size=16, verbose=0)
print(all(not eager for eager in calls))
"""


def test_debuggable_magic_on_a_keras_loss_says_to_compile_again_and_that_works(nb: Kernel) -> None:
    assert nb.run(KERAS_MODEL).stdout == "True\n"  # traced into fit's graph: the body ran symbolically only
    cell = nb.run("%debuggable squared_error")
    assert ("the Keras model(s) model were compiled with loss=squared_error and hold that function itself: "
            "compile model again with loss=squared_error to use the new one.") in cell.stderr
    nb.run("calls.clear()\nmodel.fit(xs, ys, epochs=1, batch_size=16, verbose=0)")
    assert nb.value("any(calls)") == "False"  # as the warning says: the model still holds the old function
    nb.run("model.compile(optimizer='sgd', loss=squared_error)\n"
           "model.fit(xs, ys, epochs=1, batch_size=16, verbose=0)")
    assert nb.value("calls.count(True)") == "2"  # one eager run of the loss per batch
    nb.run("%undebuggable squared_error")


KERAS_SUBCLASS = """
hits = []

def center(x):
    hits.append(tf.executing_eagerly())
    return x - tf.reduce_mean(x)

class Centered(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)

    def call(self, x):
        return self.dense(center(x))

centered = Centered()
centered.compile(optimizer="sgd", loss="mse")
centered.fit(xs, ys, epochs=1, batch_size=16, verbose=0)
print(any(hits))
"""


def test_debuggable_magic_on_a_function_a_trained_keras_model_calls(nb: Kernel) -> None:
    nb.run(KERAS_MODEL)
    assert nb.run(KERAS_SUBCLASS).stdout == "False\n"
    cell = nb.run("%debuggable center")
    assert ("the Keras model(s) centered already built train/test/predict functions that hold the old body "
            "of center: run centered.make_train_function(force=True) (or compile the model again) for fit "
            "to trace it again") in cell.stderr
    nb.run("hits.clear()\ncentered.make_train_function(force=True)\n"
           "centered.fit(xs, ys, epochs=1, batch_size=16, verbose=0)")
    assert nb.value("hits.count(True)") == "2"  # the remedy works: one eager run per batch
    nb.run("%undebuggable center")
