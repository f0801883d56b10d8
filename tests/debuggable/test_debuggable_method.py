"""@debuggable on instance methods: plain methods and tf.function methods, bound by wrapt."""

from __future__ import annotations

import inspect
from typing import Any

import tensorflow as tf
from helpers import make_probe, mode_of

import eagerctl

probe, seen = make_probe()


class Counter(tf.Module):
    def __init__(self, start: float) -> None:
        super().__init__()
        self.total = tf.Variable(start)
        self.runs: list[bool] = []

    @eagerctl.debuggable
    @tf.function
    def add(self, x: Any) -> Any:
        """Add x to the total."""
        self.runs.append(tf.executing_eagerly())
        self.total.assign_add(x)
        return self.total.read_value()

    @eagerctl.debuggable
    def nested_mode(self) -> str:
        return mode_of(probe, seen)


def test_tf_function_method_runs_eagerly_per_instance_without_tracing() -> None:
    a, b = Counter(1.0), Counter(10.0)
    assert float(a.add(tf.constant(2.0))) == 3.0
    assert float(b.add(tf.constant(2.0))) == 12.0
    assert float(a.add(tf.constant(2.0))) == 5.0
    assert (a.runs, b.runs) == ([True, True], [True])
    assert a.add.experimental_get_tracing_count() == 0
    assert Counter.add.experimental_get_tracing_count() == 0


def test_tf_function_method_called_through_the_class() -> None:
    a = Counter(1.0)
    assert float(Counter.add(a, tf.constant(4.0))) == 5.0
    assert a.runs == [True]
    assert a.add.experimental_get_tracing_count() == 0


def test_bound_proxy_exposes_the_bound_tf_function_api() -> None:
    a = Counter(0.0)
    assert str(inspect.signature(a.add)) == "(x: 'Any') -> 'Any'"
    assert str(inspect.signature(Counter.add)) == "(self, x: 'Any') -> 'Any'"
    assert a.add.__name__ == "add" and a.add.__doc__ == "Add x to the total."
    assert isinstance(a.add, tf.types.experimental.GenericFunction)
    # The instance's own tf.function: get_concrete_function takes no `self`.
    concrete = a.add.get_concrete_function(tf.TensorSpec([], tf.float32))
    assert float(concrete(tf.constant(1.0))) == 1.0
    assert a.add.experimental_get_tracing_count() == 1
    assert a.runs == [False]  # that trace, and no other run
    a.add(tf.constant(1.0))
    assert a.runs == [False, True]
    assert a.add.experimental_get_tracing_count() == 1


def test_plain_method_makes_nested_tf_functions_eager() -> None:
    a = Counter(0.0)
    assert a.nested_mode() == "eager"
    assert Counter.nested_mode(a) == "eager"
    assert mode_of(probe, seen) == "graph"
    assert str(inspect.signature(a.nested_mode)) == "() -> 'str'"


def test_undecorated_instances_of_other_classes_are_unaffected() -> None:
    class Plain(tf.Module):
        @tf.function
        def add(self, x: Any) -> Any:
            return x + 1

    p = Plain()
    Counter(0.0).add(tf.constant(1.0))
    p.add(tf.constant(1.0))
    assert p.add.experimental_get_tracing_count() == 1


def test_a_module_with_a_decorated_method_saves_and_loads(tmp_path: Any) -> None:
    class Scaler(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.factor = tf.Variable(2.0)

        @eagerctl.debuggable
        @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
        def scale(self, x: Any) -> Any:
            return self.factor * x

    module = Scaler()
    assert float(module.scale(tf.constant(3.0))) == 6.0  # eager, not traced
    tf.saved_model.save(module, str(tmp_path))  # traces the signature for the SavedModel
    restored = tf.saved_model.load(str(tmp_path))
    assert float(restored.scale(tf.constant(4.0))) == 8.0
