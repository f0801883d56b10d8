"""Trials: `fn` traced afresh with a subset of the candidates as eager islands, and run compiled.

A trial answers one question: does making this subset eager change the
result, compared with the fully compiled run (`base`)? Trials are cached by
subset. Evidence calls one culprit by itself, compiled and eagerly, with the
inputs its island received.
"""

from __future__ import annotations

from typing import Any

from .. import _compare
from .._scope import eager_scope, graph_scope
from .bisector import Bisector, Outcome
from .candidates import Candidate
from .code import is_tf_function


class Trials:
    def __init__(self, b: Bisector) -> None:
        self.b = b
        self.cache: dict[frozenset[Any], tuple[bool, list[_compare.Row]]] = {}
        self.base: Outcome | None = None  # the fresh compiled run every trial is compared with
        self.failed = 0
        self.outcomes: dict[frozenset[Any], Outcome] = {}

    def reproduces(self, subset: frozenset[Any], eager: Outcome) -> bool:
        """Whether `subset` made eager gives what the fully eager run gives (nothing else contributes)."""
        if not self.differs(subset):
            return False
        outcome = self.outcomes.get(subset)
        return outcome is not None and all(r.match for r in self.b.diff(outcome, eager))

    def __len__(self) -> int:
        return len(self.cache)

    def differs(self, subset: frozenset[Any]) -> bool:
        return self.trial(subset)[0]

    def trial(self, subset: frozenset[Any]) -> tuple[bool, list[_compare.Row]]:
        """Trace `fn` afresh with `subset` as eager islands, run it compiled; does it differ from the base?"""
        if not subset:
            return False, []
        cached = self.cache.get(subset)
        if cached is not None:
            return cached
        b = self.b
        b.watch.restore()
        fresh = b.private_function(b.python_fn)
        try:
            with b.session("trial", subset):
                with graph_scope():
                    fresh.get_concrete_function(*b.args, **b.kwargs)
                b.traces += 1
                # The islands run from the state a trace leaves, as the eager reference run does.
                outcome = b.run_eager(fresh, graph_scope())
        except Exception as exc:  # noqa: BLE001 - a subset that cannot be made eager tells nothing
            if not self.failed:
                text = str(exc).strip()
                b.steps.append(f"a trial failed and counts as no difference: {type(exc).__name__}: "
                               f"{text.splitlines()[0] if text else ''}")
            self.failed += 1
            self.cache[subset] = (False, [])
            return False, []
        assert self.base is not None
        self.outcomes[subset] = outcome
        rows = [r for r in b.diff(self.base, outcome) if not r.match]
        result = (bool(rows), rows)
        self.cache[subset] = result
        return result

    def evidence(self, candidate: Candidate) -> tuple[list[_compare.Row], Any, Any]:
        """Call the candidate compiled and eagerly with the inputs its island received."""
        if candidate.inputs is None or candidate.callable is None:
            return [], None, None
        b = self.b
        args, kwargs = candidate.inputs
        fn = candidate.callable
        compiled = fn if is_tf_function(fn) else b.private_function(fn)
        b.watch.restore()
        b.restore_variables()
        try:
            with graph_scope():
                graph_flat = _compare._flatten(_compare._freeze(compiled(*args, **kwargs)), "output", b.np)
            b.restore_variables()
            with eager_scope():
                eager_flat = _compare._flatten(_compare._freeze(fn(*args, **kwargs)), "output", b.np)
        except Exception:  # noqa: BLE001 - evidence is best effort: the culprit is named anyway
            return [], None, None
        rows = _compare._compare_outputs(graph_flat, eager_flat, b.rtol, b.atol, b.np)
        return rows, graph_flat, eager_flat
