"""The trigger lifecycle on Prefect: create, read, list, update, pause, resume, delete, execute, history.

The one module the CLI and the REST API both call. Each trigger is a deployment of the
shared flow (see `deployments.translate`); everything a trigger reports is read back from
that deployment and its flow runs, so the Prefect UI and this API never disagree.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import DeploymentScheduleCreate, DeploymentUpdate, WorkPoolCreate
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterTags,
)
from prefect.client.schemas.objects import ConcurrencyLimitStrategy, ConcurrencyOptions, FlowRun, StateType
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
from prefect.client.schemas.sorting import DeploymentSort, FlowRunSort
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.states import Scheduled
from pydantic import BaseModel, ValidationError

from prefect_cluster_triggers.blocks._result_files import ResultFiles
from prefect_cluster_triggers.blocks.cluster_definition import ClusterDefinition
from prefect_cluster_triggers.blocks.result_store import default_result_store
from prefect_cluster_triggers.deployments._models import UtcDateTime
from prefect_cluster_triggers.deployments.contract import (
    IDENTIFIER_PATTERN,
    ClusterTrigger,
    ConditionalScheduleConfig,
    CreateTriggerRequest,
    EventScheduleConfig,
    ExecutionConfig,
    TriggerStatus,
    TriggerType,
    validate_request,
)
from prefect_cluster_triggers.deployments.errors import ContractError, Problem
from prefect_cluster_triggers.deployments.settings import get_settings
from prefect_cluster_triggers.deployments._client import prefect_client, retry_lost_races
from prefect_cluster_triggers.deployments.access import namespace_id_of
from prefect_cluster_triggers.deployments.announcements import announce
from prefect_cluster_triggers.deployments.automations import sync_automation, wake_webhook_id
from prefect_cluster_triggers.deployments.cursors import load_checkpoint
from prefect_cluster_triggers.deployments.status import (
    FAILURES,
    STARTED,
    RunFigures,
    cluster_trigger,
    execution_status,
    in_states,
    of_deployment,
    started_at,
    status_of,
    trigger_status,
)
from prefect_cluster_triggers.deployments.translate import (
    DISABLED_TAG,
    ENTRYPOINT,
    FAILED_TAG,
    FLOW_NAME,
    MANUAL_TAG,
    TRIGGER_TAG,
    TriggerRecord,
    as_scheduled,
    default_target,
    deployment_fields,
    namespace_tag,
)
from prefect_cluster_triggers.deployments import quota, snapshots
from prefect_cluster_triggers.deployments.fire_times import next_cron_time, next_interval_slot
from prefect_cluster_triggers.deployments.snapshots import EvaluatorState
from prefect_cluster_triggers.deployments.trigger_events import Evaluation, evaluations, event_plan, last_measurement
from prefect_cluster_triggers.flows.errors import AlreadyExists, Conflict, NotFound, QuotaExceeded

UPDATABLE = ("schedule_config", "description", "status")
_PREFECT_PAGE = 200
IMMUTABLE = ("trigger_type", "cluster_id", "execution_config")
_result_store_fixed: set[str] = set()  # Prefect API URLs whose default result store exists


class Execution(BaseModel):
    """One execution of a trigger, as `history` lists it."""

    job_id: str
    triggered_at: UtcDateTime | None
    status: str
    execution_time_ms: int | None
    error: str | None
    num_clusters: int | None
    num_documents: int | None


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
        namespace_id=_namespace(namespace_id),
        internal_id=internal_id,
        created_by=created_by,
        request=request,
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
        try:
            await _fix_result_store(client)
            now = datetime.now(timezone.utc)
            target = default_target()
            fields = deployment_fields(record, anchor=now, target=target, paused=not active)
            deployment_id = await _create_deployment(client, fields, target.pull_steps)
            if slot is not None and not await quota.confirm(client, slot):
                await client.delete_deployment(deployment_id)
                raise QuotaExceeded(f"namespace {record.namespace_id}: its last free slot went to another trigger "
                                    f"while this one was made; try again")
        except Exception:
            if slot is not None:
                await quota.release(client, record.namespace_id, record.trigger_id)
            raise
        schedule = request.schedule_config
        if request.trigger_type == TriggerType.interval and schedule.start_immediately and active:
            await client.create_flow_run_from_deployment(
                deployment_id, state=Scheduled(scheduled_time=now), tags=[MANUAL_TAG],
                idempotency_key=f"start-immediately-{record.trigger_id}",
            )
        return await _changed(client, record.trigger_id, record.namespace_id, "created", new=True)


async def get_trigger(trigger_id: str, namespace_id: str | None = None) -> ClusterTrigger:
    async with prefect_client() as client:
        return await _read(client, trigger_id, _namespace(namespace_id))


async def list_triggers(
    namespace_id: str | None = None,
    *,
    cluster_id: str | None = None,
    trigger_type: str | None = None,
    status: str | None = None,
    offset: int = 0,
    limit: int = 50,
    descending: bool = True,
) -> tuple[list[ClusterTrigger], int]:
    """Triggers of a namespace, newest first, and how many match in all.

    A fixed number of Prefect calls whatever the page size (see `deployments.snapshots`):
    the deployments, the snapshot variables and the cluster definitions.
    """
    namespace_id = _namespace(namespace_id)
    tags = [TRIGGER_TAG, namespace_tag(namespace_id)] + ([f"trigger-type:{trigger_type}"] if trigger_type else [])
    async with prefect_client() as client:
        deployments = await client.read_deployments(
            deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=tags)),
            sort=DeploymentSort.CREATED_DESC,
        )
        if not descending:
            deployments.reverse()
        # Filters on status or cluster need every trigger's status; without them only the page's.
        filtered = status is not None or cluster_id is not None
        page = deployments if filtered else deployments[offset : offset + limit]
        triggers = await statuses(client, page)
    if not filtered:
        return list(triggers), len(deployments)
    matching = [
        t for t in triggers
        if (cluster_id is None or t.cluster_id == cluster_id) and (status is None or t.status == status)
    ]
    return matching[offset : offset + limit], len(matching)


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
    async with prefect_client() as client:
        deployment, record = await _find(client, trigger_id, namespace_id)
        _refuse_if_disabled(deployment, record)
        merged = {**record.request.model_dump(mode="json", exclude_none=True), **changes}
        request = validate_request({k: v for k, v in merged.items() if v is not None})
        updated = record.model_copy(update={"request": request})
        fields = deployment_fields(
            updated, anchor=datetime.now(timezone.utc), target=default_target(), paused=deployment.paused
        )
        await client.update_deployment(
            deployment.id,
            DeploymentUpdate(description=request.description, parameters=fields["parameters"]),
        )
        if "schedule_config" in changes:
            await _replace_schedules(client, deployment, fields["schedules"])
        if "status" in changes:
            await (_pause if request.status == "paused" else _resume)(client, deployment, updated)
        return await _changed(client, trigger_id, updated.namespace_id, "updated", changed=sorted(changes))


async def pause_trigger(trigger_id: str, namespace_id: str | None = None) -> ClusterTrigger:
    return await _switch(trigger_id, namespace_id, _pause, "paused")


async def resume_trigger(trigger_id: str, namespace_id: str | None = None) -> ClusterTrigger:
    """Back to active, also out of `failed`; the next run is computed from now."""
    return await _switch(trigger_id, namespace_id, _resume, "resumed")


async def _switch(trigger_id: str, namespace_id: str | None, action: Any, event: str) -> ClusterTrigger:
    """Pause or resume a trigger that is not deleted."""
    async with prefect_client() as client:
        deployment, record = await _find(client, trigger_id, namespace_id)
        _refuse_if_disabled(deployment, record)
        await action(client, deployment, record)
        return await _changed(client, trigger_id, record.namespace_id, event)


async def delete_trigger(trigger_id: str, namespace_id: str | None = None) -> ClusterTrigger:
    """Soft delete: the deployment stays (history kept) but is paused and marked disabled."""
    async with prefect_client() as client:
        deployment, record = await _find(client, trigger_id, namespace_id)
        await client.update_deployment(deployment.id, DeploymentUpdate(tags=_with_tags(deployment.tags, DISABLED_TAG)))
        await _stop_schedule(client, deployment.id)
        await quota.release(client, record.namespace_id, trigger_id)
        return await _changed(client, trigger_id, record.namespace_id, "deleted")


async def execute_trigger(trigger_id: str, namespace_id: str | None = None, *, wait: bool = False,
                          timeout_seconds: float = 3600, idempotency_key: str | None = None) -> Execution:
    """Run the trigger now, outside its schedule; with `wait`, until the run ends.

    With `idempotency_key`, Prefect answers a second call with the same key with the same run.
    """
    async with prefect_client() as client:
        deployment, record = await _find(client, trigger_id, namespace_id)
        _refuse_if_disabled(deployment, record)
        run = await client.create_flow_run_from_deployment(
            deployment.id, tags=[MANUAL_TAG], idempotency_key=idempotency_key and f"execute-{idempotency_key}")
        deadline = asyncio.get_running_loop().time() + timeout_seconds
        while wait and not (run.state and run.state.is_final()) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(1)
            run = await client.read_flow_run(run.id)
        store = await asyncio.to_thread(default_result_store)
        return _execution(run, record.trigger_id, store.files)


async def trigger_history(
    trigger_id: str,
    namespace_id: str | None = None,
    *,
    offset: int = 0,
    limit: int = 50,
    status_filter: str | None = None,
) -> tuple[list[Execution], int]:
    """Executions of a trigger, newest first, and how many there are."""
    states = [s for s in STARTED if status_filter is None or status_of(s) == status_filter]
    async with prefect_client() as client:
        deployment, record = await _find(client, trigger_id, namespace_id)
        runs_filter, by_deployment = in_states(*states), of_deployment(deployment.id)
        runs: list[FlowRun] = []
        while len(runs) < limit:  # Prefect answers at most 200 runs per call
            page = await client.read_flow_runs(
                deployment_filter=by_deployment, flow_run_filter=runs_filter, sort=FlowRunSort.START_TIME_DESC,
                offset=offset + len(runs), limit=min(_PREFECT_PAGE, limit - len(runs)),
            )
            runs += page
            if len(page) < _PREFECT_PAGE:
                break
        total = await client.count_flow_runs(deployment_filter=by_deployment, flow_run_filter=runs_filter)
        store = await asyncio.to_thread(default_result_store)
    return [_execution(run, record.trigger_id, store.files) for run in runs], total


async def trigger_evaluations(trigger_id: str, namespace_id: str | None = None, *, limit: int = 50) -> list[Evaluation]:
    """Why the trigger did or did not fire, evaluation by evaluation, newest first."""
    async with prefect_client() as client:
        await _find(client, trigger_id, namespace_id)
        return await evaluations(client, trigger_id, limit=limit)


def run_sync(coroutine: Any) -> Any:
    """Run one lifecycle call from synchronous code (the CLI)."""
    return asyncio.run(coroutine)


async def _create_deployment(client: PrefectClient, fields: dict[str, Any], pull_steps: list[dict[str, Any]]) -> UUID:
    """The deployment `prefect deploy` makes of the same fields: no path, no pull step unless configured."""
    from prefect_cluster_triggers.flows.clustering_flow import cluster_collection
    from prefect.utilities.callables import parameter_schema

    flow_id, _ = await asyncio.gather(_flow_id(client), _ensure_work_pool(client, fields["work_pool"]["name"]))
    return await retry_lost_races(lambda: client.create_deployment(
        flow_id=flow_id,
        name=fields["name"],
        entrypoint=ENTRYPOINT,
        pull_steps=pull_steps,
        work_pool_name=fields["work_pool"]["name"],
        job_variables=fields["work_pool"].get("job_variables", {}),
        parameters=fields["parameters"],
        parameter_openapi_schema=parameter_schema(cluster_collection).model_dump(exclude_unset=True),  # as `prefect deploy`
        enforce_parameter_schema=True,
        tags=fields["tags"],
        description=fields["description"],
        schedules=[DeploymentScheduleCreate(schedule=_schedule(s), active=True) for s in fields["schedules"]],
        paused=fields["paused"],
        concurrency_limit=fields["concurrency_limit"]["limit"],
        concurrency_options=ConcurrencyOptions(collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
    ))


async def _fix_result_store(client: PrefectClient) -> None:
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


async def _replace_schedules(client: PrefectClient, deployment: Any, entries: list[dict[str, Any]]) -> None:
    for existing in deployment.schedules:
        await client.delete_deployment_schedule(deployment.id, existing.id)
    if entries:
        await client.create_deployment_schedules(deployment.id, [(_schedule(e), True) for e in entries])


async def _pause(client: PrefectClient, deployment: Any, record: TriggerRecord) -> None:
    await _stop_schedule(client, deployment.id)
    await _set_parameters_status(client, deployment, record, "paused")
    await quota.release(client, record.namespace_id, record.trigger_id)


async def _stop_schedule(client: PrefectClient, deployment_id: UUID) -> None:
    """Pause the deployment and delete the scheduled runs a concurrent scheduler loop may have added."""
    await client.pause_deployment(deployment_id)
    leftovers = await client.read_flow_runs(
        deployment_filter=of_deployment(deployment_id), flow_run_filter=in_states(StateType.SCHEDULED), limit=_PREFECT_PAGE
    )
    await asyncio.gather(*(client.delete_flow_run(run.id) for run in leftovers if MANUAL_TAG not in run.tags))


async def _resume(client: PrefectClient, deployment: Any, record: TriggerRecord) -> None:
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
        await _replace_schedules(client, deployment, fields["schedules"])  # an interval: next run one interval from now
    await client.resume_deployment(deployment.id)
    await _set_parameters_status(client, deployment, record, "active")
    if slot is not None and not await quota.confirm(client, slot):
        await _pause(client, deployment, record)
        raise QuotaExceeded(f"namespace {record.namespace_id}: its last free slot went to another trigger "
                            f"while this one resumed; try again")


async def _set_parameters_status(client: PrefectClient, deployment: Any, record: TriggerRecord, status: str) -> None:
    request = record.request.model_copy(update={"status": status})
    parameters = {"trigger": record.model_copy(update={"request": request}).model_dump(mode="json", exclude_none=True)}
    await client.update_deployment(deployment.id, DeploymentUpdate(parameters=parameters))


def _namespace(namespace: str | None) -> str:
    """The namespace id for a name or id given by a caller; the default namespace when none."""
    return namespace_id_of(namespace or get_settings().namespace)


async def _find(client: PrefectClient, trigger_id: str, namespace_id: str | None) -> tuple[Any, TriggerRecord]:
    namespace_id = _namespace(namespace_id)
    if not re.fullmatch(IDENTIFIER_PATTERN, trigger_id):
        raise NotFound(f"trigger {trigger_id!r} not found")
    try:
        deployment = await client.read_deployment_by_name(f"{FLOW_NAME}/{trigger_id}")
    except ObjectNotFound:
        deployment = None
    if deployment is None or namespace_tag(namespace_id) not in deployment.tags or TRIGGER_TAG not in deployment.tags:
        raise NotFound(f"trigger {trigger_id!r} not found")
    return deployment, TriggerRecord.model_validate(deployment.parameters["trigger"])


def _refuse_if_disabled(deployment: Any, record: TriggerRecord) -> None:
    if DISABLED_TAG in deployment.tags:
        raise Conflict(f"trigger {record.trigger_id!r} is deleted (disabled); create a new one")


async def _changed(client: PrefectClient, trigger_id: str, namespace_id: str, event: str, *, new: bool = False,
                   **details: Any) -> ClusterTrigger:
    """After a change: the event trigger's automation in line with its status, the runs snapshot
    (what listing reads) written, the change announced as `cluster.trigger.<event>`, then the
    trigger as it is now. A `new` trigger has no started run to read."""
    deployment, record = await _find(client, trigger_id, namespace_id)
    if isinstance(record.request.schedule_config, EventScheduleConfig):
        status = trigger_status(deployment.paused, deployment.tags)
        await sync_automation(client, record, status, await wake_webhook_id(client))
    as_of = datetime.now(timezone.utc)  # before the runs are read: a run ending meanwhile counts as missed
    figures = RunFigures(as_of=as_of) if new else await snapshots.run_figures(client, deployment.id, now=as_of)
    name = snapshots.variable_name("runs", trigger_id)
    await snapshots.save(client, name, figures)
    stored = {name: figures.model_dump(mode="json")}
    trigger = (await statuses(client, [deployment], stored=stored, live=True))[0]
    announce(event, trigger_id, namespace_id, status=trigger.status.value, **details)
    return trigger


async def _read(client: PrefectClient, trigger_id: str, namespace_id: str) -> ClusterTrigger:
    """One trigger as listing shows it (the same snapshots, corrected the same way, so `get` and `ls` agree),
    with an event or conditional trigger's state read live: two Prefect calls at once."""
    (deployment, _), stored = await asyncio.gather(
        _find(client, trigger_id, namespace_id), snapshots.read(client, _snapshot_names([trigger_id])))
    return (await statuses(client, [deployment], stored=stored, live=True))[0]


