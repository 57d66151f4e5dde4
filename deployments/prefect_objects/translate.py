"""A trigger becomes one Prefect deployment of the shared clustering flow.

One function, `deployment_fields`, says what that deployment is; the lifecycle API applies
it with the Prefect client and `cluster-triggers render` writes it into `prefect.yaml`, so
`prefect deploy` and `cluster-triggers create` produce the same deployment.

The trigger itself (its id, namespace and normalised request) is the deployment's single
parameter `trigger`: the flow reads its execution config from it, the Prefect UI shows it,
and `get` reads it back exactly.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, Sequence

from pydantic import BaseModel, Field, ValidationError

from prefect_cluster_triggers.core.contract import CreateTriggerRequest, CronScheduleConfig, IntervalScheduleConfig
from prefect_cluster_triggers.core.errors import ContractError
from prefect_cluster_triggers.core.markdown import from_literal_markdown, literal_markdown
from prefect_cluster_triggers.core.models import UtcDateTime, format_utc
from prefect_cluster_triggers.core.settings import DeploymentTarget, get_settings

FLOW_NAME = "cluster-collection"
# The shared flow's description, and so a trigger deployment's where the user gave none: `prefect deploy`
# writes the flow's description into a deployment that has none, and `create` makes the same deployment.
# The parentheses keep it apart from any user text, whose parentheses `literal_markdown` escapes.
FLOW_DESCRIPTION = "Re-clusters a collection's documents when its cluster trigger fires (prefect-cluster-triggers)."
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
    updated_at: UtcDateTime | None = Field(
        None, description="The last change by a command or the failure policy (the trigger's `updated_at`); the "
                          "deployment's own update time also moves when the evaluator writes its state line.")


def stored_record(deployment: Any) -> TriggerRecord | None:
    """The record a trigger's deployment holds; None when it no longer validates (a parameter edited in
    the Prefect UI, or a value Prefect could not keep), so that one such trigger never breaks another's read."""
    try:
        return TriggerRecord.model_validate(deployment.parameters["trigger"])
    except (KeyError, TypeError, ValueError):
        return None


def stored_request(deployment: Any) -> dict[str, Any]:
    """The request as the deployment stores it, whatever it holds: what a PATCH merges into, and what a
    trigger whose record no longer validates shows."""
    trigger = deployment.parameters.get("trigger")
    request = trigger.get("request") if isinstance(trigger, dict) else None
    return request if isinstance(request, dict) else {}


def stamped_parameters(deployment: Any, *, now: datetime, **request_changes: Any) -> dict[str, Any]:
    """The deployment's parameters with its stored record's `updated_at` set to `now` and `request_changes`
    merged into its request, changed in the document as stored (valid or not), nothing else."""
    trigger = deployment.parameters.get("trigger")
    trigger = trigger if isinstance(trigger, dict) else {}
    request = {**stored_request(deployment), **request_changes}
    return {**deployment.parameters, "trigger": {**trigger, "request": request, "updated_at": format_utc(now)}}


def stored_problem(deployment: Any) -> str:
    """Why a deployment's record no longer validates, in the contract's one-line words, and what to do."""
    try:
        TriggerRecord.model_validate(deployment.parameters.get("trigger"))
    except ValidationError as exc:
        problems = "; ".join(str(p).removeprefix("request.") for p in ContractError.from_validation_error(exc).problems)
    else:
        problems = "no problem"
    return f"its stored configuration no longer validates ({problems}): fix it with a PATCH, or delete it"


# The trigger's state line at the top of its deployment's description (see `with_state_line`): written by
# whatever publishes the trigger's page (`service.dashboard`), never part of what the user described.
_STATE_LINE = re.compile(r"^\*\*(cron|interval|event|conditional) trigger\*\*: .* — \[state\]\([^)\s]*\).*$", re.MULTILINE)


_PREFECT_NONE = "None"


def shown_description(description: str | None) -> str:
    """What a deployment's description shows of the user's description: literal text (`literal_markdown`),
    since the Prefect UI renders a description's HTML and links; `user_description` reads it back. None given:
    the flow's description, as `prefect deploy` writes it."""
    return literal_markdown(description) if description else FLOW_DESCRIPTION


def user_description(description: str | None, *, described: bool = True) -> str | None:
    """The description the user gave, without the state line a deployment's description also carries (None when
    empty): what `get` shows and a PATCH keeps. An edit in the Prefect UI shows too (read as literal markdown).

    `described`: whether the trigger's record holds a description. When it holds none, the text "None" is what
    Prefect's client stores for a deployment made without one, not the user's words.
    """
    text = without_state_line(description)
    if not text or text == FLOW_DESCRIPTION or (text == _PREFECT_NONE and not described):
        return None
    return from_literal_markdown(text)


def state_line_of(description: str | None) -> str | None:
    """The state line a deployment's description carries, if any."""
    found = _STATE_LINE.search(description or "")
    return found.group(0) if found else None


def with_state_line(description: str | None, line: str | None) -> str | None:
    """The deployment's description (markdown, as it shows): the state line (when given), a blank line, then
    the user's part of `description` (stripped of any state line it held: one line whatever was written before)."""
    user = without_state_line(description)
    if line is None:
        return user
    if not _STATE_LINE.fullmatch(line):
        raise ValueError(f"not a state line: {line!r}")
    return f"{line}\n\n{user}" if user else line


def without_state_line(description: str | None) -> str | None:
    """The description without its state line (None when nothing else is left)."""
    return _STATE_LINE.sub("", description or "").strip() or None


def namespace_tag(namespace_id: str) -> str:
    """The deployment tag that says which namespace owns a trigger."""
    return f"namespace:{namespace_id}"


def type_tag(trigger_type: str) -> str:
    """The deployment tag that says a trigger's type."""
    return f"trigger-type:{trigger_type}"


def base_tags(record: TriggerRecord) -> list[str]:
    """Tags that find a trigger's deployment: all triggers, its namespace, its type."""
    return [TRIGGER_TAG, namespace_tag(record.namespace_id), type_tag(record.request.trigger_type)]


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


def default_target() -> DeploymentTarget:
    """Where every trigger deployment runs and where its code comes from: one place, the settings
    (`CLUSTER_TRIGGERS_WORK_POOL`, `_JOB_VARIABLES`, `_PULL_STEPS`)."""
    return get_settings().target


def deployment_fields(record: TriggerRecord, *, anchor: datetime, target: DeploymentTarget,
                      paused: bool) -> dict[str, Any]:
    """The trigger's deployment, as a `prefect.yaml` deployment entry (pull steps are project-wide there)."""
    work_pool: dict[str, Any] = {"name": target.work_pool}
    if target.job_variables:
        work_pool["job_variables"] = target.job_variables
    return {
        "name": record.trigger_id,
        "entrypoint": ENTRYPOINT,
        "description": shown_description(record.request.description),
        "tags": base_tags(record),
        "parameters": {"trigger": record.model_dump(mode="json", exclude_none=True)},
        "work_pool": work_pool,
        "schedules": schedules(record.request, anchor=anchor),
        "paused": paused,
        "concurrency_limit": {"limit": 1, "collision_strategy": "ENQUEUE"},
    }
