"""A trigger's deployment in Prefect: made as `prefect deploy` makes it, its schedules, paused and resumed.

The commands (`service.commands`) decide what changes; this module knows how Prefect holds it:
the shared flow and work pool created on first use, schedules replaced whole, a pause that also
removes the scheduled runs a concurrent scheduler loop may have added, and a resume that takes a
quota slot.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import DeploymentScheduleCreate, DeploymentUpdate, WorkPoolCreate
from prefect.client.schemas.objects import ConcurrencyLimitStrategy, ConcurrencyOptions, StateType
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from prefect_cluster_triggers.blocks.result_store import default_result_store
from prefect_cluster_triggers.core.contract import TriggerStatus, TriggerType
from prefect_cluster_triggers.core.errors import QuotaExceeded
from prefect_cluster_triggers.deployments.prefect_objects.client import PAGE, retry_lost_races
from prefect_cluster_triggers.deployments.prefect_objects.status import in_states, of_deployment, trigger_status
from prefect_cluster_triggers.deployments.prefect_objects.translate import (
    ENTRYPOINT,
    FAILED_TAG,
    FLOW_NAME,
    MANUAL_TAG,
    TriggerRecord,
    as_scheduled,
    default_target,
    deployment_fields,
    stamped_parameters,
)
from prefect_cluster_triggers.deployments.service import quota

_result_store_fixed: set[str] = set()  # Prefect API URLs whose default result store exists
_prerequisites: dict[tuple[str, str], UUID] = {}  # (API URL, work pool) -> the shared flow's id: both exist


async def create_deployment(client: PrefectClient, fields: dict[str, Any], pull_steps: list[dict[str, Any]]) -> UUID:
    """The deployment `prefect deploy` makes of the same fields: no path, no pull step unless configured.

    The shared flow's id and its work pool are looked up once per process and server; when either
    was deleted since (in the Prefect UI), the create is refused (404 for the pool, 409 for the
    flow) and made again after a fresh look-up."""
    pool = fields["work_pool"]["name"]
    key = (str(client.api_url), pool)
    known = key in _prerequisites
    try:
        return await _upsert(client, await _prerequisite(client, pool), fields, pull_steps)
    except (ObjectAlreadyExists, httpx.HTTPStatusError) as exc:
        if not known or (isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code != 404):
            raise
    _prerequisites.pop(key, None)
    return await _upsert(client, await _prerequisite(client, pool), fields, pull_steps)


async def _prerequisite(client: PrefectClient, pool: str) -> UUID:
    """The shared flow's id, once it and the work pool `pool` are known to exist."""
    key = (str(client.api_url), pool)
    if key not in _prerequisites:
        _prerequisites[key], _ = await asyncio.gather(_flow_id(client), _ensure_work_pool(client, pool))
    return _prerequisites[key]


