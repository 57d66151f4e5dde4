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
from pydantic import BaseModel, Field

from prefect_cluster_triggers.core.contract import ClusterTrigger, ExecutionStatus, TriggerStatus, TriggerType
from prefect_cluster_triggers.core.models import ExactUtcDateTime
from prefect_cluster_triggers.deployments.prefect_objects.translate import (
    DISABLED_TAG,
    FAILED_TAG,
    TriggerRecord,
    as_scheduled,
    stored_request,
    user_description,
)

# An execution is a run that got to run and ended; cancelled runs never count.
EXECUTED = (StateType.COMPLETED, StateType.FAILED, StateType.CRASHED)
FAILURES = (StateType.FAILED, StateType.CRASHED)
STARTED = (*EXECUTED, StateType.RUNNING, StateType.PENDING, StateType.CANCELLING, StateType.CANCELLED)

_CLOCK_TYPES = (TriggerType.cron, TriggerType.interval)

_SEED_STATUS = {
    StateType.SCHEDULED: ExecutionStatus.pending,
    StateType.PENDING: ExecutionStatus.pending,
    StateType.RUNNING: ExecutionStatus.processing,
    StateType.COMPLETED: ExecutionStatus.completed,
    StateType.FAILED: ExecutionStatus.failed,
    StateType.CRASHED: ExecutionStatus.failed,
    StateType.CANCELLING: ExecutionStatus.cancelled,
    StateType.CANCELLED: ExecutionStatus.cancelled,
    StateType.PAUSED: ExecutionStatus.pending,
}


def of_deployment(deployment_id: Any) -> DeploymentFilter:
    """Filter for one trigger's deployment."""
    return DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))


def in_states(*states: StateType) -> FlowRunFilter:
    """Filter for flow runs in any of `states`."""
    return FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(states))))


def status_of(state_type: StateType | None) -> ExecutionStatus:
    """The seed's execution status for a Prefect state type: pending, processing, completed, failed (or cancelled)."""
    return _SEED_STATUS.get(state_type, ExecutionStatus.pending) if state_type else ExecutionStatus.pending


def execution_status(run: FlowRun) -> ExecutionStatus:
    """The contract's status of one flow run."""
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
    """The trigger's status from its deployment: deleted and failed are tags, paused is Prefect's own flag."""
    if DISABLED_TAG in tags:
        return TriggerStatus.disabled
    if FAILED_TAG in tags:
        return TriggerStatus.failed
    return TriggerStatus.paused if paused else TriggerStatus.active


class RunFigures(BaseModel):
    """A trigger's figures from its flow runs, as of `as_of`."""

    execution_count: int = 0
    consecutive_failures: int = 0
    last_triggered_at: ExactUtcDateTime | None = None
    last_execution_job_id: str | None = None
    last_execution_status: str | None = None
    last_execution_error: str | None = None
    as_of: ExactUtcDateTime = Field(description="When these figures were read from Prefect.")


def run_figures_of(count: int, recent_executions: Sequence[FlowRun], latest_run: FlowRun | None,
                   *, as_of: datetime) -> RunFigures:
    """The figures from a count of executions, the newest executions (newest first) and the newest run."""
    failed = latest_run is not None and latest_run.state_type in FAILURES and latest_run.state is not None
    return RunFigures(
        execution_count=count,
        consecutive_failures=consecutive_failures(recent_executions),
        last_triggered_at=started_at(latest_run) if latest_run else None,
        last_execution_job_id=str(latest_run.id) if latest_run else None,
        last_execution_status=execution_status(latest_run) if latest_run else None,
        last_execution_error=latest_run.state.message if failed else None,
        as_of=as_of,
    )


def cluster_trigger(
    deployment: Any,
    record: TriggerRecord,
    *,
    execution_config: Any,
    figures: RunFigures,
    next_scheduled_at: datetime | None,
    extra: dict[str, Any],
) -> ClusterTrigger:
    """The seed's ClusterTrigger for one deployment, its run figures and its evaluator state (`extra`).

    Schedule, status and description follow the deployment, so edits made in the Prefect UI
    show (see `translate.as_scheduled`): a clock trigger whose schedules are all off is `paused`.
    """
    request = record.request
    schedule_config, running = as_scheduled(request.schedule_config, deployment.schedules)
    stopped = running is None and request.trigger_type in _CLOCK_TYPES
    status = trigger_status(deployment.paused or stopped, deployment.tags)
    return ClusterTrigger(
        namespace_id=record.namespace_id,
        internal_id=record.internal_id,
        execution_config=execution_config,
        trigger_type=request.trigger_type,
        schedule_config=schedule_config,
        trigger_id=record.trigger_id,
        cluster_id=request.cluster_id,
        status=status,
        next_scheduled_at=next_scheduled_at if status == TriggerStatus.active else None,
        created_at=deployment.created,
        updated_at=record.updated_at or deployment.updated,  # `prefect deploy` stamps no change time
        created_by=record.created_by,
        description=user_description(deployment.description, described=request.description is not None),
        **figures.model_dump(exclude={"as_of"}),
        **extra,
    )


def unusable_trigger(deployment: Any, problem: str, figures: RunFigures) -> ClusterTrigger:
    """A trigger whose stored record no longer validates, from what its deployment says for sure: its
    name (the id), its tags (namespace, type, deleted) and the schedule config as stored. It is `failed`
    (it cannot run) unless deleted; `paused` once paused."""
    trigger = deployment.parameters.get("trigger")
    trigger = trigger if isinstance(trigger, dict) else {}
    request = stored_request(deployment)
    tagged = {tag.partition(":")[0]: tag.partition(":")[2] for tag in deployment.tags}
    status = trigger_status(deployment.paused, deployment.tags)
    schedule_config = request.get("schedule_config")
    return ClusterTrigger(
        namespace_id=tagged.get("namespace", ""),
        internal_id=str(trigger.get("internal_id", "local")),
        execution_config=None,
        trigger_type=tagged.get("trigger-type") or request.get("trigger_type"),
        schedule_config=schedule_config if isinstance(schedule_config, dict) else {},
        trigger_id=deployment.name,
        status=TriggerStatus.failed if status == TriggerStatus.active else status,
        created_at=deployment.created,
        updated_at=deployment.updated,
        description=user_description(deployment.description, described=request.get("description") is not None),
        stored_problem=problem,
        **figures.model_dump(exclude={"as_of"}),
    )


def started_at(run: FlowRun) -> datetime | None:
    """When a run started, or is expected to when it has not yet."""
    return run.start_time or run.expected_start_time
