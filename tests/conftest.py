"""Shared test setup: every test starts and ends with eagerctl idle.

TensorFlow is real throughout; its C++ log noise is turned down before import.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _eagerctl_idle() -> Iterator[None]:
    """Fail a test that leaves a scope active or the flag changed, then clean up."""
    import sys

    if "tensorflow" not in sys.modules:
        yield
        return
    import tensorflow as tf

    from eagerctl import _local, _registry, _scope

    before = tf.config.functions_run_eagerly()
    yield
    leaked = _registry.REGISTRY.active_count(), _scope.active_local_count(), _local.override() is not None
    after = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(before)
    assert leaked == (0, 0, False), f"test left scopes active: {leaked}"
    assert after == before, "test left TensorFlow's process flag changed"
