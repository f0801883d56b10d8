"""`compare(fn, *args, **kwargs)`: run a function compiled and eagerly, and diff the two.

The question it answers is "why does my model train differently eagerly?".
Both runs start from the same state: the variables the function touches are
snapshotted once the graph is traced (so variables created on the first call,
such as optimizer slots, exist and are included), restored before each mode,
compared after the compared call, and restored again at the end, so `compare`
never advances training.

"Touches" means: every variable the traced graph reads or assigns (TF records
them in `FuncGraph.variables`, including those of nested `tf.function`s),
every variable created while tracing, and every `tf.Variable` passed in the
arguments (TF does not record those, they are graph inputs).

Each mode runs twice from that state: values that differ between the two runs
of one mode (unseeded random ops, Python randomness) are reported as
nondeterministic, with the random ops found in the graph, and left out of the
verdict. A graph traced against variables that have since been deleted (the
program rebound a global model) cannot run: that is reported as the
divergence it is, and only the eager mode runs.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import _display, _hook
from ._errors import EagerctlError
from ._scope import eager_scope, graph_scope

_MISSING = object()


class Row:
    """One compared value: an output leaf or a variable."""

    __slots__ = ("dtype", "kind", "match", "max_abs_diff", "note", "path", "shape", "varies")

    def __init__(self, path: str, kind: str, *, shape: str, dtype: str, max_abs_diff: float,
                 match: bool, note: str = "", varies: str = "") -> None:
        self.path = path
        self.kind = kind
        self.shape = shape
        self.dtype = dtype
        self.max_abs_diff = max_abs_diff
        self.match = match
        self.note = note
        # "" when both modes give this value again on a second run; else the modes that do not
        # ("graph", "eager" or "graph and eager"): then graph against eager says nothing.
        self.varies = varies

    def __repr__(self) -> str:
        varies = f", varies={self.varies!r}" if self.varies else ""
        return (f"Row(path={self.path!r}, kind={self.kind!r}, shape={self.shape!r}, dtype={self.dtype!r}, "
                f"max_abs_diff={self.max_abs_diff!r}, match={self.match}, note={self.note!r}{varies})")


class Comparison:
    """What `compare()` found; `str()` of it is a readable table.

    Attributes:
        name (str): the compared function's name.
        match (bool): True when every output and every variable agrees within `rtol`/`atol`.
        max_abs_diff (float): the largest absolute difference over all numeric values
            (`inf` where shapes, dtypes or structure differ).
        mismatches (tuple[str, ...]): paths of the values that differ, such as `"output[0]"`,
            `"output['loss']"` or `"variables['dense/kernel']"`.
        rows (tuple[Row, ...]): one `Row` per compared value (path, kind, shape, dtype, diff, match).
        graph_seconds (float): wall time per compiled call, over `repeat` timed calls made
            after the compared one (tracing excluded).
        eager_seconds (float): the same for the eager calls.
        slowdown (float): `eager_seconds / graph_seconds`.
        traces (int): how many times `compare` traced the function (0 when it was
            already traced for these arguments).
        trace_seconds (float): the time spent tracing.
        graph_output (Any): what the compared compiled call returned.
        eager_output (Any): what the compared eager call returned.
        variables (tuple[str, ...]): names of the variables snapshotted, restored and compared.
        deterministic (bool): False when a mode gave different values on two runs from
            the same state (unseeded random ops, Python randomness in the body).
        nondeterministic (tuple[str, ...]): paths of those values; they are shown but left out
            of `match` and `mismatches`, which cover the comparable values.
        random_ops (tuple[str, ...]): the stateful random ops found in the traced graph, as
            `"name (OpType)"`.
        graph_error (str | None): why the compiled graph could not run (it refers to
            variables that have been deleted), else None; `match` is then False.
        rtol (float): the relative tolerance the values were compared with.
        atol (float): the absolute tolerance.
        repeat (int): the number of timed calls per mode.

    Example:
        ```python
        result = eagerctl.compare(train_step, x, y)
        if not result.match:
            print(result.mismatches)       # ("variables['dense/kernel']",)
        print(f"eager is {result.slowdown:.0f}x slower")
        ```
    """

    __slots__ = (
        "atol",
        "deterministic",
        "eager_output",
        "eager_seconds",
        "graph_error",
        "graph_output",
        "graph_seconds",
        "match",
        "max_abs_diff",
        "mismatches",
        "name",
        "nondeterministic",
        "random_ops",
        "repeat",
        "rows",
        "rtol",
        "slowdown",
        "trace_seconds",
        "traces",
        "variables",
    )

    def __init__(self, *, name: str, rows: Sequence[Row], graph_seconds: float, eager_seconds: float,
                 traces: int, trace_seconds: float, repeat: int, rtol: float, atol: float,
                 graph_output: Any, eager_output: Any, variables: Sequence[str],
                 random_ops: Sequence[str] = (), graph_error: str | None = None) -> None:
        self.name = name
        self.rows = tuple(rows)
        comparable = [r for r in self.rows if not r.varies]
        self.nondeterministic = tuple(r.path for r in self.rows if r.varies)
        self.deterministic = not self.nondeterministic
        self.random_ops = tuple(random_ops)
        self.graph_error = graph_error
        self.mismatches = tuple(r.path for r in comparable if not r.match)
        # Nothing comparable (every value varies) is not a match either.
        self.match = not self.mismatches and graph_error is None and (bool(comparable) or not self.rows)
        self.max_abs_diff = max((r.max_abs_diff for r in comparable), default=0.0)
        self.graph_seconds = graph_seconds
        self.eager_seconds = eager_seconds
        self.slowdown = (math.nan if math.isnan(graph_seconds)
                         else eager_seconds / graph_seconds if graph_seconds > 0 else math.inf)
        self.traces = traces
        self.trace_seconds = trace_seconds
        self.repeat = repeat
        self.rtol = rtol
        self.atol = atol
        self.graph_output = graph_output
        self.eager_output = eager_output
        self.variables = tuple(variables)

    def __repr__(self) -> str:
        return (f"<Comparison {self.name}: match={self.match}, max_abs_diff={self.max_abs_diff:.3g}, "
                f"mismatches={list(self.mismatches)!r}, graph_seconds={self.graph_seconds:.3g}, "
                f"eager_seconds={self.eager_seconds:.3g}, slowdown={self.slowdown:.3g}, "
                f"traces={self.traces}{self._repr_extra()}>")

    def _repr_extra(self) -> str:
        extra = f", nondeterministic={len(self.nondeterministic)}" if self.nondeterministic else ""
        return extra + (", graph_error=stale graph" if self.graph_error is not None else "")

    def _verdict(self) -> str:
        if self.graph_error is not None:
            return "graph and eager DIFFER: the compiled graph is stale"
        comparable = len(self.rows) - len(self.nondeterministic)
        if self.nondeterministic and not comparable:
            return "NOTHING COMPARABLE: every value varies from run to run"
        verdict = ("graph and eager MATCH" if self.match
                   else f"graph and eager DIFFER in {len(self.mismatches)}")
        if self.nondeterministic:
            verdict += f" of {comparable} comparable value{'s' if comparable != 1 else ''}"
        return verdict

    def _explanations(self) -> list[str]:
        lines = []
        if self.graph_error is not None:
            lines.append(f"  {self.graph_error}")
        if self.nondeterministic:
            modes = [mode for mode in ("graph", "eager") if any(mode in r.varies for r in self.rows)]
            n = len(self.nondeterministic)
            lines.append(f"  nondeterministic: {n} value{'s differ' if n != 1 else ' differs'} between two "
                         f"runs from the same state in {' and '.join(modes)} mode, so graph against eager "
                         "says nothing about them (marked 'varies')")
            if self.random_ops:
                shown = ", ".join(self.random_ops[:_MAX_OPS])
                extra = len(self.random_ops) - _MAX_OPS
                more = f" and {extra} more" if extra > 0 else ""
                lines.append(f"  random ops in the graph: {shown}{more}")
                lines.append("  a seed does not help (each call draws new numbers): pass the random values "
                             "in as arguments, or draw them with tf.random.Generator or a "
                             "keras.random.SeedGenerator, whose state is a variable compare restores")
            elif modes == ["eager"]:
                lines.append("  no random op in the graph: the Python body draws random numbers (random, "
                             "numpy) or reads changing Python state, which the graph froze when traced")
        return lines

    def __str__(self) -> str:
        lines = [f"compare({self.name}): {self._verdict()}  (rtol={self.rtol:g}, atol={self.atol:g})"]
        lines += self._explanations()
        shown = [r for r in self.rows if not r.match or r.varies]
        budget = max(0, _MAX_ROWS - len(shown))
        matching = [r for r in self.rows if r.match and not r.varies]
        shown_ids = {id(r) for r in shown} | {id(r) for r in matching[:budget]}
        table = [r for r in self.rows if id(r) in shown_ids]
        width = max([len("value"), *(len(r.path) for r in table)])
        lines.append(f"  {'value':<{width}}  {'shape':<12} {'dtype':<9} {'max |graph - eager|':<19}  same")
        for r in table:
            same = "varies" if r.varies else "yes" if r.match else "NO"
            note = f"  {r.note}" if r.note else ""
            lines.append(f"  {r.path:<{width}}  {r.shape:<12} {r.dtype:<9} {_fmt_diff(r.max_abs_diff):<19}  "
                         f"{same}{note}")
        hidden = len(self.rows) - len(table)
        if hidden:
            lines.append(f"  ... and {hidden} more that match")
        calls = f"{self.repeat} timed call{'s' if self.repeat != 1 else ''}"
        if self.graph_error is not None:
            lines.append(f"  time per call: eager {_fmt_seconds(self.eager_seconds)}  "
                         f"({calls}; the graph did not run)")
        else:
            lines.append(f"  time per call: graph {_fmt_seconds(self.graph_seconds)}, eager "
                         f"{_fmt_seconds(self.eager_seconds)}, {speed(self.slowdown)}  ({calls} each)")
        if self.traces:
            lines.append(f"  tracing: {self.traces} trace{'s' if self.traces != 1 else ''}, "
                         f"{_fmt_seconds(self.trace_seconds)} (not in the times above)")
        else:
            lines.append("  tracing: none (already traced for these arguments)")
        return "\n".join(lines)

    def _repr_html_(self) -> str:  # a table in Jupyter
        return _display.comparison_html(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython's terminal: str(), not repr()
        printer.text(str(self))


_MAX_OPS = 6
# How figures read (shared with the HTML table, bisect's report and the demo): eagerctl._display.
_MAX_ROWS = _display.MAX_ROWS
_fmt_diff = _display.fmt_diff
_fmt_seconds = _display.fmt_seconds
speed = _display.speed


def checked_target(tool: str, accepted: str, fn: Any, target: Any, name: str) -> tuple[bool, Any]:
    """The checks `compare` and `bisect` make of what they are given: (is a tf.function, its graph form)."""
    if not callable(target):
        raise TypeError(f"{tool}() needs {accepted}, not {fn!r}")
    _hook.require_local()
    import tensorflow as tf

    if isinstance(target, tf.types.experimental.ConcreteFunction):
        raise TypeError(
            f"{tool}() cannot run {fn!r} eagerly: a ConcreteFunction has no Python body; "
            "pass the tf.function (or the Python function) it came from"
        )
    if not tf.executing_eagerly():
        raise EagerctlError(
            f"{tool}({name}) was called while TensorFlow traces a graph; it runs "
            "the function itself and must be called eagerly, outside any tf.function"
        )
    is_tf_function = hasattr(target, "python_function") and hasattr(target, "get_concrete_function")
    return is_tf_function, (target if is_tf_function else tf.function(target))


def _check_options(rtol: object, atol: object, repeat: object) -> None:
    for name, value in (("rtol", rtol), ("atol", atol)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"compare({name}={value!r}): {name} must be a number, not {type(value).__name__}")
        if not value >= 0:
            raise EagerctlError(f"compare({name}={value!r}): {name} must be 0 or more")
    if isinstance(repeat, bool) or not isinstance(repeat, int):
        raise TypeError(f"compare(repeat={repeat!r}): repeat must be an int, not {type(repeat).__name__}")
    if repeat < 1:
        raise EagerctlError(f"compare(repeat={repeat!r}): repeat must be 1 or more (the number of timed "
                            "calls in each mode)")


def _unwrap(fn: Any) -> Any:
    # A @debuggable proxy would force its calls eager even under graph_scope():
    # compare what it wraps.
    import wrapt

    # wrapt 2 proxies (FunctionWrapper included) derive from BaseObjectProxy, wrapt 1's from ObjectProxy.
    proxy_type = getattr(wrapt, "BaseObjectProxy", wrapt.ObjectProxy)
    while isinstance(fn, proxy_type):
        fn = fn.__wrapped__
    return fn


def _function_name(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if not isinstance(name, str):
        python_function = getattr(fn, "python_function", None)
        name = getattr(python_function, "__qualname__", None) or type(fn).__name__
    return str(name)


def compare(fn: Callable[..., Any], /, *args: Any, rtol: float = 1e-5, atol: float = 1e-6,
            repeat: int = 10, **kwargs: Any) -> Comparison:
    """Run `fn(*args, **kwargs)` compiled and eagerly from the same state; return a `Comparison`.

    `fn` is a `tf.function` (compiled under `graph_scope()`, its Python body
    run under `eager_scope()`) or a plain Python function, compared as
    `tf.function(fn)`. Variables it touches (weights, optimizer slots created
    on the first call, counters) are restored before each mode, compared
    after it, and restored again at the end. Each mode runs twice from that
    state (values that differ between the two are nondeterministic: shown,
    with the random ops found, and left out of `match`), then makes `repeat`
    timed calls. A compiled graph that refers to deleted variables is
    reported (`graph_error`), not raised. Keyword arguments named `rtol`,
    `atol` or `repeat` are compare's own: pass such arguments of `fn` with
    `functools.partial`.

    Example:
        ```python
        result = eagerctl.compare(train_step, x, y)
        print(result)                      # a table: values, max |diff|, times
        assert result.match, result.mismatches
        ```
    """
    _check_options(rtol, atol, repeat)
    target = _unwrap(fn)
    name = _function_name(target)
    _, graph_fn = checked_target("compare", "a tf.function or a Python callable", fn, target, name)
    import numpy as np
    import tensorflow as tf

    created: list[Any] = []

    def record(next_creator: Callable[..., Any], **kw: Any) -> Any:
        var = next_creator(**kw)
        created.append(var)
        return var

    count0 = graph_fn.experimental_get_tracing_count()
    start = time.perf_counter()
    with graph_scope(), tf.variable_creator_scope(record):
        concrete = graph_fn.get_concrete_function(*args, **kwargs)
    trace_seconds = time.perf_counter() - start

    graph_error = _stale_graph(concrete, name)
    if graph_error is not None:
        # The graph cannot run. What the eager run touches: a fresh trace of the Python
        # body as it is now (the program's current objects), never called.
        with graph_scope(), tf.variable_creator_scope(record):
            concrete = tf.function(graph_fn.python_function).get_concrete_function(*args, **kwargs)
    variables = _collect_variables(tf, concrete, created, args, kwargs)
    snapshot = [(var, np.array(var.numpy(), copy=True)) for var in variables.values()]

    def restore() -> None:
        for var, value in snapshot:
            var.assign(value)

    check = functools.partial(_run_mode, fn=graph_fn, args=args, kwargs=kwargs, variables=variables,
                              repeat=repeat, restore=restore, rtol=rtol, atol=atol)
    try:
        graph = check(graph_scope()) if graph_error is None else None
        eager = check(eager_scope())
    finally:
        restore()
    traces = graph_fn.experimental_get_tracing_count() - count0
    if graph is None:
        rows = _stale_rows(eager, np)
    else:
        rows = _compare_outputs(graph.outputs, eager.outputs, rtol, atol, np)
        rows += _compare_variables(graph.variables, eager.variables, rtol, atol, np)
        _mark_varying(rows, graph.varying, eager.varying)
    random_ops = _random_ops(concrete) if any(r.varies for r in rows) else ()
    return Comparison(name=name, rows=rows, graph_seconds=math.nan if graph is None else graph.seconds,
                      eager_seconds=eager.seconds, traces=traces,
                      trace_seconds=trace_seconds if traces else 0.0, repeat=repeat, rtol=float(rtol),
                      atol=float(atol), graph_output=None if graph is None else graph.raw,
                      eager_output=eager.raw, variables=list(variables), random_ops=random_ops,
                      graph_error=graph_error)


def _stale_graph(concrete: Any, name: str) -> str | None:
    """What is wrong with a traced graph that refers to deleted variables, or None."""
    refs = getattr(concrete.graph, "_weak_variables", None)
    if refs is not None:
        deleted = sum(1 for ref in refs if ref() is None)
    else:  # another TF layout: the public property raises on a deleted one
        try:
            concrete.graph.variables  # noqa: B018 - the check is the point
            deleted = 0
        except AssertionError:
            deleted = -1
    if not deleted:
        return None
    count = f"{deleted} variable{'s' if deleted != 1 else ''}" if deleted > 0 else "variables"
    exist = "exists" if deleted == 1 else "exist"
    return (f"{name} was traced against {count} that no longer {exist} (the program replaced what it read, "
            f"e.g. a global `model = ...` assigned again), so its compiled graph cannot run, while the eager "
            f"run uses the current objects; retrace it to train them: {name} = "
            f"tf.function({name}.python_function)")


_STRUCTURAL_OPS = frozenset({
    "Case", "If", "While", "StatefulPartitionedCall", "RemoteCall", "Print", "CheckNumerics",
    "CheckNumericsV2",
    "GuaranteeConst", "EagerPyFunc", "PyFunc", "Empty", "DeepCopy", "DeviceIndex", "GlobalIterId", "AllToAll",
    "CrossReplicaSum", "StatelessRandomGetAlg", "ConvertToCooTensor", "RecordInput",
})
_STRUCTURAL_PREFIXES = ("Collective", "Nccl", "TPU", "Xla", "Infeed", "Outfeed", "Recv", "Retrieve",
                        "Restore", "Map", "OrderedMap", "Stage", "Unstage", "Cudnn", "Debug", "Get",
                        "Configure", "Is",
                        "Worker", "Load", "AddSparse", "AddMany", "TakeMany", "TensorArray")


@functools.cache
def is_nondeterministic_op(op_type: str) -> bool:
    """Whether two runs of this op from the same restored state may differ: TensorFlow's op registry says.

    The op is stateful, and its state is in the kernel (no resource, variant or
    reference among its inputs and outputs: a variable, table, iterator or
    `tf.random.Generator` keeps its state in a resource, which compare and
    bisect restore), and it computes something (outputs; not control flow, a
    function call, a print, communication or a checkpoint read). That is the
    stateful random ops (`RandomUniform`, `TruncatedNormal`, `Multinomial`,
    ...), the candidate samplers, `Timestamp`, `NonDeterministicInts`, ...
    Shared by `compare` (its hint) and `bisect` (its culprits).
    """
    from tensorflow.core.framework import types_pb2
    from tensorflow.python.framework import op_def_registry

    op_def = op_def_registry.get(op_type)
    if op_def is None or not op_def.is_stateful or not op_def.output_arg:
        return False
    if op_type in _STRUCTURAL_OPS or op_type.startswith(_STRUCTURAL_PREFIXES):
        return False
    state_types = (types_pb2.DT_RESOURCE, types_pb2.DT_VARIANT)
    return not any(arg.is_ref or arg.type in state_types for arg in (*op_def.input_arg, *op_def.output_arg))


def _random_ops(concrete: Any) -> tuple[str, ...]:
    """The ops with hidden state (`is_nondeterministic_op`) in a traced graph and its nested functions."""
    try:
        graph_def = concrete.graph.as_graph_def()
    except Exception:  # noqa: BLE001 - a hint only
        return ()
    nodes = [*graph_def.node, *(node for fn in graph_def.library.function for node in fn.node_def)]
    found = []
    for node in nodes:
        if is_nondeterministic_op(node.op):
            name = node.name.removesuffix(f"/{node.op}")  # "dropout/random_uniform/RandomUniform"
            found.append(f"{name} ({node.op})")
    return tuple(dict.fromkeys(found))


def _stale_rows(eager: _ModeResult, np: Any) -> list[Row]:
    rows = []
    for path, value in eager.outputs.items():
        shape, dtype = _describe(value, np)
        rows.append(Row(path, "output", shape=shape, dtype=dtype, max_abs_diff=math.inf, match=False,
                        note="the graph could not run"))
    return rows


def _mark_varying(rows: list[Row], graph: set[str], eager: set[str]) -> None:
    for row in rows:
        modes = [mode for mode, paths in (("graph", graph), ("eager", eager)) if row.path in paths]
        row.varies = " and ".join(modes)


class _ModeResult:
    __slots__ = ("outputs", "raw", "seconds", "variables", "varying")

    def __init__(self, raw: Any, outputs: dict[str, Any], variables: dict[str, Any], seconds: float,
                 varying: set[str]) -> None:
        self.raw = raw
        self.outputs = outputs
        self.variables = variables
        self.seconds = seconds
        self.varying = varying  # paths whose value differed on a second run from the same state


def _run_mode(scope: Any, *, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
              variables: dict[str, Any], repeat: int, restore: Callable[[], None], rtol: float,
              atol: float) -> _ModeResult:
    import numpy as np

    def run_once() -> tuple[Any, dict[str, Any], dict[str, Any]]:
        restore()
        # Variables returned as outputs are read now: later calls and the
        # restore would change what they show.
        raw = _freeze(fn(*args, **kwargs))
        outputs = _flatten(raw, "output", np)
        values = {vname: np.array(var.numpy(), copy=True) for vname, var in variables.items()}
        return raw, outputs, values

    with scope:
        # Twice from the same state: a value that differs from itself is nondeterministic.
        _, again_outputs, again_values = run_once()
        raw, outputs, values = run_once()
        varying = {path for path, value in outputs.items()
                   if path in again_outputs and not _diff(value, again_outputs[path], rtol, atol, np)[1]}
        varying |= {f"variables[{vname!r}]" for vname, value in values.items()
                    if not _diff(value, again_values[vname], rtol, atol, np)[1]}
        start = time.perf_counter()
        for _ in range(repeat):
            last = fn(*args, **kwargs)
            # Reading the results waits for them (asynchronous devices): the
            # time is that of finished work, in both modes alike.
            _flatten(last, "output", np)
        seconds = (time.perf_counter() - start) / repeat
    return _ModeResult(raw, outputs, values, seconds, varying)


def _variable_name(var: Any) -> str:
    name = str(getattr(var, "name", "variable"))
    return name[:-2] if name.endswith(":0") else name


def _collect_variables(tf: Any, concrete: Any, created: list[Any], args: tuple[Any, ...],
                       kwargs: dict[str, Any]) -> dict[str, Any]:
    found: dict[int, Any] = {}
    for var in (*concrete.graph.variables, *created):
        found.setdefault(id(var), var)
    for leaf in tf.nest.flatten((args, kwargs)):
        if isinstance(leaf, tf.Variable):
            found.setdefault(id(leaf), leaf)
    named: dict[str, Any] = {}
    # Sorted by name: FuncGraph keeps its variables in a set, in no stable order.
    for var in sorted(found.values(), key=_variable_name):
        base = _variable_name(var)
        key, n = base, 1
        while key in named:
            n += 1
            key = f"{base}#{n}"
        named[key] = var
    return named


def _is_namedtuple(value: object) -> bool:
    return isinstance(value, tuple) and hasattr(type(value), "_fields")


def _flatten(value: Any, path: str, np: Any, out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Nested outputs as {path: leaf}, tensors turned into numpy arrays."""
    if out is None:
        out = {}
    if _is_namedtuple(value):
        for field in type(value)._fields:
            _flatten(getattr(value, field), f"{path}.{field}", np, out)
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            _flatten(item, f"{path}[{i}]", np, out)
    elif isinstance(value, Mapping):
        for key in value:
            _flatten(value[key], f"{path}[{key!r}]", np, out)
    else:
        out[path] = _to_numpy(value, np)
    return out


