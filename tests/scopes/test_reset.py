"""`eagerctl.reset()`: the way back from any state."""

from __future__ import annotations

import threading

import tensorflow as tf
from helpers import make_probe, mode_of

import eagerctl


def test_reset_removes_local_overrides_and_process_scopes_and_restores_the_baseline() -> None:
    probe, seen = make_probe()
    tf.config.run_functions_eagerly(False)
    outer = eagerctl.graph_scope(process=True)
    outer.__enter__()
    inner = eagerctl.eager_scope(process=True)
    inner.__enter__()
    local = eagerctl.eager_scope()
    local.__enter__()
    nested = eagerctl.graph_scope()
    nested.__enter__()
    assert tf.config.functions_run_eagerly() is True
    assert mode_of(probe, seen) == "graph"
    assert len(eagerctl.status().scopes) == 4

    eagerctl.reset()

    assert eagerctl.status().scopes == ()
    assert eagerctl.status().override is None
    assert tf.config.functions_run_eagerly() is False
    assert eagerctl.is_eager() is False
    assert mode_of(probe, seen) == "graph"
    # The scopes it removed exit quietly, in any order, and can be used again.
    for scope in (outer, local, inner, nested):
        scope.__exit__(None, None, None)
    assert tf.config.functions_run_eagerly() is False
    with local:
        assert mode_of(probe, seen) == "eager"
    eagerctl.uninstall_hook()  # nothing blocks it
    eagerctl.install_hook()


def test_reset_keeps_a_baseline_set_outside_eagerctl() -> None:
    probe, seen = make_probe()
    tf.config.run_functions_eagerly(True)
    try:
        with eagerctl.graph_scope(process=True):
            eagerctl.reset()
            assert tf.config.functions_run_eagerly() is True
            assert mode_of(probe, seen) == "eager"
        assert tf.config.functions_run_eagerly() is True
    finally:
        tf.config.run_functions_eagerly(False)


def test_reset_leaves_other_threads_local_scopes_alone() -> None:
    probe, seen = make_probe()
    entered, resetted, done = threading.Event(), threading.Event(), threading.Event()
    modes: list[str] = []

    def worker() -> None:
        with eagerctl.eager_scope():
            entered.set()
            resetted.wait()
            modes.append(mode_of(probe, seen))
        done.set()

    t = threading.Thread(target=worker)
    t.start()
    entered.wait()
    with eagerctl.eager_scope():
        eagerctl.reset()
        assert mode_of(probe, seen) == "graph"
    resetted.set()
    t.join()
    assert modes == ["eager"]
    assert eagerctl.status().scopes == ()


def test_reset_of_a_decorated_call_in_progress() -> None:
    probe, seen = make_probe()

    @eagerctl.eager_scope()
    def body() -> list[str]:
        before = mode_of(probe, seen)
        eagerctl.reset()
        return [before, mode_of(probe, seen)]

    assert body() == ["eager", "graph"]
    assert body() == ["eager", "graph"]
