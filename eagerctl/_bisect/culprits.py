"""Turning what the search found into `Culprit`s: evidence, frozen values, unstable traces, suspects."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .. import _compare
from .._scope import graph_scope
from .bisector import Bisector, Outcome
from .candidates import Candidate
from .causes import SUMMARIES, explain, flags, source_findings, suspect_cause
from .code import is_tf_function, where
from .graphs import const_diffs, new_ops, short
from .report import Cause, Culprit
from .search import MAX_CULPRITS
from .trials import Trials


def _named(b: Bisector, c: Candidate, rows: Sequence[_compare.Row], cause: Cause) -> Culprit:
    """A culprit for candidate `c` (the root is `fn itself`) blamed for `rows`."""
    root = c is b.tree.root
    return Culprit(qualname=b.name if root else c.qualname, where=c.where,
                   kind="fn itself" if root else c.kind, name=b.name if root else c.name,
                   path=c.path or [b.name], outputs=[r.path for r in rows],
                   max_abs_diff=max((r.max_abs_diff for r in rows), default=0.0), cause=cause)


def created_by(b: Bisector, c: Candidate) -> list[Any]:
    return [var for var, owner in b.tree.created if owner is c]


def culprit(b: Bisector, trials: Trials, c: Candidate, together: bool, extra: Sequence[str] = ()) -> Culprit:
    if c.inputs is None:
        trials.trial(frozenset({c.key}))
    rows, graph_flat, eager_flat = trials.evidence(c)
    differing = [r for r in rows if not r.match]
    stale = stale_trace(b, c) if differing else []
    if stale:
        names = sorted({name for _, name in c.watched})
        cause = Cause("frozen-value",
                      "a Python value frozen at trace time: its own tf.function was traced when the value "
                      "was different, and compiled calls still use that trace"
                      + (f" (it reads {', '.join(names)})" if names else ""), [*extra, *stale])
    else:
        cause = explain(c, differing, created=created_by(b, c), graph_flat=graph_flat, eager_flat=eager_flat,
                        np=b.np, extra=extra)
    return Culprit(qualname=c.qualname, where=c.where, kind=c.kind, name=c.name, path=c.path,
                   outputs=[r.path for r in differing],
                   max_abs_diff=max((r.max_abs_diff for r in differing), default=0.0) if rows else math.nan,
                   cause=cause, together=together)


def stale_trace(b: Bisector, c: Candidate) -> list[str]:
    """For a culprit that is a tf.function: constants that differ between its cached trace and a fresh one."""
    fn = c.callable
    if c.inputs is None or not is_tf_function(fn):
        return []
    args, kwargs = c.inputs
    try:
        with graph_scope():
            cached = fn.get_concrete_function(*args, **kwargs)
            b.watch.restore()
            fresh = b.private_function(fn.python_function).get_concrete_function(*args, **kwargs)
    except Exception:  # noqa: BLE001 - evidence is best effort
        return []
    finally:
        b.watch.restore()
    return [f"constant {op.name!r} was {short(old)} in its trace, {short(new)} in a fresh trace"
            for op, old, new in const_diffs(b.tf, b.np, cached.graph, fresh.graph)][:5]


def itself(b: Bisector, rows: list[_compare.Row], graph: Outcome, eager: Outcome, *, cause: Cause | None,
           node: Candidate | None = None) -> Culprit:
    node = node or b.tree.root
    if cause is None:
        cause = explain(node, rows, created=created_by(b, node), graph_flat=graph.outputs,
                        eager_flat=eager.outputs, np=b.np)
    culprit = _named(b, b.tree.root, rows, cause)
    culprit.where = node.where
    return culprit


def _owners_of_constants(b: Bisector, old: Any, new: Any,
                         said: tuple[str, str]) -> dict[int, tuple[Candidate, list[str]]]:
    """The candidates that built constants of `new` (a graph traced while discovering) that `old` holds
    with another value."""
    owners: dict[int, tuple[Candidate, list[str]]] = {}
    op_owner = {id(op): c for c in b.tree.all() for op in c.ops}
    for op, before, after in const_diffs(b.tf, b.np, old, new):
        c = op_owner.get(id(op), b.tree.root)
        owners.setdefault(id(c), (c, []))[1].append(
            f"constant {op.name!r} was {short(before)} {said[0]}, {short(after)} {said[1]}")
    return owners


def frozen_culprits(b: Bisector, stale_rows: list[_compare.Row]) -> list[Culprit]:
    """Which candidates built the constants (or variables) that differ from the graph traced earlier."""
    assert b.fresh_graph is not None
    owners = _owners_of_constants(b, b.reference.graph, b.fresh_graph.graph,
                                  ("in the graph traced earlier", "in a fresh trace"))
    op_owner = {id(op): c for c in b.tree.all() for op in c.ops}
    # After the program's first trace (which made variables) a fresh trace builds other ops for those
    # variables, not another branch: only a graph traced at another call tells of a branch.
    fresh_ops = [] if b.first_call else new_ops(b.reference.graph, b.fresh_graph.graph)
    if fresh_ops:
        # A branch taken differently: the first op only a fresh trace builds is where the graphs part.
        def owner(op: Any) -> Candidate:
            return op_owner.get(id(op), b.tree.root)

        flow = [op for op in fresh_ops
                if source_findings(owner(op).code, {n for _, n in owner(op).watched})["control-flow"]]
        op = (flow or fresh_ops)[0]
        owners.setdefault(id(owner(op)), (owner(op), []))[1].append(
            f"a fresh trace builds op {op.name!r} ({op.type}), which the graph traced earlier does not have")
    for var, c in b.tree.created:
        if c.kind in ("function", "tf.function") or c is b.tree.root:
            owners.setdefault(id(c), (c, []))[1].append(
                f"tf.Variable {_compare._variable_name(var)!r} is created again by every new trace")
    return [_named(b, c, stale_rows, _frozen_cause(c, evidence))
            for c, evidence in _narrowed(owners).values()]


def _narrowed(owners: dict[int, tuple[Candidate, list[str]]]) -> dict[int, tuple[Candidate, list[str]]]:
    """An owner whose callee shows a known cause (it drew the number, it changed the value) gives way to it:
    the constant is built where the value is used, the value comes from the callee."""
    narrowed: dict[int, tuple[Candidate, list[str]]] = {}
    for c, evidence in owners.values():
        inner = next((d for d in c.descendants() if flags(d) and not d.children), c)
        entry = narrowed.setdefault(id(inner), (inner, []))
        entry[1].extend(e for e in evidence if e not in entry[1])
    return narrowed


def _frozen_cause(c: Candidate, evidence: list[str]) -> Cause:
    names = sorted({name for _, name in c.watched})
    drawn = source_findings(c.code, set(names))["python-random"] if c.code is not None else []
    if drawn:
        return Cause("python-random", SUMMARIES["python-random"], [*evidence, *drawn])
    if c.state_changes:
        return Cause("trace-side-effect", SUMMARIES["trace-side-effect"].format(c.state_changes[0]),
                     [*(f"while traced, {change}" for change in c.state_changes), *evidence])
    branched = any("builds op" in e for e in evidence)
    flow = source_findings(c.code, set(names))["control-flow"] if branched else []
    if flow:
        return Cause("control-flow", "Python control flow on a value that changed since the graph was "
                     "traced: the branch taken then is frozen into the graph, eager takes the other one",
                     [*evidence, *flow])
    if any("tf.Variable" in e for e in evidence):
        return Cause("variable-creation", "a variable created inside the function: compiled, it was created "
                     "once and keeps its value across calls; eager (and a fresh trace) make a new one at "
                     "every call", evidence)
    return Cause("frozen-value", "a Python value frozen at trace time: it has changed since the graph was "
                 "traced, compiled calls still use the old value"
                 + (f" (it reads {', '.join(names)})" if names else ""), evidence)


def suspect_culprits(b: Bisector) -> list[Culprit]:
    """Functions seen only by the profiler whose trace or source shows a known cause."""
    culprits = []
    for suspect in b.tree.suspects.values():
        cause = suspect_cause(suspect.code, suspect.watched, suspect.state_changes)
        if cause is None:
            continue
        path = [*(suspect.parent.path if suspect.parent is not None else []), suspect.qualname]
        culprits.append(Culprit(qualname=suspect.qualname, where=where(suspect.code), kind="function",
                                name=suspect.qualname, path=path, outputs=[], max_abs_diff=math.nan,
                                cause=cause))
    return culprits[:MAX_CULPRITS]


def unstable_trace(b: Bisector, trials: Trials) -> list[Culprit]:
    """Culprits when two traces of `fn` from the same state differ (a Python value that changes by itself)."""
    base_graph = (b.fresh_graph if b.fresh_graph is not None else b.reference).graph
    b.watch.restore()
    again = b.private_function(b.python_fn)
    with graph_scope():
        concrete = again.get_concrete_function(*b.args, **b.kwargs)
    b.traces += 1
    assert trials.base is not None
    rows = [r for r in b.diff(trials.base, b.run_eager(again, graph_scope())) if not r.match]
    if not rows:
        return []
    owners = _owners_of_constants(b, concrete.graph, base_graph, ("in one trace", "in the next"))
    b.steps.append("tracing it again from the same state builds a different graph, so every trial differed "
                   "for that reason too: fix this first, then bisect again")
    if not owners:
        owners[id(b.tree.root)] = (b.tree.root, [])
    cause_text = ("a Python value that changes between traces by itself (the time, an id, a counter or "
                  "random source outside eagerctl's reach): each trace freezes another value into the "
                  "graph, eager calls read a new one every time")
    return [_named(b, c, rows, Cause("frozen-value", cause_text, evidence))
            for c, evidence in owners.values()]


def compile_error_culprit(b: Bisector, error: Exception) -> Culprit:
    """The candidate whose trace raised, when the eager run does not."""
    owner = b.tree.error_owner or b.tree.root
    message = str(error).strip().splitlines()
    last = next((line.strip() for line in reversed(message) if line.strip()), "")
    if not last.startswith(type(error).__name__):
        last = f"{type(error).__name__}: {last}"
    evidence = [f"compiled: {last}", "eager: runs without error"]
    if "tf.Variable" in str(error):
        cause = Cause("variable-creation",
                      "a variable created inside the function: eagerly a new one is made at every call, "
                      "compiled TensorFlow allows creating it only once (create it outside, or once, guarded "
                      "by `if self.v is None`)", evidence)
    else:
        cause = Cause("graph-only-error", f"it fails only compiled ({last})", evidence)
    culprit = _named(b, owner, [], cause)
    culprit.outputs, culprit.max_abs_diff = (), math.inf
    return culprit
