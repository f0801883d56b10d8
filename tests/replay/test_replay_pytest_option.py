"""pytest --tf-replay: a test whose compiled step goes NaN fails with the line, op and step."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

INNER = '''
import tensorflow as tf


def features(x):
    return tf.math.log(x)  # NaN HERE


@tf.function
def step(x):
    return tf.reduce_sum(features(x))


def test_steps():
    for value in [1.0, 2.0, -1.0]:
        step(tf.constant([value, 1.0]))
'''


def test_tf_replay_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner_replay=INNER)
    plain = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist", "-q", timeout=600)
    plain.assert_outcomes(passed=1)  # without the option: TF returns the NaN, the test passes
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist", "-q", "--tf-replay",
                                           timeout=600)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*eagerctl.ReplayError: tf.function 'step' at step 3 *",
        "*test_inner_replay.py:5 in features: op Log produced NaN in 1 of 2 values (float32 (2,))",
        "*return tf.math.log(x)  # NaN HERE",
    ])
