"""The sweep's Prefect calls wait while a wake-up is evaluated, and never for longer than the bound."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from prefect_cluster_triggers.deployments.evaluator.service import WakeUpsFirst

_REQUEST = httpx.Request("GET", "http://127.0.0.1:9/api/deployments/filter")


async def _turns(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_a_sweep_call_waits_for_the_wake_ups_being_evaluated_then_goes() -> None:
    async def scenario() -> list[str]:
        first, seen = WakeUpsFirst(), []
        await first.before_sweep_call(_REQUEST)  # nothing evaluated: no wait
        seen.append("quiet call")
        one, two = first.evaluating(), first.evaluating()
        await one.__aenter__()
        await two.__aenter__()
        call = asyncio.create_task(first.before_sweep_call(_REQUEST))
        call.add_done_callback(lambda _: seen.append("sweep call"))
        await _turns()
        await one.__aexit__(None, None, None)
        seen.append("first wake-up done")
        await _turns()
        await two.__aexit__(None, None, None)
        seen.append("second wake-up done")
        await call
        return seen

    assert asyncio.run(scenario()) == ["quiet call", "first wake-up done", "second wake-up done", "sweep call"]


def test_a_sweep_call_goes_after_the_bound_while_wake_ups_keep_coming(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(WakeUpsFirst, "YIELD_SECONDS", 0.05)

    async def scenario() -> bool:
        first = WakeUpsFirst()
        async with first.evaluating():
            await asyncio.wait_for(first.before_sweep_call(_REQUEST), 5)  # the evaluation is still going on
            return True

    assert asyncio.run(scenario())


def test_a_failed_evaluation_still_lets_the_sweep_go() -> None:
    async def scenario() -> None:
        first = WakeUpsFirst()
        with pytest.raises(RuntimeError):
            async with first.evaluating():
                raise RuntimeError("Prefect answered 503")
        await asyncio.wait_for(first.before_sweep_call(_REQUEST), 0.01)  # raises TimeoutError if it waited

    asyncio.run(scenario())
