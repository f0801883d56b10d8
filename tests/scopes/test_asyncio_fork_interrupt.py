"""asyncio tasks never see each other's scopes; fork and KeyboardInterrupt leave a usable state."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
import warnings

import pytest
import tensorflow as tf
from helpers import ctrl_c_raises, make_probe, mode_of

import eagerctl
from eagerctl import EagerctlError, _registry


def test_100_tasks_interleaving_local_scopes_never_see_each_other() -> None:
    probe, seen = make_probe()
    seen_wrong: list[tuple[int, bool, bool]] = []

    async def task(i: int) -> int:
        rng = random.Random(i)
        stack: list[bool] = []
        checks = 0
        for _ in range(8):
            value = rng.random() < 0.5
            async with eagerctl.eager_scope(value):
                stack.append(value)
                for _ in range(rng.randint(1, 3)):
                    await asyncio.sleep(0)  # let the other 99 tasks run in between
                    if eagerctl.is_eager() is not stack[-1]:
                        seen_wrong.append((i, stack[-1], eagerctl.is_eager()))
                    checks += 1
                if i % 10 == 0:  # a real tf.function call from some tasks, each step
                    assert mode_of(probe, seen) == ("eager" if value else "graph")
                stack.pop()
            if eagerctl.is_eager() is not False:
                seen_wrong.append((i, False, eagerctl.is_eager()))
        return checks

    async def main() -> list[int]:
        return await asyncio.gather(*(task(i) for i in range(100)))

    counts = asyncio.run(main())
    assert seen_wrong == []
    assert sum(counts) >= 800


def test_exiting_a_local_scope_in_another_task_is_an_error() -> None:
    async def main() -> str:
        scope = eagerctl.eager_scope()
        await scope.__aenter__()

        async def intruder() -> None:
            await scope.__aexit__(None, None, None)

        with pytest.raises(EagerctlError) as info:
            await asyncio.create_task(intruder(), name="intruder")
        assert eagerctl.is_eager()
        await scope.__aexit__(None, None, None)
        return str(info.value)

    message = asyncio.run(main())
    assert message.startswith(
        "eager_scope(True) cannot exit in thread 'MainThread', asyncio task 'intruder': "
    )
    assert "asyncio task 'Task-" in message
    assert message.endswith(
        "a local scope can only be exited by the thread and asyncio task that entered it; exit it there, "
        "or use eager_scope(process=True) for a scope shared by threads"
    )


def child_uses_scopes() -> int:
    """In a forked child: scopes of both kinds still work. Returns an exit status."""
    try:
        baseline = tf.config.functions_run_eagerly()
        with eagerctl.eager_scope(not baseline, process=True):
            if tf.config.functions_run_eagerly() is baseline:
                return 3
        if tf.config.functions_run_eagerly() is not baseline:
            return 4
        with eagerctl.eager_scope():
            if not eagerctl.is_eager():
                return 5
        if _registry.REGISTRY.active_count() != 0:
            return 6
        return 0
    except BaseException:  # noqa: BLE001 - any failure is a non-zero status
        return 7


def fork_and_wait() -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        os._exit(child_uses_scopes())
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_fork_while_another_thread_holds_the_registry_lock() -> None:
    held, release = threading.Event(), threading.Event()

    def inside_registry_operation() -> None:
        with _registry.REGISTRY._lock:
            held.set()
            release.wait()

    t = threading.Thread(target=inside_registry_operation)
    t.start()
    held.wait()
    try:
        assert fork_and_wait() == 0
    finally:
        release.set()
        t.join()
    with eagerctl.eager_scope(process=True):  # the parent is fine too
        assert tf.config.functions_run_eagerly()
    assert not tf.config.functions_run_eagerly()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_fork_while_other_threads_enter_and_exit_process_scopes() -> None:
    stop = threading.Event()

    def churn(value: bool) -> None:
        while not stop.is_set():
            with eagerctl.eager_scope(value, process=True):
                pass

    threads = [threading.Thread(target=churn, args=(v,)) for v in (True, False)]
    for t in threads:
        t.start()
    try:
        codes = [fork_and_wait() for _ in range(5)]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert codes == [0] * 5
    assert _registry.REGISTRY.active_count() == 0
    assert tf.config.functions_run_eagerly() is False


def test_real_sigint_in_the_body_restores_everything() -> None:
    probe, seen = make_probe()
    with ctrl_c_raises(), pytest.raises(KeyboardInterrupt):  # whatever handler the run inherited
        with eagerctl.eager_scope(process=True), eagerctl.graph_scope():
            assert mode_of(probe, seen) == "graph"
            signal.raise_signal(signal.SIGINT)
            time.sleep(1)  # the interrupt lands here at the latest
    assert tf.config.functions_run_eagerly() is False
    assert eagerctl.status().scopes == ()
    assert mode_of(probe, seen) == "graph"
