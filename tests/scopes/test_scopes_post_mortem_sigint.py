"""`@debuggable(post_mortem=True)` gives Ctrl-C back: the SIGINT handler pdb replaced is restored.

pdb's `c` (continue) installs pdb's own SIGINT handler, so that Ctrl-C stops
in the debugger instead of raising KeyboardInterrupt, and puts the program's
handler back only at its next prompt. A post-mortem never has a next prompt:
without eagerctl restoring it, the training loop that runs on after a
debugging session cannot be stopped with Ctrl-C any more (it drops into pdb).
"""

from __future__ import annotations

import io
import signal
import sys
from typing import Any

import pytest
import tensorflow as tf
from helpers import ctrl_c_raises

import eagerctl


class ScriptedTerminal(io.StringIO):
    """A terminal someone types the given lines into."""

    def isatty(self) -> bool:
        return True


def make_train_step() -> Any:
    keras = tf.keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = keras.optimizers.SGD(0.1)

    @eagerctl.debuggable(post_mortem=True)
    @tf.function
    def train_step(x: Any, y: Any) -> Any:
        if int(tf.reduce_max(y)) >= 3:
            raise ValueError(f"labels must be in [0, 3), got {y.numpy().tolist()}")
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_weights)
        optimizer.apply_gradients(zip(grads, model.trainable_weights, strict=True))
        return loss

    return train_step


def debug_session(monkeypatch: pytest.MonkeyPatch, commands: str) -> None:
    """A bad batch: pdb opens in the body, the user types `commands`, the error propagates."""
    train_step = make_train_step()
    monkeypatch.setattr(sys, "stdin", ScriptedTerminal(commands))
    with pytest.raises(ValueError, match=r"^labels must be in \[0, 3\), got \[0, 7\]$"):
        train_step(tf.ones((2, 4)), tf.constant([0, 7]))


@pytest.mark.parametrize("commands", ["p y.numpy()\nc\n", "c\n", "q\n"])
def test_after_the_post_mortem_ctrl_c_raises_keyboard_interrupt_again(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], commands: str) -> None:
    with ctrl_c_raises():
        debug_session(monkeypatch, commands)
        assert "(Pdb)" in capsys.readouterr().out
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        # The training loop goes on after the debugging session; the user presses Ctrl-C.
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)


def test_the_programs_own_handler_is_restored_exactly(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    stops: list[int] = []

    def save_checkpoint_and_stop(signum: int, frame: object) -> None:  # a training script's own handler
        stops.append(signum)

    previous = signal.signal(signal.SIGINT, save_checkpoint_and_stop)
    try:
        debug_session(monkeypatch, "c\n")
        assert signal.getsignal(signal.SIGINT) is save_checkpoint_and_stop
        signal.raise_signal(signal.SIGINT)
        assert stops == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)
    capsys.readouterr()
