"""Trigger events: what happens to a trigger, as Prefect events a team can automate on.

Every change and decision is an event `cluster.trigger.<kind>` on the trigger's resource
(`cluster-trigger.<id>`), with the namespace as a related resource, so Prefect's event feed
shows a trigger's story and an automation can react to any of it (a notification on
`cluster.trigger.failed`, say):

* `created`, `updated`, `paused`, `resumed`, `deleted`: the lifecycle calls (CLI, REST API);
* `fired`: a run of the trigger started (its reason: schedule, event, condition or manual);
* `failed`: the trigger entered the `failed` status (too many failures in a row);
* `evaluated`: the evaluator looked at an event trigger and something changed (its counter,
  or why it did or did not fire); conditional triggers record `cluster.condition.measured`.

A decision (`evaluated`, `measured`) also names a related resource `cluster-decision.<decision>`
(`cluster-decision.below-threshold`, say)
whose name is the decision's message: Prefect's Event Feed shows a payload only under "Raw", but
it shows related resources on the event's row (their names in the V2 UI, their ids in V1).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect.events import emit_event

TRIGGER_EVENT_KINDS = ("created", "updated", "paused", "resumed", "deleted", "fired", "finished", "failed",
                       "evaluated")
EVALUATED = "cluster.trigger.evaluated"
TRIGGER_RESOURCE = "cluster-trigger."  # the prefix of a trigger's event resource id


def trigger_resource(trigger_id: str) -> str:
    """The Prefect event resource id of a trigger."""
    return f"{TRIGGER_RESOURCE}{trigger_id}"


def decision_resource(decision: str, message: str) -> dict[str, str]:
    """The related resource that puts a decision and its message on the event's row in the Event Feed."""
    return {"prefect.resource.id": f"cluster-decision.{decision.replace(' ', '-')}", "prefect.resource.role": "decision",
            "prefect.resource.name": message}


def announce(kind: str, trigger_id: str, namespace_id: str, *, occurred: datetime | None = None, **payload: Any) -> None:
    """Emit `cluster.trigger.<kind>` for one trigger (queued; Prefect sends it in the background),
    stamped `occurred` (when it was decided; now by default)."""
    if kind not in TRIGGER_EVENT_KINDS:
        raise ValueError(f"unknown trigger event {kind!r}; allowed: {', '.join(TRIGGER_EVENT_KINDS)}")
    emit_event(
        event=f"cluster.trigger.{kind}",
        resource={"prefect.resource.id": trigger_resource(trigger_id), "prefect.resource.name": trigger_id},
        related=[{"prefect.resource.id": f"cluster-namespace.{namespace_id}", "prefect.resource.role": "namespace"},
                 *([decision_resource(payload["decision"], payload["message"])] if "message" in payload else [])],
        occurred=occurred,
        payload=payload,
    )
