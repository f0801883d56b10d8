"""The compiled reference checked before any search: XLA, a graph traced earlier, what fit cached.

Trials compare with a fresh trace of `fn`; when what the program runs is
another graph (XLA-compiled, traced at an earlier call, cached by `fit`), the
difference between the two is a culprit of its own, found here.
"""

from __future__ import annotations

from .. import _compare
from .._scope import graph_scope
from .bisector import Bisector, Outcome
from .causes import rounding_level
from .culprits import frozen_culprits, itself
from .report import Cause, Culprit


def check_reference(b: Bisector, culprits: list[Culprit], graph: Outcome) -> Outcome:
    """The fresh compiled run trials compare with; the compiled reference's own culprits, if any."""
    if b.fresh_graph is not None and b.jit:
        fresh = b.run(b.fresh, graph_scope())
        _xla(b, culprits, graph, fresh)
    elif b.fit_step is not None:
        fresh = b.run(b.reference_fn, graph_scope())
        _stale_fit(b, culprits, graph, fresh)
    elif b.fresh_graph is not None:
        fresh = b.run(b.fresh, graph_scope())
        stale_rows = [r for r in b.diff(graph, fresh) if not r.match]
        before = (f"bisect traced {b.name} as the program's first call does (the program keeps that "
                  "trace)"
                  if b.first_call else f"{b.name} was traced before this call")
        b.steps.append(f"{before}; a fresh trace of it "
                       + ("computes the same as that graph" if not stale_rows else
                          "computes differently from that graph: something it read while traced has "
                          "changed"))
        if stale_rows:
            culprits += frozen_culprits(b, stale_rows)
    else:
        fresh = graph
    return fresh

def _xla(b: Bisector, culprits: list[Culprit], graph: Outcome, fresh: Outcome) -> None:
    xla_rows = [r for r in b.diff(graph, fresh) if not r.match]
    b.steps.append(f"{b.name} is XLA-compiled (jit_compile=True); trials run without XLA, and without "
                   f"XLA it computes {'the same' if not xla_rows else 'differently'}")
    if xla_rows:
        rounding = rounding_level(xla_rows, graph.by_path(), fresh.by_path(), b.np)
        culprits.append(itself(b, xla_rows, graph, fresh, cause=Cause(
            "float-rounding" if rounding else "xla",
            "XLA (jit_compile=True) compiles the graph into different kernels"
            + (", which round differently: not a bug in itself" if rounding else
               ": the same graph without XLA computes differently (try jit_compile=False)"),
            [f"{r.path}: max |XLA - no XLA| {_compare._fmt_diff(r.max_abs_diff)}"
             for r in xla_rows[:3]])))

def _stale_fit(b: Bisector, culprits: list[Culprit], graph: Outcome, fresh: Outcome) -> None:
    assert b.fit_step is not None
    rows = [r for r in b.diff(graph, fresh) if not r.match]
    stale = bool(rows) and not rounding_level(rows, graph.by_path(), fresh.by_path(), b.np)
    label = b.fit_step.__name__
    b.steps.append(f"{b.name} as fit runs it: the train function fit cached ({label}); a fresh trace of "
                   + ("train_step computes differently: that cached graph is stale" if stale else
                      "train_step computes the same" + (" (to float rounding)" if rows else "")))
    if not stale:
        return
    names = sorted({f"{type(c.obj).__name__}.{n}" if c.obj is not None else n
                    for c in b.tree.all() for _, n in c.watched})
    cause = Cause("stale-train-function",
                  "fit traced its train function when it first ran and runs that graph still: a Python "
                  "value train_step reads has changed since (a flag, a schedule, an attribute), and only "
                  "a new trace sees it; rebuild it with model.compile(...) or "
                  "model.make_train_function(force=True) after changing it",
                  [f"{r.path}: max |cached - fresh| {_compare._fmt_diff(r.max_abs_diff)}"
                   for r in rows[:3]]
                  + ([f"Python values train_step reads: {', '.join(names[:8])}"] if names else []))
    c = itself(b, rows, graph, fresh, cause=cause)
    c.qualname = c.name = label
    c.kind = "tf.function"
    culprits.append(c)

