"""Concurrent reads by name share Prefect calls, and each caller still gets a read begun after it asked."""

from __future__ import annotations

import asyncio

import pytest

from prefect_cluster_triggers.deployments.prefect_objects.batched_reads import IN_FLIGHT, Coalesced


class _Store:
    """A key-value store whose reads take a while and are counted; `version` changes between reads."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.version = 0
        self.fail = False

    async def fetch(self, keys: list[str]) -> dict[str, str]:
        self.calls.append(keys)
        version = self.version
        await asyncio.sleep(0.01)
        if self.fail:
            raise RuntimeError("server unavailable")
        return {k: f"{k}@{version}" for k in keys if not k.startswith("missing")}


def test_a_hundred_concurrent_reads_take_a_few_calls_and_each_gets_its_own_value() -> None:
    store = _Store()

    async def burst() -> list[dict[str, str]]:
        reads = Coalesced(store.fetch)
        return await asyncio.gather(*(reads.load([f"k{i}", "missing"]) for i in range(100)))

    answers = asyncio.run(burst())
    assert answers == [{f"k{i}": f"k{i}@0"} for i in range(100)]
    assert len(store.calls) <= IN_FLIGHT + 1 and sorted(k for c in store.calls for k in c if k != "missing") == sorted(
        f"k{i}" for i in range(100))


def test_a_lone_read_is_one_call_and_a_later_caller_never_gets_an_older_read() -> None:
    store = _Store()

    async def scenario() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        reads = Coalesced(store.fetch)
        alone = await reads.load(["a"])
        first = [asyncio.create_task(reads.load(["a"])) for _ in range(IN_FLIGHT)]
        await asyncio.sleep(0.001)  # those reads are in flight; what changes now must show to the next caller
        store.version = 1
        later = await reads.load(["a"])
        return alone, (await asyncio.gather(*first))[0], later

    alone, first, later = asyncio.run(scenario())
    assert (alone, first, later) == ({"a": "a@0"}, {"a": "a@0"}, {"a": "a@1"})
    assert store.calls[0] == ["a"]


def test_a_failed_read_fails_each_caller_that_shared_it_and_the_next_read_is_new() -> None:
    store = _Store()

    async def scenario() -> tuple[list[object], dict[str, str]]:
        reads = Coalesced(store.fetch)
        store.fail = True
        failed = await asyncio.gather(*(reads.load([f"k{i}"]) for i in range(5)), return_exceptions=True)
        store.fail = False
        return failed, await reads.load(["k0"])

    failed, after = asyncio.run(scenario())
    assert all(isinstance(e, RuntimeError) and str(e) == "server unavailable" for e in failed)
    assert after == {"k0": "k0@0"}


def test_a_caller_that_goes_away_does_not_disturb_the_others() -> None:
    store = _Store()

    async def scenario() -> dict[str, str]:
        reads = Coalesced(store.fetch)
        gone = asyncio.create_task(reads.load(["x"]))
        stays = asyncio.create_task(reads.load(["y"]))
        await asyncio.sleep(0)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await stays

    assert asyncio.run(scenario()) == {"y": "y@0"}
