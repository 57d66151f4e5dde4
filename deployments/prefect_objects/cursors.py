"""Where an event trigger's checkpoint lives: a chain of Prefect blocks per trigger, extended by compare-and-set.

A block rather than a Variable because a Variable holds at most 5,000 characters and a
checkpoint holds the ids of the events of the last `firing.GRACE` (a burst is thousands);
a block document has no such limit, lives in Prefect's database like everything else a
trigger is, and shows in the UI (Blocks, "Event Trigger Cursor") for anyone debugging a count.

Every save is a new block, numbered `n` (the last one's number plus one),
created (never overwritten) with the firings the evaluation decided. Prefect's database keeps
block names unique per block type, so of two evaluations that planned from checkpoint `n - 1`
(two replicas woken at once) exactly one creates `n`; the other has planned from a stale view
and plans again from `n`. That is the whole lock: nothing is held, so a process killed at
any instant blocks nobody. The firings live in the block before any run is made: an evaluation
that died after its save and before its runs leaves them to the next one, which makes the
head's firings first (their runs' idempotency keys come from the data, so making them twice
makes them once).

The blocks are `cluster-trigger-checkpoint-<n>-<trigger>`. The record (`records`)
`cluster-trigger-cursor-<trigger>` holds the newest number a saver wrote (a hint: a reader goes
on from there while the next block exists). The three newest blocks are
kept; older ones are deleted by the saver of the block three after them. A checkpoint saved
by an earlier version (one block named without a number) is number 0.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import ClassVar

import httpx
from prefect.blocks.core import Block
from prefect.client.orchestration import PrefectClient
from prefect.exceptions import ObjectNotFound
from prefect.logging import get_logger
from pydantic import Field

from prefect_cluster_triggers.blocks.saving import DOCS_URL
from prefect_cluster_triggers.core.errors import ClusterTriggersError
from prefect_cluster_triggers.core.firing import Checkpoint, Firing
from prefect_cluster_triggers.core.names import prefect_name
from prefect_cluster_triggers.deployments.prefect_objects import records, trigger_records
from prefect_cluster_triggers.deployments.prefect_objects.client import (
    prefect_client,
    without_client_retries,
)

_NUMBERED = "cluster-trigger-checkpoint-"
KEPT = 3  # blocks of a trigger kept: a reader that read the hint just before a save still finds its block
_logger = get_logger("cluster_triggers.cursors")


class EventTriggerCursor(Block):
    """How far an event trigger has counted: the checkpoint its evaluator folds new events into.

    Written by the evaluator only, one block per save (numbered); deleting them all makes the
    next evaluation recount from the events Prefect still keeps since the last firing.

    Example:
        ```python
        from prefect_cluster_triggers.deployments.prefect_objects.cursors import EventTriggerCursor, block_name

        cursor = EventTriggerCursor.load("BLOCK_NAME")  # BLOCK_NAME: block_name("trg_abc123", 7)
        print(cursor.checkpoint.pending)
        ```
    """

    _block_type_name: ClassVar[str] = "Event Trigger Cursor"
    _documentation_url: ClassVar[str] = DOCS_URL
    _description: ClassVar[str] = "How far an event trigger has counted its collection's events (written by the evaluator)."

    trigger_id: str = Field(description="The trigger this cursor belongs to.")
    version: str = Field(description="Unique to every save.")
    number: int = Field(0, description="The save's place in the trigger's chain of cursors (its block name ends in it).")
    checkpoint: Checkpoint = Field(description="Events folded: the newest time, the pending events, the ids seen.")
    firings: list[Firing] = Field(default_factory=list, description="The firings decided by the evaluation that saved it.")


class CursorMoved(ClusterTriggersError):
    """Another evaluation saved the trigger's next checkpoint first: plan again from it."""


def cursor_name(trigger_id: str) -> str:
    """The name of the record holding the number of the trigger's newest checkpoint block (a hint)."""
    return trigger_records.record_name("cursor", trigger_id)


def block_name(trigger_id: str, number: int) -> str:
    """The name of the trigger's checkpoint block number `number` (0: the unnumbered one of earlier versions).

    The number comes before the trigger's name, which may itself end in digits."""
    return f"{_NUMBERED}{number}-{prefect_name(trigger_id)}" if number else cursor_name(trigger_id)


@dataclass(frozen=True)
class Head:
    """The trigger's newest checkpoint block as read: its number, checkpoint and firings."""

    number: int = 0
    checkpoint: Checkpoint | None = None
    firings: list[Firing] = field(default_factory=list)
    version: str = ""


async def load_checkpoint(trigger_id: str) -> Checkpoint | None:
    """The trigger's newest stored checkpoint; None before its first evaluation."""
    async with prefect_client() as client:
        return (await CursorCache().load(client, trigger_id)).checkpoint


