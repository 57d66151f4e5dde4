"""A trigger's status and counters, read from Prefect: its deployment and its flow runs.

Pure functions over Prefect's objects, so the rules (what counts as an execution, when a
trigger has failed) are tested without a server and shared by the failure-policy hook.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Sequence

from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType

from deployments.contract import ClusterTrigger, TriggerStatus
from deployments.translate import DISABLED_TAG, FAILED_TAG, TriggerRecord

# An execution is a run that got to run and ended; cancelled runs never count.
EXECUTED = (StateType.COMPLETED, StateType.FAILED, StateType.CRASHED)
FAILURES = (StateType.FAILED, StateType.CRASHED)
STARTED = (*EXECUTED, StateType.RUNNING, StateType.PENDING, StateType.CANCELLING, StateType.CANCELLED)

_SEED_STATUS = {
    StateType.SCHEDULED: "pending",
    StateType.PENDING: "pending",
    StateType.RUNNING: "processing",
    StateType.COMPLETED: "completed",
    StateType.FAILED: "failed",
    StateType.CRASHED: "failed",
    StateType.CANCELLING: "cancelled",
    StateType.CANCELLED: "cancelled",
    StateType.PAUSED: "pending",
}


def of_deployment(deployment_id: Any) -> DeploymentFilter:
    """Filter for one trigger's deployment."""
    return DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))


def in_states(*states: StateType) -> FlowRunFilter:
    """Filter for flow runs in any of `states`."""
    return FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(states))))


def status_of(state_type: StateType | None) -> str:
    """The seed's execution status for a Prefect state type: pending, processing, completed, failed (or cancelled)."""
    return _SEED_STATUS.get(state_type, "pending") if state_type else "pending"


def execution_status(run: FlowRun) -> str:
    return status_of(run.state_type)


def consecutive_failures(executions_newest_first: Iterable[FlowRun]) -> int:
    """Failed executions since the last successful one."""
    count = 0
    for run in executions_newest_first:
        if run.state_type not in FAILURES:
            break
        count += 1
    return count


def trigger_status(paused: bool, tags: Sequence[str]) -> TriggerStatus:
    if DISABLED_TAG in tags:
        return TriggerStatus.disabled
    if FAILED_TAG in tags:
        return TriggerStatus.failed
    return TriggerStatus.paused if paused else TriggerStatus.active


def cluster_trigger(
    deployment: Any,
    record: TriggerRecord,
    *,
    execution_config: Any,
    execution_count: int,
    recent_executions: Sequence[FlowRun],
    latest_run: FlowRun | None,
    next_run: FlowRun | None,
) -> ClusterTrigger:
    """The seed's ClusterTrigger for one deployment and its runs.

    Args:
        recent_executions: the newest executed runs, newest first (enough to count failures).
        latest_run: the newest run that started, whatever its state.
        next_run: the earliest scheduled run Prefect holds.
    """
    status = trigger_status(deployment.paused, deployment.tags)
    request = record.request
    last_error = None
    if latest_run is not None and latest_run.state_type in FAILURES and latest_run.state:
        last_error = latest_run.state.message
    return ClusterTrigger(
        namespace_id=record.namespace_id,
        internal_id=record.internal_id,
        execution_config=execution_config,
        trigger_type=request.trigger_type,
        schedule_config=request.schedule_config,
        trigger_id=record.trigger_id,
        cluster_id=request.cluster_id,
        status=status,
        last_triggered_at=started_at(latest_run) if latest_run else None,
        last_execution_job_id=str(latest_run.id) if latest_run else None,
        next_scheduled_at=next_run.expected_start_time if next_run and status == TriggerStatus.active else None,
        execution_count=execution_count,
        consecutive_failures=consecutive_failures(recent_executions),
        last_execution_status=execution_status(latest_run) if latest_run else None,
        last_execution_error=last_error,
        created_at=deployment.created,
        updated_at=deployment.updated,
        created_by=record.created_by,
        description=request.description,
    )


def started_at(run: FlowRun) -> datetime | None:
    """When a run started, or is expected to when it has not yet."""
    return run.start_time or run.expected_start_time
