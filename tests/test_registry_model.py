"""A hypothesis stateful test of the registry and local overrides against a model of the rule.

Random enters and exits in any order of process and local scopes of both
values, and outside writes to TF's flag; after every step TF's flag and
`is_eager()` must be what the rule says.
"""

from __future__ import annotations

import tensorflow as tf
from helpers import make_probe, mode_of
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import eagerctl
from eagerctl import Scope


class RegistryModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.process: list[tuple[Scope, bool]] = []  # entry order
        self.local: list[tuple[Scope, bool]] = []
        self.baseline = False
        self.written: bool | None = None  # what eagerctl last wrote (None: nothing yet)
        self.probe, self.seen = make_probe()

    @initialize()
    def start(self) -> None:
        tf.config.run_functions_eagerly(False)

    # -- the model of the rule ----------------------------------------------
    def model_registry_op(self) -> None:
        """At every registry operation an outside write shows as a flag eagerctl did not write."""
        flag = tf.config.functions_run_eagerly()
        if not self.process or flag != self.written:
            self.baseline = flag

    def model_flag_after_op(self) -> bool:
        value = self.process[-1][1] if self.process else self.baseline
        self.written = value
        return value

    # -- rules ----------------------------------------------------------------
    @rule(value=st.booleans())
    def enter_process(self, value: bool) -> None:
        self.model_registry_op()
        scope = eagerctl.eager_scope(value, process=True)
        scope.__enter__()
        self.process.append((scope, value))
        self.expected_flag = self.model_flag_after_op()

    @precondition(lambda self: self.process)
    @rule(data=st.data())
    def exit_process(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.process) - 1))
        self.model_registry_op()
        scope, _ = self.process.pop(index)
        scope.__exit__(None, None, None)
        self.expected_flag = self.model_flag_after_op()

    @rule(value=st.booleans())
    def outside_write(self, value: bool) -> None:
        tf.config.run_functions_eagerly(value)
        self.expected_flag = value

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

    # -- checks after every step ---------------------------------------------
    @invariant()
    def flag_and_effective_mode_follow_the_rule(self) -> None:
        expected_flag = getattr(self, "expected_flag", False)
        assert tf.config.functions_run_eagerly() is expected_flag
        expected = self.local[-1][1] if self.local else expected_flag
        assert eagerctl.is_eager() is expected
        assert mode_of(self.probe, self.seen) == ("eager" if expected else "graph")
        status = eagerctl.status()
        assert len(status.scopes) == len(self.process) + len(self.local)

    def teardown(self) -> None:
        try:
            for scope, _ in reversed(self.local):
                scope.__exit__(None, None, None)
            while self.process:
                self.exit_process_newest()
            # With no scope active, the flag is the baseline.
            assert tf.config.functions_run_eagerly() is getattr(self, "expected_flag", False)
            assert eagerctl.status().scopes == ()
        finally:
            tf.config.run_functions_eagerly(False)

    def exit_process_newest(self) -> None:
        self.model_registry_op()
        scope, _ = self.process.pop()
        scope.__exit__(None, None, None)
        self.expected_flag = self.model_flag_after_op()
        if not self.process:
            assert self.expected_flag is self.baseline


RegistryModel.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestRegistryModel = RegistryModel.TestCase
