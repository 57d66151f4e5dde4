"""The trigger's state in the Prefect UI: one markdown artifact per trigger, and a line on its deployment.

Prefect's UI shows a trigger's deployment, schedule and runs, but not what our code
decides: the event counter against its threshold, the cooldown, the last condition
measurement, why a trigger is `failed`. Each trigger therefore has a markdown artifact
`cluster-trigger-<id>` (the UI's Artifacts page), rendered from the same `ClusterTrigger`
that `get` returns, and its deployment's description starts with one state line linking to
it (the deployment page's Description tab), so the deployment leads to the state in one
click. The evaluator's sweep publishes every trigger whose page or line changed, so the UI
follows any change, made anywhere, within one sweep.

A new version of a page only when something a user reads on it changed: no check time, a
measurement to three significant digits (the history of checks is on the trends page,
`service.run_pages`), so a conditional trigger checked every minute with a steady value
writes no version at all. Prefect keeps every version, so the artifact's page is also the
trigger's history of states; each version's description says in one line what changed
(Prefect shows it above the page and in an opened history entry). The page is a short
table of one-line cells (Prefect's V1 UI cuts a table cell at the table's width) and
paragraphs for text of any length: the rule, an error, the collections.
"""

from __future__ import annotations

import asyncio
import html
import re
from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import ArtifactCreate, DeploymentUpdate
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowFilter, FlowFilterName
from prefect.logging import get_logger

from prefect_cluster_triggers.core.contract import (
    ClusterTrigger,
    ConditionalScheduleConfig,
    CronScheduleConfig,
    EventScheduleConfig,
    TriggerStatus,
)
from prefect_cluster_triggers.core.errors import ClusterTriggersError
from prefect_cluster_triggers.core.fire_times import describe_wait
from prefect_cluster_triggers.core.markdown import escape_markdown
from prefect_cluster_triggers.core.names import prefect_name
from prefect_cluster_triggers.deployments.prefect_objects.client import CONNECTIONS, PAGE
from prefect_cluster_triggers.deployments.prefect_objects.translate import FLOW_NAME, state_line_of, with_state_line
from prefect_cluster_triggers.deployments.prefect_objects.trigger_lock import changing
from prefect_cluster_triggers.deployments.service import run_pages

_logger = get_logger("cluster_triggers.dashboard")
_SUMMARY_LIMIT = 300  # characters of a version's one-line summary of what changed
_FACT_LIMIT = 500  # characters of a fact kept in the artifact's metadata (Prefect's limit per value)


def artifact_key(trigger_id: str) -> str:
    """The key of the trigger's markdown artifact (its page in the Prefect UI)."""
    return f"cluster-trigger-{prefect_name(trigger_id)}"


def facts(trigger: ClusterTrigger) -> dict[str, str]:
    """What the trigger's page says, by name, in words (no time that moves by itself): the page shows
    these, and a new version says which of them changed."""
    config = trigger.schedule_config
    found = {"status": _status(trigger), "rule": _rule(config)}
    if isinstance(config, EventScheduleConfig):
        found["event counter"] = f"{trigger.event_counter} / {config.event_threshold}"
        found["cooldown"] = f"{config.cooldown_seconds} s, last applied {_when(trigger.last_cooldown_at)}"
    if isinstance(config, ConditionalScheduleConfig):
        found["last measurement"] = (
            "check failed" if trigger.last_check_error else run_pages.measured_text(trigger.last_measurement)
        ) + f" (threshold {config.threshold:g})"
        if trigger.last_check_error:
            found["check error"] = trigger.last_check_error
    found["next run"] = _when(trigger.next_scheduled_at, none="none planned")
    found["executions"] = f"{trigger.execution_count}, {trigger.consecutive_failures} failed in a row"
    found["last run"] = (f"{trigger.last_execution_status}, {_when(trigger.last_triggered_at)}"
                         if trigger.last_execution_job_id else "none yet")
    if trigger.last_execution_job_id:
        found["last run id"] = trigger.last_execution_job_id
    if trigger.last_execution_error:
        found["last error"] = trigger.last_execution_error
    found["collections"] = (", ".join(trigger.execution_config.collection_ids) if trigger.execution_config
                            else f"cluster definition {trigger.cluster_id} (not found)")
    found["namespace"] = trigger.namespace_id
    return found


