"""The one rule: local overrides first, then the process flag driven by the registry."""

from __future__ import annotations

import tensorflow as tf
from helpers import make_probe, mode_of

import eagerctl


def test_default_is_compiled_and_is_eager_reports_it() -> None:
    probe, seen = make_probe()
    assert mode_of(probe, seen) == "graph"
    assert mode_of(probe, seen) == "graph"
    assert eagerctl.is_eager() is False
    assert probe.experimental_get_tracing_count() == 1


def test_eager_scope_runs_the_python_body_on_every_call_without_tracing() -> None:
    probe, seen = make_probe()
    with eagerctl.eager_scope() as scope:
        assert scope.active
        assert eagerctl.is_eager() is True
        assert [mode_of(probe, seen) for _ in range(3)] == ["eager"] * 3
        assert tf.config.functions_run_eagerly() is False  # local: the process flag is untouched
    assert not scope.active
    assert probe.experimental_get_tracing_count() == 0
    assert mode_of(probe, seen) == "graph"


def test_graph_scope_wins_over_outer_eager_scope_and_over_the_global_flag() -> None:
    probe, seen = make_probe()
    with eagerctl.eager_scope():
        with eagerctl.graph_scope():
            assert mode_of(probe, seen) == "graph"
            assert eagerctl.is_eager() is False
        assert mode_of(probe, seen) == "eager"
    tf.config.run_functions_eagerly(True)
    try:
        assert mode_of(probe, seen) == "eager"
        with eagerctl.graph_scope():
            assert mode_of(probe, seen) == "graph"
            assert tf.config.functions_run_eagerly() is True
        assert mode_of(probe, seen) == "eager"
    finally:
        tf.config.run_functions_eagerly(False)


def test_eager_scope_false_is_graph_scope() -> None:
    probe, seen = make_probe()
    with eagerctl.eager_scope(True), eagerctl.eager_scope(False):
        assert mode_of(probe, seen) == "graph"
    assert repr(eagerctl.eager_scope(False)) == "eager_scope(False)"
    assert repr(eagerctl.graph_scope()) == "graph_scope()"
    assert repr(eagerctl.graph_scope(process=True)) == "graph_scope(process=True)"
    assert repr(eagerctl.eager_scope(process=True)) == "eager_scope(True, process=True)"


def test_nested_tf_functions_follow_the_scope() -> None:
    inner_seen: list[bool] = []

    @tf.function
    def inner(x: tf.Tensor) -> tf.Tensor:
        inner_seen.append(tf.executing_eagerly())
        return x + 1

    @tf.function
    def outer(x: tf.Tensor) -> tf.Tensor:
        return inner(x) * 2

    with eagerctl.eager_scope():
        assert int(outer(tf.constant(1))) == 4
    assert inner_seen == [True]
    assert int(outer(tf.constant(1))) == 4
    assert inner_seen == [True, False]  # traced once as part of outer's graph


def test_process_scope_drives_the_flag_and_restores_the_baseline() -> None:
    probe, seen = make_probe()
    with eagerctl.eager_scope(process=True):
        assert tf.config.functions_run_eagerly() is True
        assert mode_of(probe, seen) == "eager"
        with eagerctl.graph_scope(process=True):
            assert tf.config.functions_run_eagerly() is False
            assert mode_of(probe, seen) == "graph"
        assert tf.config.functions_run_eagerly() is True
    assert tf.config.functions_run_eagerly() is False


def test_process_scopes_exit_in_any_order_most_recent_active_decides() -> None:
    a = eagerctl.eager_scope(process=True)
    b = eagerctl.graph_scope(process=True)
    c = eagerctl.eager_scope(process=True)
    a.__enter__()
    b.__enter__()
    c.__enter__()
    assert tf.config.functions_run_eagerly() is True  # c
    c.__exit__(None, None, None)
    assert tf.config.functions_run_eagerly() is False  # b
    a.__exit__(None, None, None)
    assert tf.config.functions_run_eagerly() is False  # still b
    b.__exit__(None, None, None)
    assert tf.config.functions_run_eagerly() is False  # baseline


def test_outside_write_while_scopes_active_becomes_the_baseline() -> None:
    a = eagerctl.graph_scope(process=True)
    with a:
        tf.config.run_functions_eagerly(True)  # a user's own call, while a scope is active
        with eagerctl.graph_scope(process=True):
            assert tf.config.functions_run_eagerly() is False
            assert eagerctl.status().baseline is True
    assert tf.config.functions_run_eagerly() is True
    tf.config.run_functions_eagerly(False)


def test_local_scope_on_top_of_process_scope() -> None:
    probe, seen = make_probe()
    with eagerctl.eager_scope(process=True), eagerctl.graph_scope():
        assert tf.config.functions_run_eagerly() is True
        assert eagerctl.is_eager() is False
        assert mode_of(probe, seen) == "graph"


def test_scope_object_can_be_reentered_after_exit() -> None:
    probe, seen = make_probe()
    scope = eagerctl.eager_scope()
    for _ in range(2):
        with scope:
            assert mode_of(probe, seen) == "eager"
        assert mode_of(probe, seen) == "graph"


def test_status_reports_every_active_scope_with_kind_value_thread_and_place() -> None:
    with eagerctl.eager_scope(process=True), eagerctl.graph_scope():
        line = test_status_reports_every_active_scope_with_kind_value_thread_and_place.__code__.co_firstlineno
        line += 1
        st = eagerctl.status()
        assert st.process_flag is True
        assert st.baseline is False
        assert st.override is False
        assert st.is_eager is False
        assert st.hook_installed is True
        assert st.tensorflow == tf.__version__
        infos = {(i.kind, i.enabled, i.scope, i.thread, i.where) for i in st.scopes}
        assert infos == {
            ("process", True, "eager_scope(True, process=True)", "MainThread", f"{__file__}:{line}"),
            ("local", False, "graph_scope()", "MainThread", f"{__file__}:{line}"),
        }
        text = str(st)
        assert "process flag     eager" in text
        assert "local override   graph" in text
        assert "effective here   graph" in text
        assert "local    graph  graph_scope()" in text
        assert f"thread 'MainThread' at {__file__}:{line}" in text
    st = eagerctl.status()
    assert st.scopes == ()
    assert st.override is None
    assert "active scopes    none" in str(st)


def test_ops_outside_tf_function_are_eager_whatever_the_flag() -> None:
    # The source article's example 1: plain ops are eager in TF 2; the flag only concerns tf.function.
    for flag in (False, True):
        tf.config.run_functions_eagerly(flag)
        assert tf.executing_eagerly()
        assert int(tf.constant(2) + tf.constant(3)) == 5
    tf.config.run_functions_eagerly(False)


def test_eager_scope_builds_the_same_object_as_the_scope_constructor() -> None:
    """`eager_scope()` sets a Scope's fields itself (no `__init__` call, for speed): all of them."""
    built, constructed = eagerctl.eager_scope(False, process=True), eagerctl.Scope(False, True, "eager_scope")
    for name in eagerctl.Scope.__slots__:
        assert getattr(built, name) == getattr(constructed, name), name
    assert repr(built) == repr(constructed) == "eager_scope(False, process=True)"
