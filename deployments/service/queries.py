"""The trigger service's reads: get, list, history, evaluations, where results live.

Everything a trigger reports is read back from its deployment, its flow runs and the records
kept beside them (`prefect_objects.trigger_records`), so the Prefect UI and this API never
disagree. A page of any size costs the same few Prefect calls.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime, timezone
from typing import Any

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import DeploymentSort, FlowRunSort
from pydantic import BaseModel, Field, ValidationError

from prefect_cluster_triggers.blocks.cluster_definition import ClusterDefinition
from prefect_cluster_triggers.blocks.files.result_files import ResultFiles
from prefect_cluster_triggers.blocks.result_store import default_result_store, results_owner
from prefect_cluster_triggers.core.contract import (
    IDENTIFIER_PATTERN,
    ClusterTrigger,
    ConditionalScheduleConfig,
    EventScheduleConfig,
    ExecutionConfig,
    ExecutionStatus,
)
from prefect_cluster_triggers.core.errors import Conflict, ContractError, NotFound
from prefect_cluster_triggers.core.fire_times import next_cron_time, next_interval_slot
from prefect_cluster_triggers.core.models import UtcDateTime
from prefect_cluster_triggers.core.names import namespace_id_of, owned_name
from prefect_cluster_triggers.core.settings import get_settings
from prefect_cluster_triggers.deployments.prefect_objects import batched_reads, records, trigger_records
from prefect_cluster_triggers.deployments.prefect_objects.client import PAGE, prefect_client
from prefect_cluster_triggers.deployments.prefect_objects.cursors import load_checkpoint
from prefect_cluster_triggers.deployments.prefect_objects.event_reads import (
    Evaluation,
    evaluations,
    event_plan,
    last_measurement,
)
from prefect_cluster_triggers.deployments.prefect_objects.status import (
    FAILURES,
    STARTED,
    RunFigures,
    cluster_trigger,
    execution_status,
    in_states,
    of_deployment,
    started_at,
    status_of,
    unusable_trigger,
)
from prefect_cluster_triggers.deployments.prefect_objects.translate import (
    TRIGGER_TAG,
    TriggerRecord,
    as_scheduled,
    namespace_tag,
    stored_problem,
    stored_record,
    type_tag,
)
from prefect_cluster_triggers.deployments.prefect_objects.trigger_records import EvaluatorState


class Execution(BaseModel):
    """One execution of a trigger, as `history` lists it."""

    job_id: str
    triggered_at: UtcDateTime | None
    status: ExecutionStatus
    execution_time_ms: int | None
    error: str | None
    num_clusters: int | None
    num_documents: int | None


async def get_trigger(trigger_id: str, namespace_id: str | None = None) -> ClusterTrigger:
    """One trigger of the namespace, as `ls` shows it, with its event or condition state read live."""
    async with prefect_client() as client:
        return await read_trigger(client, trigger_id, namespace(namespace_id))


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

    A fixed number of Prefect calls whatever the page size (see `prefect_objects.trigger_records`):
    the deployments, the trigger records and the cluster definitions.
    """
    namespace_id = namespace(namespace_id)
    tags = [TRIGGER_TAG, namespace_tag(namespace_id)] + ([type_tag(trigger_type)] if trigger_type else [])
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
        deployment, _ = await find_trigger(client, trigger_id, namespace_id)
        runs_filter, by_deployment = in_states(*states), of_deployment(deployment.id)
        runs: list[FlowRun] = []
        while len(runs) < limit:  # Prefect answers at most 200 runs per call
            page = await client.read_flow_runs(
                deployment_filter=by_deployment, flow_run_filter=runs_filter, sort=FlowRunSort.START_TIME_DESC,
                offset=offset + len(runs), limit=min(PAGE, limit - len(runs)),
            )
            runs += page
            if len(page) < PAGE:
                break
        total = await client.count_flow_runs(deployment_filter=by_deployment, flow_run_filter=runs_filter)
        store = await asyncio.to_thread(default_result_store)
    return [execution(run, trigger_id, store.files) for run in runs], total


class RunChanges(BaseModel):
    """What changed in one run since the previous run of the same trigger (or results), as the run stored it
    (`flows.engine.changes.ChangeReport.to_dict`). Cluster ids are the stable ids; -1 is noise."""

    run_id: str
    previous_run_id: str | None = Field(description="The run compared with; null for a first run, where every "
                                                    "cluster is born and every document added.")
    summary: str = Field(description="One line: moved, added, removed, born, split, merged, vanished, continued.")
    threshold: float = Field(description="Share of a cluster's present members that makes a link substantial.")
    documents: dict[str, int] = Field(description="previous, current, common, added, removed, moved, duplicates_ignored")
    moved: list[dict[str, Any]] = Field(description="The first moved documents: id, from, to.")
    moved_total: int
    moved_truncated: bool
    move_counts: list[dict[str, int]] = Field(description="Documents per (from, to) pair, most first.")
    move_counts_truncated: bool
    born: list[int]
    vanished: list[int]
    split: list[dict[str, Any]] = Field(description="cluster, into, shares")
    merged: list[dict[str, Any]] = Field(description="cluster, sources, shares")
    continued: list[dict[str, int]] = Field(description="previous, current")


