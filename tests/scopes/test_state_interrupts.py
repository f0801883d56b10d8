"""KeyboardInterrupt at any instruction never leaves an override in force.

Two kinds of interrupt. A real SIGINT (a notebook user pressing Ctrl-C)
lands where CPython checks for signals. A trace function with
`f_trace_opcodes` raising KeyboardInterrupt lands at any chosen bytecode, in
eagerctl's own code as well: every instruction of an operation is tried in
turn.

Enter and exit are safe at every instruction but one, which Python leaves
open: the first instruction of a `with` statement's `__exit__`, before any of
it runs. A scope interrupted there is taken off at the next scope operation
(entering a scope, `status()`, `is_eager()`), and `eagerctl.reset()` is the way
back from anything.
"""

from __future__ import annotations

import dis
import gc
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import tensorflow as tf
from helpers import Interrupter
from tensorflow.python.eager.polymorphic_function import eager_function_run

import eagerctl
from eagerctl import _local, _registry


def raw_state_clean() -> bool:
    """What a tf.function call would get right now, read without any scope operation."""
    return (_local.override() is None and eager_function_run.RUN_FUNCTIONS_EAGERLY is False
            and _registry.REGISTRY.active_count() == 0)


def state_clean_after_next_operation() -> bool:
    status = eagerctl.status()  # a scope operation: repairs what the open window left
    return (status.scopes == () and status.override is None and status.process_flag is False
            and raw_state_clean() and eagerctl.is_eager() is False)


# -- the operations ---------------------------------------------------------------------
@eagerctl.eager_scope()
def decorated() -> int:
    return 1


@eagerctl.graph_scope(process=True)
def decorated_process() -> int:
    return 1


@eagerctl.eager_scope()
def generator() -> Iterator[int]:
    yield 1
    yield 2


@eagerctl.debuggable
def debuggable_body() -> int:
    return 1


def with_local() -> None:
    with eagerctl.graph_scope():
        pass


def with_process() -> None:
    with eagerctl.eager_scope(process=True):
        pass


def with_nested() -> None:
    with eagerctl.eager_scope(), eagerctl.graph_scope(process=True), eagerctl.graph_scope():
        pass


def manual_out_of_order() -> None:
    a, b = eagerctl.eager_scope(), eagerctl.graph_scope()
    a.__enter__()
    try:
        b.__enter__()
        try:
            a.__exit__(None, None, None)
        finally:
            b.__exit__(None, None, None)
    finally:
        if a.active:
            a.__exit__(None, None, None)


OPERATIONS: dict[str, Callable[[], object]] = {
    "decorated": decorated,
    "decorated_process": decorated_process,
    "generator": lambda: list(generator()),
    "debuggable": debuggable_body,
    "with_local": with_local,
    "with_process": with_process,
    "with_nested": with_nested,
    "manual_out_of_order": manual_out_of_order,
}
WITH_FORMS = {"with_local", "with_process", "with_nested", "manual_out_of_order"}
MANUAL = {"manual_out_of_order"}


# -- an interrupt at every instruction ------------------------------------------------
def open_window() -> set[tuple[str, int]]:
    """Where in eagerctl an interrupt can leave a `with` statement's scope entered: no `try` covers it.

    The instructions of `Scope.__exit__` before its `try`, and the return of
    `Scope.__enter__` (CPython's tables never cover a `return`). Only a trace
    function can raise there; the next scope operation takes the scope off.
    """
    exit_code = eagerctl.Scope.__exit__.__code__
    first = min(e.start for e in dis._parse_exception_table(exit_code))  # type: ignore[attr-defined]
    window = {("Scope.__exit__", i.offset) for i in dis.get_instructions(exit_code) if i.offset < first}
    window |= {("Scope.__enter__", i.offset) for i in dis.get_instructions(eagerctl.Scope.__enter__)
               if i.opname == "RETURN_VALUE"}
    return window



