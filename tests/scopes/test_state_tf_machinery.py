"""TensorFlow's own code that needs its internal `tf.function`s compiled works under every scope.

pfor (`tf.vectorized_map`, `GradientTape.jacobian` and `batch_jacobian`) wraps
its loop in a `tf.function` and turns TF's flag off around it to force the
trace. A local override sits above the flag, and under eagerctl's process
scopes the hook routes TF's writes to the registry, so eagerctl runs those
calls with a compiled frame of its own (`eagerctl._compiled`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

import eagerctl
from eagerctl import _compiled

X = tf.constant(np.random.default_rng(0).normal(size=(4, 3)).astype("float32"))


def squared_norm(v: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(v * v)


def vectorized() -> np.ndarray:
    return tf.vectorized_map(squared_norm, X).numpy()  # type: ignore[no-any-return]


def jacobian() -> np.ndarray:
    w = tf.Variable(tf.ones((3, 2)))
    with tf.GradientTape() as tape:
        y = tf.tanh(X @ w)
    return tape.jacobian(y, w).numpy()  # type: ignore[no-any-return]


def batch_jacobian() -> np.ndarray:
    with tf.GradientTape() as tape:
        tape.watch(X)
        y = tf.sin(X) * tf.reduce_sum(X, axis=1, keepdims=True)
    return tape.batch_jacobian(y, X).numpy()  # type: ignore[no-any-return]


def jacobian_of_a_tf_function() -> np.ndarray:
    @tf.function
    def model(x: tf.Tensor) -> tf.Tensor:
        return tf.nn.softplus(x) ** 2

    with tf.GradientTape() as tape:
        tape.watch(X)
        y = model(X)
    return tape.jacobian(y, X).numpy()  # type: ignore[no-any-return]


COMPUTATIONS: dict[str, Callable[[], np.ndarray]] = {
    "vectorized_map": vectorized,
    "jacobian": jacobian,
    "batch_jacobian": batch_jacobian,
    "jacobian_of_a_tf_function": jacobian_of_a_tf_function,
}
SCOPES: dict[str, Callable[[], Any]] = {
    "eager_scope": eagerctl.eager_scope,
    "eager_scope_in_graph_scope": lambda: _nested(eagerctl.graph_scope(), eagerctl.eager_scope()),
    "process_eager_scope": lambda: eagerctl.eager_scope(process=True),
}


class _nested:
    def __init__(self, *scopes: Any) -> None:
        self.scopes = scopes

    def __enter__(self) -> None:
        for s in self.scopes:
            s.__enter__()

    def __exit__(self, *exc: object) -> None:
        for s in reversed(self.scopes):
            s.__exit__(None, None, None)


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    """Each computation's result with no eagerctl scope (what TF computes)."""
    return {name: fn() for name, fn in COMPUTATIONS.items()}


@pytest.mark.parametrize("scope", list(SCOPES))
@pytest.mark.parametrize("name", list(COMPUTATIONS))
def test_pfor_works_and_computes_the_same_under_eager_scopes(
        name: str, scope: str, expected: dict[str, np.ndarray]) -> None:
    with SCOPES[scope]():
        assert eagerctl.is_eager()
        got = COMPUTATIONS[name]()
        assert eagerctl.is_eager()  # the compiled frame is gone again
    np.testing.assert_allclose(got, expected[name], rtol=1e-6)
    assert eagerctl.status().scopes == ()


def test_pfor_inside_a_debuggable_body(expected: dict[str, np.ndarray]) -> None:
    @eagerctl.debuggable
    def body() -> np.ndarray:
        assert tf.executing_eagerly() and eagerctl.is_eager()
        return jacobian()

    np.testing.assert_allclose(body(), expected["jacobian"], rtol=1e-6)


def test_pfor_under_the_global_flag_keeps_the_baseline(expected: dict[str, np.ndarray]) -> None:
    # TF saves the flag, writes False and restores it; with a process scope active
    # those writes would reach the registry as the baseline. They must not.
    tf.config.run_functions_eagerly(False)
    with eagerctl.eager_scope(process=True):
        np.testing.assert_allclose(vectorized(), expected["vectorized_map"], rtol=1e-6)
        assert tf.config.functions_run_eagerly() is True
        assert eagerctl.status().baseline is False
    assert tf.config.functions_run_eagerly() is False


def test_pfor_under_tfs_own_flag_and_no_scope_is_tfs_own(expected: dict[str, np.ndarray]) -> None:
    # Inert unless asked: the hook installed, no eagerctl scope in force. TF turns
    # its flag off around its loop, and the body sees it off, as in plain TF.
    eagerctl.install_hook()
    seen: list[bool] = []

    def loop_fn(v: tf.Tensor) -> tf.Tensor:
        seen.append(tf.config.functions_run_eagerly())
        return squared_norm(v)

    tf.config.run_functions_eagerly(True)
    try:
        got = tf.vectorized_map(loop_fn, X).numpy()
        assert tf.config.functions_run_eagerly() is True  # TF put it back
    finally:
        tf.config.run_functions_eagerly(False)
    np.testing.assert_allclose(got, expected["vectorized_map"], rtol=1e-6)
    assert seen == [False]


def test_the_loop_function_still_sees_a_trace(expected: dict[str, np.ndarray]) -> None:
    seen: list[bool] = []

    def loop_fn(v: tf.Tensor) -> tf.Tensor:
        seen.append(tf.executing_eagerly())
        return squared_norm(v)

    with eagerctl.eager_scope():
        got = tf.vectorized_map(loop_fn, X).numpy()
    np.testing.assert_allclose(got, expected["vectorized_map"], rtol=1e-6)
    assert seen and not any(seen)  # traced, as pfor requires


@pytest.fixture
def without_the_compiled_patch() -> Iterator[None]:
    eagerctl.install_hook()  # so that putting the patch back leaves it as the hook has it
    _compiled.uninstall()
    try:
        yield
    finally:
        _compiled.install()


def test_without_eagerctls_compiled_frame_pfor_fails_under_a_local_scope(
        without_the_compiled_patch: None) -> None:
    # What the patch fixes: pfor reads the process flag (False), so it does not
    # force its trace, and the local override runs its loop eagerly.
    assert not _compiled.installed()
    with eagerctl.eager_scope(), pytest.raises(AssertionError):
        vectorized()


def test_the_patches_install_and_uninstall_with_the_hook() -> None:
    from tensorflow.python.ops.parallel_for import control_flow_ops

    eagerctl.install_hook()  # installed at first use: maybe not yet, run alone
    patched = control_flow_ops.pfor
    assert _compiled.installed() and patched.__wrapped__ is not patched  # type: ignore[attr-defined]
    eagerctl.uninstall_hook()
    try:
        assert not _compiled.installed()
        assert control_flow_ops.pfor is patched.__wrapped__  # type: ignore[attr-defined]
    finally:
        eagerctl.install_hook()
    assert _compiled.installed()


def test_an_eager_tf_cond_keeps_its_branches_in_the_scopes_mode() -> None:
    # eagerctl forces compiled only TF's parallel-device branch of an eager tf.cond
    # (a predicate with no constant value); a plain one calls one branch as TF does.
    seen: list[bool] = []

    @tf.function
    def branch() -> tf.Tensor:
        seen.append(tf.executing_eagerly())
        return tf.constant(1.0)

    with eagerctl.eager_scope():
        assert float(tf.cond(tf.constant(True), branch, branch)) == 1.0
    assert seen == [True]
    assert float(tf.cond(tf.constant(True), branch, branch)) == 1.0
    assert seen == [True, False]  # compiled outside the scope: traced once
