"""Small real-TensorFlow probes shared by the core tests."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
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
