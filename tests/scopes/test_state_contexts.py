"""Local scopes and copied contexts: who sees an override, who may exit it, what `status()` says.

A context copied inside a block (`contextvars.copy_context()`,
`asyncio.create_task`, `asyncio.to_thread`) sees the block's override while
the block is active and not after it exits. Only the context that entered a
local scope may exit it. A scope whose thread or task is gone can never exit:
it is not listed and blocks nothing.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import os
import threading
import warnings
from collections.abc import Callable

import pytest
import tensorflow as tf
from helpers import make_probe, mode_of

import eagerctl
from eagerctl import EagerctlError


# -- exiting from another context is refused (and changes nothing) -----------------
def test_exit_inside_copy_context_run_is_refused() -> None:
    probe, seen = make_probe()
    scope = eagerctl.eager_scope()
    scope.__enter__()
    try:
        with pytest.raises(EagerctlError) as info:
            contextvars.copy_context().run(scope.__exit__, None, None, None)
        assert str(info.value).startswith(
            "eager_scope(True) cannot exit in a context copied from the one that entered it "
            "(contextvars.copy_context().run, asyncio.run, asyncio.create_task, asyncio.to_thread): "
            f"it was entered at {__file__}:"
        )
        assert str(info.value).endswith(
            "in thread 'MainThread'; exit it in the context that entered it, after the copy's code returns"
        )
        assert scope.active and eagerctl.is_eager() and mode_of(probe, seen) == "eager"
        assert len(eagerctl.status().scopes) == 1
        with pytest.raises(EagerctlError, match="1 local scope"):
            eagerctl.uninstall_hook()
    finally:
        scope.__exit__(None, None, None)
    assert not eagerctl.is_eager() and mode_of(probe, seen) == "graph"
    assert eagerctl.status().scopes == ()


def test_exit_inside_asyncio_run_is_refused() -> None:
    scope = eagerctl.graph_scope()
    scope.__enter__()
    try:
        async def main() -> None:
            scope.__exit__(None, None, None)

        expected = r"^graph_scope\(\) cannot exit in thread 'MainThread', asyncio task"
        with pytest.raises(EagerctlError, match=expected):
            asyncio.run(main())
        assert scope.active and eagerctl.is_eager() is False
        assert [s.scope for s in eagerctl.status().scopes] == ["graph_scope()"]
    finally:
        scope.__exit__(None, None, None)


def test_a_decorated_call_exits_in_its_own_context_even_when_run_in_a_copy() -> None:
    @eagerctl.eager_scope()
    def body() -> bool:
        return eagerctl.is_eager()

    assert contextvars.copy_context().run(body) is True
    assert eagerctl.status().scopes == ()


# -- copied contexts see the override only while the block is active ------------------
def test_copy_context_sees_the_override_while_the_block_is_active_and_not_after() -> None:
    probe, seen = make_probe()
    with eagerctl.eager_scope():
        copied = contextvars.copy_context()
        assert copied.run(eagerctl.is_eager) is True
        assert copied.run(mode_of, probe, seen) == "eager"
    assert copied.run(eagerctl.is_eager) is False
    assert copied.run(mode_of, probe, seen) == "graph"
    status = copied.run(eagerctl.status)
    assert status.override is None and status.is_eager is False and status.scopes == ()


def test_a_copied_context_sees_the_scopes_below_the_one_that_exited() -> None:
    probe, seen = make_probe()
    with eagerctl.eager_scope():
        with eagerctl.graph_scope():
            copied = contextvars.copy_context()
            assert copied.run(mode_of, probe, seen) == "graph"
        assert copied.run(mode_of, probe, seen) == "eager"  # the graph_scope exited: the eager one decides
        assert copied.run(lambda: eagerctl.status().override) is True
    assert copied.run(mode_of, probe, seen) == "graph"


def test_a_copied_context_enters_and_exits_its_own_scopes_on_top() -> None:
    probe, seen = make_probe()
    outer = eagerctl.eager_scope()
    outer.__enter__()
    copied = contextvars.copy_context()
    outer.__exit__(None, None, None)

    def in_copy() -> list[str]:
        modes = [mode_of(probe, seen)]
        with eagerctl.eager_scope():
            modes.append(mode_of(probe, seen))
        modes.append(mode_of(probe, seen))
        return modes

    assert copied.run(in_copy) == ["graph", "eager", "graph"]


def test_a_task_created_in_the_block_loses_the_override_when_the_block_exits() -> None:
    probe, seen = make_probe()

    async def main() -> list[tuple[str, bool | None]]:
        block_done, checked_inside = asyncio.Event(), asyncio.Event()
        log: list[tuple[str, bool | None]] = []

        async def child() -> None:
            log.append((mode_of(probe, seen), eagerctl.status().override))
            checked_inside.set()
            await block_done.wait()
            log.append((mode_of(probe, seen), eagerctl.status().override))

        async with eagerctl.eager_scope():
            task = asyncio.create_task(child())
            await checked_inside.wait()
        block_done.set()
        await task
        return log

    assert asyncio.run(main()) == [("eager", True), ("graph", None)]


def test_to_thread_inside_the_block_sees_the_override() -> None:
    probe, seen = make_probe()

    async def main() -> tuple[str, str]:
        async with eagerctl.eager_scope():
            inside = await asyncio.to_thread(mode_of, probe, seen)
        after = await asyncio.to_thread(mode_of, probe, seen)
        return inside, after

    assert asyncio.run(main()) == ("eager", "graph")


def test_other_threads_and_tasks_never_see_a_local_override() -> None:
    probe, seen = make_probe()
    modes: list[str] = []
    with eagerctl.eager_scope():
        t = threading.Thread(target=lambda: modes.append(mode_of(probe, seen)))
        t.start()
        t.join()
    assert modes == ["graph"]


# -- phantom scopes: never counted, never blocking ------------------------------------
def test_async_with_in_an_async_generator_left_by_break_is_not_counted_after_its_task() -> None:
    async def numbers() -> object:
        async with eagerctl.eager_scope():
            for i in range(3):
                yield i

    async def consume() -> None:
        async for _ in numbers():  # type: ignore[attr-defined]
            break

    async def main() -> None:
        await asyncio.create_task(consume())
        for _ in range(3):
            await asyncio.sleep(0)  # let asyncio close the generator in its own task

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(lambda loop, ctx: None)  # the refused exit, logged by asyncio
        try:
            loop.run_until_complete(main())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
    gc.collect()
    assert eagerctl.status().scopes == ()
    assert eagerctl.is_eager() is False
    eagerctl.uninstall_hook()  # nothing blocks it
    eagerctl.install_hook()


def test_a_scope_left_active_by_a_finished_thread_is_not_counted() -> None:
    t = threading.Thread(target=lambda: eagerctl.eager_scope().__enter__(), name="leaker")
    t.start()
    t.join()
    assert eagerctl.status().scopes == ()
    eagerctl.uninstall_hook()
    eagerctl.install_hook()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_forked_child_lists_only_its_own_scopes() -> None:
    entered, release = threading.Event(), threading.Event()

    def other_thread() -> None:
        with eagerctl.eager_scope(), eagerctl.graph_scope(process=True):
            entered.set()
            release.wait()

    t = threading.Thread(target=other_thread)
    t.start()
    entered.wait()
    try:
        with eagerctl.eager_scope():
            r, w = os.pipe()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:
                try:
                    scopes = [(s.kind, s.scope) for s in eagerctl.status().scopes]
                    ok = scopes == [("local", "eager_scope(True)")] and eagerctl.is_eager()
                    ok = ok and tf.config.functions_run_eagerly() is False
                    try:
                        eagerctl.uninstall_hook()
                        ok = False  # our own scope must still block it
                    except EagerctlError as exc:
                        ok = ok and "1 local scope" in str(exc)
                    os.write(w, b"ok" if ok else repr(scopes).encode())
                finally:
                    os._exit(0)
            os.close(w)
            answer = os.read(r, 1000)
            os.close(r)
            os.waitpid(pid, 0)
    finally:
        release.set()
        t.join()
    assert answer == b"ok"


@pytest.mark.skipif(not hasattr(asyncio, "TaskGroup"), reason="tasks share a context from Python 3.11")
def test_a_scope_entered_in_a_finished_task_of_a_shared_context_is_still_listed_there() -> None:
    # Jupyter's pattern (ipykernel 7): every cell is a new task in one shared context, so a
    # scope entered by hand in one cell is in force in the next, after its task finished.
    shared = contextvars.copy_context()
    scope = eagerctl.eager_scope()

    async def cell(code: Callable[[], object]) -> None:
        code()  # runs in `shared`: the task was created with it

    async def kernel() -> tuple[bool, int]:
        loop = asyncio.get_running_loop()
        await loop.create_task(cell(scope.__enter__), context=shared)  # type: ignore[call-arg]
        return (shared.run(eagerctl.is_eager),
                len(shared.run(eagerctl.status).scopes))

    try:
        in_force, listed = asyncio.run(kernel())
        assert in_force
        assert listed == 1, "a scope in force in this context must be listed, and block uninstall_hook()"
        with pytest.raises(EagerctlError):
            shared.run(eagerctl.uninstall_hook)
        assert len(eagerctl.status().scopes) == 0  # not in force in this context ...
        assert len(shared.run(eagerctl.status).scopes) == 1  # ... and still listed where it is
    finally:
        shared.run(eagerctl.reset)
    assert not shared.run(eagerctl.is_eager)
