"""replay()'s own checks are never monitored; a user's tf.function is, whatever address it gets."""

from __future__ import annotations

import gc
from typing import Any

import tensorflow as tf

import eagerctl
from eagerctl._replay import call as _call


def _step() -> Any:
    v = tf.Variable(1.0)

    @tf.function
    def step(x: Any) -> Any:
        v.assign_add(x)
        return v * 2.0, v * 3.0, v * 4.0  # three outputs: checked by a compiled check of replay's own

    return step


def test_a_dead_check_leaves_no_id_that_a_users_function_could_get() -> None:
    """replay() skips its own checks by id; a check's id goes when the check goes.

    Kept after the check's death, the id could be taken by a tf.function the
    user creates later (CPython reuses addresses), whose failures replay()
    would then let through unmonitored.
    """
    gc.collect()
    before = set(_call.OWN)
    step = _step()
    with eagerctl.replay(check_variables=True):
        step(tf.constant(1.0))
    added = set(_call.OWN) - before
    assert len(added) == 1  # the step's check
    del step
    gc.collect()
    assert not added & _call.OWN
