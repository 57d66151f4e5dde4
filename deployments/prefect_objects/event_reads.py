"""What event and conditional triggers read from Prefect: collection events, firings, measurements.

Shared by the evaluator (which acts on them) and the lifecycle (which shows them), so
`get` reports exactly the counter the evaluator decides from.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping, NamedTuple

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.client.schemas.sorting import FlowRunSort
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventOrder, EventResourceFilter
from pydantic import BaseModel, Field

from prefect_cluster_triggers.core.contract import EventScheduleConfig
from prefect_cluster_triggers.core.firing import (
    EVENT_NAMES,
    GRACE,
    Checkpoint,
    CountedEvent,
    Decision,
    Firing,
    Plan,
    collection_resource,
    count_of,
    fold,
)
from prefect_cluster_triggers.core.models import UtcDateTime
from prefect_cluster_triggers.deployments.prefect_objects.status import of_deployment
from prefect_cluster_triggers.deployments.prefect_objects.translate import EVENT_TAG, TriggerRecord
from prefect_cluster_triggers.deployments.prefect_objects.trigger_events import (
    EVALUATED,
    TRIGGER_RESOURCE,
    trigger_resource,
)

MEASURED = "cluster.condition.measured"
_RECENT_FIRINGS = 20
_EVENT_PAGE = 50  # Prefect's largest page of events
_ACTIVITY = ["prefect.flow-run.", "cluster."]  # run state changes; collection and trigger events
_NOT_ACTIVITY = [MEASURED, EVALUATED]  # evaluations: each follows a collection event or run change read anyway
_MOST_ACTIVITY = 5000  # events a sweep reads (100 pages) before it visits every trigger instead


class Measurement(BaseModel):
    """One check of a conditional trigger, kept as a Prefect event on the trigger's resource."""

    metric: str
    value: float | None = Field(None, description="None when the check failed, or nothing was clustered yet.")
    threshold: float
    fired: bool
    decision: Decision | None = Field(None, description="`fired`, `below threshold`, `already running` or `check failed`.")
    error: str | None = Field(None, description="Why the check failed.")
    message: str | None = Field(None, description="The decision in a line a person reads.")
    checked_at: UtcDateTime


async def event_plan(
    client: PrefectClient,
    deployment: Any,
    record: TriggerRecord,
    stored: Checkpoint | None,
    *,
    now: datetime | None = None,
    recent: Iterable[CountedEvent] = (),
    pages: int | None = None,
    fire: bool = True,
    firings: list[Firing] | None = None,
    events: list[CountedEvent] | None = None,
) -> tuple[Plan, Checkpoint]:
    """The event trigger's plan now, from its checkpoint and the events newer than it.

    From the stored checkpoint (`cursors`), the trigger's recent firings and only the
    collection's events the checkpoint has not folded (see `_late_in_window`), so the cost does not grow
    with the history. Returns the plan and the checkpoint to store once its firings exist
    (the evaluator stores it; `get` does not).

    Args:
        recent: events known before Prefect's events API shows them (the evaluator's webhooks).
        pages: read at most this many pages of newer events (`get`: one); None reads all.
        fire: whether the plan's firings will be made (not for a paused trigger).
        firings: the trigger's recent firings when the caller has read them (`recent_firings`).
        events: the events after `stored` when the caller has read them (`events_after`).
    """
    config = record.request.schedule_config
    if not isinstance(config, EventScheduleConfig):
        raise TypeError(f"trigger {record.trigger_id} is a {record.request.trigger_type} trigger, not an event trigger")
    if firings is None:
        firings = await recent_firings(client, deployment.id)
    # Taken after the firings are read: a firing an evaluator made meanwhile is due by then, not held back.
    now = now or datetime.now(timezone.utc)
    checkpoint = stored or Checkpoint()
    if checkpoint.position is None:  # first evaluation: since the last firing (or creation), and GRACE before
        past = [f.cutoff_occurred for f in firings if f.due <= now]
        events = await _collection_events(client, record, max(past, default=deployment.created) - GRACE, now,
                                          pages=pages)
    elif events is None:
        events = await events_after(client, record, checkpoint, now, pages=pages)
    return fold(checkpoint, [*events, *recent], firings, created_at=deployment.created,
                threshold=config.event_threshold, cooldown_seconds=config.cooldown_seconds, now=now, fire=fire)


async def events_after(client: PrefectClient, record: TriggerRecord, checkpoint: Checkpoint, now: datetime, *,
                       pages: int | None = None) -> list[CountedEvent]:
    """The collection's events the checkpoint (one with a position) has not folded: those after its
    position, read while the window behind it is checked for late ones, and from the window's start if so."""
    late, events = await asyncio.gather(_late_in_window(client, record, checkpoint),
                                        _collection_events(client, record, checkpoint.position, now, pages=pages))
    if late:
        events = await _collection_events(client, record, checkpoint.window_start(), now, pages=pages)
    return events


async def _late_in_window(client: PrefectClient, record: TriggerRecord, checkpoint: Checkpoint) -> bool:
    """Whether a late event arrived in the checkpoint's grace window, so the events it lacks begin at
    the window's start, not at its position (one count of the window tells: it differs from the ids seen)."""
    window = await client.read_events(filter=_query(record, checkpoint.window_start(), checkpoint.position), limit=1)
    return window.total != len(checkpoint.seen)


async def last_measurement(client: PrefectClient, trigger_id: str) -> Measurement | None:
    """The trigger's latest condition check, from its events; None before the first."""
    page = await client.read_events(filter=_trigger_events(trigger_id, MEASURED), limit=1)
    return Measurement.model_validate(page.events[0].payload) if page.events else None


