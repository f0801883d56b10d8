"""A hypothesis stateful test of the registry and local overrides against a model of the rule.

Random enters and exits in any order of process and local scopes of both
values; outside writes to TF's flag from this thread and from others;
contexts copied inside blocks (`contextvars.copy_context()`, asyncio tasks);
one scope object shared by threads; KeyboardInterrupts at random bytecodes of
a scope's entry and exit; `reset()`. After every step TF's flag, `is_eager()`,
the mode a real `tf.function` call gets, and `status()` must be what the rule
says, in this context and in every copied one.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading

import tensorflow as tf
from helpers import Interrupter, make_probe, mode_of
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import eagerctl
from eagerctl import EagerctlError, Scope


class RegistryModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.process: list[tuple[Scope, bool]] = []  # entry order
        self.local: list[tuple[Scope, bool]] = []
        self.baseline = False
        # Copied contexts, each with the local scopes active when it was copied.
        self.copies: list[tuple[contextvars.Context, list[tuple[Scope, bool]]]] = []
        self.probe, self.seen = make_probe()

    @initialize()
    def start(self) -> None:
        tf.config.run_functions_eagerly(False)

    # -- the model of the rule ----------------------------------------------
    def flag(self) -> bool:
        return self.process[-1][1] if self.process else self.baseline

    def effective(self, local: list[tuple[Scope, bool]]) -> bool:
        return local[-1][1] if local else self.flag()

    # -- rules ----------------------------------------------------------------
    @rule(value=st.booleans())
    def enter_process(self, value: bool) -> None:
        scope = eagerctl.eager_scope(value, process=True)
        scope.__enter__()
        self.process.append((scope, value))

    @precondition(lambda self: self.process)
    @rule(data=st.data())
    def exit_process(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.process) - 1))
        scope, _ = self.process.pop(index)
        scope.__exit__(None, None, None)

    @rule(value=st.booleans())
    def outside_write(self, value: bool) -> None:
        tf.config.run_functions_eagerly(value)
        self.baseline = value

    @rule(value=st.booleans())
    def outside_write_from_another_thread(self, value: bool) -> None:
        t = threading.Thread(target=tf.config.run_functions_eagerly, args=(value,))
        t.start()
        t.join()
        self.baseline = value

    @rule(value=st.booleans())
    def enter_local(self, value: bool) -> None:
        scope = eagerctl.eager_scope(value)
        scope.__enter__()
        self.local.append((scope, value))

    @precondition(lambda self: self.local)
    @rule(data=st.data())
    def exit_local(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.local) - 1))
        scope, _ = self.local.pop(index)
        scope.__exit__(None, None, None)

    @precondition(lambda self: self.local)
    @rule()
    def exit_local_from_a_copied_context_is_refused(self) -> None:
        scope, _ = self.local[-1]
        try:
            contextvars.copy_context().run(scope.__exit__, None, None, None)
        except EagerctlError as exc:
            assert "cannot exit in a context copied" in str(exc)
        else:
            raise AssertionError("an exit from a copied context was accepted")

    @precondition(lambda self: len(self.copies) < 3)
    @rule()
    def copy_this_context(self) -> None:
        self.copies.append((contextvars.copy_context(), list(self.local)))

    @rule()
    def a_task_sees_this_context(self) -> None:
        expected = self.effective(self.local)

        async def in_task() -> bool:
            await asyncio.sleep(0)
            return eagerctl.is_eager()

        async def main() -> bool:
            return await asyncio.create_task(in_task())

        assert asyncio.run(main()) is expected

    @rule(value=st.booleans(), process=st.booleans())
    def one_scope_object_shared_by_threads(self, value: bool, process: bool) -> None:
        scope = eagerctl.eager_scope(value, process=process)
        failures: list[str] = []

        def use() -> None:
            for _ in range(30):
                try:
                    with scope:
                        if eagerctl.is_eager() is not value:
                            failures.append("wrong mode inside")
                except EagerctlError as exc:
                    if "is already active" not in str(exc):
                        failures.append(str(exc))

        threads = [threading.Thread(target=use) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
        assert not scope.active

    @rule(value=st.booleans(), process=st.booleans(), at=st.integers(1, 600))
    def interrupt_a_scope_at_a_random_instruction(self, value: bool, process: bool, at: int) -> None:
        def block() -> None:
            with eagerctl.eager_scope(value, process=process):
                pass

        Interrupter(at).run(block)  # interrupted, or done: either way nothing stays changed

    @rule()
    def reset(self) -> None:
        eagerctl.reset()
        self.local.clear()
        self.process.clear()

    # -- checks after every step ---------------------------------------------
    @invariant()
    def flag_and_effective_mode_follow_the_rule(self) -> None:
        status = eagerctl.status()  # the next scope operation: repairs an interrupted one
        assert tf.config.functions_run_eagerly() is self.flag()
        assert status.baseline is self.baseline
        expected = self.effective(self.local)
        assert eagerctl.is_eager() is expected
        assert mode_of(self.probe, self.seen) == ("eager" if expected else "graph")
        assert len(status.scopes) == len(self.process) + len(self.local)

    @invariant()
    def copied_contexts_see_only_the_blocks_still_active(self) -> None:
        for context, local_then in self.copies:
            still = [entry for entry in local_then if entry in self.local]
            expected = self.effective(still)
            assert context.run(eagerctl.is_eager) is expected
            assert context.run(lambda: eagerctl.status().override) == (still[-1][1] if still else None)

    def teardown(self) -> None:
        try:
            for scope, _ in reversed(self.local):
                scope.__exit__(None, None, None)
            for scope, _ in reversed(self.process):
                scope.__exit__(None, None, None)
            # With no scope active, the flag is the baseline.
            assert tf.config.functions_run_eagerly() is self.baseline
            assert eagerctl.status().scopes == ()
        finally:
            tf.config.run_functions_eagerly(False)


RegistryModel.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestRegistryModel = RegistryModel.TestCase
