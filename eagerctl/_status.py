"""`is_eager()` and `status()`: what mode a `tf.function` call gets, and why."""

from __future__ import annotations

import sys
from typing import Any

from . import _display, _hook, _local
from ._registry import REGISTRY
from ._scope import repair_orphans, thread_name


def is_eager() -> bool:
    """Whether a `tf.function` called here, now, runs eagerly.

    The innermost local scope of this thread or asyncio task decides; without
    one, TensorFlow's process flag does.

    Example:
        ```python
        with eagerctl.eager_scope():
            assert eagerctl.is_eager()
        ```
    """
    flags = _hook.load()
    repair_orphans()
    REGISTRY.sync()
    value = _local.override() if _hook.installed else None  # unhooked, TF reads only its flag
    return bool(flags.RUN_FUNCTIONS_EAGERLY) if value is None else value


class ScopeInfo:
    """One active scope, as `status()` reports it.

    Attributes:
        scope (str): the scope's repr, such as `eager_scope(process=True)`.
        kind (str): `"local"` (this thread or task) or `"process"` (TensorFlow's flag).
        enabled (bool): True for eager, False for compiled graphs.
        thread (str): the thread that entered it.
        where (str): where it was entered, `file:line`.
    """

    __slots__ = ("enabled", "kind", "scope", "thread", "where")

    def __init__(self, act: Any, enabled: bool) -> None:
        self.scope = repr(act.scope)
        self.kind = "process" if act.scope.process else "local"
        self.enabled = enabled
        self.thread = thread_name(act.thread)
        self.where = act.where

    def __repr__(self) -> str:
        return (f"ScopeInfo(scope={self.scope!r}, kind={self.kind!r}, enabled={self.enabled}, "
                f"thread={self.thread!r}, where={self.where!r})")


class ReplayInfo:
    """One active `replay()` block, as `status()` reports it.

    Attributes:
        replay (str): the replay's repr, with its options: `replay(post_mortem=False, check_variables=False)`.
        post_mortem (bool): whether pdb opens at the line found.
        check_variables (bool): whether the variables each call wrote are checked too.
        thread (str): the thread that entered it.
        where (str): where it was entered, `file:line` (a decorated function: where it is decorated).
        here (bool): whether it is in force in this context (a `tf.function` called here is monitored).
    """

    __slots__ = ("check_variables", "here", "post_mortem", "replay", "thread", "where")

    def __init__(self, act: Any, here: bool) -> None:
        self.replay = repr(act.replay)
        self.post_mortem = act.post_mortem
        self.check_variables = act.check_variables
        thread = act.thread  # a `threading.Thread` (idents of finished threads are reused)
        self.thread = thread.name if thread.is_alive() else f"{thread.name} (finished)"
        self.where = act.where
        self.here = here

    def __repr__(self) -> str:
        return (f"ReplayInfo(replay={self.replay!r}, thread={self.thread!r}, where={self.where!r}, "
                f"here={self.here})")


def _replays() -> tuple[ReplayInfo, ...]:
    scope = sys.modules.get("eagerctl._replay.scope")  # not imported: no replay was ever entered
    if scope is None:
        return ()
    mine = set()
    top = scope.CURRENT.get()
    while top is not None:
        mine.add(top)
        top = top.below
    return tuple(ReplayInfo(act, act in mine) for act in scope.active())


class Status:
    """A snapshot of eagerctl's state; `str()` of it is a readable report.

    Attributes:
        tensorflow (str | None): TensorFlow's version, or None when it is not imported yet.
        hook_installed (bool): whether eagerctl's hook into TensorFlow is in.
        process_flag (bool | None): TensorFlow's global flag, None without TensorFlow.
        baseline (bool | None): the flag's value with no process scope active.
        override (bool | None): this context's local override, or None.
        is_eager (bool | None): the effective mode for a `tf.function` called here.
        scopes (tuple[ScopeInfo, ...]): every active scope, oldest first.
        breakpoint_islands (tuple[str, ...]): the functions a debugger's breakpoints made
            eager islands, as `qualname (file:line)`.
        replays (tuple[ReplayInfo, ...]): every active `replay()` block, in every thread, oldest first.
    """

    __slots__ = ("baseline", "breakpoint_islands", "hook_installed", "is_eager", "override", "process_flag",
                 "replays", "scopes", "tensorflow")

    def __init__(self) -> None:
        loaded = _hook.loaded()  # TF imported by the program (the hook installs only at first use)
        repair_orphans()
        self.tensorflow = _hook.tf_version
        self.hook_installed = _hook.installed
        baseline, process = REGISTRY.snapshot()  # repairs the flag first, if an interrupt left it stale
        self.process_flag: bool | None = _hook.read_flag() if loaded else None
        self.baseline: bool | None = baseline if loaded else None
        self.override = _local.override() if self.hook_installed else None
        self.is_eager: bool | None = self.override if self.override is not None else self.process_flag
        scopes = []
        # Entries of TF's own (a `Frame`) have no scope; phantoms are not listed.
        for act in [*_local.live(), *process]:
            value = act.value
            if value is not None and hasattr(act, "scope"):
                scopes.append(ScopeInfo(act, value))
        self.scopes = tuple(scopes)
        from ._breakpoints import active_islands

        # "qualname (file:line)" of each function a breakpoint made an island
        self.breakpoint_islands = tuple(active_islands())
        self.replays = _replays()

    def __repr__(self) -> str:
        return (f"Status(tensorflow={self.tensorflow!r}, hook_installed={self.hook_installed}, "
                f"process_flag={self.process_flag}, baseline={self.baseline}, override={self.override}, "
                f"is_eager={self.is_eager}, scopes={list(self.scopes)!r}, replays={list(self.replays)!r})")

    def __str__(self) -> str:
        mode = _display.mode
        lines = [
            f"tensorflow       {self.tensorflow or 'not imported'}",
            f"hook installed   {'yes' if self.hook_installed else 'no'}",
            f"process flag     {mode(self.process_flag)}",
            f"baseline         {mode(self.baseline)}",
            f"local override   {mode(self.override)}",
            f"effective here   {mode(self.is_eager)}",
            f"active scopes    {len(self.scopes) or 'none'}",
        ]
        for info in self.scopes:
            lines.append(f"  {info.kind:<8} {mode(info.enabled):<6} {info.scope:<28} "
                         f"thread {info.thread!r} at {info.where}")
        if self.breakpoint_islands:
            lines.append(f"breakpoint islands {len(self.breakpoint_islands)}")
            lines.extend(f"  {name}" for name in self.breakpoint_islands)
        if self.replays:  # shown only when some are active, like breakpoint islands
            lines.append(f"active replays   {len(self.replays)}")
            for rep in self.replays:
                lines.append(f"  {'here ' if rep.here else 'other'}    {rep.replay} thread {rep.thread!r} "
                             f"at {rep.where}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:  # a table in Jupyter
        return _display.status_html(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython's terminal: str(), not repr()
        _display.pretty(self, printer, cycle)


def status() -> Status:
    """Snapshot of the process flag, baseline, this context's override and every active scope.

    Does not import TensorFlow.

    Example:
        ```python
        print(eagerctl.status())
        ```
    """
    return Status()
