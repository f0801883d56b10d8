"""Local overrides: a per-context stack kept in one `ContextVar`.

Each thread and each asyncio task has its own `contextvars.Context`, so an
override set here is seen by nothing else. The stack is an immutable linked
list: each local `Activation` is itself an entry (`value`, `below`), and a
`Frame` stands in for one only when an out-of-order exit rebuilds the entries
above it. The top entry's `value` is the override in force. TF's hook
reads it on every `tf.function` call, so a read is one `ContextVar.get` and one
attribute.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._scope import Activation


class Entry(Protocol):
    """One level of the stack: a local `Activation` itself, or a `Frame` rebuilt for it."""

    @property
    def value(self) -> bool: ...
    @property
    def below(self) -> Entry | None: ...
    @property
    def activation(self) -> Activation: ...


class Frame:
    __slots__ = ("activation", "below", "value")

    def __init__(self, value: bool, activation: Activation, below: Entry | None) -> None:
        self.value = value
        self.activation = activation
        self.below = below


STACK: ContextVar[Entry | None] = ContextVar("eagerctl_local_overrides", default=None)


def override() -> bool | None:
    """The local override in force in this context, or None."""
    top = STACK.get()
    return None if top is None else top.value


def remove(activation: Activation) -> bool:
    """Take `activation` off this context's stack; False if it is not on it.

    The usual exit is the top frame. An exit out of order (legal: generators,
    manual `__exit__` calls) rebuilds the frames above it, so the frames below
    and above keep their values: no stale value is ever restored.
    """
    top = STACK.get()
    if top is not None and top.activation is activation:
        STACK.set(top.below)
        return True
    above: list[Entry] = []
    frame = top
    while frame is not None and frame.activation is not activation:
        above.append(frame)
        frame = frame.below
    if frame is None:
        return False
    rebuilt: Entry | None = frame.below
    for kept in reversed(above):
        rebuilt = Frame(kept.value, kept.activation, rebuilt)
    STACK.set(rebuilt)
    return True
