"""What one compiled call writes, kept before it runs and put back for its replay.

Variables: the resource variables the call's graph captures and may write
(weights, optimizer slots and iterations, metrics, `tf.random.Generator` and
Keras seed states), found from TF's own read-only analysis of the graph's
inputs (`auto_control_deps_utils`, which also reads the ops that call nested
functions); a capture TF cannot prove read-only counts as written. Kept as
the tensors a `ReadVariableOp` returns: TF's variables are copy-on-write, so
the first update of a kept buffer copies it on the device (one copy of the
written variables per call, never through the host).

Iterators: a `tf.data` iterator passed to the call (Keras's train, test and
predict functions take one) is kept by serializing its state, so that the
replay reads the same batch and the program then reads on from where the
compiled call left it.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

# TF's ExternalStatePolicy.IGNORE: a pipeline with stateful functions (a random
# map) is still kept; their own state is not (documented).
_IGNORE_EXTERNAL_STATE = 1


@dataclass
class Plan:
    """For one tf.function: the variables its calls write, and a compiled reader of them."""

    tracing_count: int
    handles: list[tuple[Any, Any]]  # (resource handle, dtype)
    reader: Any  # a compiled read of the handles' values (`flat_caller`), or None when there are none
    checkers: dict[bool, Any] = field(default_factory=dict)  # check_variables -> tf.function
    concrete_checks: dict[tuple[Any, ...], Any] = field(default_factory=dict)  # signature -> its concrete


_plans: weakref.WeakKeyDictionary[Any, Plan] = weakref.WeakKeyDictionary()
_unsaveable: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def written_handles(concrete: Any) -> list[tuple[Any, Any]]:
    """The captured resource variables `concrete` may write, as (handle, dtype)."""
    import tensorflow as tf
    from tensorflow.python.framework import auto_control_deps_utils

    graph = concrete.graph
    read_only = set(auto_control_deps_utils.get_read_only_resource_input_indices_graph(graph))
    external = {id(internal): ext for ext, internal in graph.captures}
    out: list[tuple[Any, Any]] = []
    for index, placeholder in enumerate(graph.inputs):
        if placeholder.dtype != tf.resource or index in read_only:
            continue
        handle = external.get(id(placeholder))
        data = getattr(handle, "_handle_data", None)
        if handle is None or data is None or not data.is_set or not data.shape_and_type:
            continue  # an argument, or a resource that is not a variable (a table, an iterator)
        dtype = tf.as_dtype(data.shape_and_type[0].dtype)
        if dtype == tf.variant:
            continue
        out.append((handle, dtype))
    return out


def flat_caller(concrete: Any) -> Any:
    """`concrete` as a function of its flat tensor inputs (its captures appended), returning its flat outputs.

    The calls eagerctl makes on every monitored call (the read of the written
    variables, the fused check) go to the registered graph function directly,
    as `ConcreteFunction._call_flat` does in the end: TF's own `__call__` binds
    and flattens structured arguments and checks for a gradient tape first,
    which costs about as much again as running the small graph (none of it
    applies to these functions: no structure, no gradient). A TF without that
    entry point gets the plain call.
    """
    captured = list(concrete.captured_inputs)
    try:
        atomic = concrete._inference_function
        call_function, name = atomic._bound_context.call_function, atomic.name
        count = len(atomic.function_type.flat_outputs)
    except AttributeError:  # another TF's internals: the public, slower path
        return lambda inputs: list(concrete(*inputs) if inputs else concrete())

    def call(inputs: list[Any]) -> list[Any]:
        return call_function(name, [*inputs, *captured], count) or []

    call.concrete = concrete  # type: ignore[attr-defined]  # alive: its graph function is unregistered with it
    return call


def _reader(handles: list[tuple[Any, Any]]) -> Any:
    if not handles:
        return None
    import tensorflow as tf
    from tensorflow.python.ops import gen_resource_variable_ops

    def read() -> list[Any]:
        return [gen_resource_variable_ops.read_variable_op(h, dtype) for h, dtype in handles]

    return flat_caller(tf.function(read, autograph=False).get_concrete_function())


def plan_for(fn: Any, args: tuple[Any, ...], kwds: dict[str, Any]) -> Plan:
    """The plan for a call of `fn`: cached while `fn` traces nothing new."""
    count = fn.experimental_get_tracing_count()
    plan = _plans.get(fn)
    if plan is not None and plan.tracing_count == count:
        return plan
    concrete = fn.get_concrete_function(*args, **kwds)  # traces (and creates variables) on a first call
    handles = written_handles(concrete)
    if plan is not None:  # another signature: keep what the other traces write too
        seen = {id(h) for h, _ in handles}
        handles += [(h, d) for h, d in plan.handles if id(h) not in seen]
    handles = [(h, d) for h, d in handles if _readable(h, d)]
    plan = Plan(fn.experimental_get_tracing_count(), handles, _reader(handles))
    _plans[fn] = plan
    return plan


def _readable(handle: Any, dtype: Any) -> bool:
    from tensorflow.python.ops import gen_resource_variable_ops

    try:
        gen_resource_variable_ops.read_variable_op(handle, dtype)
    except Exception:  # noqa: BLE001 - not initialized yet, or not a variable: nothing to keep
        return False
    return True


# Up to this many variables, eager reads cost less than one call of a compiled reader
# (one eager op is several times cheaper than one function call; measured in TF 2.21).
EAGER_READS = 8


def snapshot(plan: Plan) -> list[Any]:
    if plan.reader is None:
        return []
    if len(plan.handles) <= EAGER_READS:
        from tensorflow.python.ops import gen_resource_variable_ops

        read = gen_resource_variable_ops.read_variable_op
        return [read(handle, dtype) for handle, dtype in plan.handles]
    return plan.reader([])  # type: ignore[no-any-return]


def read_now(plan: Plan) -> list[Any]:
    return snapshot(plan)


def restore(plan: Plan, values: list[Any]) -> None:
    from tensorflow.python.ops import gen_resource_variable_ops

    for (handle, _), value in zip(plan.handles, values, strict=True):
        gen_resource_variable_ops.assign_variable_op(handle, value)


# -- iterators ---------------------------------------------------------------------

def iterators_in(args: tuple[Any, ...], kwds: dict[str, Any]) -> list[Any]:
    """The tf.data iterators among the call's arguments (top level, as Keras passes them)."""
    found = []
    for value in (*args, *kwds.values()):
        # A tensor first: its failing attribute lookup is slow (TF formats a message), most arguments are one.
        if type(value) in _PLAIN or isinstance(value, _tensor_type()):
            continue
        if hasattr(value, "_iterator_resource") or hasattr(value, "_iterators"):
            found.append(value)
    return found


