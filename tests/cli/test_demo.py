"""`eagerctl demo` as issue 12 asks: the article named, speed said the way round that reads,
the Keras scenario's two runs from the same weights, and "now try it on your code" at the end.

The full demo runs once in test_cli_demo_status.py; here the two slow scenarios
are swapped for the cheap one, so the header and the ending cost about a second.
"""

from __future__ import annotations

import io
import re

import pytest
import tensorflow as tf

import eagerctl
from eagerctl import _demo


@pytest.mark.parametrize(("slowdown", "said"), [
    (8.06, "slowdown 8.1x"),
    (1.0, "slowdown 1.0x"),
    (0.1, "eager 10.0x faster"),
    (0.25, "eager 4.0x faster"),
])
def test_speed_is_said_the_way_round_that_reads(slowdown: float, said: str) -> None:
    assert _demo._speed(slowdown) == said


def test_keras_scenario_runs_flag_off_and_on_from_the_same_weights() -> None:
    s = _demo.keras_train_step(tf, 2)
    losses = [float(m.group(1)) for fact in s.facts for m in [re.search(r"loss = (\d+\.\d+),", fact)] if m]
    assert len(losses) == 2
    assert losses[0] == losses[1]  # before the fix the second run continued from the first run's weights
    assert "train_step is not a tf.function, so the flag changes nothing: both runs were eager" in s.facts
    assert s.comparison is not None and s.comparison.match
    assert not tf.config.functions_run_eagerly()


def test_demo_names_the_article_and_ends_with_the_three_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_demo, "keras_train_step", _demo.plain_ops)
    monkeypatch.setattr(_demo, "mlp_train_step", _demo.plain_ops)
    out = io.StringIO()
    assert _demo.run(out=out) == 0
    text = out.getvalue()
    lines = text.splitlines()
    assert lines[1] == ('The article "Can tf.config.run_functions_eagerly(True) be used in Python 3?" '
                        "(January 2025)")
    assert lines[-6:-1] == [
        "The flag only ever changed how tf.function calls run, never the values they compute.",
        "Now try it on your code, keeping the rest of it compiled:",
        "  eagerctl run --debug mypkg.train:train_step train.py    one function eager, no edit",
        "  @eagerctl.debuggable above @tf.function                 that function eager on every call",
        "  with eagerctl.eager_scope(): train_step(x, y)           one block, this thread only",
    ]
    assert re.fullmatch(r"\(demo took \d+\.\d s\)", lines[-1])
    assert "slowdown 0." not in text  # a speed-up is said as "eager Nx faster"
    assert all(len(line) <= 100 for line in lines)
    assert eagerctl.status().scopes == ()
