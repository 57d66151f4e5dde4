"""A wake-up plans from the deployment as it is now, even when its evaluation starts from the sweep's copy.

The sweeper starts a woken trigger's reads from the deployment its last sweep read, while it
reads the deployment again; a trigger paused or changed in between must be planned from what it
is now. The events here are posted to the evaluator only (Prefect never sees them), so any run
with one as its cutoff was made by this evaluator's wake-up.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

from prefect_cluster_triggers.core.contract import EventType
from prefect_cluster_triggers.core.firing import EVENT_NAMES
from prefect_cluster_triggers.deployments.evaluator.service import Evaluator
from prefect_cluster_triggers.deployments.prefect_objects.status import of_deployment
from prefect_cluster_triggers.deployments.prefect_objects.translate import EVENT_TAG, FLOW_NAME
from prefect_cluster_triggers.deployments.service import commands, queries
from tests.integration.triggers import create

pytestmark = pytest.mark.usefixtures("api")
TRIGGER = "trg_woken"


def _event(kind: EventType = EventType.documents_added) -> dict:
    return {"id": str(uuid.uuid4()), "event": EVENT_NAMES[kind],
            "occurred": datetime.now(timezone.utc).isoformat(), "payload": {"count": 1}}


async def _cutoffs() -> set[str]:
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(f"{FLOW_NAME}/{TRIGGER}")
        runs = await client.read_flow_runs(deployment_filter=of_deployment(deployment.id),
                                           flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[EVENT_TAG])))
    return {run.parameters["firing"]["cutoff_event_id"] for run in runs}


def test_a_wake_up_plans_from_the_trigger_as_it_is_now_not_as_the_sweep_last_saw_it() -> None:
    create({"trigger_type": "event",
            "schedule_config": {"event_type": "documents_added", "event_threshold": 1, "collection_id": "col_woken",
                                "cooldown_seconds": 0},
            "execution_config": {"collection_ids": ["col_woken"], "config": {"algorithm": "kmeans", "n_clusters": 2}}},
           TRIGGER)
    evaluator = Evaluator("http://127.0.0.1:9/unused")

    async def wake_after(change, event: dict) -> None:
        async with get_client() as client:
            await evaluator.deployments.refresh(client, None)  # the sweep's copy of the deployment
        await change()
        await evaluator.wake(TRIGGER, event)

    def threshold(n: int, kind: EventType = EventType.documents_added):
        return lambda: commands.update_trigger(TRIGGER, {"schedule_config": {
            "event_type": kind.value, "event_threshold": n, "collection_id": "col_woken", "cooldown_seconds": 0}})

    async def nothing() -> None:
        return None

    paused, raised, fires = _event(), _event(), _event()
    queries.run_sync(wake_after(lambda: commands.pause_trigger(TRIGGER), paused))
    assert paused["id"] not in queries.run_sync(_cutoffs())  # paused since the copy: counted, not fired

    queries.run_sync(commands.resume_trigger(TRIGGER))
    queries.run_sync(wake_after(threshold(5), raised))
    assert raised["id"] not in queries.run_sync(_cutoffs())  # its threshold is 5 since the copy

    queries.run_sync(threshold(1)())
    queries.run_sync(wake_after(nothing, fires))  # the copy is the deployment: planned from it
    assert fires["id"] in queries.run_sync(_cutoffs())

    stale, batch = _event(), _event(EventType.batch_completed)  # an added-documents event, delivered once it counts batches
    queries.run_sync(wake_after(threshold(1, EventType.batch_completed), stale))
    queries.run_sync(wake_after(nothing, batch))
    fired = queries.run_sync(_cutoffs())
    assert batch["id"] in fired and stale["id"] not in fired
