"""The process-flag registry: drives TF's global flag for process scopes.

The bottom layer, with `_local`: it holds data and knows nothing of scopes,
only of nodes with a `value`. The hook attaches TF's flag module (`flags`)
when TF is loaded; callers make sure it is attached before an operation.

Rule: the flag is the value of the most recently entered process scope still
active; with none active it is the *baseline*, the value set by anyone outside
eagerctl. Active nodes live in a dict, whose order is the order of entry:
entering, exiting (in any order, from any thread) and finding the newest are
all O(1), and each change is one dict operation, which an interrupt cannot
split.

While scopes are active eagerctl owns the flag: every write goes through
`write()` under the lock, eagerctl's and the user's (the hook routes
`tf.config.run_functions_eagerly` here), so none is lost to a race, and an
outside write becomes the baseline without overriding the newest scope. A
write that bypasses TF's function (an assignment to the module global) is
noticed at the next operation, because the flag no longer holds the value
eagerctl last wrote; it becomes the baseline then.

Every operation ends by publishing the flag from the dict, so an operation cut
short by an interrupt (KeyboardInterrupt) is repaired by `sync()`, which the
scopes call on that path, or by the next operation.

The lock guards only this module's data. Nothing under it calls user code or
imports TensorFlow.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Protocol


class Node(Protocol):
    @property
    def value(self) -> bool | None: ...
    @property
    def thread(self) -> int: ...


class Registry:
    def __init__(self) -> None:
        self.flags: Any = None  # TF's eager_function_run module, attached by the hook
        self._lock = threading.RLock()  # reentrant: a leaked hold is recognized as this thread's
        self._active: dict[Node, None] = {}
        self._baseline = False
        self._written: object = None  # what eagerctl last wrote to the flag
        self._writing = False  # True between a write to the flag and `_written`
        self._held_for_fork = False

    # -- under the lock -------------------------------------------------------
    def _locked(self) -> Any:
        """The lock, taken back first from an interrupt in this thread that left it held.

        Every operation here is short and calls nothing that could start another
        one, so the lock owned by this very thread at the start of an operation
        can only have been left by an interrupt: a KeyboardInterrupt raised at
        one of the instructions between a `with` block and its release, which a
        trace function can do (a signal cannot: CPython checks for those only
        at calls and jumps). Taking it back is safe: the data is consistent
        after each of its dict operations, and every operation publishes the
        flag again.
        """
        lock = self._lock
        if lock._is_owned():  # type: ignore[attr-defined]
            lock._release_save()  # type: ignore[attr-defined]
        return lock

    def _notice(self, flags: Any) -> None:
        flag = flags.RUN_FUNCTIONS_EAGERLY
        if self._writing:  # a write of eagerctl's was cut short: not an outside one
            self._writing = False
        elif flag is not self._written:  # written outside eagerctl: the new baseline
            self._baseline = True if flag else False

    def _publish(self, flags: Any) -> None:
        value: bool | None = self._baseline
        for newest in reversed(self._active):
            value = newest.value
            break
        self._writing = True
        flags.RUN_FUNCTIONS_EAGERLY = self._written = value
        self._writing = False

    # -- operations -----------------------------------------------------------
    # `enter` and `exit`, on every process scope's path, inline `_locked`,
    # `_notice` and `_publish`, and take the lock with `acquire()` and a
    # `try`/`finally` rather than `with`: half the cost of a `with` round trip
    # on CPython 3.11 (an interrupt between the acquire and the `try` leaves
    # the lock held by this thread, which the next operation takes back, as
    # for `with`).
    def enter(self, node: Node) -> Node | None:
        """Register `node` as the newest; return the node that was newest before (None if none).

        The caller checks that one for a scope whose block is over, in the same
        lock round trip as the entry (the lock is most of an entry's cost).
        """
        flags = self.flags
        lock = self._lock
        if lock._is_owned():  # type: ignore[attr-defined]
            lock._release_save()  # type: ignore[attr-defined]
        lock.acquire()
        try:
            active = self._active
            below = next(reversed(active)) if active else None
            flag = flags.RUN_FUNCTIONS_EAGERLY
            if self._writing:
                self._writing = False
            elif flag is not self._written:
                self._baseline = True if flag else False
            active[node] = None
            self._writing = True
            flags.RUN_FUNCTIONS_EAGERLY = self._written = node.value
            self._writing = False
            return below
        finally:
            lock.release()

    def exit(self, node: Node) -> bool:
        """Remove `node`; False (and nothing changed) if it is not registered."""
        flags = self.flags
        lock = self._lock
        if lock._is_owned():  # type: ignore[attr-defined]
            lock._release_save()  # type: ignore[attr-defined]
        lock.acquire()
        try:
            active = self._active
            if node not in active:
                return False
            flag = flags.RUN_FUNCTIONS_EAGERLY
            if self._writing:
                self._writing = False
            elif flag is not self._written:
                self._baseline = True if flag else False
            del active[node]
            value: bool | None = next(reversed(active)).value if active else self._baseline
            self._writing = True
            flags.RUN_FUNCTIONS_EAGERLY = self._written = value
            self._writing = False
            return True
        finally:
            lock.release()

    def write(self, value: bool) -> None:
        """An outside write (`tf.config.run_functions_eagerly`): the new baseline.

        With no scope active it sets the flag at once, as TF would; otherwise the
        newest scope keeps deciding until the last one exits.
        """
        flags = self.flags
        with self._locked():
            self._baseline = value
            if not self._active:
                self._writing = True
                flags.RUN_FUNCTIONS_EAGERLY = self._written = value
                self._writing = False

    def sync(self) -> None:
        """Publish the flag from the registered scopes (repairs an interrupted operation)."""
        flags = self.flags
        if flags is None:
            return
        with self._locked():
            self._notice(flags)
            self._publish(flags)

    def reset(self) -> list[Node]:
        """Unregister every process scope and put the flag at its baseline; return those removed."""
        flags = self.flags
        with self._locked():
            self._notice(flags)
            removed = list(self._active)
            self._active.clear()
            self._publish(flags)
        return removed

    # -- views ----------------------------------------------------------------
    def snapshot(self) -> tuple[bool, list[Node]]:
        """(baseline, active process nodes oldest first), after repairing the flag."""
        with self._locked():
            if self.flags is not None:
                self._notice(self.flags)
                self._publish(self.flags)
            return self._baseline, list(self._active)

    def newest(self) -> Node | None:
        """The most recently entered active node."""
        # Under the lock: a dict's reverse iterator that another thread's changes
        # (an insertion and a deletion, resizing the table) made stale can read
        # past the table in CPython 3.11, and crash the process.
        with self._locked():
            for node in reversed(self._active):
                return node
            return None

    def active_count(self) -> int:
        return len(self._active)

    def is_registered(self, node: Node) -> bool:
        return node in self._active

    # -- fork -------------------------------------------------------------------
    def _before_fork(self) -> None:
        # Wait (briefly) for an operation in another thread to finish, so the
        # child gets a consistent dict. Operations never block, so this is short.
        self._held_for_fork = self._lock.acquire(timeout=1.0)

    def _after_fork_in_parent(self) -> None:
        if self._held_for_fork:
            self._lock.release()

    def _after_fork_in_child(self) -> None:
        # Only the forking thread exists in the child: scopes entered by other
        # threads can never be exited there, so they are dropped, and the flag
        # is set from what remains.
        self._lock = threading.RLock()
        me = threading.get_ident()
        for node in list(self._active):
            if node.thread != me:
                del self._active[node]
        if self._written is not None and self.flags is not None:
            self._publish(self.flags)


REGISTRY = Registry()
os.register_at_fork(
    before=REGISTRY._before_fork,
    after_in_parent=REGISTRY._after_fork_in_parent,
    after_in_child=REGISTRY._after_fork_in_child,
)
