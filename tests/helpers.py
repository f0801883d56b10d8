"""Small real-TensorFlow probes shared by the core tests."""

from __future__ import annotations

import contextlib
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import tensorflow as tf

Seen = dict[int, list[bool]]


def make_probe() -> tuple[Any, Seen]:
    """A tf.function that records, per thread, on every run of its body, whether it ran eagerly.

    Compiled: the body runs only while tracing (records False), then never again.
    Eager: the body runs on every call and records True.
    """
    seen: Seen = {}

    @tf.function
    def probe(x: Any) -> Any:
        seen.setdefault(threading.get_ident(), []).append(tf.executing_eagerly())
        return x * 2

    return probe, seen


def mode_of(probe: Any, seen: Seen) -> str:
    """Call `probe` once in this thread and report how that call ran: 'eager' or 'graph'."""
    mine = seen.setdefault(threading.get_ident(), [])
    before = len(mine)
    out = probe(tf.constant(3))
    assert int(out) == 6
    if len(mine) > before and mine[-1]:
        return "eager"
    return "graph"


class Interrupter:
    """Raises KeyboardInterrupt at the `at`-th bytecode executed (0: count only), in every frame traced.

    A trace function with `f_trace_opcodes` can raise at any instruction, where a
    real signal lands only at calls and jumps: the harshest interrupt there is.
    """

    def __init__(self, at: int) -> None:
        self.at = at
        self.count = 0
        self.where: tuple[str, int] | None = None

    def global_trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        return self.local_trace

    def local_trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            self.count += 1
            if self.count == self.at:
                self.where = (frame.f_code.co_qualname, frame.f_lasti)
                raise KeyboardInterrupt
        return self.local_trace

    def run(self, op: Callable[[], object]) -> bool:
        """Run `op` under the tracer; whether it was interrupted."""
        sys.settrace(self.global_trace)
        try:
            op()
        except KeyboardInterrupt:
            return True
        finally:
            sys.settrace(None)
        return False


@contextlib.contextmanager
def ctrl_c_raises() -> Iterator[None]:
    """Python's own SIGINT handler (KeyboardInterrupt), unblocked, for the block; then as before.

    A test must not count on the handler it inherits: `pytest &` starts with SIGINT
    ignored (SIG_IGN), and a pdb session earlier in the run may have left pdb's,
    which raises nothing. Main thread only, as for `signal.signal`.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}) if hasattr(
        signal, "pthread_sigmask") else None
    try:
        yield
    finally:
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


# -- output compared with what a page or notebook shows --------------------------
_TF_LOG = re.compile(
    r"^(?:(?:WARNING|INFO|ERROR):tensorflow:|WARNING:absl:|[WIE]\d{4} [\d:.]+ +\d+ \S+\.cc:\d+\]|"
    r"WARNING: All log messages before absl::InitializeLog|\d{4}-\d\d-\d\d [\d:.]+: [IWE] )"
)
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
_TIME = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:e-?\d+)? ?(?:ns|us|µs|ms|s)\b")
# A speed ratio is a measurement only where compare and the demo print one ("slowdown 7.1x",
# "eager 4.0x faster"): the figure is normalised, the words are not, so a page showing the one
# while the code prints the other fails.
_RATIO = re.compile(r"(?<=slowdown )\d+(?:\.\d+)?x\b|(?<=eager )\d+(?:\.\d+)?x(?= faster)")
_PY_PATH = re.compile(r"(?:/[\w.+-]+)+/([\w.-]+\.py)")


def normalise(text: str, *, example_file: Path | None = None, title: str | None = None) -> list[str]:
    if example_file is not None:
        text = text.replace(str(example_file), title or example_file.name)
        text = text.replace(example_file.name, title or example_file.name)
    lines = []
    for raw in text.splitlines():
        if _TF_LOG.match(raw):
            continue
        line = _PY_PATH.sub(r"\1", _ADDRESS.sub("0x...", raw))
        lines.append(_RATIO.sub("<n>x", _TIME.sub("<time>", line)).rstrip())
    while lines and not lines[-1]:
        lines.pop()
    return lines
