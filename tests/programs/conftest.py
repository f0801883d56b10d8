"""Fixtures for the programs in tests/programs/ (see program_checks.py for what they check)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def same_random_numbers() -> Iterator[None]:
    """Keras random layers (Dropout, ...) that draw the same numbers eagerly and compiled.

    Keras 3 layers draw from seed generators (a variable), the same in both
    modes. Keras 2 layers default to TF's stateful legacy random ops, whose
    numbers differ between an eager run and a graph run of the same program
    with or without eagerctl; its `enable_tf_random_generator()` makes them
    draw from a `tf.random.Generator`, the same in both modes. Restored after
    the module's tests (the setting is global); module scope, so that a
    module's fixtures can build their programs under it.
    """
    import tensorflow as tf
    from program_checks import KERAS_3

    if KERAS_3:
        yield
        return
    experimental = tf.keras.backend.experimental
    was_on = experimental.is_tf_random_generator_enabled()
    experimental.enable_tf_random_generator()
    try:
        yield
    finally:
        if not was_on:
            experimental.disable_tf_random_generator()