async def run_changes(run_id: str, namespace_id: str | None = None, *, trigger_id: str | None = None) -> RunChanges:
    """What changed in run `run_id` since the previous run: a run of the namespace's trigger `trigger_id`, or
    (without it) any run of the namespace, a trigger's or ad-hoc.

    Raises:
        NotFound: no such run, a run of another trigger or namespace (the same answer), or a run stored
            before change reports were kept.
    """
    namespace_id = namespace(namespace_id)
    missing = NotFound(f"run {run_id!r}" + (f" of trigger {trigger_id!r}" if trigger_id else "") + " not found")
    try:
        uuid.UUID(run_id)
    except ValueError:
        raise missing from None
    store = await asyncio.to_thread(default_result_store)
    async with prefect_client() as client:
        if trigger_id is not None:
            await find_trigger(client, trigger_id, namespace_id)
            owner: str | None = trigger_id
        else:
            owner = await asyncio.to_thread(store.files.owner_of_run, run_id)
            if owner is None:
                raise missing
            record = await asyncio.to_thread(store.files.record_of, owner, run_id)
            if record.get("trigger_id"):
                if owner != record["trigger_id"]:
                    raise missing
                try:
                    await find_trigger(client, owner, namespace_id)
                except NotFound:
                    raise missing from None
            elif owner != results_owner(namespace_id, str(record.get("results_id"))):
                raise missing
    try:
        stored = await asyncio.to_thread(store.files.run, owner, run_id)
    except NotFound:
        raise missing from None
    changes = await asyncio.to_thread(stored.changes)
    if changes is None:
        raise NotFound(f"run {run_id!r} has no change report: it ran before runs kept one")
    return RunChanges.model_validate(changes)


async def trigger_evaluations(trigger_id: str, namespace_id: str | None = None, *, limit: int = 50) -> list[Evaluation]:
    """Why the trigger did or did not fire, evaluation by evaluation, newest first."""
    async with prefect_client() as client:
        await find_trigger(client, trigger_id, namespace_id)
        return await evaluations(client, trigger_id, limit=limit)


async def results_owner_of(results_id: str, namespace_id: str | None = None) -> str:
    """Where `results ID` reads: the namespace's trigger of that id, else the namespace's ad-hoc results
    of that id (a cluster id or the results_id a run printed); never another namespace's."""
    namespace_id = namespace(namespace_id)
    async with prefect_client() as client:
        try:
            await find_trigger(client, results_id, namespace_id)
        except NotFound:
            return results_owner(namespace_id, results_id)
    return results_id


def run_sync(coroutine: Any) -> Any:
    """Run one lifecycle call from synchronous code (the CLI)."""
    return asyncio.run(coroutine)


def namespace(namespace: str | None) -> str:
    """The namespace id for a name or id given by a caller; the default namespace when none."""
    return namespace_id_of(namespace or get_settings().rules.namespace)


async def find_trigger(client: PrefectClient, trigger_id: str, namespace_id: str | None) -> tuple[Any, TriggerRecord | None]:
    """The namespace's trigger and its record (None when the stored record no longer validates).

    Raises:
        NotFound: no such trigger in this namespace (another namespace's answers the same).
    """
    namespace_id = namespace(namespace_id)
    if not re.fullmatch(IDENTIFIER_PATTERN, trigger_id):
        raise NotFound(f"trigger {trigger_id!r} not found")
    deployment = await batched_reads.trigger_deployment(client, trigger_id)
    if deployment is None or namespace_tag(namespace_id) not in deployment.tags or TRIGGER_TAG not in deployment.tags:
        raise NotFound(f"trigger {trigger_id!r} not found")
    return deployment, stored_record(deployment)


async def find_usable(client: PrefectClient, trigger_id: str, namespace_id: str | None) -> tuple[Any, TriggerRecord]:
    """The trigger, when its stored record still validates: what running it, resuming it and its
    condition or event state need.

    Raises:
        Conflict: the record was edited (in the Prefect UI, or by a Prefect that dropped a value)
            into something the contract refuses.
    """
    deployment, record = await find_trigger(client, trigger_id, namespace_id)
    if record is None:
        raise Conflict(f"trigger {trigger_id!r}: {stored_problem(deployment)}")
    return deployment, record