async def statuses(client: PrefectClient, deployments: list[Any], *, stored: dict[str, Any] | None = None,
                    live: bool = False) -> list[ClusterTrigger]:
    """Many triggers from their snapshots (`stored`, when already read): the same few calls for a page of any
    size. A trigger without a runs snapshot yet (made by `prefect deploy`) is counted now and the count kept.
    With `live`, event and conditional state is read from Prefect, not from the evaluator's snapshot."""
    records = [TriggerRecord.model_validate(d.parameters["trigger"]) for d in deployments]
    ids = [r.trigger_id for r in records]
    if stored is None:
        stored = await snapshots.read(client, _snapshot_names(ids))
    figures = {
        i: RunFigures.model_validate(stored[snapshots.variable_name("runs", i)])
        for i in ids if snapshots.variable_name("runs", i) in stored
    }
    now = datetime.now(timezone.utc)
    definitions = await _cluster_definitions(client) if any(r.request.cluster_id for r in records) else {}
    for deployment, record in zip(deployments, records):
        if record.trigger_id not in figures:  # rare: count this one and keep it for next time
            figures[record.trigger_id] = await snapshots.run_figures(client, deployment.id, now=now)
            await snapshots.save(client, snapshots.variable_name("runs", record.trigger_id), figures[record.trigger_id])
    triggers = []
    for deployment, record in zip(deployments, records):
        if live:
            state = await _trigger_state(client, deployment, record)
        else:
            state = EvaluatorState.model_validate(stored.get(snapshots.variable_name("state", record.trigger_id), {}))
        request = record.request
        triggers.append(cluster_trigger(
            deployment,
            record,
            execution_config=request.execution_config or definitions.get(request.cluster_id),
            figures=figures[record.trigger_id],
            next_scheduled_at=_next_slot(deployment, request.schedule_config, state, now),
            extra=state.shown(request.schedule_config),
        ))
    return triggers


