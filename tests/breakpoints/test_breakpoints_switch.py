"""The machinery behind breakpoint islands, in process, with real bdb breakpoints and real TF.

No debugger traces this process, so nothing stops: what is checked is what the
graphs do. A function holding a bdb breakpoint runs eagerly on every call of
the compiled function that calls it, with the same results; the switch and the
removal of the breakpoint retrace it back to the plain graph; `status()` lists
it; an XLA-compiled function cannot hold an island and says so.
"""

from __future__ import annotations

import os
import pdb
import subprocess
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

import eagerctl
from eagerctl import EagerctlWarning

seen: list[bool] = []


def scale(x: Any) -> Any:
    seen.append(tf.executing_eagerly())
    return x * 2.0 + 1.0


SCALE_LINE = scale.__code__.co_firstlineno + 2  # the return line


@pytest.fixture
def debugger() -> Iterator[pdb.Pdb]:
    """A pdb session's breakpoint table (no trace function: nothing stops), cleared after."""
    session = pdb.Pdb()
    assert eagerctl.breakpoints(True)
    eagerctl.install_hook()
    seen.clear()
    try:
        yield session
    finally:
        session.clear_all_breaks()
        eagerctl.breakpoints(True)


def _step() -> Any:
    @tf.function
    def step(x: Any) -> Any:
        return tf.reduce_sum(scale(x)) * 3.0

    return step


def test_helper_holding_a_breakpoint_runs_eagerly_on_every_call(debugger: pdb.Pdb) -> None:
    step = _step()
    x = tf.constant([1.0, 2.0])
    plain = float(step(x))
    assert seen == [False]  # traced once, compiled
    assert debugger.set_break(__file__, SCALE_LINE) is None
    seen.clear()
    results = [float(step(x)) for _ in range(3)]
    # Traced again with scale as an island (the trace that learns its outputs runs it once,
    # symbolically), then its body runs eagerly on every call.
    assert seen == [False, True, True, True]
    assert results == [plain] * 3
    assert [name.split(" ")[0] for name in eagerctl.status().breakpoint_islands] == ["scale"]
    assert "breakpoint islands 1" in str(eagerctl.status())

    debugger.clear_break(__file__, SCALE_LINE)
    seen.clear()
    assert [float(step(x)) for _ in range(2)] == [plain] * 2
    assert seen == [False]  # traced once more, plain: compiled again
    assert eagerctl.status().breakpoint_islands == ()


def test_switch_off_and_on_retraces(debugger: pdb.Pdb) -> None:
    step = _step()
    x = tf.constant([3.0])
    debugger.set_break(__file__, SCALE_LINE)
    expected = float(step(x))
    assert seen == [False, True]
    seen.clear()
    assert eagerctl.breakpoints(False) is False
    assert float(step(x)) == expected and seen == [False]  # retraced without the island
    float(step(x))
    assert seen == [False]
    seen.clear()
    assert eagerctl.breakpoints(True) is True
    assert float(step(x)) == expected and seen == [False, True]


def test_switch_rejects_what_is_not_a_bool() -> None:
    before = eagerctl.breakpoints()
    message = r"eagerctl.breakpoints\(enabled='no'\): enabled must be True or False"
    with pytest.raises(TypeError, match=message):
        eagerctl.breakpoints("no")  # type: ignore[arg-type]
    assert eagerctl.breakpoints() is before


def test_xla_function_cannot_hold_an_island_and_says_so(debugger: pdb.Pdb) -> None:
    @tf.function(jit_compile=True)
    def fused(x: Any) -> Any:
        return scale(x) - 1.0

    debugger.set_break(__file__, SCALE_LINE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fused(tf.constant([1.0, 2.0]))
    assert out.numpy().tolist() == [2.0, 4.0]
    messages = [str(w.message) for w in caught if issubclass(w.category, EagerctlWarning)]
    assert len(messages) == 1 and "cannot stop inside this graph" in messages[0] and "XLA" in messages[0]


def test_environment_variable_turns_it_off() -> None:
    code = "import eagerctl; print(eagerctl.breakpoints())"
    env = {**os.environ, "EAGERCTL_BREAKPOINTS": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert "tensorflow" not in subprocess.run(
        [sys.executable, "-c", "import sys, eagerctl; print(sorted(sys.modules))"],
        capture_output=True, text=True, check=True).stdout


def _fit_with_custom_step(debugger: pdb.Pdb, line: int | None) -> tuple[list[bool], list[Any]]:
    keras = tf.keras  # Keras 3, or Keras 2 on TF 2.13

    steps: list[bool] = []

    class Regressor(keras.Model):
        def train_step(self, data: Any) -> Any:
            steps.append(tf.executing_eagerly())
            x, y = data
            with tf.GradientTape() as tape:
                loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True))
            grads = tape.gradient(loss, self.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
            return {"loss": loss}

    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    model = Regressor(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.linspace(-1.0, 1.0, 24, dtype="float32").reshape(8, 3)
    if line is not None:
        debugger.set_break(__file__, Regressor.train_step.__code__.co_firstlineno + line)
    model.fit(x, x.sum(axis=1, keepdims=True), batch_size=4, epochs=2, verbose=0)
    return steps, [w.tolist() for w in model.get_weights()]


def test_overridden_train_step_under_fit(debugger: pdb.Pdb) -> None:
    plain_steps, plain_weights = _fit_with_custom_step(debugger, None)
    steps, weights = _fit_with_custom_step(debugger, 6)  # the `return` line of train_step
    assert plain_steps and not any(plain_steps)  # traced (Keras 2 traces twice), then compiled
    # Traced (its body run once symbolically to learn its outputs), then eagerly on each of the 4 steps.
    assert steps.count(True) == 4 and steps[-4:] == [True] * 4 and not any(steps[:-4])
    assert weights == plain_weights