async def measurement_history(client: PrefectClient, trigger_id: str, *, limit: int) -> list[Measurement]:
    """The trigger's latest condition checks, newest first, at most `limit` (50 a Prefect call)."""
    found = await _read_events(client, _trigger_events(trigger_id, MEASURED), limit=limit)
    return [Measurement.model_validate(e.payload) for e in found]


class Evaluation(BaseModel):
    """One recorded evaluation of a trigger: an event trigger's `cluster.trigger.evaluated`, or a
    conditional trigger's `cluster.condition.measured`."""

    occurred: UtcDateTime
    event: str
    decision: str | None = Field(None, description="fired, cooldown, below threshold, already running, paused, ...")
    details: dict[str, Any] = Field(description="The event's payload: counter and threshold, or the measured value.")


async def evaluations(client: PrefectClient, trigger_id: str, *, limit: int) -> list[Evaluation]:
    """The trigger's latest evaluations, newest first, from Prefect's event feed (at most `limit`)."""
    found = await _read_events(client, _trigger_events(trigger_id, EVALUATED, MEASURED), limit=limit)
    return [Evaluation(occurred=e.occurred, event=e.event, decision=e.payload.get("decision"), details=dict(e.payload))
            for e in found]


async def recent_firings(client: PrefectClient, deployment_id: Any) -> list[Firing]:
    """The firings of the trigger's latest event runs (a read: every evaluation plans from them)."""
    runs = await client.read_flow_runs(
        deployment_filter=of_deployment(deployment_id),
        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[EVENT_TAG])),
        sort=FlowRunSort.EXPECTED_START_TIME_DESC,
        limit=_RECENT_FIRINGS,
    )
    return [Firing.model_validate(run.parameters["firing"]) for run in runs if run.parameters.get("firing")]


async def _collection_events(
    client: PrefectClient, record: TriggerRecord, since: datetime, now: datetime, *, pages: int | None = None
) -> list[CountedEvent]:
    config = record.request.schedule_config
    query = _query(record, since, now + timedelta(minutes=1))
    received = await _read_events(client, query, limit=pages * _EVENT_PAGE if pages else None)
    return [
        CountedEvent(id=str(e.id), occurred=e.occurred, count=count_of(config.event_type, e.payload), received=e.received)
        for e in received
    ]


def _query(record: TriggerRecord, since: datetime, until: datetime) -> EventFilter:
    """The trigger's collection events (its own namespace's collection) that occurred in [since, until]."""
    config = record.request.schedule_config
    return EventFilter(
        occurred=EventOccurredFilter(since=since, until=until),
        event=EventNameFilter(name=[EVENT_NAMES[config.event_type]]),
        resource=EventResourceFilter(id=[collection_resource(record.namespace_id, config.collection_id)]),
        order=EventOrder.ASC,
    )


def _trigger_events(trigger_id: str, *names: str) -> EventFilter:
    """Events of these names on the trigger's own resource, all that Prefect keeps, newest first."""
    return EventFilter(
        occurred=EventOccurredFilter(since=datetime(2000, 1, 1, tzinfo=timezone.utc),
                                     until=datetime.now(timezone.utc) + timedelta(minutes=1)),
        event=EventNameFilter(name=list(names)),
        resource=EventResourceFilter(id=[trigger_resource(trigger_id)]),
        order=EventOrder.DESC,
    )


async def _read_events(client: PrefectClient, query: EventFilter, *, limit: int | None) -> list[Any]:
    """The events `query` matches, page by page (Prefect answers 50 at a time), at most `limit` (None: all)."""
    page = await client.read_events(filter=query, limit=min(limit or _EVENT_PAGE, _EVENT_PAGE))
    found = list(page.events)
    while page.next_page and (limit is None or len(found) < limit):
        page = await client.read_events_page(str(page.next_page))
        found += page.events
    return found[:limit]


class Touched(NamedTuple):
    """What events since a sweep named: each trigger with those events (id -> occurred), and the ids of
    the collection events among them (`counted`, trigger id -> ids)."""

    named: dict[str, dict[str, datetime]]
    counted: dict[str, set[str]]


async def touched_triggers(client: PrefectClient, since: datetime, *, deployments: Mapping[str, str],
                           collections: Mapping[str, Iterable[str]]) -> Touched | None:
    """The triggers that events since `since` name: a state change of one of their runs (`deployments`
    maps deployment ids to trigger ids), one of their own events, a collection event they count
    (`collections` maps collection resource ids to the event triggers counting them). None when there
    are more than `_MOST_ACTIVITY` events: reading them would cost more than visiting every trigger."""
    query = EventFilter(occurred=EventOccurredFilter(since=since, until=datetime.now(timezone.utc) + timedelta(minutes=1)),
                        event=EventNameFilter(prefix=_ACTIVITY, exclude_name=_NOT_ACTIVITY), order=EventOrder.ASC)
    events = await _read_events(client, query, limit=_MOST_ACTIVITY + 1)
    if len(events) > _MOST_ACTIVITY:
        return None
    found = Touched({}, {})
    for event in events:
        resource = event.resource.id
        named = set(collections.get(resource, ()))
        for trigger in named:
            found.counted.setdefault(trigger, set()).add(str(event.id))
        if resource.startswith(TRIGGER_RESOURCE):
            named.add(resource.removeprefix(TRIGGER_RESOURCE))
        for related in event.related:
            if related.role == "deployment" and (trigger := deployments.get(related.id.removeprefix("prefect.deployment."))):
                named.add(trigger)
        for trigger in named:
            found.named.setdefault(trigger, {})[str(event.id)] = event.occurred
    return found
