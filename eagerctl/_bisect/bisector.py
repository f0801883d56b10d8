"""The bisection of one call: the function, its arguments, the runs, and the state they start from.

A `Bisector` traces `fn` to find the candidates (`setup`) and runs it
compiled and eagerly from one starting state (`run`, `diff`); its
`Responder` answers the hooks (`responder.py`).

Every run starts alike: the variables the traces touch are restored, a
`tf.data` iterator argument is rewound, and the Python values the candidates
use are put back. Each trace starts from the program's Python state when
`bisect` was called; each eager part (the eager reference run, a trial's
islands) runs from the state a trace leaves, as the program's next call would.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from .. import _compare
from .._scope import graph_scope
from .candidates import CallTree
from .code import code_of
from .hooks import Hooks, Session, installed_session, set_session
from .inputs import FitStep, Iterators, where_of_model
from .responder import Responder
from .state import ProgramState
from .values import State, Watch


class Outcome:
    """One run's outputs and variables, flattened to numpy."""

    __slots__ = ("outputs", "raw", "variables")

    def __init__(self, raw: Any, outputs: dict[str, Any], variables: dict[str, Any]) -> None:
        self.raw = raw
        self.outputs = outputs
        self.variables = variables

    def by_path(self) -> dict[str, Any]:
        """Values keyed by the paths `diff` rows use."""
        return {**self.outputs, **{f"variables[{k!r}]": v for k, v in self.variables.items()}}


