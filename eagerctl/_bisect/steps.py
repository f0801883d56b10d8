"""The steps of one bisection, in order, each one method; the `Bisection` it ends with.

1. Trace `fn` once to find the candidates (`Bisector.setup`).
2. Run it compiled (what the program runs) and eagerly from the same state.
3. Check the compiled reference itself: XLA, or a graph traced earlier
   (a program's stale trace, `fit`'s cached train function) against a fresh trace.
4. Ops that keep hidden state (stateful random ops, `Timestamp`, samplers):
   two compiled runs that differ name their owners at once.
5. Group testing over eager islands (`search.py`), then evidence and causes.
"""

from __future__ import annotations

import math
import time
from typing import Any

from .. import _compare
from .._scope import eager_scope, graph_scope
from .bisector import Bisector, Outcome
from .candidates import Candidate
from .causes import FLOAT_ROUNDING_RTOL, flags, nondeterministic_ops, rounding_level
from .culprits import (
    compile_error_culprit,
    culprit,
    itself,
    suspect_culprits,
    unstable_trace,
)
from .references import check_reference
from .report import Bisection, Cause, Culprit, plural, verdict_text
from .search import GroupSearch, keys
from .trials import Trials


class Procedure:
    def __init__(self, b: Bisector, started: float) -> None:
        self.b = b
        self.started = started
        self.trials = Trials(b)
        self.search = GroupSearch(self.trials.differs)
        self.culprits: list[Culprit] = []
        self.mismatch_rows: list[_compare.Row] = []
        self.max_diff = 0.0
        self.rounding = False

    def result(self, match: bool, verdict: str | None = None) -> Bisection:
        b = self.b
        if verdict is None:
            verdict = verdict_text(b.name, self.culprits)
            if self.search.truncated:
                verdict += " (and more: the search stopped there)"
            if self.rounding:
                verdict += "; every difference is at the level of float rounding"
        names = [f"{c.qualname} ({c.kind}{' ' + repr(c.name) if c.kind in ('layer', 'model') else ''})"
                 for c in b.tree.candidates.values()]
        note = b.iterators.note()
        steps = [*b.steps, note] if note else b.steps
        return Bisection(name=b.name, match=match, culprits=self.culprits, verdict=verdict,
                         mismatches=[r.path for r in self.mismatch_rows], max_abs_diff=self.max_diff,
                         runs=b.runs, traces=b.traces, candidates=names, steps=steps,
                         seconds=time.perf_counter() - self.started)

    def run(self) -> Bisection:
        b = self.b
        b.setup()
        if b.compile_error is not None:
            return self.compile_error(b.compile_error)
        self.describe_candidates()
        graph, eager = self.reference_runs()
        if not self.mismatch_rows:
            return self.result(True, f"graph and eager AGREE (rtol={b.rtol:g}, atol={b.atol:g}); nothing to "
                               "bisect")
        fresh = check_reference(self.b, self.culprits, graph)
        self.trials.base = fresh
        fe_rows = [r for r in b.diff(fresh, eager) if not r.match]
        self.rounding = rounding_level(fe_rows, fresh.by_path(), eager.by_path(), b.np)
        if self.rounding:
            self.search.max_culprits = 3
            b.steps.append(f"every difference is at the level of float rounding (within rtol="
                           f"{FLOAT_ROUNDING_RTOL:g}): the compiled graph orders or fuses float math "
                           "differently")
        if not fe_rows:
            if not self.culprits:
                self.culprits.append(itself(b, self.mismatch_rows, graph, eager, cause=Cause(
                    "frozen-value", f"a Python value frozen when {b.name} was traced earlier: a fresh trace "
                    "agrees with eager, the graph traced before does not", ())))
            return self.result(False)
        if self.nondeterministic(fresh, graph, eager):
            return self.result(False)
        return self.group_search(graph, eager)

    def describe_candidates(self) -> None:
        b = self.b
        counts: dict[str, int] = {}
        for c in b.tree.candidates.values():
            counts[c.kind] = counts.get(c.kind, 0) + 1
        kinds = ", ".join(f"{n} {k}{'s' if n != 1 and k != 'tf.function' else ''}"
                          for k, n in sorted(counts.items()))
        b.steps.append(f"traced {b.name} once to find the candidates: {len(b.tree.candidates)} "
                       f"({kinds or 'none'}), {len(b.tree.root.children)} called directly by {b.name}")

    def reference_runs(self) -> tuple[Outcome, Outcome]:
        b = self.b
        if b.fit_step is not None:
            count0 = b.fit_step.tracing_count()
            graph = b.run(b.fit_step, graph_scope())
            if b.fit_step.tracing_count() != count0:
                b.steps.append(f"{b.fit_step.__name__} (cached by fit) traced itself again for this batch")
        else:
            graph = b.run(b.reference_fn, graph_scope())
        # The eager reference runs from the Python state a trace leaves, as the program's next call would.
        eager = b.run_eager(b.reference_fn, eager_scope())
        rows = b.diff(graph, eager)
        self.mismatch_rows = [r for r in rows if not r.match]
        self.max_diff = max((r.max_abs_diff for r in rows), default=0.0)
        b.steps.append(f"ran {b.name} compiled and eagerly from the same state: "
                       + ("they agree" if not self.mismatch_rows else
                          f"{len(self.mismatch_rows)} value(s) differ"))
        return graph, eager

    def nondeterministic(self, fresh: Outcome, graph: Outcome, eager: Outcome) -> bool:
        """Ops with hidden state: when two compiled runs differ, their owners are the culprits."""
        b = self.b
        owners = [c for c in b.tree.all() if nondeterministic_ops(c)]
        if not owners:
            return False
        fresh_fn = b.fresh if b.fresh is not None else b.reference_fn
        unstable = [r for r in b.diff(fresh, b.run(fresh_fn, graph_scope())) if not r.match]
        if not unstable:
            return False
        ops = sorted({op.type for c in owners for op in nondeterministic_ops(c)})
        paths = ", ".join(r.path for r in unstable[:3])
        b.steps.append(f"two compiled runs from the same state differ ({paths}): "
                       f"ops whose kernels keep their own state ({', '.join(ops)}) built by "
                       f"{', '.join(c.qualname for c in owners)}")
        islands = frozenset(c.key for c in owners if c is not b.tree.root)
        if islands:
            self.trials.trial(islands)  # their inputs, for the evidence
        for c in owners:
            if c is b.tree.root:
                self.culprits.append(itself(b, self.mismatch_rows, graph, eager, cause=None, node=c))
            else:
                self.culprits.append(culprit(b, self.trials, c, False,
                                             [f"two compiled runs of {b.name} from the same state differ"]))
        return True

    def group_search(self, graph: Outcome, eager: Outcome) -> Bisection:
        b = self.b
        top = list(b.tree.root.children)
        before = b.runs
        found = self.flagged_first(eager)
        if found is None:
            found = self.search.search(top)
        if not found:
            b.discover_suspects()
            suspects = suspect_culprits(b)
            where = f"the {plural(len(top), 'candidate')} called by {b.name}"
            if suspects:
                b.steps.append(f"making {where} eager islands does not reproduce the difference; functions "
                               "of yours that Keras or TensorFlow call outside AutoGraph (so they cannot be "
                               "made eager alone) show a known cause")
                self.culprits += suspects
                return self.result(False)
            b.steps.append(f"making {where} eager islands does not reproduce the difference: it is in "
                           f"{b.name}'s own body")
            self.culprits.append(itself(b, self.mismatch_rows, graph, eager, cause=None))
            return self.result(False)
        b.steps.append(f"eager islands over subsets of the candidates (halving, nested ones narrowed to the "
                       f"innermost): {plural(b.runs - before, 'trial run')} over "
                       f"{plural(len(self.trials), 'subset')}")
        if len({c.key for c, _ in found}) > 1 or self.search.truncated:
            # Several culprits: make sure tracing itself is repeatable, or every trial differs.
            drifting = unstable_trace(b, self.trials)
            if drifting:
                self.culprits = drifting
                return self.result(False)
        if self.search.truncated:
            b.steps.append(f"stopped after {plural(len(self.search.found_keys), 'culprit')}: more candidates "
                           "change the result (pass a looser rtol/atol to see only the large differences)")
        self._name(found)
        return self.result(False)

    def flagged_first(self, eager: Outcome) -> list[tuple[Candidate, bool]] | None:
        """Candidates whose trace or source already shows a known cause, tried alone first.

        When they, made eager, give the whole eager result, nothing else contributes and the search is
        over (narrowed into their own callees); otherwise None, and group testing runs as usual.
        """
        b = self.b
        flagged = [c for c in b.tree.candidates.values() if flags(c)]
        if not flagged or len(flagged) > 3:
            return None
        culprits = [c for c in flagged if self.trials.differs(frozenset({c.key}))]
        if not culprits or not self.trials.reproduces(keys(culprits), eager):
            return None
        b.steps.append(f"{plural(len(flagged), 'candidate')} whose trace or source shows a known cause, "
                       f"tried alone first: {', '.join(c.qualname for c in culprits)} made eager "
                       "give(s) the whole eager result")
        found: list[tuple[Candidate, bool]] = []
        for c in culprits:
            found += self.search.narrow(c, frozenset())
        return found

    def _name(self, found: list[tuple[Candidate, bool]]) -> None:
        seen: set[Any] = set()
        for c, together in found:
            if c.key in seen:
                continue
            seen.add(c.key)
            if together and c.inputs is None:
                self.trials.trial(frozenset({c.key}))
            self.culprits.append(culprit(self.b, self.trials, c, together))

    def compile_error(self, error: Exception) -> Bisection:
        """Tracing `fn` fails: if the eager run works, that is the difference, and the failing candidate is
        to blame."""
        b = self.b
        b.watch.restore()
        try:
            b.run(b.python_fn, eager_scope())
        except Exception:  # noqa: BLE001 - both modes fail: no graph/eager difference to bisect
            raise error from None
        c = compile_error_culprit(b, error)
        self.culprits = [c]
        self.max_diff = math.inf
        self.mismatch_rows = [_compare.Row("output", "output", shape="-", dtype="-", max_abs_diff=math.inf,
                                           match=False)]
        b.steps.append(f"tracing {b.name} raised {type(error).__name__} inside {c.qualname}; the eager run "
                       "does not")
        return self.result(False, f"{b.name} FAILS compiled and runs eagerly, because of {c.qualname}")


__all__ = ["Procedure"]
