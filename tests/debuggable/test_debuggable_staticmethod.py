"""@debuggable on static methods, above or below @staticmethod, plain or tf.function."""

from __future__ import annotations

import inspect
from typing import Any

import tensorflow as tf
from helpers import make_probe, mode_of

import eagerctl

probe, seen = make_probe()
runs: list[bool] = []


class Tools:
    @eagerctl.debuggable
    @staticmethod
    def above(x: int) -> tuple[int, str]:
        return x + 1, mode_of(probe, seen)

    @staticmethod
    @eagerctl.debuggable
    def below(x: int) -> tuple[int, str]:
        return x + 2, mode_of(probe, seen)

    @eagerctl.debuggable
    @staticmethod
    @tf.function
    def compiled(x: Any) -> Any:
        runs.append(tf.executing_eagerly())
        return x * 3


def test_static_method_through_class_and_instance() -> None:
    assert Tools.above(1) == (2, "eager")
    assert Tools().above(1) == (2, "eager")
    assert Tools.below(1) == (3, "eager")
    assert Tools().below(1) == (3, "eager")
    assert mode_of(probe, seen) == "graph"


def test_static_tf_function_runs_eagerly_without_tracing() -> None:
    assert int(Tools.compiled(tf.constant(2))) == 6
    assert int(Tools().compiled(tf.constant(3))) == 9
    assert runs == [True, True]
    assert Tools.compiled.experimental_get_tracing_count() == 0


def test_signature_of_static_methods() -> None:
    assert str(inspect.signature(Tools.above)) == "(x: 'int') -> 'tuple[int, str]'"
    assert str(inspect.signature(Tools().below)) == "(x: 'int') -> 'tuple[int, str]'"
    assert str(inspect.signature(Tools.compiled)) == "(x: 'Any') -> 'Any'"
