"""Copies of a `@debuggable` proxy (`copy.copy`, `copy.deepcopy`, `pickle`): proxies with the same options."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
import tensorflow as tf

import eagerctl

RUNS: list[bool] = []


@eagerctl.debuggable(check_numerics=True, recursive=False)
@tf.function
def scale(x: Any) -> Any:
    """A module-level tf.function, decorated: pickled by reference, as the undecorated one would be."""
    RUNS.append(tf.executing_eagerly())
    return x * 2.0


def plain_loss(y: Any, y_pred: Any) -> Any:
    RUNS.append(tf.executing_eagerly())
    return tf.reduce_mean(tf.square(y - y_pred))


OPTIONS = {"recursive": False, "post_mortem": False, "check_numerics": True, "log_calls": False,
           "island": True}


def options(proxy: Any) -> dict[str, bool]:
    return proxy._self_debuggable.option_values()  # type: ignore[no-any-return]


@pytest.mark.parametrize("how", ["copy", "deepcopy", "pickle"])
def test_a_copy_is_a_proxy_with_the_same_options_that_runs_eagerly(how: str) -> None:
    duplicate = {"copy": copy.copy, "deepcopy": copy.deepcopy,
                 "pickle": lambda p: pickle.loads(pickle.dumps(p))}[how](scale)
    assert options(duplicate) == OPTIONS
    RUNS.clear()
    assert float(duplicate(tf.constant(1.5))) == 3.0
    assert RUNS == [True]  # the body ran eagerly: a proxy, not the bare tf.function
    assert duplicate.__wrapped__.experimental_get_tracing_count() == 0
    with pytest.raises(FloatingPointError, match=r"outputs holds non-finite values"):
        duplicate(tf.constant(float("nan")))  # check_numerics came along


def test_copies_copy_the_wrapped_object_as_it_copies_itself() -> None:
    assert pickle.loads(pickle.dumps(scale)) is scale  # by reference, as for functions
    shallow, deep = copy.copy(scale), copy.deepcopy(scale)
    assert shallow is not scale and deep is not scale
    # What copy does to the tf.function itself.
    assert type(shallow.__wrapped__) is type(copy.copy(scale.__wrapped__))
    assert shallow.__wrapped__ is not scale.__wrapped__ and deep.__wrapped__ is not scale.__wrapped__
    assert shallow.python_function is scale.python_function


def test_a_proxy_of_a_function_not_reachable_by_name_pickles_the_function_by_value() -> None:
    proxy = eagerctl.debuggable(plain_loss, post_mortem=True)  # `plain_loss` in the module stays undecorated
    again = pickle.loads(pickle.dumps(proxy))
    assert again is not proxy and again.__wrapped__ is plain_loss
    assert options(again) == {**OPTIONS, "recursive": True, "post_mortem": True, "check_numerics": False}
    RUNS.clear()
    assert float(again(tf.constant([1.0, 3.0]), tf.constant([0.0, 0.0]))) == 5.0
    assert RUNS == [True]


def test_pickling_fails_where_the_wrapped_object_does_not_pickle() -> None:
    def local(x: Any) -> Any:
        return x

    proxy = eagerctl.debuggable(local)
    with pytest.raises((pickle.PicklingError, AttributeError), match="local"):
        pickle.dumps(proxy)
    with pytest.raises((pickle.PicklingError, AttributeError), match="local"):
        pickle.dumps(local)  # the same error as without the decorator


def test_a_copy_of_a_keras_model_method_proxy_keeps_binding() -> None:
    class Scaler(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.factor = tf.Variable(3.0)

        @eagerctl.debuggable(log_calls=True)
        @tf.function
        def apply(self, x: Any) -> Any:
            RUNS.append(tf.executing_eagerly())
            return x * self.factor

    method = Scaler.__dict__["apply"]
    duplicate = copy.copy(method)
    assert options(duplicate) == {**OPTIONS, "recursive": True, "check_numerics": False, "log_calls": True}
    Scaler.apply_copy = duplicate  # type: ignore[attr-defined]
    RUNS.clear()
    assert float(Scaler().apply_copy(tf.constant(2.0))) == 6.0  # type: ignore[attr-defined]
    assert RUNS == [True]


class Trainer(tf.Module):
    """Module level, so that pickle finds the class."""

    def __init__(self, factor: float = 3.0) -> None:
        super().__init__()
        self.factor = tf.Variable(factor)

    @eagerctl.debuggable(check_numerics=True)
    @tf.function
    def step(self, x: Any) -> Any:
        RUNS.append(tf.executing_eagerly())
        return x * self.factor

    @eagerctl.debuggable(log_calls=True)
    @classmethod
    def describe(cls) -> str:
        return cls.__name__


@pytest.mark.parametrize("how", ["copy", "deepcopy", "pickle"])
def test_a_bound_method_proxy_copies_as_a_bound_method(how: str) -> None:
    trainer = Trainer(2.0)
    duplicate = {"copy": copy.copy, "deepcopy": copy.deepcopy,
                 "pickle": lambda p: pickle.loads(pickle.dumps(p))}[how](trainer.step)
    assert options(duplicate) == {**OPTIONS, "recursive": True}
    RUNS.clear()
    trainer.factor.assign(5.0)  # a shallow copy is bound to this trainer; deep copies have their own
    assert float(duplicate(tf.constant(1.0))) == (5.0 if how == "copy" else 2.0)
    assert RUNS == [True]
    described = {"copy": copy.copy, "deepcopy": copy.deepcopy,
                 "pickle": lambda p: pickle.loads(pickle.dumps(p))}[how](Trainer.describe)
    assert described() == "Trainer"


def test_class_and_static_method_proxies_copy_though_python_cannot_copy_those() -> None:
    class Counter:
        @eagerctl.debuggable(recursive=False)
        @classmethod
        def name(cls) -> str:
            return cls.__name__

        @eagerctl.debuggable(recursive=False)
        @staticmethod
        def double(x: Any) -> Any:
            RUNS.append(tf.executing_eagerly())
            return x * 2

    with pytest.raises(TypeError, match="cannot pickle 'classmethod' object"):
        copy.copy(classmethod(len))  # what Python does with the undecorated one
    for how in (copy.copy, copy.deepcopy):
        Counter.name_copy = how(Counter.__dict__["name"])  # type: ignore[attr-defined]
        Counter.double_copy = how(Counter.__dict__["double"])  # type: ignore[attr-defined]
        assert Counter.name_copy() == "Counter"  # type: ignore[attr-defined]
        RUNS.clear()
        assert int(Counter.double_copy(tf.constant(4))) == 8  # type: ignore[attr-defined]
        assert RUNS == [True]
        assert options(Counter.__dict__["double_copy"]) == {**OPTIONS, "check_numerics": False}