def _is_variable(value: object) -> bool:
    return hasattr(value, "assign") and hasattr(value, "dtype") and hasattr(value, "shape")


def _freeze(value: Any) -> Any:
    """The same nested structure, with variables replaced by tensors of their current value."""
    if _is_namedtuple(value):
        return type(value)(*(_freeze(v) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_freeze(v) for v in value)
    if isinstance(value, dict):
        return {k: _freeze(v) for k, v in value.items()}
    if _is_variable(value):
        import tensorflow as tf

        return tf.identity(tf.convert_to_tensor(value))
    return value


class _Composite:
    """A RaggedTensor, SparseTensor or other composite tensor, compared by its component tensors."""

    __slots__ = ("kind", "parts", "shape")

    def __init__(self, kind: str, shape: str, parts: tuple[Any, ...]) -> None:
        self.kind = kind
        self.shape = shape
        self.parts = parts


def _to_numpy(value: Any, np: Any) -> Any:  # noqa: PLR0911 - one return per kind of value
    if value is None:
        return value
    if isinstance(value, (str, bytes)):
        # A Python string a tf.function returns comes back as a string tensor (bytes): compare as those.
        return np.array(value.encode() if isinstance(value, str) else value)
    import tensorflow as tf

    if isinstance(value, tf.Tensor):
        return np.array(value.numpy(), copy=True)
    if hasattr(value, "_type_spec"):
        # RaggedTensor.numpy() gives an object array of rows, which numpy cannot compare.
        try:
            parts = tf.nest.flatten(value, expand_composites=True)
        except (TypeError, ValueError):
            parts = None
        if parts is not None:
            shape = getattr(value, "shape", None)
            return _Composite(type(value).__name__, str(tuple(shape)) if shape is not None else "-",
                              tuple(np.array(part.numpy(), copy=True) for part in parts))
    to_numpy = getattr(value, "numpy", None)
    if callable(to_numpy):
        return np.array(to_numpy(), copy=True)
    if isinstance(value, (bool, int, float, complex, np.ndarray, np.generic)):
        return np.array(value, copy=True)
    return value


def _describe(value: Any, np: Any) -> tuple[str, str]:
    if isinstance(value, np.ndarray):
        return str(tuple(value.shape)), str(value.dtype)
    if isinstance(value, _Composite):
        return value.shape, value.kind
    return "-", type(value).__name__


def _diff_composite(a: _Composite, b: _Composite, rtol: float, atol: float,
                    np: Any) -> tuple[float, bool, str]:
    if a.kind != b.kind or len(a.parts) != len(b.parts):
        return math.inf, False, f"{a.kind} with {len(a.parts)} parts != {b.kind} with {len(b.parts)} parts"
    worst, ok, note = 0.0, True, ""
    for x, y in zip(a.parts, b.parts, strict=True):
        d, same, n = _diff(x, y, rtol, atol, np)
        worst, ok, note = max(worst, d), ok and same, note or n
    return worst, ok, note


def _diff(a: Any, b: Any, rtol: float, atol: float, np: Any) -> tuple[float, bool, str]:  # noqa: PLR0911
    """(max |a - b|, within tolerance, note) for two leaves."""
    if isinstance(a, _Composite) and isinstance(b, _Composite):
        return _diff_composite(a, b, rtol, atol, np)
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
        try:
            same = bool(a == b)
        except Exception:  # noqa: BLE001 - incomparable objects differ
            same = False
        return (0.0 if same else math.inf), same, "" if same else f"{a!r} != {b!r}"
    if a.shape != b.shape:
        return math.inf, False, f"shape {a.shape} != {b.shape}"
    if a.dtype != b.dtype:
        return math.inf, False, f"dtype {a.dtype} != {b.dtype}"
    if a.size == 0:
        return 0.0, True, ""
    if a.dtype.kind in "biufc":
        x = a.astype(np.complex128 if a.dtype.kind == "c" else np.float64)
        y = b.astype(x.dtype)
        with np.errstate(invalid="ignore", over="ignore"):
            same = (x == y) | (np.isnan(x) & np.isnan(y))
            diff = np.where(same, 0.0, np.abs(x - y))
        # NaN against a number (or infinities of opposite sign) is as far apart as it gets.
        diff = np.where(np.isnan(diff), math.inf, diff)
        worst = float(np.max(diff))
        close = bool(np.all(np.isclose(x, y, rtol=rtol, atol=atol, equal_nan=True)))
        return worst, close, ""
    same = bool(np.array_equal(a, b))
    return (0.0 if same else math.inf), same, ""


def _compare_outputs(graph: dict[str, Any], eager: dict[str, Any], rtol: float, atol: float,
                     np: Any) -> list[Row]:
    rows = []
    for path in [*graph, *(p for p in eager if p not in graph)]:
        g, e = graph.get(path, _MISSING), eager.get(path, _MISSING)
        if g is _MISSING or e is _MISSING:
            shape, dtype = _describe(e if g is _MISSING else g, np)
            where = "graph" if g is _MISSING else "eager"
            rows.append(Row(path, "output", shape=shape, dtype=dtype, max_abs_diff=math.inf, match=False,
                            note=f"missing in {where} output"))
            continue
        shape, dtype = _describe(g, np)
        diff, ok, note = _diff(g, e, rtol, atol, np)
        rows.append(Row(path, "output", shape=shape, dtype=dtype, max_abs_diff=diff, match=ok, note=note))
    return rows


def _compare_variables(graph: dict[str, Any], eager: dict[str, Any], rtol: float, atol: float,
                       np: Any) -> list[Row]:
    rows = []
    for vname, g in graph.items():
        shape, dtype = _describe(g, np)
        diff, ok, note = _diff(g, eager[vname], rtol, atol, np)
        rows.append(Row(f"variables[{vname!r}]", "variable", shape=shape, dtype=dtype, max_abs_diff=diff,
                        match=ok, note=note))
    return rows
