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
`write()` (or a scope's entry and exit), eagerctl's and the user's (the hook routes
`tf.config.run_functions_eagerly` here), so none is lost to a race, and an
outside write becomes the baseline without overriding the newest scope. A
write that bypasses TF's function (an assignment to the module global) is
noticed at the next operation, because the flag no longer holds the value
eagerctl last wrote; it becomes the baseline then.

Every operation ends by publishing the flag from the dict, so an operation cut
short by an interrupt (KeyboardInterrupt) is repaired by `sync()`, which the
scopes call on that path, or by the next operation.

The lock guards only this module's data. Nothing under it calls user code or
imports TensorFlow. Most programs enter process scopes from one thread, so the
lock is *biased*: the thread that took it last runs `enter` and `exit` without
it (two attribute writes instead of a lock round trip, a third of an entry's
cost), and another thread takes the bias over under the lock once the biased
thread is out of them (`_claim`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any, Protocol

_get_ident = threading.get_ident


class Node(Protocol):
    @property
    def value(self) -> bool | None: ...
    @property
    def thread(self) -> int: ...


class _Bias:
    """The thread that may run `enter` and `exit` without the lock, and whether it is inside one now."""

    __slots__ = ("busy", "owner")

    def __init__(self, owner: int) -> None:
        self.owner = owner
        self.busy = False


_NOBODY = _Bias(0)  # no thread's ident is 0
# A build without the GIL (free-threaded CPython) gives no ordering between one
# thread's attribute writes and another's reads: there the bias is given back
# before the lock is.
_GIL = bool(getattr(sys, "_is_gil_enabled", lambda: True)())


class Registry:
    def __init__(self) -> None:
        self.flags: Any = None  # TF's eager_function_run module, attached by the hook
        self._lock = threading.RLock()  # reentrant: a leaked hold is recognized as this thread's
        self._bias = _NOBODY
        self._active: dict[Node, None] = {}
        self._baseline = False
        # What eagerctl last wrote to the flag, and what it is about to write: a
        # flag holding either was not written outside eagerctl (a write cut short
        # by an interrupt leaves them different).
        self._written: object = None
        self._pending: object = None
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

    def _claim(self, me: int) -> None:
        """Under the lock: make `me` the biased thread, once the one before is out of `enter`/`exit`.

        Dekker's handshake, which the GIL makes sound: this writes `_bias`, then
        reads the old bias's `busy`; the biased thread writes `busy`, then reads
        `_bias`. At least one of the two sees the other's write, so either the
        biased thread takes the lock path, or this waits for it to finish.
        """
        bias = self._bias
        if bias.owner == me:
            return
        self._bias = _Bias(me)
        while bias.busy and _inside_fast_path(bias.owner):
            time.sleep(1e-5)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """The lock, and the bias for this thread: no operation runs in another thread meanwhile."""
        with self._locked():
            self._claim(_get_ident())
            try:
                yield
            finally:
                if not _GIL:
                    self._bias = _NOBODY

    def _notice(self, flags: Any) -> None:
        flag = flags.RUN_FUNCTIONS_EAGERLY
        if flag is not self._written and flag is not self._pending:  # written outside eagerctl
            self._baseline = True if flag else False

    def _publish(self, flags: Any) -> None:
        value: bool | None = self._baseline
        for newest in reversed(self._active):
            value = newest.value
            break
        self._pending = value
        flags.RUN_FUNCTIONS_EAGERLY = self._written = value

    # -- operations -----------------------------------------------------------
    # `enter` and `exit`, on every process scope's path, run without the lock in
    # the thread that last took it (the bias): `busy` set around the operation
    # is what another thread taking the lock waits for (`_claim`). Any other
    # thread takes the lock, becomes the biased thread and runs the same code.
    # They inline `_notice` and `_publish`.
    def enter(self, node: Node) -> Node | None:
        """Register `node` as the newest; return the node that was newest before (None if none).

        The caller checks that one for a scope whose block is over, in the same
        operation as the entry.
        """
        bias = self._bias
        if bias.owner == node.thread:  # `node` is entered by the thread running this
            busy = bias.busy  # True inside one (a finalizer the GC runs there), or left by an interrupt
            bias.busy = True
            try:
                if self._bias is bias:
                    active = self._active
                    below = next(reversed(active)) if active else None
                    flags = self.flags
                    flag = flags.RUN_FUNCTIONS_EAGERLY
                    if flag is not self._written and flag is not self._pending:
                        self._baseline = True if flag else False
                    active[node] = None
                    self._pending = value = node.value
                    flags.RUN_FUNCTIONS_EAGERLY = self._written = value
                    return below
            finally:
                bias.busy = busy
        return self._enter_locked(node)

    def _enter_locked(self, node: Node) -> Node | None:
        with self._exclusive():
            if node.thread != self._bias.owner:
                raise RuntimeError(f"eagerctl's registry: {node!r} is entered by a thread not its own")
            return self.enter(node)

    def exit(self, node: Node) -> bool:
        """Remove `node`; False (and nothing changed) if it is not registered."""
        bias = self._bias
        if bias.owner == _get_ident():
            busy = bias.busy  # True inside one (a finalizer the GC runs there), or left by an interrupt
            bias.busy = True
            try:
                if self._bias is bias:
                    active = self._active
                    if node not in active:
                        return False
                    flags = self.flags
                    flag = flags.RUN_FUNCTIONS_EAGERLY
                    if flag is not self._written and flag is not self._pending:
                        self._baseline = True if flag else False
                    del active[node]
                    self._pending = value = next(reversed(active)).value if active else self._baseline
                    flags.RUN_FUNCTIONS_EAGERLY = self._written = value
                    return True
            finally:
                bias.busy = busy
        return self._exit_locked(node)

    def _exit_locked(self, node: Node) -> bool:
        with self._exclusive():
            return self.exit(node)

    def write(self, value: bool) -> None:
        """An outside write (`tf.config.run_functions_eagerly`): the new baseline.

        With no scope active it sets the flag at once, as TF would; otherwise the
        newest scope keeps deciding until the last one exits.
        """
        flags = self.flags
        with self._exclusive():
            self._baseline = value
            if not self._active:
                self._pending = value
                flags.RUN_FUNCTIONS_EAGERLY = self._written = value

    def sync(self) -> None:
        """Publish the flag from the registered scopes (repairs an interrupted operation)."""
        flags = self.flags
        if flags is None:
            return
        with self._exclusive():
            self._notice(flags)
            self._publish(flags)

    def reset(self) -> list[Node]:
        """Unregister every process scope and put the flag at its baseline; return those removed."""
        flags = self.flags
        with self._exclusive():
            self._notice(flags)
            removed = list(self._active)
            self._active.clear()
            self._publish(flags)
        return removed

    # -- views ----------------------------------------------------------------
    def snapshot(self) -> tuple[bool, list[Node]]:
        """(baseline, active process nodes oldest first), after repairing the flag."""
        with self._exclusive():
            if self.flags is not None:
                self._notice(self.flags)
                self._publish(self.flags)
            return self._baseline, list(self._active)

    def newest(self) -> Node | None:
        """The most recently entered active node."""
        # Under the lock: a dict's reverse iterator that another thread's changes
        # (an insertion and a deletion, resizing the table) made stale can read
        # past the table in CPython 3.11, and crash the process.
        with self._exclusive():
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
        self._bias = _NOBODY
        me = _get_ident()
        for node in list(self._active):
            if node.thread != me:
                del self._active[node]
        if self._written is not None and self.flags is not None:
            self._publish(self.flags)


_FAST_PATH = (Registry.enter.__code__, Registry.exit.__code__)
_LOCK_PATH = (Registry._enter_locked.__code__, Registry._exit_locked.__code__,
              Registry._exclusive.__wrapped__.__code__)  # type: ignore[attr-defined]


def _inside_fast_path(thread: int) -> bool:
    """Whether `thread` runs `enter` or `exit` without the lock now (not only waits for it in them).

    Its `busy` may also have been left set by an interrupt between two of its
    instructions (a trace function can raise anywhere), or the thread may be
    gone: then there is nothing to wait for.
    """
    frame: FrameType | None = sys._current_frames().get(thread)
    while frame is not None:
        code = frame.f_code
        if code in _FAST_PATH:
            return True
        if code in _LOCK_PATH:
            return False
        frame = frame.f_back
    return False


REGISTRY = Registry()
os.register_at_fork(
    before=REGISTRY._before_fork,
    after_in_parent=REGISTRY._after_fork_in_parent,
    after_in_child=REGISTRY._after_fork_in_child,
)
