"""Shared test setup: every test starts and ends with eagerctl idle, in the same folder and environment.

TensorFlow is real throughout; its C++ log noise is turned down before import.
The suite runs on every core (pytest-xdist, pyproject's addopts), tests handed
to workers in no fixed order: no test may depend on another one having run, or
not, in the same process. So a test that leaves the working directory or an
environment variable changed gets them back, with a warning naming them.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings
from collections.abc import Iterator

import pytest

# pytest sets this one itself, per phase of each test.
_PYTEST_OWN = frozenset({"PYTEST_CURRENT_TEST"})


@pytest.fixture(autouse=True)
def _same_folder_and_environment(request: pytest.FixtureRequest) -> Iterator[None]:
    """Put back the working directory and os.environ a test changed without monkeypatch, and say so."""
    cwd, environ = os.getcwd(), dict(os.environ)
    yield
    changed = sorted(k for k in environ.keys() | os.environ.keys()
                     if k not in _PYTEST_OWN and environ.get(k) != os.environ.get(k))
    for key in changed:
        if key in environ:
            os.environ[key] = environ[key]
        else:
            del os.environ[key]
    moved = os.getcwd() != cwd
    if moved:
        os.chdir(cwd)
    if changed or moved:
        left = [*(["the working directory"] if moved else []), *(f"${k}" for k in changed)]
        warnings.warn(f"{request.node.nodeid} left {', '.join(left)} changed (put back; use monkeypatch)",
                      stacklevel=1)


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