_PLAIN = frozenset({int, float, bool, str, bytes, type(None)})


def _tensor_type() -> Any:
    from tensorflow.python.types import core

    return core.Tensor


def save_iterators(iterators: list[Any]) -> list[Any]:
    """Each iterator's state, or a string saying why it cannot be kept."""
    return [_save(it) for it in iterators]


DISTRIBUTED = (
    "it reads a distributed iterator ({kind}), whose state TensorFlow cannot save: Keras fit, evaluate "
    "and predict under a tf.distribute strategy pass one, as does iter() of a distributed dataset. To replay "
    "such a step: run the same fit without the strategy (one device) inside replay(), or write the loop "
    "yourself: iterate the distributed dataset in Python (for batch in dist_dataset: ...) and pass each "
    "batch to a tf.function that calls strategy.run; replay() runs that step's replicas eagerly"
)


def _save(iterator: Any) -> Any:
    reason = _unsaveable.get(iterator)
    if reason is not None:
        return reason
    from tensorflow.python.ops import gen_dataset_ops

    resource = getattr(iterator, "_iterator_resource", None)
    if resource is None:
        reason = DISTRIBUTED.format(kind=type(iterator).__name__)
    else:
        try:
            return gen_dataset_ops.serialize_iterator(resource, external_state_policy=_IGNORE_EXTERNAL_STATE)
        except Exception as exc:  # noqa: BLE001 - e.g. Dataset.from_generator: not serializable
            reason = f"its tf.data iterator cannot be saved ({str(exc).splitlines()[0]})"
    try:
        _unsaveable[iterator] = reason
    except TypeError:
        pass
    return reason


def restore_iterators(iterators: list[Any], states: list[Any]) -> None:
    from tensorflow.python.ops import gen_dataset_ops

    for it, state in zip(iterators, states, strict=True):
        if not isinstance(state, str):
            gen_dataset_ops.deserialize_iterator(it._iterator_resource, state)
