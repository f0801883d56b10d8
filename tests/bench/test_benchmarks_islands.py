"""The island benchmarks compare like with like: the same step, loss and gradients three ways.

No timing: the step with its loss as an eager island, with the loss through
`tf.py_function` (the anchor) and compiled plainly compute the same losses
and leave the same weights, the loss body runs once per step in the first two
(eagerly), and the crossover's chains of tiny islands give the same gradient
as the chain compiled.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `benchmarks/` is a top-level folder, not part of the installed package
    sys.path.insert(0, str(ROOT))

tf = pytest.importorskip("tensorflow")

import eagerctl  # noqa: E402
from benchmarks import _islands, _workloads  # noqa: E402


@pytest.mark.parametrize("build", [_workloads.article, _workloads.distill], ids=["article", "distill"])
def test_island_py_function_and_compiled_steps_compute_the_same(build: Any) -> None:
    results: dict[str, tuple[list[float], list[Any]]] = {}
    runs: dict[str, int] = {}
    wraps = (("compiled", None), ("island", eagerctl.debuggable), ("py_function", _workloads.py_function))
    for name, wrap in wraps:
        w = build(wrap_loss=wrap)
        with eagerctl.eager_scope():
            w.step(*w.args)  # the optimizer's variables, created eagerly (as the benchmark does)
        losses = [float(w.step(*w.args))]  # traces the step
        before = len(w.loss_calls)
        losses += [float(w.step(*w.args)) for _ in range(3)]
        runs[name] = len(w.loss_calls) - before
        results[name] = (losses, [v.numpy() for v in _trainable(w)])
    assert runs["island"] == 3 and runs["py_function"] == 3  # the body ran eagerly on every step
    assert runs["compiled"] == 0
    for name in ("island", "py_function"):
        np.testing.assert_allclose(results[name][0], results["compiled"][0], rtol=1e-5, atol=1e-6)
        for got, want in zip(results[name][1], results["compiled"][1], strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _trainable(w: _workloads.Workload) -> list[Any]:
    found: dict[int, Any] = {}
    for cell in w.step.python_function.__closure__ or ():
        value = cell.cell_contents
        for v in getattr(value, "trainable_variables", []) or []:
            found[id(v)] = v
    assert found, "the step closes over no model"
    return list(found.values())


@pytest.mark.parametrize("islands", [1, 4])
def test_crossover_chains_differentiate_as_compiled(islands: int) -> None:
    x = tf.random.stateless_normal((8, 16), seed=(3, 4))
    calls: list[int] = []

    def counted(fn: Any) -> Any:
        def body(h: Any) -> Any:
            calls.append(1)
            return fn(h)

        return eagerctl.debuggable(body)

    with_islands = _islands._chain(islands, counted)(x)
    compiled = _islands._chain(islands, None)(x)
    tracing = len(calls)
    again = _islands._chain(islands, counted)
    again(x)
    first = len(calls)
    again(x)
    assert len(calls) - first == islands  # each island's body ran eagerly once per step
    assert tracing >= islands
    np.testing.assert_allclose(with_islands.numpy(), compiled.numpy(), rtol=1e-5, atol=1e-6)
