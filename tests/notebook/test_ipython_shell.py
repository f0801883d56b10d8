"""The extension in a plain `IPython.InteractiveShell` (the IPython terminal's shell), in this process.

No asyncio task runs the cells here, unlike ipykernel 7: scopes entered by hand
work across cells, and every magic behaves as in a kernel. `import eagerctl`
itself never imports IPython.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

PROBE = """
import tensorflow as tf
import eagerctl

runs = []

@tf.function
def probe(x):
    runs.append(tf.executing_eagerly())
    return x * 2

def mode():
    before = len(runs)
    probe(tf.constant(1.0))
    return "eager" if len(runs) > before and runs[-1] else "graph"
"""


@pytest.fixture
def shell() -> Iterator[Any]:
    from IPython.core.interactiveshell import InteractiveShell

    import eagerctl

    ip = InteractiveShell.instance()
    try:
        yield ip
    finally:
        eagerctl.unload_ipython_extension(ip)
        eagerctl.reset()
        InteractiveShell.clear_instance()


def run(shell: Any, code: str) -> Any:
    result = shell.run_cell(code)
    assert result.success, (code, result.error_before_exec, result.error_in_exec)
    return result.result


def test_import_eagerctl_imports_neither_ipython_nor_tensorflow() -> None:
    code = ("import sys, eagerctl; eagerctl.load_ipython_extension; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'IPython', 'tensorflow', 'ipykernel'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "[]\n"


def test_the_extension_in_a_plain_interactive_shell(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import tensorflow as tf

    import eagerctl

    # What `c.InteractiveShellApp.extensions = ["eagerctl"]` does at startup.
    shell.extension_manager.load_extension("eagerctl")
    run(shell, PROBE)
    assert run(shell, "mode()") == "graph"

    run(shell, "%eager on")
    assert run(shell, "mode()") == "eager"
    assert tf.config.functions_run_eagerly()
    assert run(shell, "%%graph\nmode()") == "graph"
    assert run(shell, "mode()") == "eager"

    capsys.readouterr()
    run(shell, "%eager\nx = 1")  # shown even when it is not the cell's last line
    status = eagerctl.status()
    assert capsys.readouterr().out == str(status) + "\n"  # the terminal shows the readable table, not repr()
    formatted, _ = shell.display_formatter.format(status)
    assert formatted["text/plain"] == str(status)
    assert '<table class="eagerctl-status"' in formatted["text/html"]

    run(shell, "%eager off")
    assert run(shell, "mode()") == "graph"
    assert run(shell, "%%eager\nmode()") == "eager"

    run(shell, "s = eagerctl.eager_scope()\ns.__enter__()")  # by hand, across cells
    assert run(shell, "mode()") == "eager"
    run(shell, "s.__exit__(None, None, None)")
    assert run(shell, "mode(), eagerctl.status().scopes") == ("graph", ())

    run(shell, "def loss(x):\n    return x * 2\noriginal = loss")
    run(shell, "%debuggable loss")
    assert run(shell, "type(loss).__name__, loss.__wrapped__ is original") == ("_Debuggable", True)
    run(shell, "%undebuggable loss")
    assert run(shell, "loss is original") is True
    capsys.readouterr()

    run(shell, "%reload_ext eagerctl")
    run(shell, "%eager on")
    assert run(shell, "mode()") == "eager"
    shell.extension_manager.unload_extension("eagerctl")  # the mode ends with the extension
    assert not tf.config.functions_run_eagerly()
    assert "eager" not in shell.magics_manager.magics["line"]
    assert "graph" not in shell.magics_manager.magics["cell"]
    assert run(shell, "mode()") == "graph"


def test_a_ctrl_c_during_the_magics_own_bookkeeping_is_delivered_right_after_it() -> None:
    import signal

    from eagerctl._ipython import _DeferSigint

    # Python's own handler, as in a kernel: an earlier pdb session (a post-mortem test)
    # leaves pdb's handler installed in this process.
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        steps = []
        with pytest.raises(KeyboardInterrupt):
            with _DeferSigint():
                signal.raise_signal(signal.SIGINT)  # a real SIGINT, as Ctrl-C sends
                steps.append("entered")  # the bookkeeping finishes first
            steps.append("not reached")
        assert steps == ["entered"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, outer)


def test_html_of_a_comparison_that_differs_and_of_a_status_with_scopes() -> None:
    import tensorflow as tf

    import eagerctl

    @tf.function
    def scaled(x: tf.Tensor) -> tf.Tensor:
        return x * 3.0 if tf.executing_eagerly() else x * 2.0  # differs on purpose

    result = eagerctl.compare(scaled, tf.constant([1.0, 2.0]), repeat=1)
    page = result._repr_html_()
    assert "scaled)</code>: <b style=\"color:#c00\">graph and eager DIFFER in 1</b>" in page
    assert ("<td style=\"text-align:left;color:#c00;font-weight:bold\">output</td>" in page
            and ">NO</td>" in page and ">2</td>" in page)  # max |graph - eager| = |6 - 4|

    with eagerctl.graph_scope(), eagerctl.eager_scope(process=True):
        page = eagerctl.status()._repr_html_()
    assert page.count("<tr><td") == 2  # one row per active scope
    assert ">graph_scope()</td>" in page and ">eager_scope(True, process=True)</td>" in page
    assert "<b>graph</b>" in page  # effective here: the local graph scope wins


def test_debuggable_magic_under_eagerctl_debuggable_0_leaves_the_function_as_it_is(
        shell: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EAGERCTL_DEBUGGABLE", "0")
    shell.extension_manager.load_extension("eagerctl")
    run(shell, "def loss(x):\n    return x * 2\noriginal = loss")
    capsys.readouterr()
    run(shell, "%debuggable loss")
    assert capsys.readouterr().out == ("eagerctl: loss is unchanged: the environment variable "
                                       "EAGERCTL_DEBUGGABLE=0 turns @debuggable off\n")
    assert run(shell, "loss is original") is True


def test_loading_the_extension_and_running_cells_does_not_import_tensorflow() -> None:
    code = """
import sys
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
for cell in ("%load_ext eagerctl", "x = 1", "%eager", "%undebuggable x"):
    shell.run_cell(cell)
print("tensorflow" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "False"  # the cell hooks and %eager alone need no TensorFlow
