"""`without_client_retries`: Prefect's client retries off inside the block only, without rebuilding settings each time;
`retry_lost_races`: writes refused as lost races go through, queued once the server has refused one twice;
`loop_lock`: named locks of an event loop."""

from __future__ import annotations

import asyncio
import weakref

import httpx
import prefect.context
import pytest
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

from prefect_cluster_triggers.deployments.prefect_objects import client
from prefect_cluster_triggers.deployments.prefect_objects.client import retry_lost_races, without_client_retries


def test_retries_are_off_inside_and_back_after() -> None:
    before = PREFECT_CLIENT_MAX_RETRIES.value()
    assert before > 0
    with without_client_retries():
        assert PREFECT_CLIENT_MAX_RETRIES.value() == 0
    assert PREFECT_CLIENT_MAX_RETRIES.value() == before


def test_the_derived_settings_are_reused_and_follow_a_change_of_the_base() -> None:
    with without_client_retries():
        first = prefect.context.get_settings_context().settings
    with without_client_retries():
        assert prefect.context.get_settings_context().settings is first
    with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 7}):
        with without_client_retries():
            assert PREFECT_CLIENT_MAX_RETRIES.value() == 0
        assert PREFECT_CLIENT_MAX_RETRIES.value() == 7


def test_nested_and_interleaved_blocks_keep_reusing_the_derived_settings() -> None:
    """A write retried inside a block that already has no retries (tidy, then a save), and tasks inside
    and outside blocks taking turns, all reuse one derived settings: none rebuilds Prefect's settings."""
    with without_client_retries():
        derived = prefect.context.get_settings_context().settings

    async def turns() -> set[int]:
        async def one(nested: bool) -> int:
            with without_client_retries():
                await asyncio.sleep(0)
                if nested:
                    with without_client_retries():
                        await asyncio.sleep(0)
                        return id(prefect.context.get_settings_context().settings)
                return id(prefect.context.get_settings_context().settings)
        return set(await asyncio.gather(*(one(i % 2 == 0) for i in range(20))))

    assert asyncio.run(turns()) == {id(derived)}
    assert PREFECT_CLIENT_MAX_RETRIES.value() > 0


class _OneWriterAtATime:
    """A server that, like Prefect's on SQLite, answers 503 to a write that overlaps another."""

    def __init__(self) -> None:
        self.writing = 0
        self.refused = 0
        self.written = 0

    async def write(self) -> int:
        self.writing += 1
        try:
            await asyncio.sleep(0.002)
            if self.writing > 1:
                self.refused += 1
                request = httpx.Request("POST", "http://prefect/api/block_documents/")
                raise httpx.HTTPStatusError("lost race", request=request, response=httpx.Response(503, request=request))
            self.written += 1
            return self.written
        finally:
            self.writing -= 1


def test_a_burst_refused_as_lost_races_is_written_whole_and_queued_once_a_write_is_refused_twice() -> None:
    server = _OneWriterAtATime()

    async def burst() -> tuple[list[int], int]:
        first = await asyncio.gather(*(retry_lost_races(server.write) for _ in range(20)))
        refused_in_first_burst = server.refused
        second = await asyncio.gather(*(retry_lost_races(server.write) for _ in range(20)))
        assert server.refused == refused_in_first_burst  # queued now: nothing overlaps, nothing is refused
        return first + second, refused_in_first_burst

    written, refused = asyncio.run(burst())
    assert sorted(written) == list(range(1, 41)) and refused > 0


def test_writes_go_side_by_side_again_once_no_race_was_lost_for_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lost race on PostgreSQL (a statement timed out) queues its process's writes for a while, not for good."""
    monkeypatch.setattr(client, "_QUEUE_SECONDS", 0.2)
    server = _OneWriterAtATime()

    async def bursts() -> tuple[int, int]:
        await asyncio.gather(*(retry_lost_races(server.write) for _ in range(10)))
        queued = server.refused
        await asyncio.sleep(0.3)
        await asyncio.gather(*(retry_lost_races(server.write) for _ in range(10)))
        return queued, server.refused

    queued, later = asyncio.run(bursts())
    assert queued > 0 and later > queued and server.written == 20


def test_a_write_refused_for_another_reason_is_not_tried_again() -> None:
    calls = []

    async def write() -> None:
        calls.append(1)
        request = httpx.Request("POST", "http://prefect/api/deployments/")
        raise httpx.HTTPStatusError("bad", request=request, response=httpx.Response(422, request=request))

    with pytest.raises(httpx.HTTPStatusError):
        asyncio.run(retry_lost_races(write))
    assert calls == [1]


class _NamesUniqueAfterTheCheck:
    """A server that, like Prefect's on PostgreSQL, answers 503 to a create that lost its name between
    the existence check and the insert, 409 to one that finds the name taken, and takes writes side by side."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.writing = 0
        self.most_at_once = 0

    async def create(self, name: str) -> str:
        request = httpx.Request("POST", "http://prefect/api/block_documents/")
        taken = name in self.names
        self.writing += 1
        self.most_at_once = max(self.most_at_once, self.writing)
        try:
            await asyncio.sleep(0.01)
            if taken:
                raise httpx.HTTPStatusError("exists", request=request, response=httpx.Response(409, request=request))
            if name in self.names:
                unique_violation = httpx.Response(503, request=request)
                raise httpx.HTTPStatusError("unique violation", request=request, response=unique_violation)
            self.names.add(name)
            return name
        finally:
            self.writing -= 1


def test_creates_losing_a_name_on_postgresql_get_their_409_and_leave_writes_side_by_side() -> None:
    """Ten creates of one slot name at once: one takes it, the others are answered 409 on their second try,
    and the process's next writes are not queued behind one another."""
    server = _NamesUniqueAfterTheCheck()

    async def answer(name: str) -> str:
        try:
            return await retry_lost_races(lambda: server.create(name))
        except httpx.HTTPStatusError as exc:
            return str(exc.response.status_code)

    async def bursts() -> tuple[list[str], int]:
        raced = await asyncio.gather(*(answer("slot-7") for _ in range(10)))
        server.most_at_once = 0
        await asyncio.gather(*(answer(f"run-{i}") for i in range(10)))
        return raced, server.most_at_once

    raced, side_by_side = asyncio.run(bursts())
    assert sorted(raced) == ["409"] * 9 + ["slot-7"]
    assert side_by_side == 10


def test_a_named_loop_lock_excludes_while_held_and_is_dropped_once_nobody_holds_it() -> None:
    async def scenario() -> tuple[list[str], list[weakref.ref]]:
        order: list[str] = []
        used: list[weakref.ref] = []

        async def turn(who: str) -> None:
            lock = client.loop_lock("quota:tenant")
            used.append(weakref.ref(lock))
            async with lock:
                order.append(f"{who} in")
                await asyncio.sleep(0.01)
                order.append(f"{who} out")

        await asyncio.gather(turn("a"), turn("b"))
        return order, used

    order, used = asyncio.run(scenario())
    assert order == ["a in", "a out", "b in", "b out"]
    assert used[0]() is None and used[1]() is None  # one lock for both turns, gone with them
