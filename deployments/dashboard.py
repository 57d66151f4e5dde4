"""The trigger's state in the Prefect UI: one markdown artifact per trigger, kept current.

Prefect's UI shows a trigger's deployment, schedule and runs, but not what our code
decides: the event counter against its threshold, the cooldown, the last condition
measurement, why a trigger is `failed`. Each trigger therefore has a markdown artifact
`cluster-trigger-<id>` (the UI's Artifacts page; Prefect keeps every version, so the page
is also the trigger's history of states), rendered from the same `ClusterTrigger` that
`get` returns. The evaluator's sweep publishes every trigger whose page changed, so the UI
follows any change, made anywhere, within one sweep.
"""

from __future__ import annotations

from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import ArtifactCreate

from prefect_cluster_triggers.blocks._naming import prefect_name
from prefect_cluster_triggers.deployments._models import format_utc
from prefect_cluster_triggers.deployments.contract import (
    ClusterTrigger,
    ConditionalScheduleConfig,
    CronScheduleConfig,
    EventScheduleConfig,
    TriggerStatus,
)
from prefect_cluster_triggers.deployments.fire_times import describe_wait

_PAGE = 200


def artifact_key(trigger_id: str) -> str:
    return f"cluster-trigger-{prefect_name(trigger_id)}"


def markdown(trigger: ClusterTrigger) -> str:
    """The trigger's page: what it is waiting for and where it stands (no `updated_at`: a page changes
    only when something a user would read changes)."""
    config = trigger.schedule_config
    rows: list[tuple[str, str]] = [("status", _status(trigger)), ("rule", _rule(config))]
    if isinstance(config, EventScheduleConfig):
        rows += [("event counter", f"{trigger.event_counter} / {config.event_threshold}"),
                 ("cooldown", f"{config.cooldown_seconds} s, last applied {_when(trigger.last_cooldown_at)}")]
    if isinstance(config, ConditionalScheduleConfig):
        measured = "failed: " + trigger.last_check_error if trigger.last_check_error else (
            "none yet" if trigger.last_measurement is None else f"{trigger.last_measurement:.4g}")
        rows += [("last measurement", f"{measured} (threshold {config.threshold:g}), "
                                      f"checked {_when(trigger.last_condition_check_at)}")]
    rows += [
        ("next run", _when(trigger.next_scheduled_at, none="none planned")),
        ("executions", f"{trigger.execution_count}, {trigger.consecutive_failures} failed in a row"),
        ("last run", _last_run(trigger)),
        ("collections", ", ".join(trigger.execution_config.collection_ids) if trigger.execution_config else
         f"cluster definition {trigger.cluster_id} (not found)"),
        ("namespace", trigger.namespace_id),
    ]
    body = "\n".join(f"| {name} | {_cell(value)} |" for name, value in rows)
    title = f"### Cluster trigger `{trigger.trigger_id}`" + (f": {trigger.description}" if trigger.description else "")
    return f"{title}\n\n| | now |\n|---|---|\n{body}\n"


async def publish_changed(client: PrefectClient, triggers: list[ClusterTrigger]) -> int:
    """Write a new version of each trigger's page that differs from its latest one; how many were written."""
    latest = await _latest_pages(client, [artifact_key(t.trigger_id) for t in triggers])
    written = 0
    for trigger in triggers:
        page, key = markdown(trigger), artifact_key(trigger.trigger_id)
        if latest.get(key) != page:
            await client.create_artifact(ArtifactCreate(
                key=key, type="markdown", data=page, description=f"Cluster trigger {trigger.trigger_id}: "
                f"{trigger.status.value} (what `cluster-triggers get` shows)"))
            written += 1
    return written


async def _latest_pages(client: PrefectClient, keys: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for start in range(0, len(keys), _PAGE):
        response = await client.request("POST", "/artifacts/latest/filter", json={
            "artifacts": {"key": {"any_": keys[start : start + _PAGE]}}, "limit": _PAGE})
        found.update({a["key"]: a["data"] for a in response.json()})
    return found


def _status(trigger: ClusterTrigger) -> str:
    if trigger.status == TriggerStatus.failed:
        return (f"**failed**: {trigger.consecutive_failures} runs failed in a row, the last with "
                f"\"{trigger.last_execution_error}\"; runs stopped until `cluster-triggers resume {trigger.trigger_id}`")
    if trigger.status == TriggerStatus.disabled:
        return "**disabled** (deleted): no more runs; history kept"
    return f"**{trigger.status.value}**"


def _rule(config: Any) -> str:
    if isinstance(config, CronScheduleConfig):
        return f"runs on cron `{config.cron_expression}` ({config.timezone})"
    if isinstance(config, (EventScheduleConfig, ConditionalScheduleConfig)):
        return describe_wait(config)
    return f"runs every {config.interval_seconds} s"


def _last_run(trigger: ClusterTrigger) -> str:
    if trigger.last_execution_job_id is None:
        return "none yet"
    error = f": {trigger.last_execution_error}" if trigger.last_execution_error else ""
    return f"{trigger.last_execution_status}{error} (flow run {trigger.last_execution_job_id}, {_when(trigger.last_triggered_at)})"


def _when(instant: Any, *, none: str = "never") -> str:
    return format_utc(instant) if instant else none


def _cell(text: str) -> str:
    """Table cells hold one line without pipes."""
    return text.replace("|", "\\|").replace("\n", " ")
