"""Local overrides: a per-context stack kept in one `ContextVar`.

The bottom layer, with `_registry`: data only, nothing here knows of scopes or
of TensorFlow. Each thread and each asyncio task has its own
`contextvars.Context`, so an override pushed here is seen by nothing else,
except a context *copied* from this one while the override is active
(`asyncio.create_task`, `asyncio.to_thread`, `contextvars.copy_context()`).

The stack is an immutable linked list of entries (`value`, `below`). An entry
is live while its `value` is a bool; leaving sets it to None, once, for every
context that holds it: a copied context sees an override exactly while the
block that set it is active. The hook reads the top entry on every
`tf.function` call; a None there (rare: after an out-of-order exit, or in a
copied context) sends it to `override()`, which skips to the first live entry.

`LIVE` holds the local entries entered and not yet left, in any thread or
task, for `status()` and for refusing to uninstall the hook under them.
Single dict operations are atomic, so no lock is taken on this path.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import Protocol


class Entry(Protocol):
    """One level of a context's stack: a scope's activation, or a `Frame`."""

    @property
    def value(self) -> bool | None: ...
    @property
    def below(self) -> Entry | None: ...
    @property
    def thread(self) -> int: ...
    @property
    def task(self) -> object | None: ...

    def describe(self) -> str: ...


class Frame:
    """An entry that belongs to no scope: TensorFlow's own code forcing compiled functions."""

    __slots__ = ("below", "reason", "task", "thread", "value")

    def __init__(self, value: bool, below: Entry | None, reason: str) -> None:
        self.value: bool | None = value
        self.below = below
        self.reason = reason
        self.thread = threading.get_ident()
        self.task: object | None = None

    def describe(self) -> str:
        return self.reason


STACK: ContextVar[Entry | None] = ContextVar("eagerctl_local_overrides", default=None)
LIVE: dict[Entry, None] = {}


def override() -> bool | None:
    """The local override in force in this context, or None."""
    top = STACK.get()
    while top is not None:
        value = top.value
        if value is not None:
            return value
        top = top.below
    return None


def innermost() -> Entry | None:
    """The live entry that decides in this context, or None."""
    top = STACK.get()
    while top is not None and top.value is None:
        top = top.below
    return top


def _thread_alive(ident: int) -> bool:
    return ident in threading._active  # type: ignore[attr-defined]


def _task_done(task: object) -> bool:
    done = getattr(task, "done", None)
    return bool(done()) if done is not None else False


def live() -> list[Entry]:
    """The local entries that are active and can still exit, oldest first.

    An entry whose thread has finished, or whose asyncio task is done, can
    never be exited by its owner: it is a phantom, not counted (its context is
    gone with its thread or task), so it never blocks anything. The one
    exception is an entry on this context's own stack: it is in force here. A forked child
    keeps only the forking thread, so other threads' entries drop out there.
    """
    entries = list(LIVE.copy())
    # Entries on this context's own stack are in force here, whatever became of the
    # task that entered them: Jupyter (ipykernel 7) runs each cell as a new task in
    # one shared context, so a scope entered by hand in one cell is still in force
    # in the next, after its task finished.
    here: set[int] = set()
    top = STACK.get()
    while top is not None:
        here.add(id(top))
        top = top.below
    kept = []
    for entry in entries:
        if entry.value is None or (id(entry) not in here and not _thread_alive(entry.thread)):
            LIVE.pop(entry, None)
        elif id(entry) not in here and entry.task is not None and _task_done(entry.task):
            pass  # not counted here; kept, since a context its task shared may still hold it
        else:
            kept.append(entry)
    return kept