def _snapshot_names(trigger_ids: list[str]) -> list[str]:
    return [snapshots.variable_name(kind, i) for i in trigger_ids for kind in ("runs", "state")]


async def _cluster_definitions(client: PrefectClient) -> dict[str, ExecutionConfig]:
    """Every valid cluster definition by its id, in one call."""
    try:
        documents = await client.read_block_documents_by_type("cluster-definition", limit=_PREFECT_PAGE)
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 404:
            return {}  # no definition yet: its block type is registered with the first one
        raise
    definitions = {}
    for document in documents:
        try:
            definition = ClusterDefinition.model_validate(document.data)
            definitions[definition.cluster_id] = definition.execution_config()
        except (ValidationError, ContractError):
            continue  # broken definitions show as no config, as in `get`
    return definitions


def _next_slot(deployment: Any, config: Any, state: EvaluatorState, now: datetime) -> datetime | None:
    """The next run Prefect will hold: from the schedule that runs (as the UI may have left
    it), or the evaluator's held-back firing. None rather than a guess (an RRule schedule)."""
    _, running = as_scheduled(config, deployment.schedules)
    if getattr(running, "cron", None):
        return next_cron_time(running.cron, running.timezone or "UTC", after=now)
    if getattr(running, "interval", None):
        return next_interval_slot(running.anchor_date, running.interval, now)
    if state.held_back_until and state.held_back_until > now:
        return state.held_back_until
    return None


