"""Trigger records: what listing reads, so `ls` of N triggers costs the same few API calls as of one.

Prefect's API has no per-deployment grouped run count, so an exact `execution_count` costs
one call per trigger. Instead, whoever learns a trigger's figures keeps them in a record
(`records`) per trigger, read for a whole page in one call:

* `cluster-trigger-runs-<id>`: the run figures (count, failures, newest run), written by the
  shared flow when a run starts and when it ends (its state hooks), and by every change
  through the lifecycle, computed exactly from the trigger's flow runs at that moment;
* `cluster-trigger-state-<id>`: what the evaluator last decided (event counter, cooldown,
  held-back firing, last condition check), written when it changes.

A run that ends without running our code (a killed process is marked Crashed by its worker;
a run cancelled before it started) leaves its runs record behind; the evaluator's sweep
finds such runs of every trigger with one query and recomputes just those triggers
(`recount_missed`), so `get` and `ls`, which read the same records, show them within one
sweep and always agree.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from pydantic import BaseModel, Field

from prefect_cluster_triggers.core.contract import ConditionalScheduleConfig, EventScheduleConfig
from prefect_cluster_triggers.core.models import UtcDateTime
from prefect_cluster_triggers.core.names import prefect_name
from prefect_cluster_triggers.core.settings import get_settings
from prefect_cluster_triggers.deployments.prefect_objects.client import PAGE
from prefect_cluster_triggers.deployments.prefect_objects.status import (
    EXECUTED,
    STARTED,
    RunFigures,
    in_states,
    of_deployment,
    run_figures_of,
)
from prefect_cluster_triggers.deployments.prefect_objects.records import read, save

RUNS, STATE = "runs", "state"  # the two records of a trigger


class EvaluatorState(BaseModel):
    """What the evaluator last decided for an event or conditional trigger."""

    event_counter: int = 0
    last_cooldown_at: UtcDateTime | None = None
    held_back_until: UtcDateTime | None = Field(None, description="Due time of a firing held back by the cooldown.")
    last_measurement: float | None = None
    last_condition_check_at: UtcDateTime | None = None
    last_check_error: str | None = None

    def shown(self, config: Any) -> dict[str, Any]:
        """The fields a trigger of this schedule shows (the rest stay at their defaults)."""
        if isinstance(config, EventScheduleConfig):
            return self.model_dump(include={"event_counter", "last_cooldown_at"})
        if isinstance(config, ConditionalScheduleConfig):
            return self.model_dump(include={"last_measurement", "last_condition_check_at", "last_check_error"})
        return {}


def record_name(kind: str, trigger_id: str) -> str:
    """The record holding a trigger's `kind` record (RUNS or STATE)."""
    return f"cluster-trigger-{kind}-{prefect_name(trigger_id)}"


def record_names(trigger_ids: list[str]) -> list[str]:
    """Both records of each trigger, as one `read` takes them."""
    return [record_name(kind, i) for i in trigger_ids for kind in (RUNS, STATE)]


async def run_figures(client: PrefectClient, deployment_id: Any, *, now: datetime) -> RunFigures:
    """The trigger's run figures, exactly, from its flow runs (three concurrent calls)."""
    by_deployment = of_deployment(deployment_id)
    count, recent, latest = await asyncio.gather(
        client.count_flow_runs(deployment_filter=by_deployment, flow_run_filter=in_states(*EXECUTED)),
        client.read_flow_runs(deployment_filter=by_deployment, flow_run_filter=in_states(*EXECUTED),
                              sort=FlowRunSort.START_TIME_DESC, limit=get_settings().rules.max_consecutive_failures + 1),
        client.read_flow_runs(deployment_filter=by_deployment, flow_run_filter=in_states(*STARTED),
                              sort=FlowRunSort.START_TIME_DESC, limit=1),
    )
    return run_figures_of(count, recent, latest[0] if latest else None, as_of=now)


async def runs_missed(client: PrefectClient, trigger_ids: dict[Any, str], figures: dict[str, RunFigures]) -> set[Any]:
    """Ids of deployments (keys of `trigger_ids`) with a run that ended after their record without our code running.

    Those are crashed runs (a killed process) and runs cancelled before they started; they
    are rare, so one query answers for any number of triggers. A trigger without a runs record
    counts as missed too; so does everyone when there are too many such runs to read at once.
    """
    if not trigger_ids:
        return set()
    oldest = min((f.as_of for f in figures.values()), default=None)
    runs = await client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=list(trigger_ids))),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CRASHED, StateType.CANCELLED])),
            end_time=FlowRunFilterEndTime(after_=oldest) if oldest else None,
        ),
        limit=PAGE,
    )
    if len(runs) == PAGE:
        return set(trigger_ids)
    missed = {deployment_id for deployment_id, trigger_id in trigger_ids.items() if trigger_id not in figures}
    for run in runs:
        recorded = figures.get(trigger_ids.get(run.deployment_id, ""))
        if recorded is not None and run.end_time and run.end_time > recorded.as_of:
            missed.add(run.deployment_id)
    return missed


async def recount_missed(client: PrefectClient, trigger_ids: dict[Any, str], *, now: datetime) -> list[str]:
    """Recompute and save the runs records that missed a run (see `runs_missed`); the triggers recounted.

    `trigger_ids` maps deployment ids to trigger ids.
    """
    stored = await read(client, [record_name(RUNS, t) for t in trigger_ids.values()])
    figures = {t: RunFigures.model_validate(stored[record_name(RUNS, t)])
               for t in trigger_ids.values() if record_name(RUNS, t) in stored}
    missed = await runs_missed(client, trigger_ids, figures)
    for deployment_id in missed:
        await save(client, record_name(RUNS, trigger_ids[deployment_id]), await run_figures(client, deployment_id, now=now))
    return [trigger_ids[d] for d in missed]