def markdown(trigger: ClusterTrigger) -> str:
    """The trigger's page: what it waits for and where it stands (see `facts`)."""
    said = facts(trigger)
    title = f"### Cluster trigger `{_code(trigger.trigger_id)}`" + (
        f": {_text(trigger.description)}" if trigger.description else "")
    rows = [(name, _text(said[name])) for name in ("event counter", "cooldown", "last measurement", "next run",
                                                   "executions") if name in said]
    if "last run id" in said:
        rows.append(("last run", f"{_text(said['last run'])}, run {run_pages.flow_run_link(said['last run id'])}"))
    else:
        rows.append(("last run", _text(said["last run"])))
    rows.append(("namespace", _text(said["namespace"])))
    table = "\n".join(f"| {name} | {_cell(value)} |" for name, value in rows)
    paragraphs = [f"{said['status']}: {_text(said['rule'])}"]
    paragraphs += [f"**{name}**: {_text(said[name])}" for name in ("check error", "last error") if name in said]
    paragraphs.append(f"**collections**: {_text(said['collections'])}")
    owner = trigger.trigger_id
    paragraphs.append(f"[trends](/artifacts/key/{run_pages.trends_key(owner)}) · "
                      f"[changes in each run](/artifacts/key/{run_pages.changes_key(owner)}) · "
                      f"[clusters](/artifacts/key/clusters-{prefect_name(owner)})")
    return "\n\n".join([title, paragraphs[0], f"| | now |\n|---|---|\n{table}", *paragraphs[1:]]) + "\n"


def changed(before: dict[str, str] | None, after: dict[str, str]) -> str:
    """One line saying which facts changed, e.g. `event counter 30 / 100 → 40 / 100; status active → paused`."""
    if not before:
        return f"first version: {_plain_status(after['status'])}"
    parts = [f"{name} {_short(before.get(name, '-'))} → {_short(value)}" for name, value in after.items()
             if before.get(name) != value and name != "last run id"]
    parts += [f"{name} cleared" for name in before if name not in after and name != "last run id"]
    line = "; ".join(parts) or "page layout"
    return line if len(line) <= _SUMMARY_LIMIT else line[: _SUMMARY_LIMIT - 1] + "…"


def state_line(trigger: ClusterTrigger, page_id: Any) -> str:
    """The one line at the top of the trigger's deployment description: what it waits for where a schedule
    would be, where it stands, and a link to its page (the version `page_id`) and its trends."""
    config = trigger.schedule_config
    last = _short_when(trigger.last_triggered_at)
    if isinstance(config, EventScheduleConfig):
        what = (f"{trigger.event_counter} / {config.event_threshold} {config.event_type} on {config.collection_id}, "
                f"cooldown {config.cooldown_seconds} s, last fired {last}")
    elif isinstance(config, ConditionalScheduleConfig):
        value = "check failed" if trigger.last_check_error else run_pages.measured_text(trigger.last_measurement)
        what = (f"{config.metric} {value} of threshold {config.threshold:g}, checked every "
                f"{config.check_interval_seconds} s, last fired {last}")
    elif isinstance(config, CronScheduleConfig):
        what = f"cron {config.cron_expression} ({config.timezone}), next run {_short_when(trigger.next_scheduled_at)}, last run {last}"
    else:
        what = f"every {config.interval_seconds} s, next run {_short_when(trigger.next_scheduled_at)}, last run {last}"
    kind = trigger.trigger_type.value if hasattr(trigger.trigger_type, "value") else str(trigger.trigger_type)
    return (f"**{kind} trigger**: {trigger.status.value}, {escape_markdown(what)} — [state](/artifacts/artifact/{page_id}) · "
            f"[trends](/artifacts/key/{run_pages.trends_key(trigger.trigger_id)})")


async def publish_changed(client: PrefectClient, triggers: list[ClusterTrigger]) -> int:
    """Bring each trigger's page and state line up to date, writing only what changed; how many pages were
    written. Conditional triggers' trends get a new version when `run_pages.trends_due` says so. Triggers
    are published `CONNECTIONS` at a time: each is a few calls, and a sweep after a burst of creates has many."""
    latest = await _latest(client, [artifact_key(t.trigger_id) for t in triggers])
    descriptions = await _descriptions(client, [t.trigger_id for t in triggers])
    parallel = asyncio.Semaphore(CONNECTIONS)

    async def publish(trigger: ClusterTrigger) -> bool:
        async with parallel:
            key, said = artifact_key(trigger.trigger_id), facts(trigger)
            page, found = markdown(trigger), latest.get(key)
            written = found is None or found["data"] != page
            if written:
                page_id = (await client.create_artifact(ArtifactCreate(
                    key=key, type="markdown", data=page, description=f"{trigger.trigger_id}: "
                    f"{changed(found and found.get('metadata_'), said)}",
                    metadata_={k: v[:_FACT_LIMIT] for k, v in said.items()}))).id
            else:
                page_id = found["latest_id"]
            line = state_line(trigger, page_id)
            if trigger.trigger_id in descriptions and state_line_of(descriptions[trigger.trigger_id]) != line:
                await _write_state_line(client, trigger.trigger_id, line)
            return written

    written = sum(await asyncio.gather(*(publish(t) for t in triggers)))
    await _publish_due_trends(client, [t for t in triggers if isinstance(t.schedule_config, ConditionalScheduleConfig)])
    return written


