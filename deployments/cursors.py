"""Where an event trigger's checkpoint lives: a Prefect block per trigger.

A block rather than a Variable because a Variable holds at most 5,000 characters and a
checkpoint holds the ids of the events of the last `firing.GRACE` (a burst is thousands);
a block document has no such limit, lives in Prefect's database like everything else a
trigger is, and shows in the UI (Blocks, "Event Trigger Cursor") for anyone debugging a count.
"""

from __future__ import annotations

from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field

from prefect_cluster_triggers.blocks._naming import DOCS_URL
from prefect_cluster_triggers.deployments.firing import Checkpoint
from prefect_cluster_triggers.deployments.snapshots import variable_name


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
    checkpoint: Checkpoint = Field(description="Events folded: the newest time, the pending events, the ids seen.")


def cursor_name(trigger_id: str) -> str:
    return variable_name("cursor", trigger_id)


async def load_checkpoint(trigger_id: str) -> Checkpoint | None:
    """The trigger's stored checkpoint; None before its first evaluation."""
    try:
        cursor = await EventTriggerCursor.aload(cursor_name(trigger_id))
    except ValueError:  # no such block
        return None
    return cursor.checkpoint


async def save_checkpoint(trigger_id: str, checkpoint: Checkpoint) -> None:
    await EventTriggerCursor(trigger_id=trigger_id, checkpoint=checkpoint).asave(cursor_name(trigger_id), overwrite=True)