async def _upsert(client: PrefectClient, flow_id: UUID, fields: dict[str, Any], pull_steps: list[dict[str, Any]]) -> UUID:
    return await retry_lost_races(lambda: client.create_deployment(
        flow_id=flow_id,
        name=fields["name"],
        entrypoint=ENTRYPOINT,
        pull_steps=pull_steps,
        work_pool_name=fields["work_pool"]["name"],
        job_variables=fields["work_pool"].get("job_variables", {}),
        parameters=fields["parameters"],
        parameter_openapi_schema=_parameter_schema(),
        enforce_parameter_schema=True,
        tags=fields["tags"],
        description=fields["description"],
        schedules=[DeploymentScheduleCreate(schedule=_schedule(s), active=True) for s in fields["schedules"]],
        paused=fields["paused"],
        concurrency_limit=fields["concurrency_limit"]["limit"],
        concurrency_options=ConcurrencyOptions(collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
    ))


@functools.cache
def _parameter_schema() -> dict[str, Any]:
    """The shared flow's parameter schema, as `prefect deploy` writes it: made once (tens of ms of CPU each time)."""
    from prefect.utilities.callables import parameter_schema

    from prefect_cluster_triggers.flows.clustering_flow import cluster_collection

    return parameter_schema(cluster_collection).model_dump(exclude_unset=True)


async def fix_result_store(client: PrefectClient) -> None:
    """Save the default result store when the Prefect server has none, once per process and server: where
    results go is fixed by the first trigger, never by a worker."""
    if str(client.api_url) not in _result_store_fixed:
        await asyncio.to_thread(default_result_store)
        _result_store_fixed.add(str(client.api_url))


async def _flow_id(client: PrefectClient) -> UUID:
    """The shared flow's id, created on first use: a read, where creating every time would be a write per trigger."""
    try:
        return (await client.read_flow_by_name(FLOW_NAME)).id
    except httpx.HTTPStatusError as exc:  # what Prefect's client raises for a missing flow
        if exc.response.status_code != 404:
            raise
    return await client.create_flow_from_name(FLOW_NAME)


async def _ensure_work_pool(client: PrefectClient, name: str) -> None:
    """Create the process work pool on first use; an existing pool is left as its owner configured it."""
    try:
        await client.read_work_pool(name)
    except ObjectNotFound:
        try:
            await client.create_work_pool(WorkPoolCreate(name=name, type="process"))
        except ObjectAlreadyExists:
            pass  # created meanwhile by a concurrent call


def _schedule(entry: dict[str, Any]) -> CronSchedule | IntervalSchedule:
    if "cron" in entry:
        return CronSchedule(cron=entry["cron"], timezone=entry["timezone"])
    return IntervalSchedule(
        interval=timedelta(seconds=entry["interval"]),
        anchor_date=datetime.fromisoformat(entry["anchor_date"]),
        timezone=entry["timezone"],
    )


async def replace_schedules(client: PrefectClient, deployment: Any, entries: list[dict[str, Any]]) -> None:
    """The deployment's schedules, replaced whole by `entries` (translate's schedule entries)."""
    for existing in deployment.schedules:
        await client.delete_deployment_schedule(deployment.id, existing.id)
    if entries:
        await client.create_deployment_schedules(deployment.id, [(_schedule(e), True) for e in entries])


async def pause(client: PrefectClient, deployment: Any, namespace_id: str) -> None:
    """Paused: no schedule, no scheduled run, the record's status `paused`, its quota slot given back."""
    await stop_schedule(client, deployment.id)
    await set_parameters_status(client, deployment, "paused")
    await quota.release(client, namespace_id, deployment.name)


async def stop_schedule(client: PrefectClient, deployment_id: UUID) -> None:
    """Pause the deployment and delete the scheduled runs a concurrent scheduler loop may have added."""
    await client.pause_deployment(deployment_id)
    leftovers = await client.read_flow_runs(
        deployment_filter=of_deployment(deployment_id), flow_run_filter=in_states(StateType.SCHEDULED), limit=PAGE
    )
    await asyncio.gather(*(client.delete_flow_run(run.id) for run in leftovers if MANUAL_TAG not in run.tags))


async def resume(client: PrefectClient, deployment: Any, record: TriggerRecord) -> None:
    """Active again, holding a quota slot (one more active trigger in its namespace)."""
    slot = None
    if trigger_status(deployment.paused, deployment.tags) != TriggerStatus.active:
        slot = await quota.claim(client, record.namespace_id, record.trigger_id)
    if FAILED_TAG in deployment.tags:
        await client.update_deployment(deployment.id, DeploymentUpdate(tags=[t for t in deployment.tags if t != FAILED_TAG]))
    # The schedule as it runs now (the UI may have edited it); one switched off or removed is back on.
    current, running = as_scheduled(record.request.schedule_config, deployment.schedules)
    effective = record.model_copy(update={"request": record.request.model_copy(update={"schedule_config": current})})
    fields = deployment_fields(effective, anchor=datetime.now(timezone.utc), target=default_target(), paused=False)
    if record.request.trigger_type == TriggerType.interval or (running is None and fields["schedules"]):
        await replace_schedules(client, deployment, fields["schedules"])  # an interval: next run one interval from now
    await client.resume_deployment(deployment.id)
    await set_parameters_status(client, deployment, "active")
    if slot is not None and not await quota.confirm(client, slot):
        await pause(client, deployment, record.namespace_id)
        raise QuotaExceeded(f"namespace {record.namespace_id}: its last free slot went to another trigger "
                            f"while this one resumed; try again")


async def set_parameters_status(client: PrefectClient, deployment: Any, status: str) -> None:
    """The stored record's status (and the time of the change), in the document as stored (valid or not)."""
    parameters = stamped_parameters(deployment, now=datetime.now(timezone.utc), status=status)
    await client.update_deployment(deployment.id, DeploymentUpdate(parameters=parameters))


def with_tags(tags: list[str], *extra: str) -> list[str]:
    """`tags` plus those of `extra` it lacks, in order."""
    return [*tags, *(t for t in extra if t not in tags)]
