"""@debuggable(island=False) called while a graph is traced: warn once, build the body into the graph.

(With the default `island=True` such a call becomes an eager island instead:
tests/islands/test_island_debuggable.py.)
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import pytest
import tensorflow as tf

import eagerctl
from eagerctl import EagerctlWarning
from eagerctl._debuggable import _Settings


def _remedy(label: str, outer: str) -> str:
    return (
        f"@debuggable {label} was called while TensorFlow traces the tf.function {outer!r}: it cannot run "
        "eagerly inside that graph, so its body becomes part of the graph (print, pdb and .numpy() do not "
        f"work there, and the debug aids are off). To debug it eagerly, run {outer!r} eagerly too: decorate "
        "it with @eagerctl.debuggable (above @tf.function), or call it inside `with eagerctl.eager_scope():`"
    )


def test_warns_exactly_once_naming_the_outer_function_and_the_remedy() -> None:
    runs: list[bool] = []

    @eagerctl.debuggable(island=False)
    @tf.function
    def loss(x: Any) -> Any:
        runs.append(tf.executing_eagerly())
        return x * 2

    @tf.function
    def train_step(x: Any) -> Any:
        return loss(x) + 1

    @tf.function
    def evaluate(x: Any) -> Any:
        return loss(x) - 1

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert int(train_step(tf.constant(1))) == 3
        assert train_step(tf.constant([1, 2])).numpy().tolist() == [3, 5]  # a retrace
        assert int(evaluate(tf.constant(1))) == 1  # another outer function
        assert int(train_step(tf.constant(5))) == 11  # the graph, no trace
    mine = [w for w in caught if w.category is EagerctlWarning]
    label = "test_warns_exactly_once_naming_the_outer_function_and_the_remedy.<locals>.loss"
    assert [str(w.message) for w in mine] == [_remedy(label, "train_step")]
    assert mine[0].filename == __file__  # points at the user's code that triggered the trace
    assert runs == [False, False, False]  # traced into each graph, never run eagerly
    assert loss.experimental_get_tracing_count() == 0  # its body was inlined, not traced as its own graph


def test_each_decorated_function_warns_once() -> None:
    @eagerctl.debuggable(island=False)
    def first(x: Any) -> Any:
        return x + 1

    @eagerctl.debuggable(island=False)
    def second(x: Any) -> Any:
        return x + 2

    @tf.function
    def outer(x: Any) -> Any:
        return first(x) + second(x) + first(x)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outer(tf.constant(1))
        outer(tf.constant([1]))
    labels = [re.match(r"@debuggable (\S+)", str(w.message)).group(1)  # type: ignore[union-attr]
              for w in caught if w.category is EagerctlWarning]
    prefix = "test_each_decorated_function_warns_once.<locals>."
    assert labels == [prefix + "first", prefix + "second"]


def test_the_body_is_converted_by_autograph_like_the_undecorated_function() -> None:
    def clip(x: Any) -> Any:
        if tf.reduce_sum(x) > 10:  # a tensor condition: needs AutoGraph inside a graph
            return tf.ones_like(x)
        return x

    debug_clip = eagerctl.debuggable(clip, island=False)

    @tf.function
    def plain(x: Any) -> Any:
        return clip(x)

    @tf.function
    def decorated(x: Any) -> Any:
        return debug_clip(x)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EagerctlWarning)
        for value in ([1.0, 2.0], [8.0, 9.0]):
            x = tf.constant(value)
            assert decorated(x).numpy().tolist() == plain(x).numpy().tolist()
    assert decorated(tf.constant([8.0, 9.0])).numpy().tolist() == [1.0, 1.0]


def test_a_warnings_filter_error_raises_and_leaves_no_state() -> None:
    @eagerctl.debuggable(island=False)
    def inner(x: Any) -> Any:
        return x

    @tf.function
    def outer(x: Any) -> Any:
        return inner(x)

    with warnings.catch_warnings():
        warnings.simplefilter("error", EagerctlWarning)
        # Raised inside a trace: TF re-raises it with its "in user code" frames (2.21: StagingError).
        with pytest.raises(Exception) as info:  # the message is checked in full below
            outer(tf.constant(1))
        assert int(outer(tf.constant(4))) == 4  # the next trace does not warn again: once per function
    label = "test_a_warnings_filter_error_raises_and_leaves_no_state.<locals>.inner"
    assert _remedy(label, "outer") in str(info.value)
    assert eagerctl.status().scopes == ()


def test_tf1_style_graph_mode_names_the_situation() -> None:
    @eagerctl.debuggable
    def inner(x: Any) -> Any:
        return x + 1

    with tf.Graph().as_default(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = inner(tf.constant(1))
    assert not isinstance(out, tf.__internal__.EagerTensor) if hasattr(tf, "__internal__") else True
    assert [str(w.message) for w in caught if w.category is EagerctlWarning] == [
        "@debuggable test_tf1_style_graph_mode_names_the_situation.<locals>.inner was called while "
        "TensorFlow builds a TF1-style graph (tf.Graph().as_default() or tf.compat.v1 graph mode): it cannot "
        "run eagerly there, so its body becomes part of that graph (print, pdb and .numpy() do not work "
        "there, and the debug aids are off); call it outside the graph to debug it"
    ]


def test_the_tracing_path_is_one_replaceable_method(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def replacement(self: _Settings, body: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        calls.append((self.label, args, kwargs))
        return body(*args, **kwargs)

    monkeypatch.setattr(_Settings, "_call_while_tracing", replacement)

    @eagerctl.debuggable(check_numerics=True)
    def inner(x: Any, *, k: int) -> Any:
        return x * k

    @tf.function
    def outer(x: Any) -> Any:
        return inner(x, k=3)

    with warnings.catch_warnings():
        warnings.simplefilter("error", EagerctlWarning)
        assert int(outer(tf.constant(2))) == 6
    ((label, args, kwargs),) = calls
    assert label == "test_the_tracing_path_is_one_replaceable_method.<locals>.inner"
    assert len(args) == 1 and kwargs == {"k": 3}


def test_two_threads_tracing_at_once_warn_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from eagerctl import _debuggable

    barrier = threading.Barrier(2, timeout=30)
    original = _debuggable._is_shape_inference

    def both_past_the_first_check(graph: Any) -> bool:
        barrier.wait()  # both threads have seen "not warned yet" before either goes on
        return original(graph)

    monkeypatch.setattr(_debuggable, "_is_shape_inference", both_past_the_first_check)

    @eagerctl.debuggable(island=False)
    def inner(x: Any) -> Any:
        return x + 1

    def make_outer() -> Any:
        @tf.function
        def outer(x: Any) -> Any:
            return inner(x)

        return outer

    outers = [make_outer(), make_outer()]
    results: list[int] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threads = [threading.Thread(target=lambda f=f: results.append(int(f(tf.constant(1)))))
                   for f in outers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert results == [2, 2]
    assert len([w for w in caught if w.category is EagerctlWarning]) == 1
