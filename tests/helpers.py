"""Small real-TensorFlow probes shared by the core tests."""

from __future__ import annotations

import threading
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
