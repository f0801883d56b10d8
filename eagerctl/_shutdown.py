"""Island callbacks and the end of the interpreter (no TensorFlow import here).

TensorFlow runs an island's callback (an `EagerPyFunc`) in whatever thread its
executor or a `tf.data` pipeline picked. After Ctrl-C the main thread unwinds and
the interpreter exits while such threads may still be inside an island's Python
body, or about to enter one: a `Dataset.map` with parallel calls keeps producing
elements until its iterator is destroyed. Once CPython has started finalizing,
a thread that re-takes the GIL is ended on the spot, in the middle of TF's C++
frames (holding TF's locks: the exit hangs) or after the objects it uses are
gone (a crash).

So, at exit (an `atexit` handler, which runs before CPython finalizes), eagerctl
stops island callbacks from entering user code: a callback that starts from then
on raises `InterpreterExiting` at once (TF hands it to the op as an error, which
stops the pipeline), and the handler waits, up to `EXIT_WAIT_SECONDS`, for the
callbacks already running to return to TF.

A `KeyboardInterrupt` raised inside a callback is left to TF, which makes it the
op's `UnknownError` as for `tf.py_function`: Ctrl-C itself only interrupts the main
thread, and island callbacks run in TF's threads. (Delivering it again to the main
thread with `_thread.interrupt_main()` was tried: it lands inside pybind11's error
handling and the user gets a `RuntimeError` about mismatched exceptions.)
"""

from __future__ import annotations

import atexit
import threading
from types import TracebackType

__all__ = ["EXIT_WAIT_SECONDS", "InterpreterExiting", "exiting", "running"]

EXIT_WAIT_SECONDS = 5.0
"""How long, at exit, eagerctl waits for island callbacks still running."""


class InterpreterExiting(RuntimeError):
    """An island callback started after the interpreter began to exit."""


_cond = threading.Condition(threading.Lock())
_active = 0
_exiting = False


def exiting() -> bool:
    """True once the interpreter has begun to exit (eagerctl's `atexit` handler ran)."""
    return _exiting


class _Running:
    """Context manager around one island callback (see the module's docstring)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        global _active
        with _cond:
            if _exiting:
                raise InterpreterExiting(
                    f"eager island {self.name!r} did not run: the Python interpreter is exiting")
            _active += 1

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        global _active
        with _cond:
            _active -= 1
            if _active == 0:
                _cond.notify_all()


def running(name: str) -> _Running:
    """Guard one island callback: refuse it at exit, count it while it runs."""
    return _Running(name)


def _at_exit() -> None:
    global _exiting
    with _cond:
        _exiting = True
        _cond.wait_for(lambda: _active == 0, timeout=EXIT_WAIT_SECONDS)


atexit.register(_at_exit)
