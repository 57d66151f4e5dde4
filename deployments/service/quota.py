"""Exact quotas of active triggers: an active trigger holds one of its namespace's numbered slots.

A namespace whose quota is N has N slots; a slot is a record (`records`)
`cluster-trigger-slot-<prefect_name(namespace)>-<k>` (k < N) whose value names the trigger holding it.
The database's unique constraint on record names is the whole lock: of two callers
creating slot k at once, on SQLite or PostgreSQL and in any number of processes, exactly
one succeeds, so no interleaving of creates and resumes gets more than N slots held.
Different triggers take different slots, so their creates do not wait for each other; only the
claims of one namespace in one process take turns (`claim`).

A slot stays held while its trigger is active, and for `CLAIM_GRACE` after it was taken (the
create or resume in progress). A slot whose trigger has been paused, deleted or failed is
given back at once by our own calls and is free again after `CLAIM_GRACE` however the trigger
stopped (the Prefect UI, a process killed mid-create), so nothing leaks for long. A caller
confirms its slot after its change and undoes the change when the slot is not provably its
own: changes taking longer than `CLAIM_GRACE / 2` give up (clocks may differ by `CLAIM_GRACE / 2`).

Triggers made active outside our calls (the Prefect UI, `prefect deploy`) count too: a
caller first gives each of them a slot.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient

from prefect_cluster_triggers.core.contract import TriggerStatus
from prefect_cluster_triggers.core.errors import QuotaExceeded
from prefect_cluster_triggers.core.names import prefect_name
from prefect_cluster_triggers.core.settings import get_settings
from prefect_cluster_triggers.deployments.prefect_objects import records
from prefect_cluster_triggers.deployments.prefect_objects.client import PAGE, loop_lock
from prefect_cluster_triggers.deployments.prefect_objects.status import trigger_status
from prefect_cluster_triggers.deployments.prefect_objects.translate import FLOW_NAME, TRIGGER_TAG, namespace_tag

CLAIM_GRACE = timedelta(minutes=10)
SLOT_PREFIX = "cluster-trigger-slot-"
_TRIES_PER_READ = 2  # slots tried before reading again: under a burst, what was free is mostly taken by then
_ROUNDS = 100  # reads at most; each one after a lost race sees at least one more slot held


@dataclass(frozen=True)
class Slot:
    """One slot as read, or as just taken."""

    number: int
    trigger_id: str
    record_id: UUID
    taken_at: datetime


@dataclass(frozen=True)
class Claim:
    """A slot this process took, and when (its own clock), to confirm it later."""

    name: str
    record_id: UUID
    started: float


async def claim(client: PrefectClient, namespace_id: str, trigger_id: str) -> Claim:
    """Take a free slot for `trigger_id`, or refuse: the namespace is at its quota.

    Within this process the claims of one namespace take turns: side by side, a burst's claims
    picked the same free slots and lost races to one another, each loss costing a read of every
    slot and three counts. Other processes' claims still race, and the slot's unique name decides.

    Raises:
        QuotaExceeded: every slot is held.
    """
    async with loop_lock(f"quota:{namespace_id}"):
        return await _claim(client, namespace_id, trigger_id)


async def _claim(client: PrefectClient, namespace_id: str, trigger_id: str) -> Claim:
    """`claim` without the turn-taking."""
    limit = get_settings().rules.max_active_triggers
    for _ in range(_ROUNDS):
        now = datetime.now(timezone.utc)
        slots = await _slots(client, namespace_id)
        active = await _active(client, namespace_id, slots, now)
        held, reclaimable = _held(slots, active, now)
        holders = {slot.trigger_id for slot in held.values()}
        if trigger_id in holders:
            mine = next(s for s in held.values() if s.trigger_id == trigger_id)
            return Claim(_name(namespace_id, mine.number), mine.record_id, time.monotonic())
        unslotted = sorted(active - holders)
        if len(holders) + len(unslotted) >= limit:
            raise QuotaExceeded(
                f"namespace {namespace_id} already has {len(holders) + len(unslotted)} active triggers, the maximum "
                f"(setting CLUSTER_TRIGGERS_MAX_ACTIVE_TRIGGERS); pause or delete one first"
            )
        free = [n for n in range(limit) if n not in held]
        random.shuffle(free)  # concurrent callers mostly try different slots
        taken = None
        for holder in [*unslotted, trigger_id]:  # triggers made active elsewhere first, so they are counted
            taken = await _take_one(client, namespace_id, holder, free, reclaimable)
            if taken is None:
                break  # the slots tried were taken meanwhile: read again
        if taken is not None:
            return taken
    raise QuotaExceeded(f"namespace {namespace_id}: every free slot was taken while trying; try again")


async def confirm(client: PrefectClient, claim: Claim) -> bool:
    """Whether the slot is still provably this caller's: the same record, taken less than CLAIM_GRACE / 2 ago."""
    if time.monotonic() - claim.started >= (CLAIM_GRACE / 2).total_seconds():
        return False
    return any(r.id == claim.record_id for r in await records.named(client, [claim.name]))


