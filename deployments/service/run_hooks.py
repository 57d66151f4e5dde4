"""The trigger's state as the flow sees it: the failure policy, and the guard against stopped triggers.

Failure policy: after a failed or crashed run, the hook that writes the run figures (below)
runs in the process that ran the flow, right after Prefect recorded the failure; when those
figures count `max_consecutive_failures` failures in a row it marks the deployment `failed`
and pauses it (and its automation, for an event trigger). `resume` undoes both; one
successful run resets the count. It holds the trigger's lock (`deployments.trigger_lock`) and
reads the deployment again once it has it, as the lifecycle's changes do: writing the tags it
read at the run's end would drop the mark of a delete made meanwhile.

Guard: pausing a deployment deletes its scheduled runs, but a scheduler loop that read the
deployment just before can still add some. A scheduled run of a paused, failed or deleted
trigger therefore checks at start and ends Cancelled (no execution, no hook). Runs asked
for explicitly (`execute`, `start_immediately`) carry MANUAL_TAG and always run.

Records: at its start and at its end a run writes its trigger's run figures (count,
failures, newest run) to the trigger's runs record (a variable), so listing many triggers reads
them in one call (see `prefect_objects.trigger_records`).

Due time: a worker starts runs it prefetches (10 s ahead by default) as soon as it has them,
so a firing held back by the cooldown waits in the flow for its due time: the cooldown holds
to the second whichever worker runs it.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from prefect import get_client
from prefect.client.schemas.actions import DeploymentUpdate
from prefect.logging import get_logger
from prefect.utilities.asyncutils import run_coro_as_sync

from prefect_cluster_triggers.core.settings import get_settings
from prefect_cluster_triggers.deployments.prefect_objects import records, trigger_records
from prefect_cluster_triggers.deployments.prefect_objects.automations import automation_name
from prefect_cluster_triggers.deployments.prefect_objects.status import status_of, trigger_status
from prefect_cluster_triggers.deployments.prefect_objects.translate import (
    FAILED_TAG,
    MANUAL_TAG,
    TriggerRecord,
    stamped_parameters,
)
from prefect_cluster_triggers.deployments.prefect_objects.trigger_events import announce
from prefect_cluster_triggers.deployments.prefect_objects.trigger_lock import changing
from prefect_cluster_triggers.deployments.service import quota

_logger = get_logger("cluster_triggers.trigger_state")
_POLICY_WAIT = 90.0  # seconds: nobody to answer 409 to, so it outwaits any change, and a dead holder's lease


def stopped_reason(flow_run: Any) -> str | None:
    """Why this run must not execute (its trigger is not active and nobody asked for it), or None."""
    if flow_run.deployment_id is None or MANUAL_TAG in (flow_run.tags or []):
        return None
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(flow_run.deployment_id)
    status = trigger_status(deployment.paused, deployment.tags)
    if status == "active":
        return None
    return f"trigger {deployment.name} is {status}: scheduled run skipped"


def wait_until_due(firing: dict[str, Any] | None) -> None:
    """Sleep until an event firing's due time, when a worker started it early."""
    if not firing or "due" not in firing:
        return
    remaining = (datetime.fromisoformat(firing["due"]) - datetime.now(timezone.utc)).total_seconds()
    if remaining > 0:
        _logger.info("firing due at %s: waiting %.1f s for the end of the cooldown", firing["due"], remaining)
        time.sleep(remaining)


def record_run(flow: Any, flow_run: Any, state: Any) -> None:
    """Hook at every end of a run, also called at its start: write the trigger's run figures and,
    after a failure, apply the failure policy to the same figures."""
    if flow_run.deployment_id is None:
        return  # an ad-hoc run belongs to no trigger
    run_coro_as_sync(_record_run(flow_run, state))


async def _record_run(flow_run: Any, state: Any) -> None:
    """Save the figures (and apply the failure policy); at a run's end, then announce `finished`. The sweep
    visits a trigger an event names, and the run's own end event may reach it before these figures: this
    event follows them."""
    failed = state is not None and (state.is_failed() or state.is_crashed())
    async with get_client() as client:
        deployment = await client.read_deployment(flow_run.deployment_id)
        record = TriggerRecord.model_validate(deployment.parameters["trigger"])
        figures = await trigger_records.run_figures(client, deployment.id, now=datetime.now(timezone.utc))
        await records.save(client, trigger_records.record_name(trigger_records.RUNS, record.trigger_id), figures)
        if failed and figures.consecutive_failures >= get_settings().rules.max_consecutive_failures:
            async with changing(client, record.trigger_id, wait=_POLICY_WAIT):
                deployment = await client.read_deployment(deployment.id)  # as it is now, not as first read
                await _stop_failed(client, deployment, record, figures.consecutive_failures)
            announce("failed", record.trigger_id, record.namespace_id, consecutive_failures=figures.consecutive_failures,
                     last_execution_error=figures.last_execution_error)
        if state is not None:
            announce("finished", record.trigger_id, record.namespace_id, run_id=str(flow_run.id),
                     status=status_of(state.type).value, execution_count=figures.execution_count,
                     consecutive_failures=figures.consecutive_failures)


async def _stop_failed(client: Any, deployment: Any, record: TriggerRecord, failures: int) -> None:
    """Mark the trigger failed and stop its schedule (one update: never paused without the mark), then its
    automation; its quota slot is free again."""
    tags = deployment.tags if FAILED_TAG in deployment.tags else [*deployment.tags, FAILED_TAG]
    parameters = stamped_parameters(deployment, now=datetime.now(timezone.utc))
    await client.update_deployment(deployment.id, DeploymentUpdate(tags=tags, paused=True, parameters=parameters))
    await quota.release(client, record.namespace_id, record.trigger_id)
    for automation in await client.read_automations_by_name(automation_name(deployment.name)):
        await client.pause_automation(automation.id)
    _logger.warning(
        "trigger %s failed %d times in a row: status failed, schedule and automation paused until "
        "`cluster-triggers resume %s`",
        deployment.name, failures, deployment.name,
    )
