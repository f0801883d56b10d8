"""Where a scope's enter+exit time goes: `python -m benchmarks.ladder`.

A developer's tool for the scope targets: each rung adds one layer of the real
path (a bare ContextVar, the factory alone, the activation alone, a reused
scope object, the full `with eager_scope():`), timed side by side with TF's
`test_util.run_functions_eagerly` context manager, whose ratio is 1. It uses
eagerctl internals (`Activation`), so it may need updating when they change.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable

if __package__ in (None, ""):  # `python benchmarks/ladder.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks._figures import cpu_clock, fmt_time
from benchmarks._harness import Runner, interleave


def _loop(body: Callable[[], object]) -> Runner:
    def run(n: int) -> float:
        start = cpu_clock()
        for _ in range(n):
            body()
        return cpu_clock() - start

    return run


def main() -> int:
    import contextvars

    from tensorflow.python.framework import test_util

    import eagerctl
    from eagerctl import _hook
    from eagerctl._registry import REGISTRY
    from eagerctl._scope import Activation, Scope

    eagerctl.install_hook()
    tf_cm = test_util.run_functions_eagerly
    var: contextvars.ContextVar[bool | None] = contextvars.ContextVar("ladder", default=None)
    lock = threading.Lock()

    def tf_context_manager() -> None:
        with tf_cm(True):
            pass

    def contextvar() -> None:
        var.reset(var.set(True))

    def lock_round_trip() -> None:
        with lock:
            pass

    for process in (False, True):
        scope = Scope(True, process, "eager_scope")
        done = Activation(scope, sys._getframe(), 1)
        done.exit()

        def activation_only(scope: Scope = scope) -> None:
            Activation(scope, sys._getframe(), 1).exit()

        def reused(scope: Scope = scope) -> None:
            with scope:
                pass

        def full(process: bool = process) -> None:
            with eagerctl.eager_scope(process=process):
                pass

        def factory(process: bool = process) -> None:
            eagerctl.eager_scope(process=process)

        rungs: dict[str, Runner] = {
            "TF's test_util.run_functions_eagerly": _loop(tf_context_manager),
            "bare ContextVar set+reset": _loop(contextvar),
            f"eager_scope(process={process}) factory alone": _loop(factory),
            "Activation() + exit() alone": _loop(activation_only),
            "with <reused scope object>": _loop(reused),
            f"with eager_scope(process={process})": _loop(full),
        }
        if process:
            done.value = True  # a registry node needs a value; the exited activation has none

            def registry_only(act: Activation = done) -> None:
                REGISTRY.enter(act)
                REGISTRY.exit(act)

            rungs["lock acquire+release"] = _loop(lock_round_trip)
            rungs["REGISTRY.enter + exit alone"] = _loop(registry_only)
        anchor = next(iter(rungs))
        # TF's helper runs as without eagerctl: with TF's own writer, not the hook's.
        before = {name: _hook._install_writer_again for name in rungs}
        before[anchor] = _hook._uninstall_writer
        try:
            res = interleave(rungs, anchor, rounds=21, seconds=0.03, before=before)
        finally:
            _hook._install_writer_again()
        print(f"\n{'local' if not process else 'process'} scope, ratio to TF's context manager (CPU time):")
        for name, side in res.sides.items():
            print(f"  {name:42s} {fmt_time(side.per_op):>10s}  {res.ratios[name]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
