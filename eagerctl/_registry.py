"""The process-flag registry: drives TF's global flag for process scopes.

Rule: the flag is the value of the most recently entered process scope still
active; with none active it is the *baseline*, the value set by anyone outside
eagerctl. Active scopes form a doubly linked list, so entering, exiting (in any
order, from any thread) and finding the newest are all O(1) whatever the
number of active scopes.

An outside write to the flag (a direct `tf.config.run_functions_eagerly` call)
is noticed at the next registry operation because the flag no longer holds the
value eagerctl last wrote; it becomes the new baseline. The one write that
cannot be noticed is one of the value already in force.

The lock guards only this module's data. Nothing under it calls user code or
imports TensorFlow: `_hook.load()` runs before it is taken.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from . import _hook

if TYPE_CHECKING:
    from ._scope import Activation


class Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._newest: Activation | None = None  # tail of the linked list
        self._count = 0
        self._baseline = False
        self._written: bool | None = None  # what eagerctl last wrote to the flag

    # -- operations ---------------------------------------------------------
    def enter(self, act: Activation) -> None:
        flags = _hook.flag_module or _hook.load()
        with self._lock:
            flag = flags.RUN_FUNCTIONS_EAGERLY
            if not self._count or flag != self._written:
                self._baseline = bool(flag)  # no scope active, or someone outside eagerctl wrote it
            newest = self._newest
            act.older = newest
            act.newer = None
            if newest is not None:
                newest.newer = act
            self._newest = act
            self._count += 1
            act.registered = True
            flags.RUN_FUNCTIONS_EAGERLY = self._written = act.value

    def exit(self, act: Activation) -> bool:
        """Remove `act`; False (and nothing changed) if it is not registered."""
        flags = _hook.flag_module or _hook.load()
        with self._lock:
            if not act.registered:
                return False
            if flags.RUN_FUNCTIONS_EAGERLY != self._written:
                self._baseline = bool(flags.RUN_FUNCTIONS_EAGERLY)
            self._unlink(act)
            newest = self._newest
            flags.RUN_FUNCTIONS_EAGERLY = self._written = (
                newest.value if newest is not None else self._baseline
            )
            return True

    def reset(self) -> list[Activation]:
        """Unregister every process scope and put the flag at its baseline; return those removed."""
        flags = _hook.flag_module or _hook.load()
        with self._lock:
            if self._count and flags.RUN_FUNCTIONS_EAGERLY != self._written:
                self._baseline = bool(flags.RUN_FUNCTIONS_EAGERLY)
            elif not self._count:
                self._baseline = bool(flags.RUN_FUNCTIONS_EAGERLY)
            removed: list[Activation] = []
            while self._newest is not None:
                removed.append(self._newest)
                self._unlink(self._newest)
            flags.RUN_FUNCTIONS_EAGERLY = self._written = self._baseline
        return removed

    def _unlink(self, act: Activation) -> None:
        if act.older is not None:
            act.older.newer = act.newer
        if act.newer is not None:
            act.newer.older = act.older
        else:
            self._newest = act.older
        act.older = act.newer = None
        act.registered = False
        self._count -= 1

    def _write(self, value: bool) -> None:
        _hook.write_flag(value)
        self._written = value

    # -- views ----------------------------------------------------------------
    def snapshot(self) -> tuple[bool, list[Activation]]:
        """(baseline, active process activations oldest first)."""
        with self._lock:
            acts: list[Activation] = []
            node = self._newest
            while node is not None:
                acts.append(node)
                node = node.older
            acts.reverse()
            baseline = self._baseline
            if self._count and _hook.flag_module is not None and _hook.read_flag() != self._written:
                baseline = _hook.read_flag()
        return baseline, acts

    def active_count(self) -> int:
        return self._count

    # -- fork ---------------------------------------------------------------
    def _before_fork(self) -> None:
        # Wait (briefly) for an operation in another thread to finish, so the
        # child gets a consistent list. Operations never block, so this is short.
        self._held_for_fork = self._lock.acquire(timeout=1.0)

    def _after_fork_in_parent(self) -> None:
        if self._held_for_fork:
            self._lock.release()

    def _after_fork_in_child(self) -> None:
        # Only the forking thread exists in the child: scopes entered by other
        # threads can never be exited there, so they are dropped, and the flag
        # is set from what remains.
        self._lock = threading.Lock()
        me = threading.get_ident()
        node = self._newest
        while node is not None:
            older = node.older
            if node.thread != me:
                self._unlink(node)
            node = older
        if self._written is not None and _hook.flag_module is not None:
            self._write(self._newest.value if self._newest is not None else self._baseline)


REGISTRY = Registry()
os.register_at_fork(
    before=REGISTRY._before_fork,
    after_in_parent=REGISTRY._after_fork_in_parent,
    after_in_child=REGISTRY._after_fork_in_child,
)