class Bisector:
    def __init__(self, target: Any, *, python_fn: Any, graph_fn: Any, name: str, args: tuple[Any, ...],
                 kwargs: dict[str, Any], rtol: float, atol: float, fit_step: FitStep | None = None) -> None:
        import numpy as np
        import tensorflow as tf

        self.tf, self.np = tf, np
        self.target, self.python_fn, self.graph_fn, self.name = target, python_fn, graph_fn, name
        self.fit_step = fit_step
        self.rtol, self.atol = rtol, atol
        self.runs = self.traces = 0
        self.steps: list[str] = []
        self.program = ProgramState()
        self.iterators = Iterators(args, kwargs)
        self.args, self.kwargs = self.iterators.args, self.iterators.kwargs
        self.watch = Watch()
        code = code_of(python_fn)
        self.tree = CallTree(name, code, {c for c in (code, code_of(target)) if c is not None}, self.watch)
        model = getattr(python_fn, "model", None)
        if model is not None:
            self.tree.root.where = where_of_model(model, getattr(python_fn, "method", "call"))
        self.watch.see(self.watch.items_of_user_modules())
        self.watch.see(self.watch.items_of_function(python_fn))
        self.tree.root.watched = self.watch.items_of_function(python_fn)
        self.hooks = Hooks()
        self.responder = Responder(self)
        self.first_call = False  # bisect traced the program's function for its first call (api)
        self.after_trace: State | None = None  # the Python state eager parts run from (None: the first)
        self.compile_error: Exception | None = None
        self.fresh: Any = None  # bisect's own fresh trace when the program's graph came from earlier
        self.fresh_graph: Any = None
        self.jit = bool(getattr(graph_fn, "_jit_compile", False))
        self.variables: dict[str, Any] = {}
        self.snapshot: list[tuple[Any, Any]] = []

    # -- discovery ---------------------------------------------------------------------------
    def setup(self) -> None:
        """Trace `fn` once with the hooks observing: the candidates, the variables, the reference graph."""
        tf = self.tf
        count0 = self.graph_fn.experimental_get_tracing_count()
        traced_before = count0 > 0 and self.fit_step is None
        # A function the program has not traced yet is traced by its own first call, after bisect: bisect
        # traces a copy, so the program's trace (and what it prints or changes) happens as without bisect.
        self.reference_fn = self.graph_fn if traced_before else self.private_function(self.python_fn,
                                                                                     jit=self.jit)
        try:
            if self.jit:  # XLA cannot hold eager islands: trials and discovery trace without it
                self.discover_fresh()
                self.watch.restore()
            self.trace_reference()
            if not traced_before and self.tree.created:
                # Its first trace made variables (optimizer slots), so TensorFlow traced it twice, the second
                # time from the Python state the first left. Trace a copy once more from the program's state,
                # as every trial does, now that the variables exist.
                self.watch.restore()
                self.reference_fn = self.private_function(self.python_fn, jit=self.jit)
                self.trace_reference()
            if not traced_before:
                self.traces += 1
                self.after_trace = self.watch.current()
            elif not self.jit:
                # The program's graph is from earlier: trace afresh to see the candidates.
                self.discover_fresh()
        except Exception as exc:  # noqa: BLE001 - compiled fails: maybe eager does not (a difference)
            self.program.settle()  # variables the failed trace made (optimizer slots): their first values
            self.compile_error = exc
            self.traces += 1
            self.variables = _compare._collect_variables(tf, _NoGraph, [], self.args, self.kwargs)
            self.take_snapshot()
            return
        self.program.settle()
        self.traces += self.graph_fn.experimental_get_tracing_count() - count0
        self.variables = _compare._collect_variables(tf, self.reference, [v for v, _ in self.tree.created],
                                                     self.args, self.kwargs)
        if self.fresh_graph is not None:
            for key, var in _compare._collect_variables(tf, self.fresh_graph, [], (), {}).items():
                if all(var is not v for v in self.variables.values()):
                    self.variables[key if key not in self.variables else f"{key}#fresh"] = var
        self.take_snapshot()

    def trace_reference(self) -> None:
        observe = contextlib.nullcontext() if self.jit else self.session("discover")
        with observe, graph_scope(), self.tf.variable_creator_scope(self.record):
            self.reference = self.reference_fn.get_concrete_function(*self.args, **self.kwargs)

    def record(self, next_creator: Callable[..., Any], **kw: Any) -> Any:
        var = next_creator(**kw)
        session = installed_session()
        owner = session.stack[-1] if session is not None and session.stack else self.tree.root
        self.tree.created.append((var, owner))
        return var

    def discover_fresh(self) -> None:
        self.fresh = self.private_function(self.python_fn)
        with self.session("discover"), graph_scope(), self.tf.variable_creator_scope(self.record):
            self.fresh_graph = self.fresh.get_concrete_function(*self.args, **self.kwargs)
        self.traces += 1

    def discover_suspects(self) -> None:
        """Trace once more with the profiler: the user's functions called outside AutoGraph."""
        self.watch.restore()
        fn = self.private_function(self.python_fn)
        with self.session("profile"), graph_scope():
            fn.get_concrete_function(*self.args, **self.kwargs)
        self.traces += 1
        self.watch.restore()

    def private_function(self, python_fn: Any, *, jit: bool = False) -> Any:
        """A new tf.function of `python_fn` for bisect's own traces, without TF's "retracing" warning."""
        options: dict[str, Any] = {"jit_compile": True} if jit else {}
        signature = getattr(self.graph_fn, "input_signature", None)
        if signature is not None and python_fn is self.python_fn:
            options["input_signature"] = signature
        fn = self.tf.function(python_fn, **options)
        if hasattr(fn, "_omit_frequent_tracing_warning"):
            fn._omit_frequent_tracing_warning = True
        return fn

    @contextlib.contextmanager
    def session(self, mode: str, subset: frozenset[Any] = frozenset()) -> Iterator[Session]:
        session = Session(self.responder, mode, self.tree.root, subset)
        previous = installed_session()
        set_session(session)
        # In a "profile" discovery, a profiler also sees the user's functions that Keras or TensorFlow call
        # outside AutoGraph (a loss passed to compile, helpers inside a Keras 3 layer's call); it slows
        # tracing down, so it runs only when the islands explain nothing (`discover_suspects`).
        profile = mode == "profile" and sys.getprofile() is None
        session.mode = "discover" if mode == "profile" else mode
        if profile:
            sys.setprofile(self.tree.profiler(session.stack, lambda: bool(session.passthrough)))
        try:
            yield session
        finally:
            if profile:
                sys.setprofile(None)
            set_session(previous)

    # -- runs --------------------------------------------------------------------------------
    def take_snapshot(self) -> None:
        self.snapshot = [(var, self.np.array(var.numpy(), copy=True)) for var in self.variables.values()]

    def restore_variables(self) -> None:
        for var, value in self.snapshot:
            var.assign(value)
        self.iterators.rewind()

    def run(self, fn: Any, scope: Any) -> Outcome:
        self.restore_variables()
        with scope:
            raw = _compare._freeze(fn(*self.args, **self.kwargs))
        self.runs += 1
        outputs = _compare._flatten(raw, "output", self.np)
        values = {name: self.np.array(var.numpy(), copy=True) for name, var in self.variables.items()}
        return Outcome(raw, outputs, values)

    def run_eager(self, fn: Any, scope: Any) -> Outcome:
        """A run whose Python body executes: from the Python state a trace leaves."""
        self.watch.restore(self.after_trace)
        return self.run(fn, scope)

    def diff(self, a: Outcome, b: Outcome, rtol: float | None = None,
             atol: float | None = None) -> list[_compare.Row]:
        rtol = self.rtol if rtol is None else rtol
        atol = self.atol if atol is None else atol
        rows = _compare._compare_outputs(a.outputs, b.outputs, rtol, atol, self.np)
        shared = {k: v for k, v in b.variables.items() if k in a.variables}
        rows += _compare._compare_variables({k: a.variables[k] for k in shared}, shared, rtol, atol, self.np)
        return rows

    def restore_all(self) -> None:
        """Everything back as the program left it when it called `bisect`."""
        if self.first_call and getattr(self, "reference", None) is not None and _compare._random_ops(
                self.reference):
            # Bisect ran the graph the program traced for its first call: its stateful random ops drew
            # numbers the program's call would draw. Their kernels are TensorFlow's to keep; clearing the
            # kernel cache makes the call instantiate them afresh, as its first call would.
            self.program.reset_kernels = True
        self.program.restore()
        with contextlib.suppress(Exception):
            self.restore_variables()
        self.watch.restore()


class _NoGraph:
    """Stands in for a concrete function whose trace failed: no graph variables."""

    class graph:
        variables = ()
