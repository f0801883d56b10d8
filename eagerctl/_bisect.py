"""`bisect(fn, *args, **kwargs)`: find the nested function that makes graph and eager disagree.

`compare` says *that* a function's compiled and eager runs differ; `bisect`
says *where*, and why it probably does:

1. **Candidates.** `fn` is traced once with three observers in place:
   AutoGraph's `converted_call` (every call a converted body makes: nested
   `tf.function`s and the user's own Python functions), Keras's
   `Layer.__call__` (every layer and model call) and TensorFlow's op
   creation (which candidate built each op). Together they give the call
   tree of the user-level callables that run inside `fn`, each with its
   qualname and file:line. A profiler also notes the user's functions that
   Keras or TensorFlow call outside AutoGraph ("suspects": they cannot be
   made eager alone, but their trace and source can be read).
2. **Localization.** A *trial* traces `fn` afresh with a subset of the
   candidates turned into eager islands (`@debuggable`'s own path,
   `_Settings._call_while_tracing`), runs it compiled from the same starting
   state, and compares it with the fully compiled run. Group testing over the
   subsets finds one culprit at a time by halving (a half that does not
   differ means the other does), checks it alone, then tries the rest once
   for more: about log2(N) + 2 trials per culprit. When no single candidate
   differs but several together do, it searches one half with the other held
   eager ("needed together"). A culprit with nested candidates is narrowed
   the same way to the innermost one responsible.
3. **Evidence.** Each culprit is called again, compiled and eagerly, with the
   inputs its island received, and its outputs are diffed.
4. **Cause.** What eagerctl saw while tracing: Python state the candidate
   changed (trace-only side effects), constants that differ between the graph
   traced earlier and a fresh trace (a Python value frozen at trace time),
   stateful random ops it built (and compiled runs that differ among
   themselves), Python or NumPy random and branches on `tf.executing_eagerly()`
   or Python values in its source, variables it created, NaN/Inf in one mode
   only, or differences at the level of float rounding.

Every run starts from the same state: variables (as `compare` does) and the
plain Python values the candidates read or write (numbers, strings, tuples,
lists and dicts of them: module globals, closure cells, attributes of layers
and of `self`), plus Python's and NumPy's random state. Each trial restores
that state, traces, and runs, just as the reference runs do; at the end all
of it is restored, so `bisect` never advances training.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from . import _compare, _hook
from ._errors import EagerctlError
from ._scope import eager_scope, graph_scope

if TYPE_CHECKING:
    import ast

_MISSING = object()

# Legacy stateful random ops: seeded per op, their state lives in the kernel,
# not in a variable, so no restore can make two runs (or two traces) agree.
_STATEFUL_RANDOM_OPS = frozenset({
    "RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal", "RandomShuffle",
    "Multinomial", "RandomGamma", "RandomPoisson", "RandomPoissonV2", "ParameterizedTruncatedNormal",
    "RandomCrop",
})
_MAX_CULPRITS = 5
"""The search stops after this many culprits (3 when the whole difference is at float-rounding level:
then every layer tends to contribute a little)."""
_FLOAT_ROUNDING_RTOL = 1e-3
_FLOAT_ROUNDING_ATOL = 1e-5


# -- results ------------------------------------------------------------------------


class Cause:
    """The likely cause of one culprit's difference, with what eagerctl saw.

    `kind` is one of ``"frozen-value"``, ``"trace-side-effect"``,
    ``"stateful-random"``, ``"python-random"``, ``"control-flow"``,
    ``"variable-creation"``, ``"nonfinite"``, ``"float-rounding"``,
    ``"graph-only-error"``, ``"xla"`` or ``"unknown"``; `summary` is one
    sentence; `evidence` the facts behind it.
    """

    __slots__ = ("evidence", "kind", "summary")

    def __init__(self, kind: str, summary: str, evidence: Sequence[str] = ()) -> None:
        self.kind = kind
        self.summary = summary
        self.evidence = tuple(evidence)

    def __str__(self) -> str:
        return self.summary

    def __repr__(self) -> str:
        return f"Cause(kind={self.kind!r}, summary={self.summary!r})"


class Culprit:
    """One callable responsible for a difference between graph and eager.

    Attributes:
        qualname: ``"Scale.call"``, ``"loss_fn"``, ...
        where: ``"path/to/file.py:12"`` (where its code starts).
        kind: ``"tf.function"``, ``"layer"``, ``"model"``, ``"function"`` or
            ``"fn itself"`` (the difference is in the bisected function's own body).
        name: the layer's name for layers and models, else the qualname.
        path: the chain of candidates from `fn` down to it, e.g. ``("model", "scale")``.
        outputs: paths of its outputs that differ between its two modes given
            the same inputs (e.g. ``("output",)``, ``("output[1]",)``).
        max_abs_diff: the largest of those differences (NaN if not measured).
        cause: a `Cause`.
        together: True when it changes the result only together with the other
            culprits marked so.
    """

    __slots__ = ("cause", "kind", "max_abs_diff", "name", "outputs", "path", "qualname", "together", "where")

    def __init__(self, *, qualname: str, where: str, kind: str, name: str, path: Sequence[str],
                 outputs: Sequence[str], max_abs_diff: float, cause: Cause, together: bool = False) -> None:
        self.qualname = qualname
        self.where = where
        self.kind = kind
        self.name = name
        self.path = tuple(path)
        self.outputs = tuple(outputs)
        self.max_abs_diff = max_abs_diff
        self.cause = cause
        self.together = together

    @property
    def label(self) -> str:
        if self.kind in ("layer", "model") and self.name != self.qualname:
            return f"{self.qualname} ({self.kind} {self.name!r})"
        return f"{self.qualname} ({self.kind})"

    def __repr__(self) -> str:
        return (f"Culprit(qualname={self.qualname!r}, where={self.where!r}, kind={self.kind!r}, "
                f"outputs={list(self.outputs)!r}, max_abs_diff={self.max_abs_diff:.3g}, "
                f"cause={self.cause.kind!r})")


class Bisection:
    """What `bisect()` found; `str()` of it is a readable report.

    Attributes:
        name: the bisected function's name.
        match: True when compiled and eager agree (nothing to bisect).
        culprits: `Culprit`s, the most responsible first (empty when `match`).
        verdict: one plain sentence: what differs and where.
        mismatches, max_abs_diff: what differs between the compiled and the
            eager run of `fn` (paths as in `compare`).
        runs: how many times `fn` was run (reference runs and trials).
        traces: how many times `fn` was traced (one per trial).
        candidates: qualnames (with kind) of every candidate found.
        steps: how the culprits were found, one line per step.
        seconds: wall time of the whole bisection.
    """

    __slots__ = ("candidates", "culprits", "match", "max_abs_diff", "mismatches", "name", "runs", "seconds",
                 "steps", "traces", "verdict")

    def __init__(self, *, name: str, match: bool, culprits: Sequence[Culprit], verdict: str,
                 mismatches: Sequence[str], max_abs_diff: float, runs: int, traces: int,
                 candidates: Sequence[str], steps: Sequence[str], seconds: float) -> None:
        self.name = name
        self.match = match
        self.culprits = tuple(culprits)
        self.verdict = verdict
        self.mismatches = tuple(mismatches)
        self.max_abs_diff = max_abs_diff
        self.runs = runs
        self.traces = traces
        self.candidates = tuple(candidates)
        self.steps = tuple(steps)
        self.seconds = seconds

    def __repr__(self) -> str:
        culprits = [c.qualname for c in self.culprits]
        return (f"<Bisection {self.name}: match={self.match}, culprits={culprits!r}, "
                f"runs={self.runs}, seconds={self.seconds:.3g}>")

    def __str__(self) -> str:
        lines = [f"bisect({self.name}): {self.verdict}"]
        for i, c in enumerate(self.culprits, 1):
            lines.append(f"  culprit {i}: {c.label}  at {c.where}")
            if len(c.path) > 1:
                lines.append(f"    called as: {' > '.join(c.path)}")
            lines.append(f"    cause: {c.cause.summary}")
            lines.extend(f"      - {e}" for e in c.cause.evidence)
            if c.outputs:
                outputs = ", ".join(c.outputs)
                lines.append(f"    its outputs that differ, same inputs in both modes: {outputs} "
                             f"(max |graph - eager| {_compare._fmt_diff(c.max_abs_diff)})")
            elif c.max_abs_diff == 0 and c.together:
                lines.append("    alone, its two modes give the same outputs: it changes the result only "
                             "together with the other culprit(s) above")
            elif c.max_abs_diff == 0:
                lines.append("    its outputs agree when it runs alone with the same inputs: "
                             "the difference builds up across it and its callers")
        if self.mismatches:
            shown = ", ".join(self.mismatches[:6]) + (" ..." if len(self.mismatches) > 6 else "")
            lines.append(f"  {self.name} differs in: {shown} (max |graph - eager| "
                         f"{_compare._fmt_diff(self.max_abs_diff)})")
        lines.append(f"  how: {_plural(self.runs, 'run')} and {_plural(self.traces, 'trace')} of {self.name} "
                     f"in {_compare._fmt_seconds(self.seconds)}; {len(self.candidates)} candidate"
                     f"{'s' if len(self.candidates) != 1 else ''} examined")
        lines.extend(f"    {step}" for step in self.steps)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        esc = html.escape
        rows = []
        for i, c in enumerate(self.culprits, 1):
            evidence = "".join(f"<li>{esc(e)}</li>" for e in c.cause.evidence)
            rows.append(
                f"<tr><td>{i}</td><td><code>{esc(c.qualname)}</code><br><small>{esc(c.kind)} "
                f"{esc(c.name if c.name != c.qualname else '')}</small></td>"
                f"<td><code>{esc(c.where)}</code></td><td>{esc(c.cause.summary)}<ul>{evidence}</ul></td>"
                f"<td>{esc(', '.join(c.outputs))}</td>"
                f"<td>{esc(_compare._fmt_diff(c.max_abs_diff))}</td></tr>")
        header = ("<tr><th>#</th><th>culprit</th><th>where</th><th>likely cause</th>"
                  "<th>differing outputs</th><th>max |diff|</th></tr>")
        table = f"<table>{header}{''.join(rows)}</table>" if rows else ""
        steps = "".join(f"<li>{esc(s)}</li>" for s in self.steps)
        return (f"<div><p><b>bisect({esc(self.name)})</b>: {esc(self.verdict)}</p>{table}"
                f"<p><small>{self.runs} runs, {self.traces} traces, {len(self.candidates)} candidates, "
                f"{esc(_compare._fmt_seconds(self.seconds))}</small></p><ul>{steps}</ul></div>")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# -- candidates -----------------------------------------------------------------------


class _Candidate:
    """One user-level callable seen while `fn` was traced."""

    def __init__(self, key: Any, kind: str, *, qualname: str, where: str, name: str, code: Any,
                 obj: Any = None) -> None:
        self.key = key
        self.kind = kind
        self.qualname = qualname
        self.where = where
        self.name = name
        self.code = code
        self.obj = obj  # the layer, for layers
        self.parent: _Candidate | None = None
        self.children: list[_Candidate] = []
        self.ops: list[Any] = []
        self.created: list[Any] = []
        self.state_changes: list[str] = []
        self.watched: list[tuple[Any, Any]] = []  # (owner, name) items of _Watch
        self.inputs: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        self.callable: Any = None  # what evidence calls: the function, tf.function or bound call

    @property
    def path(self) -> list[str]:
        chain: list[str] = []
        node: _Candidate | None = self
        while node is not None and node.kind != "root":
            chain.append(node.name)
            node = node.parent
        return chain[::-1]

    def descendants(self) -> Iterator[_Candidate]:
        for child in self.children:
            yield child
            yield from child.descendants()

    def capture(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.inputs is None:
            self.inputs = (args, dict(kwargs))


_SKIP_DIRS: tuple[str, ...] | None = None


def _skip_dirs() -> tuple[str, ...]:
    global _SKIP_DIRS
    if _SKIP_DIRS is None:
        import sysconfig

        dirs = {os.path.dirname(os.path.abspath(__file__)) + os.sep}
        for key in ("stdlib", "platstdlib", "purelib", "platlib"):
            path = sysconfig.get_paths().get(key)
            if path:
                dirs.add(os.path.abspath(path) + os.sep)
        for path in sys.path:
            if path.endswith(("site-packages", "dist-packages")):
                dirs.add(os.path.abspath(path) + os.sep)
        _SKIP_DIRS = tuple(sorted(dirs))
    return _SKIP_DIRS


def _is_user_code(code: Any) -> bool:
    filename = getattr(code, "co_filename", "")
    if not filename or filename.startswith("<") or "__autograph_generated_file" in filename:
        return False
    if not os.path.isabs(filename) and not os.path.exists(filename):
        return False  # Cython's pseudo-files (numpy/random/mtrand.pyx)
    if code.co_name.startswith("<"):
        return False  # lambdas, comprehensions
    return not os.path.abspath(filename).startswith(_skip_dirs())


def _code_of(fn: Any) -> Any:
    fn = inspect.unwrap(getattr(fn, "__func__", fn), stop=lambda f: hasattr(f, "__code__"))
    return getattr(getattr(fn, "__func__", fn), "__code__", None)


def _where(code: Any) -> str:
    return f"{code.co_filename}:{code.co_firstlineno}" if code is not None else "?"


# -- Python state ---------------------------------------------------------------------


def _plain(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return True
    if depth < 2 and isinstance(value, (tuple, list)):
        return len(value) <= 1000 and all(_plain(v, depth + 1) for v in value)
    if depth < 2 and type(value) is dict:
        return len(value) <= 1000 and all(_plain(k, 2) and _plain(v, depth + 1) for k, v in value.items())
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.generic)


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if type(value) is dict:
        return {k: _copy(v) for k, v in value.items()}
    return value


def _names(code: Any) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


class _Watch:
    """Plain Python values the candidates read or write, saved when first seen, restorable."""

    def __init__(self) -> None:
        self.saved: dict[tuple[int, str], tuple[Any, str, Any]] = {}
        import random

        self.random_state = random.getstate()
        np = sys.modules.get("numpy")
        self.np_state = np.random.get_state() if np is not None else None

    def items_of_function(self, fn: Any) -> list[tuple[Any, str]]:
        fn = inspect.unwrap(fn, stop=lambda f: hasattr(f, "__code__"))
        instance = getattr(fn, "__self__", None)
        func = getattr(fn, "__func__", fn)
        code = getattr(func, "__code__", None)
        if code is None:
            return []
        names = _names(code)
        items: list[tuple[Any, str]] = []
        module_globals = getattr(func, "__globals__", None)
        if isinstance(module_globals, dict):
            items += [(module_globals, n) for n in sorted(names) if n in module_globals
                      and _plain(module_globals[n])]
        for var, cell in zip(code.co_freevars, func.__closure__ or (), strict=False):
            with contextlib.suppress(ValueError):
                if _plain(cell.cell_contents):
                    items.append((cell, var))
        if instance is not None:
            items += self.items_of_object(instance, names)
        return items

    def items_of_object(self, obj: Any, names: set[str] | None = None) -> list[tuple[Any, str]]:
        attrs = getattr(obj, "__dict__", None)
        if not isinstance(attrs, dict):
            return []
        if names is None:  # a layer: the names its class's own (user) methods use
            names = set()
            for klass in type(obj).__mro__:
                for member in vars(klass).values():
                    code = getattr(member, "__code__", None)
                    if code is not None and _is_user_code(code):
                        names |= _names(code)
        if _is_layer(obj):
            # Keras's own state (`built`, `trainable`, ...): restoring `built` would build the layer again.
            names = names - _keras_internal_names(type(obj))
        return [(obj, n) for n in sorted(names) if n in attrs and _plain(attrs[n])]

    def see(self, items: list[tuple[Any, str]]) -> None:
        for owner, name in items:
            key = (id(owner), name)
            if key not in self.saved:
                self.saved[key] = (owner, name, _copy(self._get(owner, name)))

    @staticmethod
    def _get(owner: Any, name: str) -> Any:
        if isinstance(owner, dict):
            return owner.get(name, _MISSING)
        if isinstance(owner, types.CellType):
            return owner.cell_contents
        return owner.__dict__.get(name, _MISSING)

    @staticmethod
    def _set(owner: Any, name: str, value: Any) -> None:
        if isinstance(owner, dict):
            owner[name] = value
        elif isinstance(owner, types.CellType):
            owner.cell_contents = value
        else:
            owner.__dict__[name] = value

    def current(self) -> tuple[dict[tuple[int, str], Any], Any, Any]:
        """Every saved item's value now, and the random states: what `restore(to=...)` brings back."""
        import random

        np = sys.modules.get("numpy")
        values = {key: _copy(self._get(owner, name)) for key, (owner, name, _) in self.saved.items()}
        return values, random.getstate(), np.random.get_state() if np is not None else None

    def values(self, items: list[tuple[Any, str]]) -> list[Any]:
        return [_copy(self._get(owner, name)) for owner, name in items]

    def restore(self, to: tuple[dict[tuple[int, str], Any], Any, Any] | None = None) -> None:
        for key, (owner, name, first) in self.saved.items():
            value = first if to is None else to[0].get(key, first)
            if value is _MISSING:
                continue
            current = self._get(owner, name)
            if isinstance(value, list) and isinstance(current, list):
                current[:] = _copy(value)  # in place: others may hold the list
            elif type(value) is dict and type(current) is dict:
                current.clear()
                current.update(_copy(value))
            else:
                self._set(owner, name, _copy(value))
        import random

        random.setstate(self.random_state if to is None else to[1])
        np = sys.modules.get("numpy")
        np_state = self.np_state if to is None else to[2]
        if np is not None and np_state is not None:
            np.random.set_state(np_state)


def _describe_item(owner: Any, name: str) -> str:
    if isinstance(owner, dict):
        return f"global {name}"
    if isinstance(owner, types.CellType):
        return f"closure variable {name}"
    return f"self.{name}"


# -- hooks into AutoGraph, Keras and op creation --------------------------------------


_local = threading.local()


class _Session:
    """What the hooks do while this thread traces `fn`: observe (discovery) or redirect (a trial)."""

    def __init__(self, bisector: _Bisector, mode: str, subset: frozenset[Any] = frozenset()) -> None:
        self.bisector = bisector
        self.mode = mode
        self.subset = subset
        self.stack: list[_Candidate] = [bisector.root]
        self.passthrough = 0


def _session() -> _Session | None:
    session: _Session | None = getattr(_local, "session", None)
    if session is None or session.passthrough:
        return None
    import tensorflow as tf

    if tf.executing_eagerly():  # an island running, or an eager call: nothing to see or redirect
        return None
    return session


_F = TypeVar("_F", bound=Callable[..., Any])


def _not_converted(fn: _F) -> _F:
    # What tf.autograph.experimental.do_not_convert marks: AutoGraph calls it as it is.
    fn.autograph_info__ = frozenset()  # type: ignore[attr-defined]
    return fn


class _Hooks:
    """Patches installed for the duration of one `bisect` call, and removed after it."""

    def __init__(self) -> None:
        self.patches: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        from tensorflow.python.autograph.impl import api
        from tensorflow.python.framework import ops

        ag_module = api._TRANSPILER.get_extra_locals()["ag__"]
        original = api.converted_call
        self.converted_call = original

        @_not_converted
        def converted_call(f: Any, args: Any, kwargs: Any, caller_fn_scope: Any = None,
                           options: Any = None) -> Any:
            session = _session()
            if session is not None:
                candidate = session.bisector.classify(f)
                if candidate is not None:
                    return session.bisector.on_call(
                        session, candidate, f, args=tuple(args), kwargs=dict(kwargs or {}), options=options,
                        run=lambda: original(f, args, kwargs, caller_fn_scope, options))
            return original(f, args, kwargs, caller_fn_scope, options)

        self._patch(api, "converted_call", converted_call)
        self._patch(ag_module, "converted_call", converted_call)

        create_op = ops.Graph._create_op_internal

        def _create_op_internal(graph: Any, *args: Any, **kwargs: Any) -> Any:
            op = create_op(graph, *args, **kwargs)
            session: _Session | None = getattr(_local, "session", None)
            if session is not None and session.mode == "discover" and not session.passthrough:
                session.stack[-1].ops.append(op)
            return op

        self._patch(ops.Graph, "_create_op_internal", _create_op_internal)

        for layer_class in _layer_classes():
            self._patch(layer_class, "__call__", _layer_call(layer_class.__call__))

    def _patch(self, owner: Any, name: str, value: Any) -> None:
        saved = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        self.patches.append((owner, name, saved))
        setattr(owner, name, value)

    def uninstall(self) -> None:
        while self.patches:
            owner, name, value = self.patches.pop()
            setattr(owner, name, value)


def _layer_call(original: Callable[..., Any]) -> Callable[..., Any]:
    """Keras's `Layer.__call__`, seen by bisect; AutoGraph must call it as it is, as it calls Keras's."""

    @_not_converted
    def __call__(layer: Any, *args: Any, **kwargs: Any) -> Any:
        session = _session()
        if session is None:
            return original(layer, *args, **kwargs)
        candidate = session.bisector.layer_candidate(layer)
        return session.bisector.on_layer_call(session, candidate, layer,
                                              lambda: original(layer, *args, **kwargs))

    return __call__


def _layer_classes() -> list[type]:
    classes: list[type] = []
    for module_name in ("keras.src.layers.layer", "keras.src.engine.base_layer", "keras.engine.base_layer",
                        "tf_keras.src.engine.base_layer"):
        module = sys.modules.get(module_name)
        layer = getattr(module, "Layer", None) if module is not None else None
        if isinstance(layer, type) and "__call__" in layer.__dict__ and layer not in classes:
            classes.append(layer)
    return classes


_KERAS_NAMES: dict[type, frozenset[str]] = {}


def _keras_internal_names(layer_type: type) -> frozenset[str]:
    """Attribute names Keras's base Layer (of this layer's Keras) sets or defines itself."""
    base = next((cls for cls in _layer_classes() if issubclass(layer_type, cls)), None)
    if base is None:
        return frozenset()
    names = _KERAS_NAMES.get(base)
    if names is None:
        found = set(dir(base))
        with contextlib.suppress(Exception):  # a Keras whose bare Layer cannot be made: its class names only
            found |= set(vars(base()))
        found |= {"built", "trainable", "name", "dtype", "supports_masking", "input_spec"}
        names = _KERAS_NAMES[base] = frozenset(found)
    return names


def _is_layer(obj: Any) -> bool:
    return any(isinstance(obj, cls) for cls in _layer_classes())


def _is_model(obj: Any) -> bool:
    return _is_layer(obj) and hasattr(obj, "train_step") and hasattr(obj, "layers")


# -- the search -----------------------------------------------------------------------


class _Suspect:
    """A user function seen only by the profiler: called outside AutoGraph, it cannot be made eager alone."""

    def __init__(self, code: Any, qualname: str, parent: _Candidate) -> None:
        self.code = code
        self.qualname = qualname
        self.parent = parent
        self.watched: list[tuple[Any, str]] = []
        self.state_changes: list[str] = []


class _Outcome:
    """One run's outputs and variables, flattened to numpy."""

    __slots__ = ("outputs", "raw", "variables")

    def __init__(self, raw: Any, outputs: dict[str, Any], variables: dict[str, Any]) -> None:
        self.raw = raw
        self.outputs = outputs
        self.variables = variables


class _Bisector:
    def __init__(self, target: Any, *, python_fn: Any, graph_fn: Any, name: str, args: tuple[Any, ...],
                 kwargs: dict[str, Any], rtol: float, atol: float) -> None:
        import numpy as np
        import tensorflow as tf

        self.tf, self.np = tf, np
        self.target = target
        self.python_fn = python_fn
        self.graph_fn = graph_fn
        self.name = name
        self.args = args
        self.kwargs = kwargs
        self.rtol, self.atol = rtol, atol
        self.runs = 0
        self.traces = 0
        self.steps: list[str] = []
        code = _code_of(python_fn)
        self.root = _Candidate(("root",), "root", qualname=name, where=_where(code), name=name, code=code)
        self.candidates: dict[Any, _Candidate] = {}
        self.excluded = {c for c in (_code_of(python_fn), _code_of(target)) if c is not None}
        self.watch = _Watch()
        self.watch.see(self.watch.items_of_function(python_fn))
        self.root.watched = self.watch.items_of_function(python_fn)
        self.hooks = _Hooks()
        self.trials: dict[frozenset[Any], tuple[bool, list[_compare.Row]]] = {}
        self.created: list[tuple[Any, _Candidate]] = []
        self.error_owner: _Candidate | None = None
        self.suspects: dict[Any, _Suspect] = {}
        self.layer_codes: set[Any] = set()
        self.base: _Outcome | None = None  # the fresh compiled run every trial is compared with
        self.failed_trials = 0
        self.found_keys: set[Any] = set()
        self.max_culprits = _MAX_CULPRITS
        self.truncated = False
        self.rounding = False
        self.final_state: tuple[dict[tuple[int, str], Any], Any, Any] | None = None

    # -- what the hooks call ------------------------------------------------------
    def classify(self, f: Any) -> _Candidate | None:
        if _is_layer(f):
            return None  # its __call__ is hooked
        tf_function = _hook.FUNCTION_MODULE in sys.modules and isinstance(
            f, sys.modules[_hook.FUNCTION_MODULE].Function)
        code = _code_of(f.python_function if tf_function else f)
        if code is None or code in self.excluded or not _is_user_code(code):
            return None
        if getattr(f, "__self__", None) is not None and _is_layer(f.__self__) and code.co_name == "call":
            return None  # a layer's call, seen as the layer
        candidate = self.candidates.get(code)
        if candidate is None:
            kind = "tf.function" if tf_function else "function"
            qualname = code.co_qualname if hasattr(code, "co_qualname") else getattr(
                inspect.unwrap(getattr(f, "__func__", f)), "__qualname__", code.co_name)
            candidate = _Candidate(code, kind, qualname=qualname, where=_where(code), name=qualname,
                                   code=code)
            self.candidates[code] = candidate
        return candidate

    def layer_candidate(self, layer: Any) -> _Candidate:
        key = ("layer", id(layer))
        candidate = self.candidates.get(key)
        if candidate is None:
            call = getattr(type(layer), "call", None)
            code = _code_of(call) if call is not None else None
            kind = "model" if _is_model(layer) else "layer"
            if code is not None:
                self.layer_codes.add(code)
            candidate = _Candidate(key, kind, qualname=f"{type(layer).__name__}.call", where=_where(code),
                                   name=str(getattr(layer, "name", type(layer).__name__)), code=code,
                                   obj=layer)
            self.candidates[key] = candidate
        return candidate

    def on_call(self, session: _Session, candidate: _Candidate, f: Any, *, args: tuple[Any, ...],
                kwargs: dict[str, Any], options: Any, run: Callable[[], Any]) -> Any:
        if session.mode == "discover":
            if candidate.callable is None:
                candidate.callable = f
            items = self.watch.items_of_function(f)
            return self._observe(session, candidate, items, run)
        if candidate.key in session.subset:
            return self._island(session, candidate, f, args=args, kwargs=kwargs, options=options)
        return run()

    def on_layer_call(self, session: _Session, candidate: _Candidate, layer: Any,
                      run: Callable[[], Any]) -> Any:
        if session.mode == "discover":
            if candidate.callable is None:
                candidate.callable = layer.call
            return self._observe(session, candidate, self.watch.items_of_object(layer), run)
        if candidate.key not in session.subset:
            return run()
        had = "call" in layer.__dict__
        saved = layer.__dict__.get("call")
        body = layer.call

        @_not_converted
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._island(session, candidate, body, args=args, kwargs=kwargs, options=None)

        object.__setattr__(layer, "call", call)
        try:
            return run()
        finally:
            if had:
                object.__setattr__(layer, "call", saved)
            else:
                object.__delattr__(layer, "call")

    def _observe(self, session: _Session, candidate: _Candidate, items: list[tuple[Any, str]],
                 run: Callable[[], Any]) -> Any:
        parent = session.stack[-1]
        if candidate is not parent:
            if candidate.parent is None:
                candidate.parent = parent  # its path in reports: where it was first called from
            if candidate not in parent.children and parent not in candidate.descendants():
                parent.children.append(candidate)  # a shared helper is narrowed to from every caller
        self.watch.see(items)
        for item in items:
            if item not in candidate.watched:
                candidate.watched.append(item)
        before = self.watch.values(items)
        session.stack.append(candidate)
        try:
            return run()
        except Exception:
            if self.error_owner is None:
                self.error_owner = candidate  # the innermost candidate the error passed through
            raise
        finally:
            session.stack.pop()
            after = self.watch.values(items)
            for (owner, name), old, new in zip(items, before, after, strict=True):
                if not _same(old, new):
                    change = f"{_describe_item(owner, name)} went from {old!r} to {new!r}"
                    if change not in candidate.state_changes:
                        candidate.state_changes.append(change)

    def _island(self, session: _Session, candidate: _Candidate, f: Any, *, args: tuple[Any, ...],
                kwargs: dict[str, Any], options: Any) -> Any:
        from ._debuggable import debuggable

        converted_call = self.hooks.converted_call
        tf = self.tf

        @_not_converted
        def body(*call_args: Any, **call_kwargs: Any) -> Any:
            if tf.executing_eagerly():  # the island runs it
                candidate.capture(call_args, call_kwargs)
                return f(*call_args, **call_kwargs)
            from tensorflow.python.autograph.core import ag_ctx, converter

            if ag_ctx.control_status_ctx().status != ag_ctx.Status.DISABLED:
                # As AutoGraph would have converted the call (the caller's options: an empty list
                # literal must stay a list, not become a TensorList).
                return converted_call(f, call_args, call_kwargs,
                                      options=options if options is not None else converter.STANDARD_OPTIONS)
            return f(*call_args, **call_kwargs)

        body.__qualname__ = body.__name__ = candidate.qualname
        proxy = debuggable(body)
        session.passthrough += 1
        try:
            return proxy(*args, **kwargs)
        finally:
            session.passthrough -= 1

    # -- runs ----------------------------------------------------------------------
    def setup(self) -> None:
        tf = self.tf

        def record(next_creator: Callable[..., Any], **kw: Any) -> Any:
            var = next_creator(**kw)
            session: _Session | None = getattr(_local, "session", None)
            owner = session.stack[-1] if session is not None and session.stack else self.root
            self.created.append((var, owner))
            return var

        count0 = self.graph_fn.experimental_get_tracing_count()
        self.compile_error: Exception | None = None
        self.fresh_graph: Any = None
        # XLA cannot hold eager islands: trials trace without it, so the candidates come from such a
        # trace, made first; the XLA trace then starts from the same Python state.
        self.jit = bool(getattr(self.graph_fn, "_jit_compile", False))
        observe = contextlib.nullcontext() if self.jit else self._session("discover")
        try:
            if self.jit:
                self.discover_fresh(record)
                self.watch.restore()
            with observe, graph_scope(), tf.variable_creator_scope(record):
                self.reference = self.graph_fn.get_concrete_function(*self.args, **self.kwargs)
            traced = self.graph_fn.experimental_get_tracing_count() != count0
            if not traced and not self.jit:
                # Traced before: what the program runs is that graph. Trace afresh to see the candidates.
                self.discover_fresh(record)
        except Exception as exc:  # noqa: BLE001 - compiled fails: maybe eager does not (a difference)
            self.compile_error = exc
            self.traces += 1
            self.variables = _compare._collect_variables(tf, _NoGraph, [], self.args, self.kwargs)
            self.snapshot = [(var, self.np.array(var.numpy(), copy=True)) for var in self.variables.values()]
            return
        self.traces += self.graph_fn.experimental_get_tracing_count() - count0
        if traced and self.graph_fn is self.target:
            # The program's own function keeps this trace: at the end, the Python state is the
            # one it left, as if the program had traced it itself.
            self.final_state = self.watch.current()
        variables = _compare._collect_variables(tf, self.reference, [v for v, _ in self.created], self.args,
                                                self.kwargs)
        if self.fresh_graph is not None:
            for key, var in _compare._collect_variables(tf, self.fresh_graph, [], (), {}).items():
                if all(var is not v for v in variables.values()):
                    variables[key if key not in variables else f"{key}#fresh"] = var
        self.variables = variables
        self.snapshot = [(var, self.np.array(var.numpy(), copy=True)) for var in variables.values()]

    def discover_fresh(self, record: Callable[..., Any]) -> None:
        self.fresh = self.private_function(self.python_fn)
        with self._session("discover"), graph_scope(), self.tf.variable_creator_scope(record):
            self.fresh_graph = self.fresh.get_concrete_function(*self.args, **self.kwargs)
        self.traces += 1

    def private_function(self, python_fn: Any) -> Any:
        """A new tf.function of `python_fn` for one trial, without TF's "frequent retracing" warning."""
        fn = self.tf.function(python_fn)
        # Each trial traces a new function on purpose: TF would warn about retracing the program's function.
        if hasattr(fn, "_omit_frequent_tracing_warning"):
            fn._omit_frequent_tracing_warning = True
        return fn

    @contextlib.contextmanager
    def _session(self, mode: str, subset: frozenset[Any] = frozenset()) -> Iterator[_Session]:
        session = _Session(self, mode, subset)
        previous = getattr(_local, "session", None)
        _local.session = session
        # While discovering, a profiler also sees the user's functions that Keras or TensorFlow call
        # outside AutoGraph (a loss passed to compile, helpers inside a Keras 3 layer's call).
        profile = mode == "discover" and sys.getprofile() is None
        if profile:
            sys.setprofile(self._profiler(session))
        try:
            yield session
        finally:
            if profile:
                sys.setprofile(None)
            _local.session = previous

    def _profiler(self, session: _Session) -> Callable[[Any, str, Any], None]:
        user: dict[Any, bool] = {}
        pending: dict[int, tuple[_Suspect, list[tuple[Any, str]], list[Any]]] = {}
        watch = self.watch

        def profile(frame: Any, event: str, arg: Any) -> None:
            if event == "call":
                code = frame.f_code
                mine = user.get(code)
                if mine is None:
                    mine = user[code] = (_is_user_code(code) and code not in self.excluded
                                         and code not in self.candidates and code not in self.layer_codes)
                if not mine or session.passthrough:
                    return
                suspect = self.suspects.get(code)
                if suspect is None:
                    qualname = getattr(code, "co_qualname", code.co_name)
                    suspect = self.suspects[code] = _Suspect(code, qualname, session.stack[-1])
                items = [(frame.f_globals, n) for n in sorted(_names(code))
                         if n in frame.f_globals and _plain(frame.f_globals[n])]
                this = frame.f_locals.get("self")
                if this is not None:
                    items += watch.items_of_object(this, _names(code))
                watch.see(items)
                for item in items:
                    if item not in suspect.watched:
                        suspect.watched.append(item)
                pending[id(frame)] = (suspect, items, watch.values(items))
            elif event == "return":
                entry = pending.pop(id(frame), None)
                if entry is not None:
                    suspect, items, before = entry
                    for (owner, name), old, new in zip(items, before, watch.values(items), strict=True):
                        change = f"{_describe_item(owner, name)} went from {old!r} to {new!r}"
                        if not _same(old, new) and change not in suspect.state_changes:
                            suspect.state_changes.append(change)

        return profile

    def restore_variables(self) -> None:
        for var, value in self.snapshot:
            var.assign(value)

    def run(self, fn: Any, scope: Any) -> _Outcome:
        self.restore_variables()
        with scope:
            raw = _compare._freeze(fn(*self.args, **self.kwargs))
        self.runs += 1
        outputs = _compare._flatten(raw, "output", self.np)
        values = {name: self.np.array(var.numpy(), copy=True) for name, var in self.variables.items()}
        return _Outcome(raw, outputs, values)

    def diff(self, a: _Outcome, b: _Outcome, rtol: float | None = None,
             atol: float | None = None) -> list[_compare.Row]:
        rtol = self.rtol if rtol is None else rtol
        atol = self.atol if atol is None else atol
        rows = _compare._compare_outputs(a.outputs, b.outputs, rtol, atol, self.np)
        shared = {k: v for k, v in b.variables.items() if k in a.variables}
        rows += _compare._compare_variables({k: a.variables[k] for k in shared}, shared, rtol, atol, self.np)
        return rows

    def trial(self, subset: frozenset[Any]) -> tuple[bool, list[_compare.Row]]:
        """Trace `fn` afresh with `subset` as eager islands, run it compiled; does it differ from F?"""
        if not subset:
            return False, []
        cached = self.trials.get(subset)
        if cached is not None:
            return cached
        self.watch.restore()
        fresh = self.private_function(self.python_fn)
        self.restore_variables()
        try:
            with self._session("trial", subset):
                outcome = self.run(fresh, graph_scope())
        except Exception as exc:  # noqa: BLE001 - a subset that cannot be made eager tells nothing
            self.traces += 1
            if not self.failed_trials:
                self.steps.append(f"a trial failed and counts as no difference: {type(exc).__name__}: "
                                  f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
            self.failed_trials += 1
            self.trials[subset] = (False, [])
            return False, []
        self.traces += 1
        assert self.base is not None
        rows = [r for r in self.diff(self.base, outcome) if not r.match]
        result = (bool(rows), rows)
        self.trials[subset] = result
        return result

    # -- group testing -------------------------------------------------------------
    def find(self, pool: list[_Candidate], fixed: frozenset[Any]) -> list[tuple[_Candidate, bool]]:
        """Culprits in `pool`, known: `pool` + `fixed` eager differs from compiled, `fixed` alone does not.

        One culprit at a time by halving (a half that does not differ means the
        other one does: not tested), checked alone at the end; then the rest
        of the pool is tried once more for further culprits. About
        log2(N) + 2 trials per culprit. When the halving ends on a candidate
        that does not differ alone, the difference needs several together:
        `_together` finds them.
        """
        found: list[tuple[_Candidate, bool]] = []
        remaining = list(pool)
        while remaining:
            culprit = self._one(remaining, fixed)
            group = [(culprit, bool(fixed))] if culprit is not None else self._together(remaining, fixed)
            found += group
            done = {c.key for c, _ in group}
            remaining = [c for c in remaining if c.key not in done]
            self.found_keys |= done
            if remaining and len(self.found_keys) >= self.max_culprits:
                self.truncated = True
                break
            if not group or not remaining or not self.trial(fixed | _keys(remaining))[0]:
                break
        return found

    def _one(self, pool: list[_Candidate], fixed: frozenset[Any]) -> _Candidate | None:
        while len(pool) > 1:
            half = len(pool) // 2
            pool = pool[:half] if self.trial(fixed | _keys(pool[:half]))[0] else pool[half:]
        return pool[0] if self.trial(fixed | {pool[0].key})[0] else None

    def _together(self, pool: list[_Candidate], fixed: frozenset[Any]) -> list[tuple[_Candidate, bool]]:
        """A small set of candidates from `pool` that differs only together (both halves searched)."""
        if len(pool) == 1:
            return [(pool[0], True)]
        half = len(pool) // 2
        first, second = pool[:half], pool[half:]
        for part in (first, second):
            if self.trial(fixed | _keys(part))[0]:
                return self.find(part, fixed)
        in_first = self._together(first, fixed | _keys(second))
        in_second = self._together(second, fixed | _keys(c for c, _ in in_first))
        return [(c, True) for c, _ in in_first + in_second]

    def narrow(self, candidate: _Candidate, fixed: frozenset[Any]) -> list[tuple[_Candidate, bool]]:
        """The innermost candidates under `candidate` that explain its difference (itself if none)."""
        children = [c for c in candidate.children if c.key not in fixed]
        if not children or not self.trial(fixed | _keys(children))[0]:
            return [(candidate, bool(fixed))]
        narrowed: list[tuple[_Candidate, bool]] = []
        for found, together in self.find(children, fixed):
            for inner, inner_together in self.narrow(found, fixed):
                narrowed.append((inner, together or inner_together))
        return narrowed

    # -- evidence ------------------------------------------------------------------
    def evidence(self, candidate: _Candidate) -> tuple[list[_compare.Row], Any, Any]:
        """Call the candidate compiled and eagerly with the inputs its island received."""
        if candidate.inputs is None or candidate.callable is None:
            return [], None, None
        args, kwargs = candidate.inputs
        fn = candidate.callable
        is_function = _hook.FUNCTION_MODULE in sys.modules and isinstance(
            fn, sys.modules[_hook.FUNCTION_MODULE].Function)
        compiled = fn if is_function else self.private_function(fn)
        self.watch.restore()
        self.restore_variables()
        try:
            with graph_scope():
                graph_out = _compare._freeze(compiled(*args, **kwargs))
                graph_flat = _compare._flatten(graph_out, "output", self.np)
            self.restore_variables()
            with eager_scope():
                eager_out = _compare._freeze(fn(*args, **kwargs))
                eager_flat = _compare._flatten(eager_out, "output", self.np)
        except Exception:  # noqa: BLE001 - evidence is best effort: the culprit is named anyway
            return [], None, None
        rows = _compare._compare_outputs(graph_flat, eager_flat, self.rtol, self.atol, self.np)
        return rows, graph_flat, eager_flat


class _NoGraph:
    """Stands in for a concrete function whose trace failed: no graph variables."""

    class graph:
        variables = ()


def _keys(candidates: Any) -> frozenset[Any]:
    return frozenset(c.key for c in candidates)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # noqa: BLE001
        return False


# -- causes ---------------------------------------------------------------------------


def _source_tree(code: Any) -> tuple[ast.AST, int] | None:
    import ast
    import textwrap

    try:
        lines, _ = inspect.findsource(code)
    except (OSError, TypeError):
        return None
    first = code.co_firstlineno - 1
    block = inspect.getblock(lines[first:])
    try:
        return ast.parse(textwrap.dedent("".join(block))), first
    except SyntaxError:
        return None


def _dotted(node: ast.AST) -> str:
    import ast

    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return _dotted(node.func) + "()"
    return "?"


def _source_findings(code: Any, watched_names: set[str]) -> dict[str, list[str]]:
    """Patterns in a candidate's own source: Python/NumPy random, branches on mode or Python values."""
    import ast

    found: dict[str, list[str]] = {"python-random": [], "control-flow": [], "tf-random": []}
    parsed = _source_tree(code) if code is not None else None
    if parsed is None:
        return found
    tree, offset = parsed
    filename = os.path.basename(code.co_filename)
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0) + offset
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name.startswith(("random.", "np.random.", "numpy.random.")):
                found["python-random"].append(
                    f"{name}() at {filename}:{line} draws a Python-side random number")
            elif name.startswith(("tf.random.", "tensorflow.random.")) and not name.startswith(
                    ("tf.random.stateless", "tf.random.Generator", "tf.random.set_seed")) and not any(
                    k.arg == "seed" for k in node.keywords):
                found["tf-random"].append(f"{name}() without a seed at {filename}:{line}")
        if isinstance(node, (ast.If, ast.While, ast.IfExp)):
            test = ast.unparse(node.test)
            names = {n.attr if isinstance(n, ast.Attribute) else n.id
                     for n in ast.walk(node.test) if isinstance(n, (ast.Name, ast.Attribute))}
            if "executing_eagerly" in test:
                found["control-flow"].append(
                    f"`{test}` at {filename}:{line} branches on the execution mode: compiled and eager "
                    "take different branches")
            elif ".numpy()" in test or names & watched_names:
                what = sorted(names & watched_names)
                found["control-flow"].append(
                    f"`{test}` at {filename}:{line} is Python control flow on "
                    f"{'the Python value ' + ', '.join(what) if what else 'a value'}: decided once while "
                    "tracing, on every call when eager")
    return found


def _nonfinite_note(graph_flat: dict[str, Any] | None, eager_flat: dict[str, Any] | None,
                    np: Any) -> str | None:
    if not graph_flat or not eager_flat:
        return None
    for path, g in graph_flat.items():
        e = eager_flat.get(path)
        if not (isinstance(g, np.ndarray) and isinstance(e, np.ndarray)) or g.dtype.kind not in "fc":
            continue
        if e.shape != g.shape:
            continue
        g_bad, e_bad = ~np.isfinite(g), ~np.isfinite(e)
        if g_bad.any() and not e_bad.any():
            return f"{path} holds {int(g_bad.sum())} NaN/Inf value(s) compiled and none eagerly"
        if e_bad.any() and not g_bad.any():
            return f"{path} holds {int(e_bad.sum())} NaN/Inf value(s) eagerly and none compiled"
    return None


def _rounding_level(rows: list[_compare.Row], a: dict[str, Any] | None, b: dict[str, Any] | None,
                    np: Any) -> bool:
    if not rows or not a or not b:
        return False
    for row in rows:
        x, y = a.get(row.path), b.get(row.path)
        if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)) or x.shape != y.shape:
            return False
        if x.dtype.kind not in "fc" or not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)):
            return False
        if not np.allclose(x, y, rtol=_FLOAT_ROUNDING_RTOL, atol=_FLOAT_ROUNDING_ATOL):
            return False
    return True


