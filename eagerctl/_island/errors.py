"""`IslandError`: an eager island cannot be built or run as asked; Ctrl-C found behind TF's errors."""

from __future__ import annotations

from .._errors import EagerctlError


class IslandError(EagerctlError):
    """An eager island cannot be built or run as asked; a subclass of `EagerctlError`.

    Raised while TensorFlow traces the graph that calls a `@debuggable` function,
    for example inside an XLA-compiled function (`jit_compile=True`, which cannot
    call back into Python), or for a replica function that synchronizes replicas
    (`merge_call`) under a `tf.distribute` strategy. The message names the
    function and the fix (turn `jit_compile` off, use `@debuggable(island=False)`,
    or decorate the function that calls `strategy.run`). Inside Keras `fit` it
    reaches you wrapped in Keras's report of the layer call.

    Example:
        ```python
        try:
            step(x)
        except eagerctl.IslandError as exc:
            print(exc)
        ```
    """

    # AutoGraph re-creates errors raised in converted code, and turns a type it
    # does not know into a StagingError; `ag_pass_through` makes it let this one
    # through unchanged, so callers can catch `EagerctlError`. A class attribute,
    # because Keras 2 re-creates a layer's exception from its class.
    ag_pass_through = True


def interrupt_behind(exc: BaseException) -> KeyboardInterrupt | None:
    """The `KeyboardInterrupt` that `exc` was raised from or while handling, if any.

    Ctrl-C raises `KeyboardInterrupt` in whatever Python code runs at that
    moment. When that is a callback of TensorFlow's C++ layer (a variable's
    `handle` read for a tape or a `VariableWatcher` while a body is traced), the
    C++ function returns as if nothing happened and Python reports a
    `SystemError` ("returned a result with an exception set") whose cause is the
    interrupt; Keras and AutoGraph then wrap that again. Both links are
    followed, `__cause__` and `__context__`, whatever `from None` hid.
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, KeyboardInterrupt):
            return current
        todo.extend(link for link in (current.__context__, current.__cause__) if link is not None)
    return None
