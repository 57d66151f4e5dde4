"""The trigger service's changes: create, update, pause, resume, delete, execute.

The one place the CLI and the REST API change triggers. Each trigger is a deployment of the
shared flow (see `prefect_objects.translate`); each change holds the trigger's lock
(`prefect_objects.trigger_lock`), keeps its quota slot exact, brings its automation in line,
announces itself as a `cluster.trigger.<kind>` event and answers the trigger as it is now.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import DeploymentUpdate
from prefect.exceptions import ObjectNotFound
from prefect.states import Scheduled

from prefect_cluster_triggers.blocks.result_store import default_result_store
from prefect_cluster_triggers.core.contract import (
    IDENTIFIER_PATTERN,
    ClusterTrigger,
    CreateTriggerRequest,
    EventScheduleConfig,
    TriggerStatus,
    TriggerType,
    validate_request,
)
from prefect_cluster_triggers.core.errors import AlreadyExists, Conflict, ContractError, Problem, QuotaExceeded
from prefect_cluster_triggers.deployments.prefect_objects import records, trigger_records
from prefect_cluster_triggers.deployments.prefect_objects.automations import sync_automation, wake_webhook_id
from prefect_cluster_triggers.deployments.prefect_objects.client import PAGE, prefect_client
from prefect_cluster_triggers.deployments.prefect_objects.status import RunFigures, of_deployment, trigger_status
from prefect_cluster_triggers.deployments.prefect_objects.translate import (
    DISABLED_TAG,
    FLOW_NAME,
    MANUAL_TAG,
    TriggerRecord,
    default_target,
    deployment_fields,
    shown_description,
    stamped_parameters,
    state_line_of,
    stored_request,
    with_state_line,
)
from prefect_cluster_triggers.deployments.prefect_objects.trigger_events import announce
from prefect_cluster_triggers.deployments.prefect_objects.trigger_lock import changing
from prefect_cluster_triggers.deployments.service import prefect_deployment, queries, quota

UPDATABLE = ("schedule_config", "description", "status")
IMMUTABLE = ("trigger_type", "cluster_id", "execution_config")


async def create_trigger(
    request: CreateTriggerRequest,
    *,
    namespace_id: str | None = None,
    trigger_id: str | None = None,
    created_by: str | None = None,
    internal_id: str = "local",
) -> ClusterTrigger:
    """Create the trigger's deployment; `start_immediately` also queues a run now.

    Raises:
        AlreadyExists: a trigger with this id exists already.
        QuotaExceeded: its namespace has its maximum of active triggers (an active trigger only).
    """
    if trigger_id is not None and not re.fullmatch(IDENTIFIER_PATTERN, trigger_id):
        raise ContractError([Problem("trigger_id", f"letters, digits, '_', '.', '-', up to 128 (got {trigger_id!r})")])
    record = TriggerRecord(
        trigger_id=trigger_id or f"trg_{secrets.token_hex(8)}",
        namespace_id=queries.namespace(namespace_id),
        internal_id=internal_id,
        created_by=created_by,
        request=request,
        updated_at=datetime.now(timezone.utc),
    )
    async with prefect_client() as client:
        if trigger_id is not None:  # a generated id (64 random bits) is new; a given one may not be
            try:
                await client.read_deployment_by_name(f"{FLOW_NAME}/{record.trigger_id}")
            except ObjectNotFound:
                pass
            else:
                raise AlreadyExists(f"trigger {record.trigger_id!r} already exists")
        active = request.status == "active"
        slot = await quota.claim(client, record.namespace_id, record.trigger_id) if active else None
        deployment_id: UUID | None = None
        try:
            await prefect_deployment.fix_result_store(client)
            now = datetime.now(timezone.utc)
            target = default_target()
            fields = deployment_fields(record, anchor=now, target=target, paused=not active)
            deployment_id = await prefect_deployment.create_deployment(client, fields, target.pull_steps)
            if slot is not None and not await quota.confirm(client, slot):
                raise QuotaExceeded(f"namespace {record.namespace_id}: its last free slot went to another trigger "
                                    f"while this one was made; try again")
            schedule = request.schedule_config
            if request.trigger_type == TriggerType.interval and schedule.start_immediately and active:
                await client.create_flow_run_from_deployment(
                    deployment_id, state=Scheduled(scheduled_time=now), tags=[MANUAL_TAG],
                    idempotency_key=f"start-immediately-{record.trigger_id}",
                )
            trigger = await _changed(client, record.trigger_id, record.namespace_id, "created", new=True)
            if trigger.stored_problem:
                raise ContractError([Problem("request", f"Prefect did not keep it as given: {trigger.stored_problem}")])
            return trigger
        except Exception:  # all or nothing: a refused create leaves no deployment, automation or slot
            if deployment_id is not None:
                await _undo_create(client, deployment_id, record)
            if slot is not None:
                await quota.release(client, record.namespace_id, record.trigger_id)
            raise


async def _undo_create(client: PrefectClient, deployment_id: UUID, record: TriggerRecord) -> None:
    """Remove what a create made before it was refused: the automation, the runs, the deployment."""
    await sync_automation(client, record, deployment_id, TriggerStatus.disabled, None)
    runs = await client.read_flow_runs(deployment_filter=of_deployment(deployment_id), limit=PAGE)
    await asyncio.gather(*(client.delete_flow_run(run.id) for run in runs))
    await client.delete_deployment(deployment_id)


async def update_trigger(trigger_id: str, changes: dict[str, Any], namespace_id: str | None = None) -> ClusterTrigger:
    """Change `schedule_config`, `description` or `status` (active/paused).

    Raises:
        Conflict: a field that cannot change (delete and recreate), or a deleted trigger.
        ContractError: the changed request breaks the contract.
    """
    forbidden = [key for key in IMMUTABLE if key in changes]
    if forbidden:
        raise Conflict(f"{', '.join(forbidden)} cannot change; delete the trigger and create a new one")
    unknown = [key for key in changes if key not in UPDATABLE]
    if unknown:
        raise ContractError([Problem(key, f"unknown field; allowed: {', '.join(UPDATABLE)}") for key in unknown])
    async with prefect_client() as client, changing(client, trigger_id):
        deployment, record = await _changeable(client, trigger_id, namespace_id)
        stored = record.request.model_dump(mode="json", exclude_none=True) if record else stored_request(deployment)
        merged = {**stored, **changes}
        request = validate_request({k: v for k, v in merged.items() if v is not None})
        now = datetime.now(timezone.utc)
        updated = (record.model_copy(update={"request": request, "updated_at": now}) if record
                   else _rebuilt_record(deployment, queries.namespace(namespace_id), request, now))
        fields = deployment_fields(updated, anchor=now, target=default_target(), paused=deployment.paused)
        await client.update_deployment(
            deployment.id,
            # The state line the trigger's page keeps at the top of the description stays (service.dashboard).
            DeploymentUpdate(description=with_state_line(shown_description(request.description),
                                                         state_line_of(deployment.description)),
                             parameters=fields["parameters"]),
        )
        if "schedule_config" in changes:
            await prefect_deployment.replace_schedules(client, deployment, fields["schedules"])
        if "status" in changes:
            deployment = await client.read_deployment(deployment.id)  # the parameters and schedules just written
            if request.status == "paused":
                await prefect_deployment.pause(client, deployment, updated.namespace_id)
            else:
                await prefect_deployment.resume(client, deployment, updated)
        return await _changed(client, trigger_id, updated.namespace_id, "updated", changed=sorted(changes))


async def pause_trigger(trigger_id: str, namespace_id: str | None = None) -> ClusterTrigger:
    """Paused: no scheduled run, no firing. Also a trigger whose stored record no longer validates."""
    return await _switch(trigger_id, namespace_id, pause=True)


async def resume_trigger(trigger_id: str, namespace_id: str | None = None) -> ClusterTrigger:
    """Back to active, also out of `failed`; the next run is computed from now."""
    return await _switch(trigger_id, namespace_id, pause=False)


async def _switch(trigger_id: str, namespace_id: str | None, *, pause: bool) -> ClusterTrigger:
    """Pause or resume a trigger that is not deleted."""
    namespace_id = queries.namespace(namespace_id)
    async with prefect_client() as client, changing(client, trigger_id):
        if pause:
            deployment, _ = await _changeable(client, trigger_id, namespace_id)
            await prefect_deployment.pause(client, deployment, namespace_id)
        else:
            deployment, record = await _changeable(client, trigger_id, namespace_id, usable=True)
            await prefect_deployment.resume(client, deployment, record)
        return await _changed(client, trigger_id, namespace_id, "paused" if pause else "resumed")


async def delete_trigger(trigger_id: str, namespace_id: str | None = None) -> ClusterTrigger:
    """Soft delete: the deployment stays (history kept) but is paused and marked disabled."""
    async with prefect_client() as client, changing(client, trigger_id):
        deployment, _ = await queries.find_trigger(client, trigger_id, namespace_id)
        namespace_id = queries.namespace(namespace_id)
        await client.update_deployment(deployment.id, DeploymentUpdate(
            tags=prefect_deployment.with_tags(deployment.tags, DISABLED_TAG),
            parameters=stamped_parameters(deployment, now=datetime.now(timezone.utc))))
        await prefect_deployment.stop_schedule(client, deployment.id)
        await quota.release(client, namespace_id, trigger_id)
        return await _changed(client, trigger_id, namespace_id, "deleted")


async def execute_trigger(trigger_id: str, namespace_id: str | None = None, *, wait: bool = False,
                          timeout_seconds: float = 3600, idempotency_key: str | None = None) -> queries.Execution:
    """Run the trigger now, outside its schedule; with `wait`, until the run ends.

    With `idempotency_key`, Prefect answers a second call with the same key with the same run.
    """
    async with prefect_client() as client:
        async with changing(client, trigger_id):  # the run's creation only, not the wait for its end
            deployment, record = await _changeable(client, trigger_id, namespace_id, usable=True)
            run = await client.create_flow_run_from_deployment(
                deployment.id, tags=[MANUAL_TAG], idempotency_key=idempotency_key and f"execute-{idempotency_key}")
        deadline = asyncio.get_running_loop().time() + timeout_seconds
        while wait and not (run.state and run.state.is_final()) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(1)
            run = await client.read_flow_run(run.id)
        store = await asyncio.to_thread(default_result_store)
        return queries.execution(run, record.trigger_id, store.files)


async def _changeable(client: PrefectClient, trigger_id: str, namespace_id: str | None, *,
                      usable: bool = False) -> tuple[Any, TriggerRecord | None]:
    """The trigger a change may apply to: not deleted, and with `usable`, its stored record valid.

    Raises:
        NotFound: no such trigger in this namespace.
        Conflict: the trigger is deleted, or (with `usable`) its stored record no longer validates.
    """
    find = queries.find_usable if usable else queries.find_trigger
    deployment, record = await find(client, trigger_id, namespace_id)
    if DISABLED_TAG in deployment.tags:
        raise Conflict(f"trigger {trigger_id!r} is deleted (disabled); create a new one")
    return deployment, record


def _rebuilt_record(deployment: Any, namespace_id: str, request: CreateTriggerRequest, now: datetime) -> TriggerRecord:
    """A new record for a trigger whose stored one no longer validates: what the deployment says for
    sure (its name is the id, its tag the namespace), what of the rest still reads, and `request`."""
    trigger = deployment.parameters.get("trigger")
    trigger = trigger if isinstance(trigger, dict) else {}
    fields = {"trigger_id": deployment.name, "namespace_id": namespace_id,
              "internal_id": trigger.get("internal_id") if isinstance(trigger.get("internal_id"), str) else "local",
              "created_by": trigger.get("created_by") if isinstance(trigger.get("created_by"), str) else None}
    return TriggerRecord(**fields, request=request, updated_at=now)


async def _changed(client: PrefectClient, trigger_id: str, namespace_id: str, event: str, *, new: bool = False,
                   **details: Any) -> ClusterTrigger:
    """After a change: the event trigger's automation in line with its status, the runs record
    (what listing reads) written, the change announced as `cluster.trigger.<event>`, then the
    trigger as it is now. A `new` trigger has no started run to read, and its announcement is
    stamped when its deployment was made: the evaluator may look at it before this call ends,
    and the feed must still show `created` first."""
    deployment, record = await queries.find_trigger(client, trigger_id, namespace_id)
    if record is not None and isinstance(record.request.schedule_config, EventScheduleConfig):
        status = trigger_status(deployment.paused, deployment.tags)
        await sync_automation(client, record, deployment.id, status, await wake_webhook_id(client))
    as_of = datetime.now(timezone.utc)  # before the runs are read: a run ending meanwhile counts as missed
    figures = RunFigures(as_of=as_of) if new else await trigger_records.run_figures(client, deployment.id, now=as_of)
    name = trigger_records.record_name(trigger_records.RUNS, trigger_id)
    await records.save(client, name, figures)
    stored = {name: figures.model_dump(mode="json")}
    trigger = queries.one(deployment, await queries.statuses(client, [deployment], stored=stored, live=True))
    announce(event, trigger_id, namespace_id, occurred=deployment.created if new else None,
             status=trigger.status.value, **details)
    return trigger


