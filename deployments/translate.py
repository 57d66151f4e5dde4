"""A trigger becomes one Prefect deployment of the shared clustering flow.

One function, `deployment_fields`, says what that deployment is; the lifecycle API applies
it with the Prefect client and `cluster-triggers render` writes it into `prefect.yaml`, so
`prefect deploy` and `cluster-triggers create` produce the same deployment.

The trigger itself (its id, namespace and normalised request) is the deployment's single
parameter `trigger`: the flow reads its execution config from it, the Prefect UI shows it,
and `get` reads it back exactly.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Sequence

from pydantic import BaseModel, Field

from prefect_cluster_triggers.deployments._models import format_utc
from prefect_cluster_triggers.deployments.settings import get_settings
from prefect_cluster_triggers.deployments.contract import CreateTriggerRequest, CronScheduleConfig, IntervalScheduleConfig

FLOW_NAME = "cluster-collection"
# A module path, not a file: Prefect imports it from the worker's environment (any machine
# with the package installed), with no pull step and no directory of the deploying machine.
# Prefect 3.9 treats an entrypoint with a colon as a file, so the dotted form it is.
ENTRYPOINT = "prefect_cluster_triggers.flows.clustering_flow.cluster_collection"
TRIGGER_TAG = "cluster-trigger"
FAILED_TAG = "trigger-status:failed"
DISABLED_TAG = "trigger-status:disabled"
MANUAL_TAG = "trigger-run:manual"
EVENT_TAG = "trigger-run:event"
CONDITION_TAG = "trigger-run:condition"


class TriggerRecord(BaseModel):
    """What a deployment remembers of its trigger (the `trigger` flow parameter)."""

    trigger_id: str = Field(description="The trigger's id, also the deployment's name.")
    namespace_id: str = Field(description="Namespace the trigger belongs to.")
    internal_id: str = Field("local", description="Organisation the namespace belongs to.")
    created_by: str | None = Field(None, description="Who created the trigger.")
    request: CreateTriggerRequest = Field(description="The create request, normalised.")


def namespace_tag(namespace_id: str) -> str:
    return f"namespace:{namespace_id}"


def base_tags(record: TriggerRecord) -> list[str]:
    """Tags that find a trigger's deployment: all triggers, its namespace, its type."""
    return [TRIGGER_TAG, namespace_tag(record.namespace_id), f"trigger-type:{record.request.trigger_type}"]


def schedules(request: CreateTriggerRequest, *, anchor: datetime) -> list[dict[str, Any]]:
    """Deployment schedules in prefect.yaml form; event and conditional triggers have none.

    Interval schedules are anchored one interval after `anchor` (the creation time): the
    first scheduled run comes one interval after creation. `start_immediately` adds one run
    at creation, made by the lifecycle, not by the schedule, so it does not wait for the
    scheduler's next loop.
    """
    config = request.schedule_config
    if isinstance(config, CronScheduleConfig):
        return [{"cron": config.cron_expression, "timezone": config.timezone}]
    if isinstance(config, IntervalScheduleConfig):
        first = anchor + timedelta(seconds=config.interval_seconds)
        return [{"interval": config.interval_seconds, "anchor_date": format_utc(first), "timezone": "UTC"}]
    return []


def as_scheduled(config: Any, deployment_schedules: Sequence[Any]) -> tuple[Any, Any | None]:
    """A cron or interval trigger's schedule as Prefect will run it, and the schedule that runs it.

    The Prefect UI edits a deployment's schedules directly, so they, not the request the
    trigger was created with, say what will run. The trigger shows the first active one, in
    the contract's terms when it fits the trigger's type (a cron for a cron trigger, an
    interval for an interval trigger; anything else, an RRule say, leaves the recorded
    config). No active schedule (switched off or removed in the UI) returns None: nothing
    will run, and the trigger shows `paused`. Event and conditional triggers have no schedule.
    """
    if not isinstance(config, (CronScheduleConfig, IntervalScheduleConfig)):
        return config, None
    active = [s.schedule for s in deployment_schedules if s.active]
    if not active:
        return config, None
    first = active[0]
    if isinstance(config, CronScheduleConfig) and getattr(first, "cron", None):
        return config.model_copy(update={"cron_expression": first.cron, "timezone": first.timezone or "UTC"}), first
    if isinstance(config, IntervalScheduleConfig) and getattr(first, "interval", None):
        return config.model_copy(update={"interval_seconds": round(first.interval.total_seconds())}), first
    return config, first


class DeploymentTarget(BaseModel):
    """Where every trigger deployment runs and where its code comes from: one place (the settings)."""

    work_pool: str = Field(description="Work pool of the deployments.")
    job_variables: dict[str, Any] = Field(default_factory=dict, description="Job variables, e.g. an `image`.")
    pull_steps: list[dict[str, Any]] = Field(default_factory=list, description="Pull steps; none by default.")


def default_target() -> DeploymentTarget:
    """The target the settings name (`CLUSTER_TRIGGERS_WORK_POOL`, `_JOB_VARIABLES`, `_PULL_STEPS`)."""
    settings = get_settings()
    return DeploymentTarget(work_pool=settings.work_pool, job_variables=settings.job_variables,
                            pull_steps=settings.pull_steps)


def deployment_fields(record: TriggerRecord, *, anchor: datetime, target: DeploymentTarget,
                      paused: bool) -> dict[str, Any]:
    """The trigger's deployment, as a `prefect.yaml` deployment entry (pull steps are project-wide there)."""
    work_pool: dict[str, Any] = {"name": target.work_pool}
    if target.job_variables:
        work_pool["job_variables"] = target.job_variables
    return {
        "name": record.trigger_id,
        "entrypoint": ENTRYPOINT,
        "description": record.request.description,
        "tags": base_tags(record),
        "parameters": {"trigger": record.model_dump(mode="json", exclude_none=True)},
        "work_pool": work_pool,
        "schedules": schedules(record.request, anchor=anchor),
        "paused": paused,
        "concurrency_limit": {"limit": 1, "collision_strategy": "ENQUEUE"},
    }