async def _trigger_state(client: PrefectClient, deployment: Any, record: TriggerRecord) -> EvaluatorState:
    """What event and conditional triggers show beyond runs: the counter, the cooldown, the last check."""
    config = record.request.schedule_config
    if isinstance(config, EventScheduleConfig):
        stored = await load_checkpoint(record.trigger_id)
        plan, _ = await event_plan(client, deployment, record, stored, pages=1)  # the checkpoint and one page newer
        return EvaluatorState(event_counter=plan.event_counter, last_cooldown_at=plan.last_cooldown_at,
                              held_back_until=plan.held_back_until)
    if isinstance(config, ConditionalScheduleConfig):
        measurement = await last_measurement(client, record.trigger_id)
        if measurement is not None:
            return EvaluatorState(last_measurement=measurement.value, last_condition_check_at=measurement.checked_at,
                                  last_check_error=measurement.error)
    return EvaluatorState()


def _with_tags(tags: list[str], *extra: str) -> list[str]:
    return [*tags, *(t for t in extra if t not in tags)]


def _execution(run: FlowRun, trigger_id: str, results: ResultFiles) -> Execution:
    numbers = results.record_of(trigger_id, str(run.id))
    failed = run.state_type in FAILURES
    return Execution(
        job_id=str(run.id),
        triggered_at=started_at(run),
        status=execution_status(run),
        execution_time_ms=int(run.total_run_time.total_seconds() * 1000) if run.start_time else None,
        error=run.state.message if failed and run.state else None,
        num_clusters=numbers.get("num_clusters"),
        num_documents=numbers.get("num_documents"),
    )
