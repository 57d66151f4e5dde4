"""A trigger's runs in the Prefect UI: its trends, and per run what changed and a picture of its clusters.

Three markdown artifacts, drawn by `charts`:

* `cluster-trends-<id>`: cluster sizes, quality scores and documents over the latest runs, and a
  conditional trigger's measurements over time. A new version when a run ends (the flow publishes
  it) and, for a conditional trigger, when a check shows another value, fires, or an hour of checks
  has gone by (the evaluator's sweep, through `service.dashboard`): not one version per check.
* `cluster-changes-<id>`: what changed since the previous run (`flows.engine.changes`), one version
  per run, attached to that run.
* `cluster-picture-<id>`: the run's fit sample projected on its two main axes, one version per run.

Prefect keeps every version, so each key's page in the UI is also the history.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, Mapping

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import ArtifactCreate

from prefect_cluster_triggers.blocks.result_store import default_result_store_with
from prefect_cluster_triggers.core.markdown import escape_markdown
from prefect_cluster_triggers.core.models import format_utc
from prefect_cluster_triggers.core.names import prefect_name
from prefect_cluster_triggers.deployments.prefect_objects.event_reads import measurement_history
from prefect_cluster_triggers.deployments.service.charts import (
    MAX_MEASUREMENTS,
    MAX_RUNS,
    MeasurementPoint,
    RunPoint,
    changes_markdown,
    picture_markdown,
    trend_markdown,
)
from prefect_cluster_triggers.flows.engine.changes import ChangeReport
from prefect_cluster_triggers.flows.engine.projection import Projection

TRENDS_REFRESH = timedelta(hours=1)
"""A conditional trigger whose value does not change gets a new trends version at most this often."""


def trends_key(owner: str) -> str:
    """The key of the trends artifact of a trigger (or of an ad-hoc results owner)."""
    return f"cluster-trends-{prefect_name(owner)}"


def changes_key(owner: str) -> str:
    """The key of the artifact that says what changed in each run."""
    return f"cluster-changes-{prefect_name(owner)}"


def picture_key(owner: str) -> str:
    """The key of the artifact holding each run's 2-D picture of its clusters."""
    return f"cluster-picture-{prefect_name(owner)}"


def flow_run_link(run_id: str) -> str:
    """A markdown link to a flow run's page in the Prefect UI, labelled by the run id's first 8 characters."""
    return f"[{escape_markdown(run_id[:8])}](/flow-runs/flow-run/{run_id})"


def measured_text(value: float | None) -> str:
    """A measurement as a page shows it: three significant digits, so that noise in the last digits is no change."""
    return "none yet" if value is None else f"{value:.3g}"


def changes_page(run_id: str, previous_run_id: str | None, report: ChangeReport) -> str:
    """What changed in run `run_id` since `previous_run_id` (None: the first run, every cluster born)."""
    since = (f"Run {flow_run_link(run_id)} compared with the previous run {flow_run_link(previous_run_id)}."
             if previous_run_id else f"Run {flow_run_link(run_id)} is the first: every cluster is new.")
    return f"{since}\n\n{changes_markdown(report)}"


def picture_page(owner: str, run_id: str, projection: Projection, sizes: Mapping[int, int]) -> str:
    """The 2-D picture of run `run_id`'s clusters."""
    return picture_markdown(f"Clusters of {owner}, run {run_id[:8]}", projection, sizes=sizes)


async def publish_trends(client: PrefectClient, owner: str, *, metric: str | None = None, flow_run_id: Any = None,
                         checked: tuple[datetime, float | None] | None = None) -> Any:
    """Write a new version of the owner's trends page: its latest runs (from the results store) and, with
    `metric` (a conditional trigger's), its latest checks. `checked` is the latest check the caller knows of
    (the time and value `trends_due` decided on), which Prefect's events API may not show yet. Returns the artifact."""
    store = await default_result_store_with(client)
    records = await asyncio.to_thread(store.files.history, owner, MAX_RUNS)
    runs = [RunPoint.from_record(r) for r in records if r.get("status") == "completed" and "clusters" in r]
    checks = await measurement_history(client, owner, limit=MAX_MEASUREMENTS) if metric else []
    points = [MeasurementPoint(at=c.checked_at, value=c.value, threshold=c.threshold, fired=c.fired) for c in checks]
    page = trend_markdown(owner, runs, points, metric=metric)
    if checked is None and checks:
        checked = (checks[0].checked_at, checks[0].value)
    metadata = {"runs": str(len(runs)), "checks": str(len(points))}
    if checked is not None:
        metadata |= {"last_check": format_utc(checked[0]), "last_value": measured_text(checked[1])}
    what = f"{len(runs)} runs" + (f", {len(points)} checks of {metric}" if metric else "")
    return await client.create_artifact(ArtifactCreate(
        key=trends_key(owner), type="markdown", data=page, description=f"Trends of {owner}: {what}",
        metadata_=metadata, flow_run_id=flow_run_id))


def trends_due(last_check_at: datetime | None, value: float | None, published: Mapping[str, str] | None) -> bool:
    """Whether a conditional trigger's trends page needs a new version for its latest check (`last_check_at`,
    `value`), given the metadata of its latest version: when that check is newer than the page's and shows
    another value, or `TRENDS_REFRESH` has gone by since the page's last check."""
    if last_check_at is None:
        return False
    shown = (published or {}).get("last_check")
    if not shown:
        return True
    shown_at = datetime.fromisoformat(shown.replace("Z", "+00:00"))
    if last_check_at <= shown_at:
        return False
    return (published or {}).get("last_value") != measured_text(value) or last_check_at - shown_at >= TRENDS_REFRESH