@pytest.mark.parametrize("name", list(OPERATIONS))
def test_an_interrupt_at_every_instruction_leaves_no_override(name: str) -> None:
    op = OPERATIONS[name]
    own = getattr(op, "__qualname__", "")
    window = open_window()
    op()  # warm up: imports, caches
    counter = Interrupter(0)
    assert not counter.run(op)
    total = counter.count
    assert total > 50  # eagerctl's own instructions are traced too
    dirty_at: set[tuple[str, int]] = set()
    for at in range(1, total + 1):
        interrupter = Interrupter(at)
        interrupted = interrupter.run(op)
        assert interrupted, f"no interrupt at instruction {at} of {total}"
        where = interrupter.where
        assert where is not None
        if not raw_state_clean():
            dirty_at.add(where)
        if not state_clean_after_next_operation():
            # `__enter__()` called by hand: between its return and the caller's own
            # `try` nothing can tell the scope is abandoned. reset() is the way back.
            assert name in MANUAL and (where in window or where[0] == own), where
            eagerctl.reset()
            assert state_clean_after_next_operation()
    if name in WITH_FORMS:
        # The one open window: the `with` statement's own instructions between
        # its block and `__exit__` (a trace function can raise there; a signal
        # cannot), and the instructions of `Scope` no `try` covers.
        assert {where for where in dirty_at if where[0] != own} <= window, dirty_at
    else:
        assert dirty_at == set()


def test_reset_is_the_way_back_from_a_scope_left_entered_by_hand() -> None:
    scope = eagerctl.graph_scope(process=True)
    scope.__enter__()  # say, a notebook cell interrupted before its __exit__
    local = eagerctl.eager_scope()
    local.__enter__()
    eagerctl.reset()
    assert state_clean_after_next_operation()
    assert not scope.active and not local.active


# -- real SIGINTs -------------------------------------------------------------------------
def _block_sigint() -> None:
    while True:
        try:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            return
        except KeyboardInterrupt:
            continue


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="POSIX signals")
def test_real_sigints_at_random_moments_leave_no_override() -> None:
    main = threading.main_thread().ident
    assert main == threading.get_ident()
    stop = threading.Event()

    def ctrl_c() -> None:
        rng = random.Random(0)
        while not stop.is_set():
            time.sleep(rng.uniform(0.0002, 0.002))
            signal.pthread_kill(main, signal.SIGINT)  # type: ignore[arg-type]

    interrupted = dict.fromkeys(OPERATIONS, 0)
    dirty: list[str] = []
    _block_sigint()
    # Python's own handler: a pdb session earlier in the run (a post-mortem test) leaves
    # pdb's installed, which raises no KeyboardInterrupt.
    outer_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    # No garbage collection meanwhile: other libraries' gc callbacks (hypothesis
    # installs one) would get interrupts of their own, which Python cannot raise.
    gc.disable()
    killer = threading.Thread(target=ctrl_c, daemon=True)
    killer.start()
    deadline = time.monotonic() + 3.0
    try:
        while time.monotonic() < deadline:
            for name, op in OPERATIONS.items():
                try:
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
                    for _ in range(20):
                        op()
                    _block_sigint()
                except KeyboardInterrupt:
                    _block_sigint()
                    interrupted[name] += 1
                    if name not in WITH_FORMS and not raw_state_clean():
                        dirty.append(f"{name}: in force before the next operation")
                    if not state_clean_after_next_operation():
                        if name not in MANUAL:  # by hand: the caller's own window, see above
                            dirty.append(f"{name}: {eagerctl.status()}")
                        eagerctl.reset()
                        if not state_clean_after_next_operation():
                            dirty.append(f"{name}: not clean after reset(): {eagerctl.status()}")
    finally:
        stop.set()
        killer.join()
        _block_sigint()
        if signal.SIGINT in signal.sigpending():
            signal.sigwait({signal.SIGINT})  # the last one sent: consumed, not raised
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        signal.signal(signal.SIGINT, outer_handler)
        gc.enable()
    assert dirty == []
    assert sum(interrupted.values()) > 100
    assert tf.config.functions_run_eagerly() is False
