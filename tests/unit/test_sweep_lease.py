"""The sweep lease between replicas, over an in-memory record store whose writes can be made to fail."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from prefect_cluster_triggers.deployments.prefect_objects import records, sweep_lease
from prefect_cluster_triggers.deployments.prefect_objects.sweep_lease import MISSED_BEATS, SweepLease

BEAT = 0.01


class Store:
    """One Prefect server's records; `failing` holders' writes time out (a busy server)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.failing: set[str] = set()

    async def read(self, client: Any, names: list[str]) -> dict[str, Any]:
        return {n: self.values[n] for n in names if n in self.values}

    async def save_value(self, client: Any, name: str, value: Any) -> None:
        if value.get("holder") in self.failing:
            await asyncio.sleep(10 * BEAT)  # longer than a beat: `_write` gives up
        self.values[name] = value


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Store:
    found = Store()
    monkeypatch.setattr(records, "read", found.read)
    monkeypatch.setattr(records, "save_value", found.save_value)
    return found


async def _beat(lease: SweepLease) -> bool:
    try:
        return await lease.step(None)
    except TimeoutError:
        return lease.held


def test_one_replica_takes_the_free_lease_and_keeps_it(store: Store) -> None:
    async def run() -> list[bool]:
        lease = SweepLease("a", "http://a", beat_seconds=BEAT, settle=0)
        return [await _beat(lease) for _ in range(5)]

    assert asyncio.run(run()) == [True] * 5
    assert store.values[sweep_lease.LEASE_RECORD]["holder"] == "a"


def test_a_holder_whose_beats_time_out_sweeps_on_while_nobody_else_takes_over(store: Store) -> None:
    async def run() -> list[bool]:
        lease = SweepLease("a", "http://a", beat_seconds=BEAT, settle=0)
        await _beat(lease)
        store.failing.add("a")
        held = []
        for _ in range(3 * MISSED_BEATS):
            held.append(await _beat(lease))
            await asyncio.sleep(BEAT)
        return held

    assert asyncio.run(run()) == [True] * (3 * MISSED_BEATS)


def test_a_silent_holder_is_replaced_and_stops_sweeping_once_it_reads_the_new_one(store: Store) -> None:
    async def run() -> tuple[bool, bool, bool]:
        first = SweepLease("a", "http://a", beat_seconds=BEAT, settle=0)
        second = SweepLease("b", "http://b", beat_seconds=BEAT, settle=0)
        await _beat(first)
        assert not await _beat(second)
        store.failing.add("a")  # its beats stop landing
        for _ in range(MISSED_BEATS + 3):
            await asyncio.sleep(BEAT)
            taken = await _beat(second)
        return taken, first.held, await _beat(first)

    taken, still_thinks_held, after_reading = asyncio.run(run())
    assert taken and still_thinks_held and not after_reading


def test_a_released_lease_is_taken_at_the_next_beat(store: Store) -> None:
    async def run() -> bool:
        first = SweepLease("a", "http://a", beat_seconds=BEAT, settle=0)
        second = SweepLease("b", "http://b", beat_seconds=BEAT, settle=0)
        await _beat(first)
        await _beat(second)
        await first.release(None)
        return await _beat(second) and not first.held

    assert asyncio.run(run())