def _explain(b: _Bisector, c: _Candidate, rows: list[_compare.Row], *, graph_flat: Any, eager_flat: Any,
             extra: Sequence[str] = ()) -> Cause:
    """The likely cause for culprit `c`, most specific first, with every finding as evidence."""
    np = b.np
    watched_names = {name for _, name in c.watched}
    found = _source_findings(c.code if c.kind != "layer" or _is_user_code(c.code) else None, watched_names)
    random_ops = [op for op in c.ops if op.type in _STATEFUL_RANDOM_OPS]
    created = [var for var, owner in b.created if owner is c]
    evidence: list[str] = list(extra)
    candidates: list[tuple[str, str]] = []
    nonfinite = _nonfinite_note(graph_flat, eager_flat, np)
    if nonfinite:
        candidates.append(("nonfinite", f"numerics: NaN or Inf in one mode only ({nonfinite})"))
    if c.state_changes:
        evidence += [f"while traced, {change}" for change in c.state_changes]
        candidates.append((
            "trace-side-effect",
            "a Python side effect that runs only while tracing: compiled calls reuse the value it had when "
            f"traced, eager calls run it every time ({c.state_changes[0]} while traced)"))
    if found["python-random"]:
        evidence += found["python-random"]
        candidates.append((
            "python-random",
            "Python or NumPy random numbers: drawn once while tracing and frozen into the graph as "
            "constants, drawn anew at every eager call (use tf.random with a seed or a tf.random.Generator)"))
    if random_ops or found["tf-random"]:
        names = sorted({f"{op.type} ({op.name})" for op in random_ops})
        evidence += [f"builds stateful random op {n}" for n in names[:3]] + found["tf-random"]
        candidates.append((
            "stateful-random",
            "stateful random ops without a fixed stream: compiled and eager draw different numbers (use "
            "tf.random.stateless_* with explicit seeds or a tf.random.Generator)"))
    if created:
        evidence += [f"creates tf.Variable {_compare._variable_name(v)!r} while traced" for v in created[:3]]
        candidates.append((
            "variable-creation",
            "a variable created inside the function: compiled, it is created once and keeps its value across "
            "calls; eager, a new one is made at every call"))
    if _rounding_level(rows, graph_flat, eager_flat, np):
        worst = max(r.max_abs_diff for r in rows)
        candidates.append((
            "float-rounding",
            f"numerics at the level of float rounding (max |diff| {worst:.3g}): the compiled graph orders or "
            "fuses float operations differently; not a bug, compare with a looser rtol/atol"))
    if found["control-flow"]:
        evidence += found["control-flow"]
        candidates.append((
            "control-flow",
            "Python control flow on values: the branch is chosen once while tracing (or on the execution "
            "mode), so compiled and eager run different code"))
    if not candidates:
        return Cause("unknown", "no known pattern explains it: its outputs differ between its two modes; "
                     "run it under @eagerctl.debuggable and step through it", evidence)
    kind, summary = candidates[0]
    return Cause(kind, summary, evidence)


