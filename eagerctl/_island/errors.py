"""`IslandError`: an eager island cannot be built or run as asked."""

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
