"""Reads by name that concurrent requests share: a trigger's deployment and its records.

Under a burst of `get`s every request reads one deployment and a few records, so the Prefect
server, not this process, sets the pace: a hundred requests are two hundred Prefect calls.
Reads of one kind are therefore made together (the DataLoader pattern): a read starts at once
when few are in flight, and the names asked for meanwhile go into the next one, one filter call
for many names. Each caller gets a read that began after it asked, so nothing it sees is older
than a read of its own would be; a lone request waits for nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Generic, Hashable, Mapping, TypeVar
from weakref import WeakKeyDictionary

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowFilter, FlowFilterName

from prefect_cluster_triggers.deployments.prefect_objects import records
from prefect_cluster_triggers.deployments.prefect_objects.client import PAGE
from prefect_cluster_triggers.deployments.prefect_objects.translate import FLOW_NAME

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
_ABSENT: Any = object()  # what a caller gets for a key its read did not find

IN_FLIGHT = 2
"""Reads of one kind at once: one per core of a small Prefect server keeps it busy without queueing."""


class Coalesced(Generic[K, V]):
    """`fetch` of many keys at once for callers that each want a few: at most `IN_FLIGHT` fetches run,
    each of at most `PAGE` keys; keys asked for while they run wait for the next."""

    def __init__(self, fetch: Callable[[list[K]], Awaitable[Mapping[K, V]]]) -> None:
        self._fetch = fetch
        self._waiting: list[tuple[K, asyncio.Future[V]]] = []
        self._running: set[asyncio.Task[None]] = set()

    async def load(self, keys: list[K]) -> dict[K, V]:
        """The values found for `keys` (absent keys left out), from reads begun after this call."""
        loop = asyncio.get_running_loop()
        futures = [(key, loop.create_future()) for key in keys]
        self._waiting += futures
        if len(self._running) < IN_FLIGHT:
            task = loop.create_task(self._drain())
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        values = await asyncio.gather(*(future for _, future in futures), return_exceptions=True)
        if errors := [v for v in values if isinstance(v, BaseException)]:
            raise errors[0]
        return {key: value for (key, _), value in zip(futures, values) if value is not _ABSENT}

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # callers of this same turn of the loop join the first read
        while self._waiting:
            batch, self._waiting = self._waiting[:PAGE], self._waiting[PAGE:]
            try:
                found = await self._fetch(list(dict.fromkeys(key for key, _ in batch)))
            except Exception as exc:  # each caller gets the error its own read would have raised
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for key, future in batch:
                if not future.done():  # its caller may have gone (a closed connection)
                    future.set_result(found.get(key, _ABSENT))


class _Reads:
    """The coalesced reads of one client."""

    def __init__(self, client: PrefectClient) -> None:
        async def deployments(names: list[str]) -> dict[str, Any]:
            found = await client.read_deployments(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=names)),
                limit=len(names),
            )
            return {d.name: d for d in found}

        self.deployments: Coalesced[str, Any] = Coalesced(deployments)
        self.records: Coalesced[str, Any] = Coalesced(lambda names: records.read(client, names))


_reads: WeakKeyDictionary[PrefectClient, _Reads] = WeakKeyDictionary()


def _of(client: PrefectClient) -> _Reads:
    if client not in _reads:
        _reads[client] = _Reads(client)
    return _reads[client]


async def trigger_deployment(client: PrefectClient, trigger_id: str) -> Any | None:
    """The deployment of the shared flow named `trigger_id`, or None."""
    return (await _of(client).deployments.load([trigger_id])).get(trigger_id)


async def record_values(client: PrefectClient, names: list[str]) -> dict[str, Any]:
    """The values of the records among `names`, by name (as `records.read`)."""
    return await _of(client).records.load(names)