async def read_trigger(client: PrefectClient, trigger_id: str, namespace_id: str) -> ClusterTrigger:
    """One trigger as listing shows it (the same records, corrected the same way, so `get` and `ls` agree),
    with an event or conditional trigger's state read live: two Prefect calls at once."""
    (deployment, _), stored = await asyncio.gather(
        find_trigger(client, trigger_id, namespace_id),
        batched_reads.record_values(client, trigger_records.record_names([trigger_id])))
    return one(deployment, await statuses(client, [deployment], stored=stored, live=True))


def one(deployment: Any, shown: list[ClusterTrigger]) -> ClusterTrigger:
    """The one trigger `statuses` showed; one too broken to show at all is a conflict to fix, not a 500."""
    if not shown:
        raise Conflict(f"trigger {deployment.name!r}: {stored_problem(deployment)}")
    return shown[0]


async def statuses(client: PrefectClient, deployments: list[Any], *, stored: dict[str, Any] | None = None,
                    live: bool = False) -> list[ClusterTrigger]:
    """Many triggers from their records (`stored`, when already read): the same few calls for a page of any
    size. A trigger without a runs record yet (made by `prefect deploy`) is counted now and the count kept.
    With `live`, event and conditional state is read from Prefect, not from the evaluator's snapshot. A trigger
    whose stored record no longer validates is shown `failed` with `stored_problem` saying why."""
    ids = [d.name for d in deployments]  # a trigger's deployment is named by its id
    if stored is None:
        stored = await records.read(client, trigger_records.record_names(ids))
    figures = {
        i: RunFigures.model_validate(stored[trigger_records.record_name(trigger_records.RUNS, i)])
        for i in ids if trigger_records.record_name(trigger_records.RUNS, i) in stored
    }
    now = datetime.now(timezone.utc)
    parsed_records = [stored_record(d) for d in deployments]
    wanted = {owned_name(r.namespace_id, r.request.cluster_id) for r in parsed_records if r and r.request.cluster_id}
    definitions = await _cluster_definitions(client, wanted) if wanted else {}
    for deployment in deployments:
        if deployment.name not in figures:  # rare: count this one and keep it for next time
            figures[deployment.name] = await trigger_records.run_figures(client, deployment.id, now=now)
            await records.save(client, trigger_records.record_name(trigger_records.RUNS, deployment.name), figures[deployment.name])
    triggers = []
    for deployment, record in zip(deployments, parsed_records):
        if record is None:
            try:
                triggers.append(unusable_trigger(deployment, stored_problem(deployment), figures[deployment.name]))
            except ValidationError:  # not even its type is left (its tags were edited): listed as nothing
                pass
            continue
        if live:
            state = await _trigger_state(client, deployment, record)
        else:
            state = EvaluatorState.model_validate(stored.get(trigger_records.record_name(trigger_records.STATE, record.trigger_id), {}))
        request = record.request
        definition = owned_name(record.namespace_id, request.cluster_id) if request.cluster_id else None
        triggers.append(cluster_trigger(
            deployment,
            record,
            execution_config=request.execution_config or definitions.get(definition),
            figures=figures[record.trigger_id],
            next_scheduled_at=_next_slot(deployment, request.schedule_config, state, now),
            extra=state.shown(request.schedule_config),
        ))
    return triggers


async def _cluster_definitions(client: PrefectClient, names: set[str]) -> dict[str, ExecutionConfig]:
    """The valid cluster definitions among `names` (their block names, so each namespace's own), by block
    name: one call per page of definitions, whatever the number of triggers."""
    definitions: dict[str, ExecutionConfig] = {}
    offset = 0
    while True:
        try:
            page = await client.read_block_documents_by_type("cluster-definition", offset=offset, limit=PAGE)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 404:
                return {}  # no definition yet: its block type is registered with the first one
            raise
        for document in page:
            if document.name not in names:
                continue
            try:
                definitions[document.name] = ClusterDefinition.model_validate(document.data).execution_config()
            except (ValidationError, ContractError):
                continue  # broken definitions show as no config, as in `get`
        if len(page) < PAGE:
            return definitions
        offset += len(page)


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
        planned, _ = await event_plan(client, deployment, record, stored, pages=1)  # the checkpoint and one page newer
        plan = planned.before()  # the evaluator makes its firings, not a read
        return EvaluatorState(event_counter=plan.event_counter, last_cooldown_at=plan.last_cooldown_at,
                              held_back_until=plan.held_back_until)
    if isinstance(config, ConditionalScheduleConfig):
        measurement = await last_measurement(client, record.trigger_id)
        if measurement is not None:
            return EvaluatorState(last_measurement=measurement.value, last_condition_check_at=measurement.checked_at,
                                  last_check_error=measurement.error)
    return EvaluatorState()


def execution(run: FlowRun, trigger_id: str, results: ResultFiles) -> Execution:
    """A flow run as an execution of the trigger, with the figures its results recorded."""
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