class CursorCache:
    """The evaluator's copy of each trigger's newest cursor it saved or read; reused while no newer
    block exists (a small read and a probe), so an evaluation does not re-read the ids of the last
    ten minutes' events, and a cursor another process saved is read anew."""

    def __init__(self) -> None:
        self._held: dict[str, Head] = {}

    def held(self, trigger_id: str) -> Head | None:
        """The trigger's head as this cache last saw it (what `load` answers when nothing newer was saved)."""
        return self._held.get(trigger_id)

    async def load(self, client: PrefectClient, trigger_id: str) -> Head:
        """The trigger's newest checkpoint block: from the hint (or this cache, when newer) on while the next exists."""
        held = self._held.get(trigger_id)
        hints, following = await asyncio.gather(  # the held cursor's successor is probed while the hint is read
            records.read(client, [cursor_name(trigger_id)]),
            _read(client, trigger_id, held.number + 1) if held is not None else asyncio.sleep(0))
        hint = hints.get(cursor_name(trigger_id))
        hinted = hint if isinstance(hint, int) and not isinstance(hint, bool) else 0
        if held is not None and held.number >= hinted:
            head = held
        else:
            head = await _read(client, trigger_id, hinted)
            if head is None:  # deleted since the hint was written (three saves since): find the newest
                head = await _newest(client, trigger_id)
            following = await _read(client, trigger_id, head.number + 1)
        while following is not None:
            head = following
            following = await _read(client, trigger_id, head.number + 1)
        self._held[trigger_id] = head
        return head

    async def save(self, client: PrefectClient, trigger_id: str, head: Head, checkpoint: Checkpoint,
                   firings: list[Firing]) -> Head:
        """Save the checkpoint and the firings decided from `head` as the block after it; returns the new head.

        Raises:
            CursorMoved: another evaluation saved the block after `head` first (this one planned from a stale view).
        """
        if not firings and head.checkpoint == checkpoint:
            return head
        saved = Head(number=head.number + 1, checkpoint=checkpoint, firings=firings, version=uuid.uuid4().hex)
        cursor = EventTriggerCursor(trigger_id=trigger_id, version=saved.version, number=saved.number,
                                    checkpoint=checkpoint, firings=firings)
        if not await _create(client, cursor, block_name(trigger_id, saved.number)):
            self._held.pop(trigger_id, None)
            raise CursorMoved(f"trigger {trigger_id}: checkpoint {saved.number} was saved by another evaluation")
        self._held[trigger_id] = saved
        return saved

    async def tidy(self, client: PrefectClient, trigger_id: str, saved: Head) -> None:
        """After a save (and after its runs: neither is on the firing's path), write the hint and delete the
        block `KEPT` saves back; one attempt each, both may fail: the chain is the record."""
        try:
            with without_client_retries():
                await records.save_value(client, cursor_name(trigger_id), saved.number, retry=False)
                if saved.number - KEPT >= 0:
                    await _delete(client, block_name(trigger_id, saved.number - KEPT))
        except httpx.HTTPError as exc:
            _logger.info("trigger %s: cursor %d saved, its hint or clean-up not: %s", trigger_id, saved.number, exc)


async def _create(client: PrefectClient, cursor: EventTriggerCursor, name: str) -> bool:
    """Create the block; False when one of that name exists (a rival's, or this one's when an answer was lost).

    The cursor has no secret fields, so its data is its plain JSON, not Prefect's serialisation,
    which looks for secrets through the JSON schema of each field (tens of ms a save)."""
    data = cursor.model_dump(mode="json")
    data.pop("block_type_slug", None)  # Prefect's serialiser names the type on nested blocks only
    return await records.create_block(client, EventTriggerCursor, name, data) is not None


async def _read(client: PrefectClient, trigger_id: str, number: int) -> Head | None:
    try:
        document = await client.read_block_document_by_name(
            block_name(trigger_id, number), block_type_slug=EventTriggerCursor.get_block_type_slug())
    except ObjectNotFound:
        return None
    cursor = EventTriggerCursor.model_validate(document.data)  # not `Block.load`'s: no "loaded" event per evaluation
    return Head(number=number, checkpoint=cursor.checkpoint, firings=list(cursor.firings), version=cursor.version)


async def _newest(client: PrefectClient, trigger_id: str) -> Head:
    """The highest-numbered block of the trigger (the numbered blocks, at most a few, read by name)."""
    suffix = f"-{prefect_name(trigger_id)}"
    response = await client.request("POST", "/block_documents/filter", json={
        "block_documents": {"name": {"like_": f"{_NUMBERED}%{suffix}"}, "is_anonymous": None},  # see records.create_block
        "block_types": {"slug": {"any_": [EventTriggerCursor.get_block_type_slug()]}},
        "include_secrets": False, "limit": 200})
    numbers = []
    for name in (d["name"] or "" for d in response.json()):
        number, _, rest = name.removeprefix(_NUMBERED).partition("-")
        if name.startswith(_NUMBERED) and number.isdigit() and f"-{rest}" == suffix:
            numbers.append(int(number))
    for number in sorted(numbers, reverse=True):
        head = await _read(client, trigger_id, number)
        if head is not None:
            return head
    return await _read(client, trigger_id, 0) or Head()


async def _delete(client: PrefectClient, name: str) -> None:
    try:
        document = await client.read_block_document_by_name(name, block_type_slug=EventTriggerCursor.get_block_type_slug())
        await client.delete_block_document(document.id)
    except ObjectNotFound:
        pass
