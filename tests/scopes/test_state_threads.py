"""Races: one scope object shared by threads, outside writes, and `uninstall_hook()` against entries."""

from __future__ import annotations

import random
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import tensorflow as tf
from helpers import make_probe, mode_of

import eagerctl
from eagerctl import EagerctlError, EagerctlWarning


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads as often as CPython allows, so races show in a short test."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def hammer(scope: eagerctl.Scope, rounds: int, inside: list[int], overlaps: list[int],
           errors: list[str]) -> None:
    for _ in range(rounds):
        try:
            with scope:
                inside.append(1)
                if len(inside) > 1:
                    overlaps.append(len(inside))
                inside.pop()
        except EagerctlError as exc:
            if "is already active" not in str(exc):
                errors.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - any other failure is the test's finding
            errors.append(repr(exc))


@pytest.mark.parametrize("process", [True, False])
def test_one_scope_object_shared_by_six_threads_is_active_at_most_once(
        process: bool, fast_switching: None) -> None:
    scope = eagerctl.eager_scope(process=process)
    inside: list[int] = []
    overlaps: list[int] = []
    errors: list[str] = []
    # About 1 in 24,000 entries orphaned an activation before the claim was atomic.
    args = (scope, 10000, inside, overlaps, errors)
    threads = [threading.Thread(target=hammer, args=args) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert overlaps == []
    assert not scope.active
    assert eagerctl.status().scopes == ()
    assert tf.config.functions_run_eagerly() is False
    with scope:  # and it is usable again
        assert eagerctl.is_eager()


# -- outside writes ---------------------------------------------------------------------
def test_an_outside_write_inside_a_process_graph_scope_becomes_the_baseline() -> None:
    probe, seen = make_probe()
    with eagerctl.graph_scope(process=True):
        tf.config.run_functions_eagerly(True)
        assert tf.config.functions_run_eagerly() is False  # the newest process scope decides
        assert mode_of(probe, seen) == "graph"
        assert eagerctl.status().baseline is True
        with eagerctl.eager_scope(process=True):
            tf.config.run_functions_eagerly(False)
            assert mode_of(probe, seen) == "eager"
            tf.config.experimental_run_functions_eagerly(True)  # TF's deprecated spelling too
            assert mode_of(probe, seen) == "eager"
        assert mode_of(probe, seen) == "graph"
    assert tf.config.functions_run_eagerly() is True  # the last write, now in force
    assert mode_of(probe, seen) == "eager"
    tf.config.run_functions_eagerly(False)
    assert mode_of(probe, seen) == "graph"


def test_an_outside_write_with_no_scope_active_takes_effect_at_once() -> None:
    tf.config.run_functions_eagerly(True)
    try:
        assert tf.config.functions_run_eagerly() is True
        assert eagerctl.is_eager() and eagerctl.status().baseline is True
    finally:
        tf.config.run_functions_eagerly(False)
    assert tf.config.functions_run_eagerly() is False


def test_outside_writes_racing_process_scopes_are_never_lost(fast_switching: None) -> None:
    lost = []
    for round_ in range(40):
        value = round_ % 2 == 0
        stop = threading.Event()

        def churn(seed: int, stop: threading.Event = stop) -> None:
            rng = random.Random(seed)
            while not stop.is_set():
                with eagerctl.eager_scope(rng.random() < 0.5, process=True):
                    pass

        threads = [threading.Thread(target=churn, args=(round_ * 10 + i,)) for i in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.002)
        tf.config.run_functions_eagerly(value)
        time.sleep(0.002)
        stop.set()
        for t in threads:
            t.join()
        if tf.config.functions_run_eagerly() is not value:
            lost.append(round_)
    tf.config.run_functions_eagerly(False)
    assert lost == []


def test_a_direct_assignment_to_tfs_global_is_noticed_at_the_next_operation() -> None:
    from tensorflow.python.eager.polymorphic_function import eager_function_run

    with eagerctl.graph_scope(process=True):
        eager_function_run.RUN_FUNCTIONS_EAGERLY = True  # bypasses TF's function
        assert eagerctl.status().baseline is True  # noticed, and the newest scope decides again
        assert tf.config.functions_run_eagerly() is False
    assert tf.config.functions_run_eagerly() is True
    tf.config.run_functions_eagerly(False)


def test_uninstalling_the_hook_restores_tfs_writer() -> None:
    from tensorflow.python.eager import def_function
    from tensorflow.python.eager.polymorphic_function import eager_function_run

    eagerctl.install_hook()  # installed at first use: maybe not yet, run alone
    hooked = tf.config.run_functions_eagerly
    original = hooked.__eagerctl_original__  # type: ignore[attr-defined]
    assert def_function.run_functions_eagerly is hooked
    assert eager_function_run.run_functions_eagerly is hooked
    assert tf.compat.v1.config.run_functions_eagerly is hooked
    eagerctl.uninstall_hook()
    try:
        assert tf.config.run_functions_eagerly is original
        assert def_function.run_functions_eagerly is original
        assert eager_function_run.run_functions_eagerly is original
    finally:
        eagerctl.install_hook()
    assert tf.config.run_functions_eagerly is hooked
    assert tf.config.run_functions_eagerly.__doc__ == original.__doc__


# -- the hook ---------------------------------------------------------------------------
def test_status_and_is_eager_do_not_reinstall_the_hook() -> None:
    probe, seen = make_probe()
    eagerctl.uninstall_hook()
    try:
        status = eagerctl.status()
        assert status.hook_installed is False
        assert eagerctl.is_eager() is False
        assert eagerctl.status().hook_installed is False
        from tensorflow.python.eager.polymorphic_function import polymorphic_function

        assert "eagerctl" not in (polymorphic_function.Function._run_functions_eagerly.__doc__ or "")
        with eagerctl.eager_scope():  # first use of a local scope installs it again
            assert eagerctl.status().hook_installed is True
            assert mode_of(probe, seen) == "eager"
    finally:
        eagerctl.install_hook()


def test_uninstall_racing_scope_entries_never_leaves_a_scope_unhooked(fast_switching: None) -> None:
    probe, seen = make_probe()
    stop = threading.Event()
    wrong: list[str] = []
    entries = [0]

    def enter_and_call() -> None:
        while not stop.is_set():
            with eagerctl.eager_scope():
                mode = mode_of(probe, seen)
                if mode != "eager":
                    wrong.append(mode)
            entries[0] += 1

    def uninstall_and_install() -> None:
        while not stop.is_set():
            try:
                eagerctl.uninstall_hook()
            except EagerctlError:
                pass
            eagerctl.install_hook()

    threads = [threading.Thread(target=enter_and_call), threading.Thread(target=uninstall_and_install)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join()
    eagerctl.install_hook()
    assert entries[0] > 100
    assert wrong == []


def test_no_tracing_warning_in_graph_mode_where_nothing_is_traced() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", EagerctlWarning)
        with tf.Graph().as_default():
            assert not tf.executing_eagerly()
            with eagerctl.eager_scope(), eagerctl.graph_scope(process=True):
                pass

    @tf.function
    def traced() -> tf.Tensor:
        with eagerctl.eager_scope():
            return tf.constant(1)

    with pytest.warns(EagerctlWarning, match="was entered while TensorFlow is tracing a graph"):
        traced()


def test_eagerctl_run_graph_process_keeps_a_program_that_sets_the_flag_compiled(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from eagerctl._cli import main

    script = tmp_path / "sets_the_flag.py"
    script.write_text(
        "import tensorflow as tf\n"
        "seen = []\n"
        "@tf.function\n"
        "def step(x):\n"
        "    seen.append(tf.executing_eagerly())\n"
        "    return x + 1\n"
        "tf.config.run_functions_eagerly(True)  # the program's own choice\n"
        "step(tf.constant(1)); step(tf.constant(2))\n"
        "print('seen', seen, tf.config.functions_run_eagerly())\n"
    )
    assert main(["run", "--graph", "--process", str(script)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "seen [False] False"  # traced once, compiled
    assert tf.config.functions_run_eagerly() is True  # the program's write: the baseline, now in force
    tf.config.run_functions_eagerly(False)
