"""@debuggable on coroutine functions: the override covers the awaited body, in its own task only."""

from __future__ import annotations

import asyncio
import inspect

from helpers import make_probe, mode_of

import eagerctl

probe, seen = make_probe()


@eagerctl.debuggable
async def fetch(delay: float) -> list[str]:
    modes = [mode_of(probe, seen)]
    await asyncio.sleep(delay)
    modes.append(mode_of(probe, seen))
    return modes


def test_is_still_a_coroutine_function_and_keeps_its_signature() -> None:
    assert inspect.iscoroutinefunction(fetch)
    assert str(inspect.signature(fetch)) == "(delay: 'float') -> 'list[str]'"


def test_override_covers_the_awaited_body_across_suspensions() -> None:
    assert asyncio.run(fetch(0.01)) == ["eager", "eager"]
    assert mode_of(probe, seen) == "graph"


def test_override_is_not_active_before_the_coroutine_is_awaited() -> None:
    async def main() -> tuple[str, list[str]]:
        pending = fetch(0)
        before = mode_of(probe, seen)  # created, not yet awaited
        return before, await pending

    assert asyncio.run(main()) == ("graph", ["eager", "eager"])


def test_other_tasks_keep_their_mode_while_one_awaits_inside_the_body() -> None:
    async def bystander(started: asyncio.Event) -> list[str]:
        await started.wait()
        return [mode_of(probe, seen)]

    async def main() -> tuple[list[str], list[str]]:
        started = asyncio.Event()

        async def debugged() -> list[str]:
            started.set()
            return await fetch(0.05)

        return tuple(await asyncio.gather(debugged(), bystander(started)))  # type: ignore[return-value]

    debugged_modes, bystander_modes = asyncio.run(main())
    assert debugged_modes == ["eager", "eager"]
    assert bystander_modes == ["graph"]


def test_async_method_and_exceptions() -> None:
    class Client:
        @eagerctl.debuggable
        async def get(self, fail: bool) -> str:
            await asyncio.sleep(0)
            if fail:
                raise LookupError("missing")
            return mode_of(probe, seen)

    async def main() -> tuple[str, str]:
        ok = await Client().get(False)
        try:
            await Client().get(True)
        except LookupError as exc:
            return ok, str(exc)
        return ok, "no error"

    assert asyncio.run(main()) == ("eager", "missing")
    assert eagerctl.status().scopes == ()