# -- frozen values: the graph traced earlier against a fresh trace -------------------


def _strip_suffix(name: str) -> str:
    head, _, tail = name.rpartition("_")
    return head if tail.isdigit() and head else name


def _graphs(graph: Any, key: str = "", seen: set[int] | None = None) -> Iterator[tuple[str, Any]]:
    seen = set() if seen is None else seen
    if id(graph) in seen:
        return
    seen.add(id(graph))
    yield key, graph
    for fname, function in sorted(getattr(graph, "_functions", {}).items()):
        inner = getattr(function, "graph", None)
        if inner is not None:
            yield from _graphs(inner, f"{key}/{_strip_suffix(fname)}", seen)


def _const_diffs(tf: Any, np: Any, old: Any, new: Any) -> list[tuple[Any, Any, Any]]:
    """(op in the fresh graph, old value, new value) for constants that differ between two traces."""
    old_consts: dict[tuple[str, str], Any] = {}
    for key, graph in _graphs(old):
        for op in graph.get_operations():
            if op.type == "Const":
                old_consts[(key, op.name)] = op
    diffs = []
    for key, graph in _graphs(new):
        for op in graph.get_operations():
            other = old_consts.get((key, op.name))
            if op.type != "Const" or other is None:
                continue
            try:
                a = tf.make_ndarray(other.get_attr("value"))
                b = tf.make_ndarray(op.get_attr("value"))
            except Exception:  # noqa: BLE001 - an unreadable constant is not evidence
                continue
            if a.shape != b.shape or not np.array_equal(a, b):
                diffs.append((op, a, b))
    return diffs


