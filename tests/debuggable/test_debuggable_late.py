"""`@debuggable` applied after the tf.function calling it was traced: a warning with the remedy."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import tensorflow as tf

import eagerctl
from eagerctl import EagerctlWarning

REMEDY = ("or make the callers retrace (a Keras model: compile it again; a tf.function: "
          "tf.function(caller.python_function))")


def test_decorating_a_traced_tf_function_warns_with_the_remedy() -> None:
    seen: list[bool] = []

    @tf.function
    def loss_fn(y: Any, y_pred: Any) -> Any:
        seen.append(tf.executing_eagerly())
        return tf.reduce_mean(tf.square(y - y_pred))

    @tf.function
    def train_step(y: Any) -> Any:
        return loss_fn(y, y * 0.5)

    y = tf.constant([2.0, 4.0])
    train_step(y)
    with pytest.warns(EagerctlWarning) as record:
        debug_loss = eagerctl.debuggable(loss_fn)
    assert str(record[0].message) == (
        "@debuggable test_decorating_a_traced_tf_function_warns_with_the_remedy.<locals>.loss_fn was applied "
        "after the tf.function was traced (1 trace): calls through the decorated object run its body "
        "eagerly, but graphs traced before (of tf.functions that call it) keep its compiled body until they "
        "retrace; apply @eagerctl.debuggable where "
        "test_decorating_a_traced_tf_function_warns_with_the_remedy.<locals>.loss_fn is defined (above "
        f"@tf.function), before the first call, {REMEDY}")
    assert record[0].filename == __file__
    # What the warning is about: the caller's graph still runs the compiled body...
    seen.clear()
    train_step(y)
    assert seen == []
    # ...while a direct call runs eagerly.
    assert float(debug_loss(y, y * 0.5)) == 2.5 and seen == [True]


def penalty(w: Any) -> Any:
    return tf.reduce_sum(tf.abs(w))


def test_decorating_a_function_a_traced_graph_converted_warns() -> None:
    @tf.function
    def regularized(w: Any) -> Any:
        return penalty(w) * 0.1

    regularized(tf.constant([1.0, -2.0]))
    with pytest.warns(EagerctlWarning, match=r"^@debuggable penalty was applied after a traced tf.function "
                                             r"called it: that graph keeps its compiled body until it "
                                             r"retraces; apply @eagerctl.debuggable where"):
        eagerctl.debuggable(penalty)


def test_decorating_a_traced_tf_function_method_warns() -> None:
    class Scorer(tf.Module):
        @tf.function
        def score(self, x: Any) -> Any:
            return x + 1

    scorer = Scorer()
    scorer.score(tf.constant(1))  # traced in the copy TF binds to the instance
    with pytest.warns(EagerctlWarning, match=r"was applied after the tf.function was traced \(1 trace\)"):
        eagerctl.debuggable(Scorer.__dict__["score"])
    assert int(scorer.score(tf.constant(1))) == 2


def test_decorating_at_definition_or_untraced_functions_never_warns() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")

        @eagerctl.debuggable
        @tf.function
        def step(x: Any) -> Any:
            return x

        step(tf.constant(1))

        def untouched(x: Any) -> Any:
            return x

        eagerctl.debuggable(untouched)
        eagerctl.debuggable(tf.function(untouched))
