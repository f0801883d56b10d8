"""@debuggable on plain functions: the body, and every tf.function it calls, run eagerly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import tensorflow as tf
from helpers import make_probe, mode_of

import eagerctl

ROOT = Path(__file__).resolve().parents[2]


def test_nested_tf_functions_run_eagerly_during_the_call_only() -> None:
    probe, seen = make_probe()

    @eagerctl.debuggable
    def loss(x: Any) -> str:
        assert tf.executing_eagerly()
        return mode_of(probe, seen)

    assert loss(1) == "eager"
    assert mode_of(probe, seen) == "graph"
    assert loss(1) == "eager"
    assert probe.experimental_get_tracing_count() == 1  # only the compiled call above traced


def test_recursive_false_on_a_function_changes_no_mode() -> None:
    probe, seen = make_probe()

    @eagerctl.debuggable(recursive=False)
    def loss() -> tuple[str, bool]:
        return mode_of(probe, seen), eagerctl.is_eager()

    assert loss() == ("graph", False)
    with eagerctl.eager_scope():
        assert loss() == ("eager", True)


def test_recursion_and_reentry_keep_the_override_until_the_outermost_call_returns() -> None:
    probe, seen = make_probe()
    modes: list[str] = []

    @eagerctl.debuggable
    def walk(n: int) -> None:
        modes.append(mode_of(probe, seen))
        if n:
            walk(n - 1)
        modes.append(mode_of(probe, seen))

    walk(2)
    assert modes == ["eager"] * 6
    assert mode_of(probe, seen) == "graph"


def test_called_from_another_thread_the_override_is_that_threads_only() -> None:
    import threading

    probe, seen = make_probe()
    inside, release = threading.Event(), threading.Event()
    out: dict[str, str] = {}

    @eagerctl.debuggable
    def slow() -> None:
        out["worker"] = mode_of(probe, seen)
        inside.set()
        release.wait(30)

    worker = threading.Thread(target=slow)
    worker.start()
    assert inside.wait(30)
    out["main"] = mode_of(probe, seen)  # while the worker is inside its call
    release.set()
    worker.join(30)
    assert out == {"worker": "eager", "main": "graph"}


def test_exceptions_propagate_unchanged_and_the_override_is_gone() -> None:
    error = KeyError("boom")

    @eagerctl.debuggable
    def bad() -> None:
        raise error

    with pytest.raises(KeyError) as info:
        bad()
    assert info.value is error
    assert eagerctl.status().override is None


def test_keyboard_interrupt_propagates_and_the_override_is_gone() -> None:
    @eagerctl.debuggable
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert eagerctl.status().override is None


def test_a_lambda_and_a_bound_method_can_be_decorated() -> None:
    probe, seen = make_probe()
    check = eagerctl.debuggable(lambda: mode_of(probe, seen))
    assert check() == "eager"

    class Holder:
        def mode(self) -> str:
            return mode_of(probe, seen)

    bound = eagerctl.debuggable(Holder().mode)
    assert bound() == "eager"
    assert mode_of(probe, seen) == "graph"


def test_a_tf_that_cannot_be_hooked_raises_at_call_time_not_at_decoration() -> None:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    code = """
        import json
        import tensorflow as tf
        from tensorflow.python.eager.polymorphic_function import polymorphic_function as pf
        del pf.Function._run_functions_eagerly  # what a TF without this attribute looks like
        import eagerctl

        @eagerctl.debuggable
        @tf.function
        def f(x):
            return x
        try:
            f(tf.constant(1))
        except eagerctl.EagerctlError as exc:
            print(json.dumps({"error": str(exc), "version": tf.__version__}))
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["error"] == (
        f"TensorFlow {got['version']} has no property Function._run_functions_eagerly to hook, so local "
        "scopes and @debuggable cannot work with it; use eager_scope(process=True), which drives TF's "
        "global flag, or install TensorFlow 2.13 to 2.21"
    )


def test_uninstalling_the_hook_during_a_call_is_refused() -> None:
    @eagerctl.debuggable
    def body() -> str:
        with pytest.raises(eagerctl.EagerctlError) as info:
            eagerctl.uninstall_hook()
        return str(info.value)

    assert body() == (
        "cannot uninstall eagerctl's hook while 1 local scope(s) are active: they would silently stop "
        "working; exit them first, or call eagerctl.reset() (see eagerctl.status())"
    )


def test_decorating_does_not_import_tensorflow_the_first_call_does() -> None:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    code = """
        import json, sys
        import eagerctl

        @eagerctl.debuggable
        def f():
            import tensorflow as tf
            return tf.executing_eagerly()

        @eagerctl.debuggable(enabled=False)
        def g():
            return 1

        before = "tensorflow" in sys.modules
        print(json.dumps({"before": before, "eager": f(), "after": "tensorflow" in sys.modules}))
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"before": False, "eager": True, "after": True}