async def release(client: PrefectClient, namespace_id: str, trigger_id: str) -> None:
    """Give back the trigger's slots (after it stopped being active)."""
    for slot in await _slots(client, namespace_id):
        if slot.trigger_id == trigger_id:
            await records.delete(client, slot.record_id)


def _held(slots: list[Slot], active: set[str], now: datetime) -> tuple[dict[int, Slot], dict[int, Slot]]:
    """Slots held (by number) and slots free to take back: a trigger's second slot, a stopped trigger's after CLAIM_GRACE."""
    held: dict[int, Slot] = {}
    reclaimable: dict[int, Slot] = {}
    holders: set[str] = set()
    for slot in sorted(slots, key=lambda s: s.number):
        if slot.trigger_id not in holders and (slot.trigger_id in active or now - slot.taken_at < CLAIM_GRACE):
            held[slot.number] = slot
            holders.add(slot.trigger_id)
        else:
            reclaimable[slot.number] = slot
    return held, reclaimable


async def _take_one(client: PrefectClient, namespace_id: str, trigger_id: str, free: list[int],
                    reclaimable: dict[int, Slot]) -> Claim | None:
    """Take one of `free` for `trigger_id` (removing what it tried); None when those tried were taken meanwhile."""
    for _ in range(min(_TRIES_PER_READ, len(free))):
        number = free.pop()
        started = time.monotonic()
        stale = reclaimable.pop(number, None)
        if stale is not None and not await records.delete(client, stale.record_id):
            continue  # another caller took it back first
        record = await records.create(client, _name(namespace_id, number), {"trigger_id": trigger_id})
        if record is not None:
            return Claim(record.name, record.id, started)
    return None


async def _slots(client: PrefectClient, namespace_id: str) -> list[Slot]:
    """Every slot of the namespace."""
    prefix = _name(namespace_id, "")
    return [Slot(int(r.name.removeprefix(prefix)), r.value["trigger_id"], r.id, r.created)
            for r in await records.starting_with(client, prefix)]


async def _active(client: PrefectClient, namespace_id: str, slots: list[Slot], now: datetime) -> set[str]:
    """The namespace's active triggers, as far as deciding needs them.

    Usually three counts tell that every old slot's trigger is active and that no active
    trigger is without a slot; then the old slots' triggers are the answer (a fresh slot is
    held anyway). Otherwise (a trigger paused or resumed in the Prefect UI) every active
    deployment is read.
    """
    old = {s.trigger_id for s in slots if now - s.taken_at >= CLAIM_GRACE}
    fresh = {s.trigger_id for s in slots} - old
    total, old_active, fresh_active = await asyncio.gather(
        _count_unpaused(client, namespace_id), _count_unpaused(client, namespace_id, old),
        _count_unpaused(client, namespace_id, fresh))
    if old_active == len(old) and total == old_active + fresh_active:
        return old
    found: set[str] = set()
    offset = 0
    while True:
        response = await client.request("POST", "/deployments/filter",
                                        json={**_unpaused(namespace_id), "offset": offset, "limit": PAGE})
        page: list[dict[str, Any]] = response.json()
        found |= {d["name"] for d in page if trigger_status(d["paused"], d["tags"]) == TriggerStatus.active}
        offset += len(page)
        if len(page) < PAGE:
            return found


async def _count_unpaused(client: PrefectClient, namespace_id: str, names: set[str] | None = None) -> int:
    """How many of the namespace's trigger deployments (of `names`, when given) are not paused."""
    if names is not None and not names:
        return 0
    response = await client.request("POST", "/deployments/count", json=_unpaused(namespace_id, names))
    return int(response.json())


def _unpaused(namespace_id: str, names: set[str] | None = None) -> dict[str, Any]:
    deployments: dict[str, Any] = {"tags": {"all_": [TRIGGER_TAG, namespace_tag(namespace_id)]}, "paused": {"eq_": False}}
    if names is not None:
        deployments["name"] = {"any_": sorted(names)}
    return {"flows": {"name": {"any_": [FLOW_NAME]}}, "deployments": deployments}


def _name(namespace_id: str, number: int | str) -> str:
    return f"{SLOT_PREFIX}{prefect_name(namespace_id)}-{number}"
