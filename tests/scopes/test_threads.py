"""Threads: TF's own helper gets overlapping scopes wrong; eagerctl does not."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

import tensorflow as tf
from helpers import make_probe, mode_of
from tensorflow.python.framework import test_util

import eagerctl
from eagerctl import _registry, _scope


def overlap(make_scope: Callable[[], AbstractContextManager[object]]) -> dict[str, object]:
    """A enters, B enters, A exits, B exits: what B sees after A exits, and the flag after both."""
    probe, seen = make_probe()
    a_entered, b_entered, a_exited, b_checked = (threading.Event() for _ in range(4))
    result: dict[str, object] = {}

    def thread_a() -> None:
        with make_scope():
            a_entered.set()
            b_entered.wait()
        a_exited.set()

    def thread_b() -> None:
        a_entered.wait()
        with make_scope():
            b_entered.set()
            a_exited.wait()
            result["b_after_a_exits"] = mode_of(probe, seen)
            result["flag_while_b_active"] = tf.config.functions_run_eagerly()
        b_checked.set()

    threads = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result["flag_after_both"] = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(False)
    return result


def test_tf_test_util_helper_is_wrong_for_overlapping_threads() -> None:
    # The regression scenario: TF's own context manager saves and restores naively.
    got = overlap(lambda: test_util.run_functions_eagerly(True))
    assert got == {"b_after_a_exits": "graph", "flag_while_b_active": False, "flag_after_both": True}


def test_eagerctl_process_scopes_get_overlapping_threads_right() -> None:
    got = overlap(lambda: eagerctl.eager_scope(process=True))
    assert got == {"b_after_a_exits": "eager", "flag_while_b_active": True, "flag_after_both": False}


def test_eagerctl_local_scopes_are_per_thread() -> None:
    got = overlap(eagerctl.eager_scope)
    assert got == {"b_after_a_exits": "eager", "flag_while_b_active": False, "flag_after_both": False}


def test_other_threads_keep_their_compiled_graphs_under_a_local_scope() -> None:
    probe, seen = make_probe()
    inside, entered, checked = threading.Event(), threading.Event(), threading.Event()
    other: list[str] = []

    def debugger() -> None:
        with eagerctl.eager_scope():
            entered.set()
            checked.wait()
            other.append(mode_of(probe, seen))

    t = threading.Thread(target=debugger)
    t.start()
    entered.wait()
    main_mode = mode_of(probe, seen)
    checked.set()
    t.join()
    del inside
    assert (main_mode, other) == ("graph", ["eager"])


class Failure(Exception):
    pass


def test_stress_16_threads_random_nesting_exceptions_and_modes() -> None:
    probe, seen = make_probe()
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)
    steps = 60

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        local: list[bool] = []  # this thread's model of its own local stack
        process_here: list[bool] = []

        def check() -> None:
            expected_local = local[-1] if local else None
            effective = eagerctl.is_eager()
            if expected_local is not None:
                assert effective is expected_local, (seed, local, effective)
                assert mode_of(probe, seen) == ("eager" if expected_local else "graph")
            if process_here and not local:
                # Other threads' process scopes may be newer; the flag is some active value.
                assert effective is tf.config.functions_run_eagerly()

        def nest(depth: int) -> None:
            for _ in range(rng.randint(1, 3)):
                check()
                value = rng.random() < 0.5
                is_process = rng.random() < 0.4
                scope = eagerctl.eager_scope(value, process=is_process)
                stack = process_here if is_process else local
                try:
                    with scope:
                        stack.append(value)
                        try:
                            check()
                            if depth < 3 and rng.random() < 0.6:
                                nest(depth + 1)
                            if rng.random() < 0.15:
                                raise Failure
                            check()
                        finally:
                            stack.pop()
                except Failure:
                    pass
                check()

        try:
            barrier.wait()
            for _ in range(steps // 10):
                nest(0)
            assert local == [] and process_here == []
            assert _scope.active_local_count() >= 0
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    baseline = tf.config.functions_run_eagerly()
    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert tf.config.functions_run_eagerly() is baseline
    assert _registry.REGISTRY.active_count() == 0
    assert eagerctl.status().scopes == ()
