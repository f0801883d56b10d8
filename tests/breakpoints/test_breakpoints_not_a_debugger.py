"""A trace function that is not a debugger's (coverage, a profiler) leaves TensorFlow untouched.

The inert rule: a program that imports eagerctl but uses none of its features,
run under coverage (which sets `sys.settrace` before any user code), must get
TensorFlow with nothing patched. Only pydevd's debugger or a bdb debugger (pdb,
ipdb, pudb) counts as a debugger for breakpoint islands.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent(
    """
    import sys

    def tracer(frame, event, arg):  # what coverage's Python tracer looks like: a plain function
        return None

    sys.settrace(tracer)
    import eagerctl
    import tensorflow as tf
    from eagerctl import _hook

    @tf.function
    def f(x):
        return x * 2.0

    f(tf.constant(1.0))
    sys.settrace(None)
    fn_class = _hook.function_class or type(f)
    patched = getattr(fn_class.__dict__["_run_functions_eagerly"].fget, "__eagerctl__", False)
    print("installed", _hook.installed, "patched", patched)
    """
)


def test_a_coverage_style_tracer_installs_nothing() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "installed False patched False"
