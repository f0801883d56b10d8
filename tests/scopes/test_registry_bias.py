"""The registry's biased lock: the thread that took it last enters and exits process scopes without it.

Another thread takes the bias over under the lock, and must wait while the
biased thread is inside `enter` or `exit` (Dekker's handshake in
`Registry._claim`). A biased thread stopped between two instructions of an
entry (a debugger's trace function here, which can stop a thread anywhere) is
waited for; one that an interrupt left marked busy is not.
"""

from __future__ import annotations

import sys
import threading
from types import FrameType
from typing import Any

import pytest
from helpers import Interrupter
from tensorflow.python.eager.polymorphic_function import eager_function_run

import eagerctl
from eagerctl import _registry

REGISTRY = _registry.REGISTRY


def flag() -> object:
    return eager_function_run.RUN_FUNCTIONS_EAGERLY


def clean() -> bool:
    status = eagerctl.status()
    return status.scopes == () and status.process_flag is False and flag() is False


def line_of(code: Any, text: str) -> int:
    import inspect

    lines, first = inspect.getsourcelines(code)
    return first + next(i for i, line in enumerate(lines) if text in line)


def test_a_thread_taking_the_bias_waits_for_the_biased_thread_stopped_inside_enter() -> None:
    enter_code = _registry.Registry.enter.__code__
    stop_at = line_of(enter_code, "active[node] = None")
    stopped, go_on = threading.Event(), threading.Event()
    x_inside, x_may_exit = threading.Event(), threading.Event()
    y_inside, y_may_exit = threading.Event(), threading.Event()
    owner_before: list[int] = []
    y_saw: list[object] = []
    errors: list[BaseException] = []

    def stop_in_enter(frame: FrameType, event: str, arg: object) -> Any:
        if frame.f_code is not enter_code:
            return None
        def local(frame: FrameType, event: str, arg: object) -> Any:
            if event == "line" and frame.f_lineno == stop_at:
                stopped.set()
                go_on.wait(30)
            return local
        return local

    def x() -> None:
        try:
            with eagerctl.eager_scope(process=True):  # takes the bias (through the lock)
                pass
            owner_before.append(REGISTRY._bias.owner)
            sys.settrace(stop_in_enter)
            try:
                scope = eagerctl.eager_scope(process=True)
                scope.__enter__()  # stops inside Registry.enter, without the lock
            finally:
                sys.settrace(None)
            x_inside.set()
            x_may_exit.wait(30)
            scope.__exit__(None, None, None)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
            stopped.set()
            x_inside.set()

    def y() -> None:
        try:
            with eagerctl.graph_scope(process=True):
                y_saw.append(flag())
                y_inside.set()
                y_may_exit.wait(30)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            y_inside.set()

    tx = threading.Thread(target=x, name="biased")
    tx.start()
    assert stopped.wait(30)
    assert owner_before == [tx.ident]  # the entry that stopped ran on the path without the lock
    ty = threading.Thread(target=y, name="taker")
    ty.start()
    try:
        # While `x` is stopped inside its entry, `y` cannot enter: it waits for it.
        assert not y_inside.wait(0.5)
        go_on.set()
        assert x_inside.wait(30) and y_inside.wait(30)
        assert not errors, errors
        # `y` entered after `x` finished entering: it is the newest, and its graph_scope decides.
        assert y_saw == [False]
        assert flag() is False
        scopes = [(s.enabled, s.thread) for s in eagerctl.status().scopes]
        assert scopes == [(True, "biased"), (False, "taker")]
    finally:
        go_on.set()
        x_may_exit.set()
        tx.join(30)
        y_may_exit.set()
        ty.join(30)
    assert not errors, errors
    assert clean()


class Node:
    """What the registry holds: a value and the thread that entered it (a scope's activation, bare)."""

    __slots__ = ("thread", "value")

    def __init__(self, value: bool) -> None:
        self.value = value
        self.thread = threading.get_ident()


def test_a_busy_mark_left_by_an_interrupt_does_not_block_another_thread() -> None:
    """An interrupt at an instruction no `try` covers leaves the biased thread marked inside.

    A scope's own recovery (its exit and `sync()` in the handler) clears it at
    once; bare registry operations, interrupted at every instruction, show that
    another thread does not wait for a thread that is not inside them.
    """
    def other_thread_enters() -> None:
        with eagerctl.graph_scope(process=True):
            pass

    def op(node: Node) -> None:
        REGISTRY.enter(node)
        REGISTRY.exit(node)

    other_thread_enters()  # here first: the hook attaches TF's flag to the registry
    op(Node(True))  # this thread holds the bias: the operations below run without the lock
    counter = Interrupter(0)
    first = Node(True)
    assert not counter.run(lambda: op(first))
    left_busy = 0
    for at in range(1, counter.count + 1):
        op(Node(True))  # the bias back to this thread
        node = Node(True)
        interrupter = Interrupter(at)
        assert interrupter.run(lambda node=node: op(node))
        left_busy += REGISTRY._bias.busy
        other = threading.Thread(target=other_thread_enters)
        other.start()
        other.join(30)
        assert not other.is_alive(), f"a thread waits forever after an interrupt at {interrupter.where!r}"
        REGISTRY.exit(node)
        REGISTRY.sync()
        assert clean(), interrupter.where
    assert left_busy >= 2  # the instructions either side of the `try` around the operation


def test_without_the_gil_no_bias_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """A free-threaded build: every operation takes the lock, and the bias goes back with it."""
    monkeypatch.setattr(_registry, "_GIL", False)
    seen: list[object] = []

    def churn(value: bool) -> None:
        for _ in range(2000):
            with eagerctl.eager_scope(value, process=True):
                seen.append(flag() is value)

    threads = [threading.Thread(target=churn, args=(i % 2 == 0,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert REGISTRY._bias is _registry._NOBODY
    assert len(seen) == 8000
    assert clean()
