"""Where an event trigger's checkpoint lives: a Prefect block per trigger.

A block rather than a Variable because a Variable holds at most 5,000 characters and a
checkpoint holds the ids of the events of the last `firing.GRACE` (a burst is thousands);
a block document has no such limit, lives in Prefect's database like everything else a
trigger is, and shows in the UI (Blocks, "Event Trigger Cursor") for anyone debugging a count.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from prefect.blocks.core import Block
from prefect.client.orchestration import PrefectClient
from pydantic import Field

from prefect_cluster_triggers.blocks._naming import DOCS_URL
from prefect_cluster_triggers.deployments.firing import Checkpoint
from prefect_cluster_triggers.deployments import snapshots


class EventTriggerCursor(Block):
    """How far an event trigger has counted: the checkpoint its evaluator folds new events into.

    Written by the evaluator only; deleting it makes the next evaluation recount from the
    events Prefect still keeps since the last firing.

    Example:
        ```python
        from prefect_cluster_triggers.deployments.cursors import EventTriggerCursor, cursor_name

        print(EventTriggerCursor.load(cursor_name("trg_abc123")).checkpoint.pending)
        ```
    """

    _block_type_name: ClassVar[str] = "Event Trigger Cursor"
    _documentation_url: ClassVar[str] = DOCS_URL
    _description: ClassVar[str] = "How far an event trigger has counted its collection's events (written by the evaluator)."

    trigger_id: str = Field(description="The trigger this cursor belongs to.")
    version: str = Field(description="Changes with every save; also kept in the variable of the same name.")
    checkpoint: Checkpoint = Field(description="Events folded: the newest time, the pending events, the ids seen.")


def cursor_name(trigger_id: str) -> str:
    return snapshots.variable_name("cursor", trigger_id)


async def load_checkpoint(trigger_id: str) -> Checkpoint | None:
    """The trigger's stored checkpoint; None before its first evaluation."""
    cursor = await _load(trigger_id)
    return cursor.checkpoint if cursor else None


class CursorCache:
    """The evaluator's copy of each cursor it saved or read, reused while the cursor's version
    variable (a few bytes) still names it: an evaluation then costs one small read, not the
    cursor's ids of the last ten minutes' events, and a cursor another process saved is read anew."""

    def __init__(self) -> None:
        self._held: dict[str, EventTriggerCursor] = {}

    async def load(self, client: PrefectClient, trigger_id: str) -> Checkpoint | None:
        held = self._held.get(trigger_id)
        if held is not None:
            stored = await snapshots.read(client, [cursor_name(trigger_id)])
            if stored.get(cursor_name(trigger_id)) == held.version:
                return held.checkpoint
        cursor = await _load(trigger_id)
        if cursor is not None:
            self._held[trigger_id] = cursor
        return cursor.checkpoint if cursor else None

    async def save(self, client: PrefectClient, trigger_id: str, checkpoint: Checkpoint) -> None:
        """The block first, then the version variable: a reader that sees the new version finds its block."""
        held = self._held.get(trigger_id)
        if held is not None and held.checkpoint == checkpoint:
            return
        cursor = EventTriggerCursor(trigger_id=trigger_id, version=uuid.uuid4().hex, checkpoint=checkpoint)
        await cursor.asave(cursor_name(trigger_id), overwrite=True)
        await snapshots.save_value(client, cursor_name(trigger_id), cursor.version)
        self._held[trigger_id] = cursor


async def _load(trigger_id: str) -> EventTriggerCursor | None:
    try:
        return await EventTriggerCursor.aload(cursor_name(trigger_id))
    except ValueError:  # no such block yet
        return None
