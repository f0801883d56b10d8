"""The decorator form: a fresh activation per call, for every kind of function."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
import tensorflow as tf
from helpers import make_probe, mode_of

import eagerctl


def test_function_decorator_keeps_name_signature_and_value() -> None:
    probe, seen = make_probe()

    @eagerctl.eager_scope()
    def step(x: int, *, scale: int = 2) -> str:
        """Doc."""
        return mode_of(probe, seen) * (x * scale)

    assert step(1, scale=1) == "eager"
    assert step.__name__ == "step" and step.__doc__ == "Doc."
    assert str(inspect.signature(step)) == "(x: 'int', *, scale: 'int' = 2) -> 'str'"
    assert mode_of(probe, seen) == "graph"


def test_decorator_is_reentrant_recursion_and_reuse() -> None:
    probe, seen = make_probe()
    modes: list[str] = []

    @eagerctl.eager_scope(process=True)
    def recurse(n: int) -> None:
        modes.append(mode_of(probe, seen))
        if n:
            recurse(n - 1)
        modes.append(mode_of(probe, seen))

    recurse(3)
    recurse(1)
    assert modes == ["eager"] * 12
    assert tf.config.functions_run_eagerly() is False


def test_decorator_from_many_threads_at_once() -> None:
    probe, seen = make_probe()
    barrier = threading.Barrier(4)
    results: list[str] = []

    @eagerctl.eager_scope()
    def work() -> None:
        barrier.wait()
        results.append(mode_of(probe, seen))
        barrier.wait()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["eager"] * 4


def test_methods_keep_binding() -> None:
    probe, seen = make_probe()

    class Trainer:
        @eagerctl.eager_scope()
        def step(self) -> str:
            assert isinstance(self, Trainer)
            return mode_of(probe, seen)

        @classmethod
        @eagerctl.eager_scope()
        def make(cls) -> str:
            assert cls is Trainer
            return mode_of(probe, seen)

        @staticmethod
        @eagerctl.graph_scope()
        def evaluate() -> str:
            return mode_of(probe, seen)

    with eagerctl.eager_scope():
        assert Trainer.evaluate() == "graph"
    assert Trainer().step() == "eager"
    assert Trainer.make() == "eager"


def test_decorating_a_tf_function_runs_it_eagerly() -> None:
    seen: list[bool] = []

    @eagerctl.eager_scope()
    @tf.function
    def f(x: tf.Tensor) -> tf.Tensor:
        seen.append(tf.executing_eagerly())
        return x + 1

    assert int(f(tf.constant(1))) == 2
    assert seen == [True]


def test_coroutine_function_scope_covers_the_awaited_body() -> None:
    probe, seen = make_probe()

    @eagerctl.eager_scope()
    async def job() -> list[str]:
        first = mode_of(probe, seen)
        await asyncio.sleep(0)
        return [first, mode_of(probe, seen)]

    async def main() -> list[str]:
        other_modes: list[str] = []

        async def other() -> None:
            for _ in range(3):
                other_modes.append(mode_of(probe, seen))
                await asyncio.sleep(0)

        got, _ = await asyncio.gather(job(), other())
        return got + other_modes

    assert inspect.iscoroutinefunction(job)
    assert asyncio.run(main()) == ["eager", "eager", "graph", "graph", "graph"]


def test_generator_scope_is_active_only_while_the_body_runs() -> None:
    probe, seen = make_probe()
    body: list[str] = []

    @eagerctl.eager_scope()
    def batches(n: int) -> Iterator[int]:
        for i in range(n):
            body.append(mode_of(probe, seen))
            received = yield i
            body.append(f"got {received}")
        return

    gen = batches(3)
    assert inspect.isgeneratorfunction(batches)
    consumer = []
    assert next(gen) == 0
    consumer.append(mode_of(probe, seen))
    assert gen.send("a") == 1
    consumer.append(mode_of(probe, seen))
    assert list(gen) == [2]
    assert body == ["eager", "got a", "eager", "got None", "eager", "got None"]
    assert consumer == ["graph", "graph"]


def test_generator_return_value_throw_and_close_run_inside_the_scope() -> None:
    events: list[tuple[str, bool]] = []

    @eagerctl.eager_scope(process=True)
    def gen() -> Iterator[int]:
        try:
            yield 1
        except ValueError:
            events.append(("caught", tf.config.functions_run_eagerly()))
            yield 2
        finally:
            events.append(("finally", tf.config.functions_run_eagerly()))

    g = gen()
    assert next(g) == 1
    assert tf.config.functions_run_eagerly() is False  # suspended at a yield: not active
    assert g.throw(ValueError("x")) == 2
    g.close()
    assert events == [("caught", True), ("finally", True)]

    @eagerctl.eager_scope()
    def returns() -> Iterator[int]:
        yield 1
        return 7

    def outer() -> Iterator[int]:
        value = yield from returns()
        assert value == 7

    assert list(outer()) == [1]

    @eagerctl.eager_scope()
    def fails() -> Iterator[int]:
        yield 1
        raise KeyError("k")

    with pytest.raises(KeyError):
        list(fails())


def test_async_generator_scope_is_active_only_while_the_body_runs() -> None:
    probe, seen = make_probe()
    body: list[str] = []

    @eagerctl.eager_scope()
    async def stream() -> AsyncIterator[int]:
        for i in range(2):
            body.append(mode_of(probe, seen))
            await asyncio.sleep(0)
            body.append(mode_of(probe, seen))
            yield i

    async def main() -> list[str]:
        consumer = []
        async for _ in stream():
            consumer.append(mode_of(probe, seen))
        agen = stream()
        assert await agen.__anext__() == 0
        await agen.aclose()
        return consumer

    assert inspect.isasyncgenfunction(stream)
    assert asyncio.run(main()) == ["graph", "graph"]
    assert body == ["eager"] * 6


def test_async_with() -> None:
    probe, seen = make_probe()

    async def main() -> tuple[str, str]:
        async with eagerctl.eager_scope():
            inside = mode_of(probe, seen)
        return inside, mode_of(probe, seen)

    assert asyncio.run(main()) == ("eager", "graph")