async def _write_state_line(client: PrefectClient, trigger_id: str, line: str) -> None:
    """Put `line` at the top of the deployment's description, keeping the rest; under the trigger's lock, from a
    fresh read, so a PATCH or an edit made meanwhile is kept. A trigger being changed is left to the next sweep."""
    try:
        async with changing(client, trigger_id, wait=1.0):
            deployment = await client.read_deployment_by_name(f"{FLOW_NAME}/{trigger_id}")
            if state_line_of(deployment.description) != line:
                await client.update_deployment(deployment.id, DeploymentUpdate(
                    description=with_state_line(deployment.description, line)))
    except ClusterTriggersError as exc:  # busy (409) or gone meanwhile: the next sweep tries again
        _logger.info("state line of trigger %s not written now: %s", trigger_id, exc)


async def _publish_due_trends(client: PrefectClient, triggers: list[ClusterTrigger]) -> None:
    if not triggers:
        return
    published = await _latest(client, [run_pages.trends_key(t.trigger_id) for t in triggers])
    for trigger in triggers:
        found = published.get(run_pages.trends_key(trigger.trigger_id))
        if run_pages.trends_due(trigger.last_condition_check_at, trigger.last_measurement,
                                found.get("metadata_") if found else None):
            try:
                await run_pages.publish_trends(client, trigger.trigger_id, metric=trigger.schedule_config.metric,
                                               checked=(trigger.last_condition_check_at, trigger.last_measurement))
            except Exception:  # a view: the next check tries again
                _logger.warning("trends of trigger %s not published", trigger.trigger_id, exc_info=True)


async def _latest(client: PrefectClient, keys: list[str]) -> dict[str, dict[str, Any]]:
    """The latest version of each artifact key that has one: its data, metadata and `latest_id`."""
    found: dict[str, Any] = {}
    for start in range(0, len(keys), PAGE):
        response = await client.request("POST", "/artifacts/latest/filter", json={
            "artifacts": {"key": {"any_": keys[start : start + PAGE]}}, "limit": PAGE})
        found.update({a["key"]: a for a in response.json()})
    return found


async def _descriptions(client: PrefectClient, trigger_ids: list[str]) -> dict[str, str | None]:
    """Each trigger deployment's description, by trigger id: one call per page of triggers."""
    found: dict[str, str | None] = {}
    for start in range(0, len(trigger_ids), PAGE):
        page = await client.read_deployments(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=trigger_ids[start : start + PAGE])),
            limit=PAGE)
        found.update({d.name: d.description for d in page})
    return found


def _status(trigger: ClusterTrigger) -> str:
    if trigger.status == TriggerStatus.failed:
        return (f"**failed** ({trigger.consecutive_failures} runs failed in a row; runs stopped until "
                f"`cluster-triggers resume {_code(trigger.trigger_id)}`)")
    if trigger.status == TriggerStatus.disabled:
        return "**disabled** (deleted: no more runs, history kept)"
    return f"**{trigger.status.value}**"


def _plain_status(status: str) -> str:
    return status.replace("**", "").replace("`", "")


def _rule(config: Any) -> str:
    if isinstance(config, CronScheduleConfig):
        return f"runs on cron {config.cron_expression} ({config.timezone})"
    if isinstance(config, (EventScheduleConfig, ConditionalScheduleConfig)):
        return describe_wait(config)
    return f"runs every {config.interval_seconds} s"


def _when(instant: Any, *, none: str = "never") -> str:
    return instant.strftime("%Y-%m-%d %H:%M UTC") if instant else none


def _short_when(instant: Any) -> str:
    return instant.strftime("%Y-%m-%d %H:%MZ") if instant else "never"


def _short(value: str) -> str:
    value = _plain_status(value)
    return value if len(value) <= 60 else value[:59] + "…"


def _text(value: str) -> str:
    """Text from users or their data (a description, an error quoting a value) shown as literal text: HTML
    escaped and the punctuation of markdown's code, links and images backslash-escaped, so it opens none of them."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", html.escape(value.replace("\n", " "), quote=False))


_MARKDOWN_PUNCTUATION = re.compile(r"([\\`\[\]()!])")  # what opens code, links and images, and the escape


def _code(text: str) -> str:
    """Text inside a markdown code span: one line, no backtick to close it."""
    return " ".join(text.split()).replace("`", "'")


def _cell(text: str) -> str:
    """Table cells hold one line without pipes."""
    return text.replace("|", "\\|").replace("\n", " ")
