"""One change at a time per trigger, across every process that changes triggers.

A change reads the trigger's deployment and then writes it, its schedules and its automation
in several Prefect calls. Two changes at once (the CLI and API replicas, or the run hooks'
failure policy) would each write from their own read: a schedule deleted twice (a 500), a
PATCH answered 200 but overwritten by an older record, a deleted trigger left unpaused. So every
change holds its trigger's lock, a Prefect global concurrency limit of 1 named after the
trigger and made on the trigger's first change, and reads the deployment only once it holds it.

The slot is taken with a lease of `_LEASE` seconds, renewed while the change lasts: when the
holder's process dies, Prefect's repossessor frees the slot once the lease expires (within
`_LEASE` plus its loop, 15 s by default). Prefect keeps leases in its server's memory by
default, so a server restart loses them with the slot still taken; the limit's slot decay
frees such a slot after `_LOST_LEASE` seconds (Prefect restarts that decay at every refused
attempt, so only once nobody has tried for that long).

Changes waiting in one process queue on an asyncio lock first, so one of them at a time asks
Prefect: twenty waiting changes would otherwise each write a refused attempt to Prefect's
database several times a second, slowing the change they wait for.

Taking and giving back the lock are one Prefect call each, with the Prefect client's own
retries like the change's other calls (`client.retry_lost_races` would add its settings
switch, costlier than the call); reads take no lock.
"""

from __future__ import annotations

import asyncio
import random
import re
from contextlib import asynccontextmanager
from typing import AsyncIterator
from uuid import UUID
from weakref import WeakValueDictionary

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.logging import get_logger

from prefect_cluster_triggers.core.contract import IDENTIFIER_PATTERN
from prefect_cluster_triggers.core.errors import Conflict, NotFound
from prefect_cluster_triggers.deployments.prefect_objects.translate import FLOW_NAME

WAIT = 30.0  # seconds a change waits for the one in progress before answering 409: longer than the Prefect
# client's retries take on a busy server, so a change held up by our own bookkeeping (a run hook, the state line) waits
_LEASE = 60.0  # seconds; the shortest lease Prefect grants
_LOST_LEASE = 600.0  # seconds after which a slot whose lease the server forgot frees itself
_LOCKED = 423  # Prefect's answer while the slot is taken
_PAUSE_CAP = 0.5  # seconds between attempts at most: full jitter, 50 ms doubling up to this

_logger = get_logger("cluster_triggers.trigger_lock")
_queues: WeakValueDictionary[str, asyncio.Lock] = WeakValueDictionary()  # kept while a change holds or awaits one


def lock_name(trigger_id: str) -> str:
    """The trigger's global concurrency limit, as the Prefect UI lists it."""
    return f"cluster-trigger-change-{trigger_id}"


@asynccontextmanager
async def changing(client: PrefectClient, trigger_id: str, *, wait: float = WAIT) -> AsyncIterator[None]:
    """Hold the trigger's lock for the block.

    Raises:
        Conflict: another change held it for `wait` seconds.
        NotFound: no trigger has this id (its lock is made on its first change only).
    """
    if not re.fullmatch(IDENTIFIER_PATTERN, trigger_id):
        raise NotFound(f"trigger {trigger_id!r} not found")
    deadline = asyncio.get_running_loop().time() + wait
    queue = _queues.setdefault(trigger_id, asyncio.Lock())
    try:
        await asyncio.wait_for(queue.acquire(), wait)
    except TimeoutError:
        raise _busy(trigger_id) from None
    try:
        lease_id = await _acquire(client, trigger_id, deadline)
        renewing = asyncio.create_task(_renew(client, lease_id))
        try:
            yield
        finally:
            renewing.cancel()
            try:
                await client.release_concurrency_slots_with_lease(lease_id)
            except httpx.HTTPError:  # the lease frees the slot when it expires
                _logger.warning("could not release the lock of trigger %s; free again within %.0f s",
                                trigger_id, _LEASE)
    finally:
        queue.release()


def _busy(trigger_id: str) -> Conflict:
    return Conflict(f"another change to trigger {trigger_id!r} is in progress; try again")


async def _acquire(client: PrefectClient, trigger_id: str, deadline: float) -> UUID:
    loop = asyncio.get_running_loop()
    attempt = 0
    while True:
        try:
            response = await client.increment_concurrency_slots_with_lease(
                [lock_name(trigger_id)], 1, "concurrency", _LEASE)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != _LOCKED:
                raise
        else:
            granted = response.json()
            if granted["limits"]:
                return UUID(granted["lease_id"])
            await _make_lock(client, trigger_id)  # the lease granted on no limit holds nothing
            continue
        pause = random.uniform(0, min(_PAUSE_CAP, 0.05 * 2**attempt))
        if loop.time() + pause > deadline:
            raise _busy(trigger_id)
        await asyncio.sleep(pause)
        attempt += 1


async def _make_lock(client: PrefectClient, trigger_id: str) -> None:
    """Create the trigger's limit, for a trigger that exists: a request naming any id makes no limit."""
    try:
        await client.read_deployment_by_name(f"{FLOW_NAME}/{trigger_id}")
    except ObjectNotFound:
        raise NotFound(f"trigger {trigger_id!r} not found") from None
    limit = GlobalConcurrencyLimitCreate(name=lock_name(trigger_id), limit=1, slot_decay_per_second=1 / _LOST_LEASE)
    try:
        await client.create_global_concurrency_limit(limit)
    except ObjectAlreadyExists:
        pass  # made by a change that started at the same time


async def _renew(client: PrefectClient, lease_id: UUID) -> None:
    """Keep the lease while a change outlasts a third of it (a slow Prefect server)."""
    while True:
        await asyncio.sleep(_LEASE / 3)
        try:
            await client.renew_concurrency_lease(lease_id, _LEASE)
        except httpx.HTTPError:
            _logger.warning("could not renew trigger lock lease %s; it expires within %.0f s", lease_id, _LEASE)