def _new_ops(old: Any, new: Any) -> list[Any]:
    """Ops of a fresh trace that the graph traced earlier does not have (by graph and name), in order."""
    old_names = {(key, op.name) for key, graph in _graphs(old) for op in graph.get_operations()}
    return [op for key, graph in _graphs(new) for op in graph.get_operations()
            if (key, op.name) not in old_names and op.type not in ("NoOp", "Identity", "Placeholder")]


def _short(value: Any) -> str:
    text = repr(value.item() if getattr(value, "size", 2) == 1 else value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- entry point ----------------------------------------------------------------------


def _check_options(rtol: object, atol: object) -> None:
    for name, value in (("rtol", rtol), ("atol", atol)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"bisect({name}={value!r}): {name} must be a number, not {type(value).__name__}")
        if not value >= 0:
            raise EagerctlError(f"bisect({name}={value!r}): {name} must be 0 or more")


def _resolve(fn: Any) -> tuple[Any, str]:
    """(the callable to bisect, its name): a Keras model with an optimizer becomes one train step."""
    target = _compare._unwrap(fn)
    if _is_model(target):
        model = target
        if getattr(model, "optimizer", None) is not None:
            def train_step(*data: Any) -> Any:
                # fit hands train_step tensors, never NumPy arrays (Keras 2 needs them).
                import tensorflow as tf

                data = tf.nest.map_structure(
                    lambda v: tf.convert_to_tensor(v) if type(v).__module__ == "numpy" else v, data)
                return model.train_step(data[0] if len(data) == 1 else tuple(data))

            return train_step, f"{type(model).__name__}.train_step"
        return target, f"{type(model).__name__}.call"
    return target, _compare._function_name(target)


def bisect(fn: Callable[..., Any], /, *args: Any, rtol: float = 1e-5, atol: float = 1e-6,
           **kwargs: Any) -> Bisection:
    """Find the nested functions, layers and `tf.function`s that make `fn`'s graph and eager runs differ.

    `fn` is a `tf.function`, a Python function (bisected as `tf.function(fn)`,
    like a train step), a Keras model (with an optimizer: one `train_step` on
    the data `args`, as `fit` runs it; without: its forward call) or a model's
    `train_step`. Returns a `Bisection`: `culprits` (each with `qualname`,
    `where`, `kind`, `outputs`, `max_abs_diff` and a likely `cause`), `runs`,
    `seconds`; `str()` of it is a readable report. Variables and the Python
    values the candidates use are restored afterwards: training does not
    advance. Keyword arguments named `rtol` or `atol` are bisect's own.

    Example::

        report = eagerctl.bisect(train_step, x, y)
        print(report)                        # the culprit first, then how it was found
        culprit = report.culprits[0]
        print(culprit.qualname, culprit.where, culprit.cause.kind)
    """
    started = time.perf_counter()
    _check_options(rtol, atol)
    target, name = _resolve(fn)
    is_tf_function, graph_fn = _compare.checked_target(
        "bisect", "a tf.function, a Keras model or a Python callable", fn, target, name)
    python_fn = target.python_function if is_tf_function else target
    b = _Bisector(target, python_fn=python_fn, graph_fn=graph_fn, name=name, args=args, kwargs=dict(kwargs),
                  rtol=float(rtol), atol=float(atol))
    try:
        b.hooks.install()
        return _search(b, started)
    finally:
        b.hooks.uninstall()
        with contextlib.suppress(Exception):
            b.restore_variables()
        b.watch.restore(b.final_state)


def _search(b: _Bisector, started: float) -> Bisection:  # noqa: PLR0911 - one return per plain verdict
    np = b.np
    b.setup()
    if b.compile_error is not None:
        return _compile_error(b, started)
    candidates = list(b.candidates.values())
    counts: dict[str, int] = {}
    for c in candidates:
        counts[c.kind] = counts.get(c.kind, 0) + 1
    kinds = ", ".join(f"{n} {k}{'s' if n != 1 and k != 'tf.function' else ''}"
                      for k, n in sorted(counts.items()))
    b.steps.append(f"traced {b.name} once to find the candidates: {len(candidates)} "
                   f"({kinds or 'none'}), {len(b.root.children)} called directly by {b.name}")

    graph = b.run(b.graph_fn, graph_scope())
    # The eager reference runs from the state the trace left, as compare's does.
    eager = b.run(b.graph_fn, eager_scope())
    ge_rows = b.diff(graph, eager)
    mismatch_rows = [r for r in ge_rows if not r.match]
    max_diff = max((r.max_abs_diff for r in ge_rows), default=0.0)
    mismatches = [r.path for r in mismatch_rows]
    names = [f"{c.qualname} ({c.kind}{' ' + repr(c.name) if c.kind in ('layer', 'model') else ''})"
             for c in candidates]

    def result(match: bool, culprits: list[Culprit], verdict: str) -> Bisection:
        return Bisection(name=b.name, match=match, culprits=culprits, verdict=verdict, mismatches=mismatches,
                         max_abs_diff=max_diff, runs=b.runs, traces=b.traces, candidates=names, steps=b.steps,
                         seconds=time.perf_counter() - started)

    b.steps.append(f"ran {b.name} compiled and eagerly from the same state: "
                   + ("they agree" if not mismatch_rows else f"{len(mismatch_rows)} value(s) differ"))
    if not mismatch_rows:
        return result(True, [],
                      f"graph and eager AGREE (rtol={b.rtol:g}, atol={b.atol:g}); nothing to bisect")

    culprits: list[Culprit] = []
    if b.fresh_graph is not None and b.jit:
        fresh = b.run(b.fresh, graph_scope())
        xla_rows = [r for r in b.diff(graph, fresh) if not r.match]
        b.steps.append(f"{b.name} is XLA-compiled (jit_compile=True); trials run without XLA, and without "
                       f"XLA it computes {'the same' if not xla_rows else 'differently'}")
        if xla_rows:
            rounding = _rounding_level(xla_rows, _by_path(graph), _by_path(fresh), np)
            culprits.append(_itself(b, xla_rows, graph, fresh, cause=Cause(
                "float-rounding" if rounding else "xla",
                "XLA (jit_compile=True) compiles the graph into different kernels"
                + (", which round differently: not a bug in itself" if rounding else
                   ": the same graph without XLA computes differently (try jit_compile=False)"),
                [f"{r.path}: max |XLA - no XLA| {_compare._fmt_diff(r.max_abs_diff)}"
                 for r in xla_rows[:3]])))
    elif b.fresh_graph is not None:
        fresh = b.run(b.fresh, graph_scope())
        stale_rows = [r for r in b.diff(graph, fresh) if not r.match]
        b.steps.append(f"{b.name} was traced before this call; a fresh trace of it "
                       + ("computes the same as that graph" if not stale_rows else
                          "computes differently from that graph: something it read while traced has "
                          "changed"))
        if stale_rows:
            culprits += _frozen_culprits(b, stale_rows)
    else:
        fresh = graph
    b.base = fresh
    fe_rows = [r for r in b.diff(fresh, eager) if not r.match]
    b.rounding = _rounding_level(fe_rows, _by_path(fresh), _by_path(eager), np)
    if b.rounding:
        b.max_culprits = 3
        b.steps.append(f"every difference is at the level of float rounding (within rtol="
                       f"{_FLOAT_ROUNDING_RTOL:g}): the compiled graph orders or fuses float math "
                       "differently")
    if not fe_rows:
        if not culprits:
            culprits.append(_itself(b, mismatch_rows, graph, eager, cause=Cause(
                "frozen-value", f"a Python value frozen when {b.name} was traced earlier: a fresh trace "
                "agrees with eager, the graph traced before does not", ())))
        return result(False, culprits, _verdict(b, culprits))

    random_owners = [c for c in [b.root, *candidates] if any(op.type in _STATEFUL_RANDOM_OPS for op in c.ops)]
    if random_owners:
        again = b.run(b.fresh if b.fresh_graph is not None else b.graph_fn, graph_scope())
        unstable = [r for r in b.diff(fresh, again) if not r.match]
        if unstable:
            paths = ", ".join(r.path for r in unstable[:3])
            owners = ", ".join(c.qualname for c in random_owners)
            b.steps.append(f"two compiled runs from the same state differ ({paths}): stateful random ops "
                           f"built by {owners}")
            islands = frozenset(c.key for c in random_owners if c is not b.root)
            if islands:
                b.trial(islands)  # their inputs, for the evidence
            for c in random_owners:
                if c is b.root:
                    culprits.append(_itself(b, mismatch_rows, graph, eager, cause=None, node=c))
                else:
                    culprits.append(_culprit(b, c, False, ["two compiled runs of "
                                                           f"{b.name} from the same state differ"]))
            return result(False, culprits, _verdict(b, culprits))

    top = list(b.root.children)
    before = b.runs
    found: list[tuple[_Candidate, bool]] = []
    if len(top) == 1:
        # One candidate: try what it calls first; itself only if they do not explain it.
        found = b.narrow(top[0], frozenset())
        if found == [(top[0], False)] and not b.trial(_keys(top))[0]:
            found = []
    elif top and b.trial(_keys(top))[0]:
        for c, together in b.find(top, frozenset()):
            for inner, inner_together in b.narrow(c, frozenset()):
                found.append((inner, together or inner_together))
    if not found:
        suspects = _suspect_culprits(b, mismatch_rows)
        if suspects:
            b.steps.append(f"making the {_plural(len(top), 'candidate')} called by {b.name} eager islands "
                           "does not reproduce the difference; functions of yours that Keras or TensorFlow "
                           "call outside AutoGraph (so they cannot be made eager alone) show a known cause")
            return result(False, suspects, _verdict(b, suspects))
        b.steps.append(f"making the {_plural(len(top), 'candidate')} called by {b.name} eager islands does "
                       f"not reproduce the difference: it is in {b.name}'s own body")
        culprits.append(_itself(b, mismatch_rows, graph, eager, cause=None))
        return result(False, culprits, _verdict(b, culprits))
    b.steps.append(f"eager islands over subsets of the candidates (halving, nested ones narrowed to the "
                   f"innermost): {_plural(b.runs - before, 'trial run')} over "
                   f"{_plural(len(b.trials), 'subset')}")
    if len({c.key for c, _ in found}) > 1 or b.truncated:
        # Several culprits: make sure tracing itself is repeatable, or every trial differs.
        drifting = _unstable_trace(b)
        if drifting:
            return result(False, drifting, _verdict(b, drifting))
    if b.truncated:
        b.steps.append(f"stopped after {_plural(len(b.found_keys), 'culprit')}: more candidates change the "
                       "result (pass a looser rtol/atol to see only the large differences)")
    seen: set[Any] = set()
    for c, together in found:
        if c.key in seen:
            continue
        seen.add(c.key)
        if together and c.inputs is None:
            b.trial(frozenset({c.key}))
        culprits.append(_culprit(b, c, together))
    return result(False, culprits, _verdict(b, culprits))


def _compile_error(b: _Bisector, started: float) -> Bisection:
    """Tracing `fn` fails: if the eager run works, that is the difference, and the failing candidate is to
    blame."""
    error = b.compile_error
    assert error is not None
    b.watch.restore()
    try:
        b.run(b.python_fn, eager_scope())
    except Exception:  # noqa: BLE001 - both modes fail: no graph/eager difference to bisect
        raise error from None
    owner = b.error_owner or b.root
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
    kind = owner.kind if owner is not b.root else "fn itself"
    culprit = Culprit(qualname=owner.qualname if owner is not b.root else b.name, where=owner.where,
                      kind=kind, name=owner.name, path=owner.path or [b.name], outputs=[],
                      max_abs_diff=math.inf, cause=cause)
    b.steps.append(f"tracing {b.name} raised {type(error).__name__} inside {culprit.qualname}; the eager run "
                   "does not")
    names = [f"{c.qualname} ({c.kind})" for c in b.candidates.values()]
    return Bisection(name=b.name, match=False, culprits=[culprit],
                     verdict=f"{b.name} FAILS compiled and runs eagerly, because of {culprit.qualname}",
                     mismatches=["output"], max_abs_diff=math.inf, runs=b.runs, traces=b.traces,
                     candidates=names, steps=b.steps, seconds=time.perf_counter() - started)


def _suspect_culprits(b: _Bisector, rows: list[_compare.Row]) -> list[Culprit]:
    """Functions seen only by the profiler whose trace or source shows a known cause."""
    culprits = []
    for suspect in b.suspects.values():
        found = _source_findings(suspect.code, {name for _, name in suspect.watched})
        note = ("named from its trace and source: it is called outside AutoGraph (by Keras or "
                "TensorFlow), so bisect cannot make it eager by itself")
        if suspect.state_changes:
            cause = Cause("trace-side-effect",
                          "a Python side effect that runs only while tracing: compiled calls reuse the value "
                          f"it had when traced, eager calls run it every time ({suspect.state_changes[0]} "
                          "while traced)", [*(f"while traced, {c}" for c in suspect.state_changes), note])
        elif found["python-random"]:
            cause = Cause("python-random",
                          "Python or NumPy random numbers: drawn once while tracing and frozen into the "
                          "graph as constants, drawn anew at every eager call",
                          [*found["python-random"], note])
        elif found["control-flow"]:
            cause = Cause("control-flow",
                          "Python control flow on values: the branch is chosen once while tracing (or on the "
                          "execution mode), so compiled and eager run different code",
                          [*found["control-flow"], note])
        elif found["tf-random"]:
            cause = Cause("stateful-random",
                          "stateful random ops without a fixed stream: compiled and eager draw different "
                          "numbers", [*found["tf-random"], note])
        else:
            continue
        path = [*suspect.parent.path, suspect.qualname]
        culprits.append(Culprit(qualname=suspect.qualname, where=_where(suspect.code), kind="function",
                                name=suspect.qualname, path=path, outputs=[], max_abs_diff=math.nan,
                                cause=cause))
    return culprits[:_MAX_CULPRITS]


def _unstable_trace(b: _Bisector) -> list[Culprit]:
    """Culprits when two traces of `fn` from the same state differ (a Python value that changes by itself)."""
    base_graph = (b.fresh_graph if b.fresh_graph is not None else b.reference).graph
    b.watch.restore()
    again = b.private_function(b.python_fn)
    with graph_scope():
        concrete = again.get_concrete_function(*b.args, **b.kwargs)
    b.traces += 1
    assert b.base is not None
    rows = [r for r in b.diff(b.base, b.run(again, graph_scope())) if not r.match]
    if not rows:
        return []
    op_owner = {id(op): c for c in [b.root, *b.candidates.values()] for op in c.ops}
    owners: dict[int, tuple[_Candidate, list[str]]] = {}
    for op, new, old in _const_diffs(b.tf, b.np, concrete.graph, base_graph):
        c = op_owner.get(id(op), b.root)
        owners.setdefault(id(c), (c, []))[1].append(
            f"constant {op.name!r} was {_short(old)} in one trace, {_short(new)} in the next")
    b.steps.append("tracing it again from the same state builds a different graph, so every trial differed "
                   "for that reason too: fix this first, then bisect again")
    if not owners:
        owners[id(b.root)] = (b.root, [])
    culprits = []
    for c, evidence in owners.values():
        cause = Cause("frozen-value",
                      "a Python value that changes between traces by itself (the time, an id, a counter or "
                      "random source outside eagerctl's reach): each trace freezes another value into the "
                      "graph, eager calls read a new one every time", evidence)
        culprits.append(Culprit(
            qualname=c.qualname if c is not b.root else b.name, where=c.where,
            kind=c.kind if c is not b.root else "fn itself", name=c.name, path=c.path or [b.name],
            outputs=[r.path for r in rows], max_abs_diff=max(r.max_abs_diff for r in rows), cause=cause))
    return culprits


def _culprit(b: _Bisector, c: _Candidate, together: bool, extra: Sequence[str] = ()) -> Culprit:
    if c.inputs is None:
        b.trial(frozenset({c.key}))
    rows, graph_flat, eager_flat = b.evidence(c)
    differing = [r for r in rows if not r.match]
    stale = _stale_trace(b, c) if differing else []
    if stale:
        names = sorted({name for _, name in c.watched})
        cause = Cause("frozen-value",
                      "a Python value frozen at trace time: its own tf.function was traced when the value "
                      "was different, and compiled calls still use that trace"
                      + (f" (it reads {', '.join(names)})" if names else ""), [*extra, *stale])
    else:
        cause = _explain(b, c, differing, graph_flat=graph_flat, eager_flat=eager_flat, extra=extra)
    return Culprit(qualname=c.qualname, where=c.where, kind=c.kind, name=c.name, path=c.path,
                   outputs=[r.path for r in differing],
                   max_abs_diff=max((r.max_abs_diff for r in differing), default=0.0) if rows else math.nan,
                   cause=cause, together=together)


def _stale_trace(b: _Bisector, c: _Candidate) -> list[str]:
    """For a culprit that is a tf.function: constants that differ between its cached trace and a fresh one."""
    fn = c.callable
    if c.inputs is None or not (_hook.FUNCTION_MODULE in sys.modules and isinstance(
            fn, sys.modules[_hook.FUNCTION_MODULE].Function)):
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
    return [f"constant {op.name!r} was {_short(old)} in its trace, {_short(new)} in a fresh trace"
            for op, old, new in _const_diffs(b.tf, b.np, cached.graph, fresh.graph)][:5]


def _itself(b: _Bisector, rows: list[_compare.Row], graph: _Outcome, eager: _Outcome, *, cause: Cause | None,
            node: _Candidate | None = None) -> Culprit:
    node = node or b.root
    if cause is None:
        cause = _explain(b, node, rows, graph_flat=graph.outputs, eager_flat=eager.outputs)
    return Culprit(qualname=b.name, where=node.where, kind="fn itself", name=b.name, path=[b.name],
                   outputs=[r.path for r in rows],
                   max_abs_diff=max((r.max_abs_diff for r in rows), default=0.0),
                   cause=cause)


def _frozen_culprits(b: _Bisector, stale_rows: list[_compare.Row]) -> list[Culprit]:
    """Which candidates built the constants (or variables) that differ from the graph traced earlier."""
    tf, np = b.tf, b.np
    assert b.fresh_graph is not None
    owners: dict[int, tuple[_Candidate, list[str]]] = {}
    op_owner = {id(op): c for c in [b.root, *b.candidates.values()] for op in c.ops}
    for op, old, new in _const_diffs(tf, np, b.reference.graph, b.fresh_graph.graph):
        c = op_owner.get(id(op), b.root)
        entry = owners.setdefault(id(c), (c, []))
        entry[1].append(f"constant {op.name!r} was {_short(old)} in the graph traced earlier, {_short(new)} "
                        "in a fresh trace")
    new_ops = _new_ops(b.reference.graph, b.fresh_graph.graph)
    if new_ops:
        # A branch taken differently: the first op only a fresh trace builds is where the graphs part.
        flow = [op for op in new_ops if _source_findings(
            op_owner.get(id(op), b.root).code, {n for _, n in op_owner.get(id(op), b.root).watched}
        )["control-flow"]]
        op = (flow or new_ops)[0]
        c = op_owner.get(id(op), b.root)
        entry = owners.setdefault(id(c), (c, []))
        entry[1].append(f"a fresh trace builds op {op.name!r} ({op.type}), which the graph traced earlier "
                        "does not have")
    for var, c in b.created:
        if c.kind in ("function", "tf.function") or c is b.root:
            entry = owners.setdefault(id(c), (c, []))
            entry[1].append(
                f"tf.Variable {_compare._variable_name(var)!r} is created again by every new trace")
    culprits = []
    max_diff = max((r.max_abs_diff for r in stale_rows), default=0.0)
    for c, evidence in owners.values():
        created = any("tf.Variable" in e for e in evidence)
        names = sorted({name for _, name in c.watched})
        branched = any("builds op" in e for e in evidence)
        flow = _source_findings(c.code, set(names))["control-flow"] if branched else []
        if flow:
            cause = Cause("control-flow",
                          "Python control flow on a value that changed since the graph was traced: the "
                          "branch taken then is frozen into the graph, eager takes the other one",
                          [*evidence, *flow])
        elif created:
            cause = Cause("variable-creation",
                          "a variable created inside the function: compiled, it was created once and keeps "
                          "its value across calls; eager (and a fresh trace) make a new one at every call",
                          evidence)
        else:
            cause = Cause("frozen-value",
                          "a Python value frozen at trace time: it has changed since the graph was traced, "
                          "compiled calls still use the old value"
                          + (f" (it reads {', '.join(names)})" if names else ""), evidence)
        culprits.append(Culprit(
            qualname=c.qualname if c is not b.root else b.name, where=c.where,
            kind=c.kind if c is not b.root else "fn itself", name=c.name, path=c.path or [b.name],
            outputs=[r.path for r in stale_rows], max_abs_diff=max_diff, cause=cause))
    return culprits


def _verdict(b: _Bisector, culprits: list[Culprit]) -> str:
    verdict = _verdict_text(b, culprits)
    if b.truncated:
        verdict += " (and more: the search stopped there)"
    if b.rounding:
        verdict += "; every difference is at the level of float rounding"
    return verdict


def _by_path(outcome: _Outcome) -> dict[str, Any]:
    """An outcome's values keyed by the paths `diff` rows use."""
    return {**outcome.outputs, **{f"variables[{k!r}]": v for k, v in outcome.variables.items()}}


def _verdict_text(b: _Bisector, culprits: list[Culprit]) -> str:
    if not culprits:
        return "graph and eager DIFFER, and no candidate explains it"
    if len(culprits) == 1 and culprits[0].kind == "fn itself":
        return (f"graph and eager DIFFER, and the difference is in {b.name} itself: no nested candidate "
                "explains it")
    together = [c for c in culprits if c.together]
    if together:
        return ("graph and eager DIFFER only when " + " and ".join(c.qualname for c in together)
                + " run eagerly together: no one of them alone explains it")
    return f"graph and eager DIFFER because of {', '.join(_short_label(c) for c in culprits)}"


def _short_label(c: Culprit) -> str:
    return f"{c.qualname} ({c.name!r})" if c.kind in ("layer", "model") else c.qualname


__all__ = ["Bisection", "Cause", "Culprit", "bisect"]



# -- eagerctl run --bisect -------------------------------------------------------------


def bisect_first_call(target: Any, label: str) -> Any:
    """`target` wrapped so that its first call is bisected (report on stderr), then runs as usual.

    For `eagerctl run --bisect MODULE:QUALNAME`. The call itself then runs
    unchanged (bisect restores every state it touched), and later calls go
    straight through. A first call made while TensorFlow traces a graph cannot
    be bisected (bisect runs the function): a warning says so.
    """
    from ._debuggable import _build_into_graph

    if _FIRST_CALL is not None and isinstance(target, _FIRST_CALL):
        return target  # wrapped already (the program bound the same object twice)
    done = [False]

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        import tensorflow as tf

        if not tf.executing_eagerly():
            if not done[0]:
                done[0] = True
                graph = getattr(tf.compat.v1.get_default_graph(), "name", "a graph")
                print(f"eagerctl run: warning: --bisect {label}: its first call came while TensorFlow traced "
                      f"{graph!r}, where it cannot be run and bisected; name the function that is called "
                      "eagerly (the tf.function, train step or model the program calls)", file=sys.stderr)
            return _build_into_graph(wrapped, args, kwargs)
        if not done[0]:
            done[0] = True
            try:
                report = bisect(wrapped, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - the program goes on whatever bisect finds
                print(f"eagerctl run: --bisect {label}: could not bisect its first call: "
                      f"{type(exc).__name__}: {exc}", file=sys.stderr)
            else:
                print(f"eagerctl run: --bisect {label}: its first call, bisected:\n{report}", file=sys.stderr)
        return wrapped(*args, **kwargs)

    return _FirstCall(target, wrapper)


def _first_call_classes() -> tuple[type, type]:
    import wrapt

    class _BoundFirstCall(wrapt.BoundFunctionWrapper):  # type: ignore[type-arg]
        autograph_info__: dict[str, Any] = {}  # noqa: RUF012 - AutoGraph calls it as it is

    class FirstCall(wrapt.FunctionWrapper):  # type: ignore[type-arg]
        __bound_function_wrapper__ = _BoundFirstCall
        autograph_info__: dict[str, Any] = {}  # noqa: RUF012

    return FirstCall, _BoundFirstCall


def _FirstCall(target: Any, wrapper: Callable[..., Any]) -> Any:
    global _FIRST_CALL
    if _FIRST_CALL is None:
        _FIRST_CALL = _first_call_classes()[0]
    return _FIRST_CALL(target, wrapper)


_FIRST_CALL: type | None = None
