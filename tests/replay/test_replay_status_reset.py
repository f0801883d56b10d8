"""status() lists the active replay() blocks; reset() ends this context's, and TF's __call__ is its own again.

The decision written in docs/replay.md: a replay is a local setting, like a
local scope. `reset()` ends every replay of this context (and of contexts
copied from it), and those of threads that ended without leaving theirs; a
replay a live thread is running stays. With none left, `Function.__call__` is
TensorFlow's own object again.
"""

from __future__ import annotations

import contextvars
import math
import threading
from typing import Any

import pytest
import tensorflow as tf
from tensorflow.python.eager.polymorphic_function import polymorphic_function

import eagerctl

TF_CALL = polymorphic_function.Function.__dict__["__call__"]  # TF's own, read before any replay


def line_of(marker: str) -> int:
    return next(i for i, line in enumerate(open(__file__), 1) if line.rstrip().endswith(marker))


def tf_call_is_own() -> bool:
    return polymorphic_function.Function.__dict__["__call__"] is TF_CALL


def make_step() -> Any:
    """A compiled step whose loss is NaN for a negative scale (a log of it), as in a diverging run."""
    w = tf.Variable([1.0, 2.0], name="w")

    @tf.function  # type: ignore[untyped-decorator]
    def step(scale: Any) -> Any:
        w.assign_add(tf.fill([2], scale) * 0.01)
        return tf.reduce_sum(tf.math.log(w * scale))  # NAN LINE

    return step


def test_status_lists_an_active_replay_with_its_options_and_where_it_was_entered() -> None:
    block = eagerctl.replay(check_variables=True)
    with block:  # ENTERED HERE
        st = eagerctl.status()
        text, page = str(st), st._repr_html_()
    assert len(st.replays) == 1
    info = st.replays[0]
    assert info.replay == "replay(post_mortem=False, check_variables=True)"
    assert (info.post_mortem, info.check_variables, info.here) == (False, True, True)
    assert info.where == f"{__file__}:{line_of('# ENTERED HERE')}"
    assert info.thread == threading.current_thread().name
    assert "active replays   1" in text
    assert f"replay(post_mortem=False, check_variables=True) thread 'MainThread' at {info.where}" in text
    assert '<table class="eagerctl-replays"' in page
    assert "<td style=\"text-align:left\">replay(post_mortem=False, check_variables=True)</td>" in page
    assert "ReplayInfo(replay='replay(post_mortem=False, check_variables=True)'" in repr(st)
    after = eagerctl.status()
    assert after.replays == () and "active replays" not in str(after)
    assert "eagerctl-replays" not in after._repr_html_()


@eagerctl.replay(post_mortem=True)  # DECORATED HERE
def decorated() -> Any:
    return eagerctl.status()


def test_status_names_a_decorated_functions_decorator_line_and_another_threads_replay() -> None:
    st = decorated()
    where = f"{__file__}:{line_of('# DECORATED HERE')}"
    assert [(r.replay, r.where, r.here) for r in st.replays] == [
        ("replay(post_mortem=True, check_variables=False)", where, True)]
    entered, release = threading.Event(), threading.Event()
    seen: list[Any] = []

    def worker() -> None:
        with eagerctl.replay():
            entered.set()
            release.wait(30)
            seen.append(eagerctl.status())

    thread = threading.Thread(target=worker, name="trainer")
    thread.start()
    try:
        assert entered.wait(30)
        here = eagerctl.status()
    finally:
        release.set()
        thread.join(30)
    assert [(r.thread, r.here) for r in here.replays] == [("trainer", False)]
    assert "  other    replay(post_mortem=False, check_variables=False) thread 'trainer'" in str(here)
    assert [(r.thread, r.here) for r in seen[0].replays] == [("trainer", True)]
    assert eagerctl.status().replays == () and tf_call_is_own()


def test_reset_ends_this_contexts_replays_and_puts_tfs_call_back() -> None:
    step = make_step()
    outer, inner = eagerctl.replay(), eagerctl.replay(check_variables=True)
    outer.__enter__()  # left open by hand, as an interrupted notebook cell leaves it
    inner.__enter__()
    assert not tf_call_is_own() and len(eagerctl.status().replays) == 2
    with pytest.raises(eagerctl.ReplayError):
        step(tf.constant(-5.0))  # monitored: the NaN is replayed and named
    eagerctl.reset()
    assert tf_call_is_own()  # the same object TF had, not a wrapper
    assert eagerctl.status().replays == ()
    loss = step(tf.constant(-5.0))  # not monitored any more: TF's NaN, as without eagerctl
    assert math.isnan(float(loss))
    inner.__exit__(None, None, None)  # their own exits, after the reset, do nothing
    outer.__exit__(None, None, None)
    assert tf_call_is_own()
    with outer:  # and the same replay object can be entered again
        assert not tf_call_is_own()
        with pytest.raises(eagerctl.ReplayError) as info:
            step(tf.constant(-5.0))
        assert info.value.lineno == line_of("# NAN LINE")
    assert tf_call_is_own()


def test_reset_inside_a_with_block_ends_it_and_a_replay_entered_afterwards_survives_its_exit() -> None:
    step = make_step()
    with eagerctl.replay():
        eagerctl.reset()
        assert tf_call_is_own()
        assert math.isnan(float(step(tf.constant(-5.0))))  # the ended block monitors nothing
        later = eagerctl.replay()
        later.__enter__()
    # the ended block's exit did nothing: `later`, entered after the reset, is still in force
    assert [r.here for r in eagerctl.status().replays] == [True]
    with pytest.raises(eagerctl.ReplayError):
        step(tf.constant(-5.0))
    later.__exit__(None, None, None)
    assert tf_call_is_own() and eagerctl.status().replays == ()


def test_reset_ends_the_replay_in_contexts_copied_from_this_one() -> None:
    step = make_step()
    block = eagerctl.replay()
    block.__enter__()
    copied = contextvars.copy_context()  # as asyncio.create_task copies it
    eagerctl.reset()
    other = eagerctl.replay()
    with other:  # keeps TF's __call__ patched: the copy must skip its ended replay by itself
        assert math.isnan(float(copied.run(step, tf.constant(-5.0))))
        assert copied.run(lambda: eagerctl.status().replays[0].here) is False
    block.__exit__(None, None, None)
    assert tf_call_is_own()


def test_reset_leaves_a_live_threads_replay_and_ends_one_left_by_a_finished_thread() -> None:
    step = make_step()
    left = threading.Thread(target=lambda: eagerctl.replay().__enter__(), name="left-open")
    left.start()
    left.join(30)  # ended without leaving its replay: it never can now
    entered, release = threading.Event(), threading.Event()
    caught: list[eagerctl.ReplayError] = []

    def worker() -> None:
        with eagerctl.replay():
            entered.set()
            release.wait(30)
            try:
                step(tf.constant(-5.0))
            except eagerctl.ReplayError as error:
                caught.append(error)

    running = threading.Thread(target=worker, name="trainer")
    running.start()
    try:
        assert entered.wait(30)
        assert sorted(r.thread for r in eagerctl.status().replays) == ["left-open (finished)", "trainer"]
        eagerctl.reset()
        assert [r.thread for r in eagerctl.status().replays] == ["trainer"]
        assert not tf_call_is_own()  # the trainer's replay still needs the patch
    finally:
        release.set()
        running.join(30)
    assert len(caught) == 1 and caught[0].lineno == line_of("# NAN LINE")  # it still replayed there
    assert tf_call_is_own() and eagerctl.status().replays == ()
