"""When an event trigger fires: exact counting and the cooldown, as pure functions.

Prefect's own threshold counting loses events in bursts, forgets partial counts after about
a minute and runs paused deployments, so automations only wake a trigger up; whether it
fires is decided here, from two records Prefect keeps durably anyway: the collection's
events (what happened) and the trigger's firing runs (what each firing consumed, in the
run's `firing` parameter). Nothing else is stored, so a restart of any process loses nothing.

The rules:

* An event counts `payload.count` documents (1 when absent or not a positive integer);
  a `batch_completed` event counts one batch.
* Events are ordered by (occurred, id). A firing consumes every event up to its cutoff;
  `event_counter` is the sum of the counts after the last firing's cutoff.
* The trigger fires at the event that brings the counter to `event_threshold`; that event
  is the firing's cutoff, so documents beyond it count towards the next firing.
* Within `cooldown_seconds` of the last firing it does not fire: the firing is held back
  (`last_cooldown_at`) and one firing is scheduled for the end of the cooldown. Events keep
  counting meanwhile; the held-back firing consumes all of them up to its due time.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any, Iterable, Mapping

from pydantic import BaseModel, Field

from prefect_cluster_triggers.core.contract import EventType
from prefect_cluster_triggers.core.models import ExactUtcDateTime, UtcDateTime, format_utc

EVENT_NAMES: dict[EventType, str] = {
    EventType.documents_added: "cluster.documents_added",
    EventType.documents_updated: "cluster.documents_updated",
    EventType.batch_completed: "cluster.batch_completed",
}
_LAST_ID = "\U0010ffff"  # sorts after every event id: a cutoff at a time takes all events of that instant
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def collection_resource(namespace_id: str, collection_id: str) -> str:
    """The Prefect resource id of a namespace's collection's events: another namespace's triggers never match it."""
    return f"collection.{namespace_id}.{collection_id}"


def count_of(event_type: EventType, payload: Mapping[str, Any] | None) -> int:
    """How much one event adds to a counter."""
    if event_type == EventType.batch_completed:
        return 1
    count = (payload or {}).get("count")
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 1


class CountedEvent(BaseModel, frozen=True):
    """One collection event, reduced to what counting needs."""

    id: str
    occurred: ExactUtcDateTime
    count: int
    received: ExactUtcDateTime | None = Field(
        None, description="When Prefect received it; only checked against the trigger's creation, then dropped."
    )

    @property
    def mark(self) -> tuple[datetime, str]:
        """The event's place in the order events are counted in: when it occurred, then its id."""
        return (self.occurred, self.id)


class Firing(BaseModel):
    """One firing of an event trigger, kept as the `firing` parameter of the run it created."""

    due: ExactUtcDateTime = Field(description="When it fired; for a held-back firing, the end of the cooldown.")
    cutoff_occurred: ExactUtcDateTime = Field(description="Events up to this instant ...")
    cutoff_event_id: str = Field(description="... and, at that instant, up to this event id, were consumed.")
    documents: int | None = Field(None, description="What it consumed; unknown in advance for a held-back firing.")
    last_cooldown_at: UtcDateTime | None = Field(None, description="The latest hold-back by the cooldown, so far.")
    counted: int | None = Field(
        None, description="For a held-back firing, the counter when it was held back: a reader that sees the firing "
                          "before the checkpoint holding those events shows at least this until it is due.")

    @property
    def cutoff(self) -> tuple[datetime, str]:
        """The mark of the last event this firing consumed."""
        return (self.cutoff_occurred, self.cutoff_event_id)


class Plan(BaseModel):
    """What to do now, and what the trigger shows before and after doing it."""

    firings: list[Firing] = Field(description="Firings to create now, oldest first.")
    event_counter: int = Field(description="Counted since the last firing made so far (before this plan's).")
    event_counter_after: int = Field(description="Counted since the last firing once this plan's exist.")
    last_cooldown_at: UtcDateTime | None = Field(None, description="The latest hold-back once this plan's exist.")
    last_cooldown_at_before: UtcDateTime | None = Field(None, description="The latest hold-back among known firings.")
    held_back_until: UtcDateTime | None = Field(None, description="Due time of a held-back firing, if one waits.")

    def before(self) -> Plan:
        """What the trigger shows while this plan's firings are not made (a reader, a paused trigger).

        A held-back firing that is only planned has not happened: no cooldown applied, nothing waits.
        """
        if not self.firings:
            return self
        return Plan(firings=[], event_counter=self.event_counter, event_counter_after=self.event_counter,
                    last_cooldown_at=self.last_cooldown_at_before, last_cooldown_at_before=self.last_cooldown_at_before)


def plan(
    events: Iterable[CountedEvent],
    firings: Iterable[Firing],
    *,
    created_at: datetime,
    threshold: int,
    cooldown_seconds: int,
    now: datetime,
) -> Plan:
    """Decide the firings owed now, given every event since the last firing and the known firings.

    Args:
        events: the collection's matching events; any order, duplicates allowed, older ones ignored.
        firings: the trigger's recent firings (at least the latest one that has happened and
            any held-back one still due).
        created_at: the trigger's creation; events before it never count.
    """
    known = list(firings)
    past = [f for f in known if f.due <= now]
    cutoff = max((f.cutoff for f in past), default=(created_at, _LAST_ID))
    last_fired = max((f.due for f in past), default=None)
    cooldown = timedelta(seconds=cooldown_seconds)
    held = held_before = max((f.last_cooldown_at for f in known if f.last_cooldown_at), default=None)
    pending = sorted({e.id: e for e in events if e.mark > cutoff}.values(), key=lambda e: e.mark)
    counted = sum(e.count for e in pending)
    waiting = [f for f in known if f.due > now]
    if waiting:  # a held-back firing is due: it takes everything up to then
        counted = max([counted, *(f.counted or 0 for f in waiting)])
        return Plan(firings=[], event_counter=counted, event_counter_after=counted, last_cooldown_at=held,
                    last_cooldown_at_before=held, held_back_until=min(f.due for f in waiting))
    new: list[Firing] = []
    counter = 0
    for event in pending:
        counter += event.count
        if counter < threshold:
            continue
        if last_fired is None or now >= last_fired + cooldown:
            new.append(Firing(due=now, cutoff_occurred=event.occurred, cutoff_event_id=event.id,
                              documents=counter, last_cooldown_at=held))
            last_fired, cutoff, counter = now, event.mark, 0
            continue
        due = last_fired + cooldown
        held = now
        new.append(Firing(due=due, cutoff_occurred=due, cutoff_event_id=_LAST_ID, last_cooldown_at=held,
                          counted=sum(e.count for e in pending if e.mark > cutoff)))
        break
    held_back = [f.due for f in new if f.due > now]
    return Plan(
        firings=new,
        event_counter=counted,
        event_counter_after=sum(e.count for e in pending if e.mark > cutoff),
        last_cooldown_at=held,
        last_cooldown_at_before=held_before,
        held_back_until=held_back[0] if held_back else None,
    )


GRACE = timedelta(minutes=10)
"""How late an event may arrive (its `occurred` before the newest one counted) and still count.

Events are filtered by `occurred`, which the emitter stamps: a batching pipeline or a
skewed clock sends events "in the past". Each fold re-checks this window (cheaply: a count
first), so such an event counts exactly once, towards the next firing. Events later than
this are not counted; docs/triggers.md says so.
"""


class Checkpoint(BaseModel):
    """An event trigger's durable cursor: what the evaluator has counted so far.

    Folding new events into it is idempotent (ids already folded are skipped), so events
    Prefect deletes after its retention, an evaluator restart or a replayed wake-up lose or
    double nothing. Pending events older than `GRACE` are merged into one, so its size is
    bounded by the events of the last `GRACE`, not by the history (and pending events below
    the threshold are kept as one).
    """

    position: ExactUtcDateTime | None = Field(None, description="The newest `occurred` folded.")
    pending: list[CountedEvent] = Field(default_factory=list, description="Folded, not yet consumed by a firing.")
    seen: dict[str, int] = Field(
        default_factory=dict,
        description="Ids folded that occurred within GRACE of `position` (their `occurred` in epoch microseconds, "
                    "compact for thousands): a re-read skips them.",
    )

    def window_start(self) -> datetime | None:
        """Events that occurred after this may still be new (late ones included)."""
        return self.position - GRACE if self.position else None


def fold(
    checkpoint: Checkpoint,
    events: Iterable[CountedEvent],
    firings: Iterable[Firing],
    *,
    created_at: datetime,
    threshold: int,
    cooldown_seconds: int,
    now: datetime,
    fire: bool = True,
) -> tuple[Plan, Checkpoint]:
    """Fold newly read events into the checkpoint and plan from it (see `plan`).

    Returns the plan and the checkpoint to store once the plan's firings exist (with `fire`
    False, as for a paused trigger, the checkpoint keeps what those firings would consume:
    the events count on until it fires). An event counts when Prefect received it after the
    trigger's creation, whatever its `occurred` says. A late event (stamped before the last
    firing's cutoff or the creation, within GRACE of the newest event, never folded) counts
    as if it occurred just after that cutoff: towards the next firing, once.
    """
    known = list(firings)
    past = [f.cutoff for f in known if f.due <= now]
    cutoff = max(past, default=(created_at, _LAST_ID))
    start = checkpoint.window_start()
    fresh: dict[str, CountedEvent] = {}
    occurred: dict[str, int] = {}  # as stamped (epoch microseconds): the window follows the emitters' clocks
    for event in events:
        if event.id in checkpoint.seen or (start and event.occurred <= start):
            continue
        occurred[event.id] = _micros(event.occurred)
        if (event.received or event.occurred) < created_at:
            continue  # it arrived before the trigger existed: seen, never counted
        late = event.mark <= cutoff  # stamped before the last firing's cutoff (or the trigger's creation)
        if late and checkpoint.position is None and past:
            continue  # the first fold after that firing: the firing consumed it
        moved = {"occurred": cutoff[0] + timedelta(microseconds=1)} if late else {}
        fresh[event.id] = event.model_copy(update={**moved, "received": None})
    pending = {e.id: e for e in checkpoint.pending} | fresh
    result = plan(pending.values(), known, created_at=created_at, threshold=threshold,
                  cooldown_seconds=cooldown_seconds, now=now)
    consumed = max([cutoff, *(f.cutoff for f in result.firings if fire and f.due <= now)])
    newest = max(occurred.values(), default=None)
    position = max(checkpoint.position or created_at, _from_micros(newest) if newest is not None else created_at)
    seen = {**checkpoint.seen, **occurred}
    boundary = position - GRACE
    left = sorted((e for e in pending.values() if e.mark > consumed), key=lambda e: e.mark)
    return result, Checkpoint(
        position=position,
        pending=_compact(left, boundary=boundary, threshold=threshold, cutoff=consumed),
        seen={i: t for i, t in seen.items() if t > _micros(boundary)},
    )


def _micros(moment: datetime) -> int:
    """Epoch microseconds, exactly (any datetime subclass: Prefect hands out pendulum's)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _compact(events: list[CountedEvent], *, boundary: datetime, threshold: int,
             cutoff: tuple[datetime, str]) -> list[CountedEvent]:
    """The pending events (sorted) as few as counting needs, so a checkpoint stays small.

    Below the threshold all of them become one event placed first after the cutoff: the next
    firing is then decided by a newer event, exactly as before. At or above it (a paused or
    cooled-down trigger) only those older than `boundary` merge, at the newest one's mark.
    """
    if sum(e.count for e in events) < threshold:
        merged, mark = events, cutoff[0] + timedelta(microseconds=1)
    else:
        merged = [e for e in events if e.occurred <= boundary]
        mark = merged[-1].occurred if merged else boundary
    if len(merged) < 2:
        return events
    total = CountedEvent(id=f"folded:{merged[-1].id}", occurred=mark, count=sum(e.count for e in merged))
    return [total, *events[len(merged):]]


class Decision(StrEnum):
    """What one evaluation of an event or conditional trigger decided: the `decision` of its event."""

    fired = "fired"
    cooldown = "cooldown"  # a firing is held back to the end of the cooldown
    below_threshold = "below threshold"
    already_running = "already running"  # a check crossed, but a run of the trigger is queued or running
    check_failed = "check failed"
    paused = "paused"  # not active: events keep counting, nothing fires
    failed = "failed"


def explain(plan_now: Plan, *, threshold: int, now: datetime, status: str = "active") -> dict[str, Any]:
    """Why an event trigger did or did not fire in one evaluation, as its `cluster.trigger.evaluated` payload.

    `decision` is `fired`, `cooldown`, `below threshold`, or the trigger's status when it is not
    active (`paused`, `failed`); `message` says the same in a line a person reads.
    """
    fired = [f.documents for f in plan_now.firings if f.documents is not None]
    until = plan_now.held_back_until
    if status != "active":
        decision, counter = Decision(status), plan_now.event_counter
    elif fired:
        decision, counter = Decision.fired, plan_now.event_counter_after
    elif until is not None:
        decision, counter = Decision.cooldown, plan_now.event_counter_after
    else:
        decision, counter = Decision.below_threshold, plan_now.event_counter_after
    remaining = max(0.0, round((until - now).total_seconds(), 1)) if until else None
    if decision == Decision.fired:
        message = f"fired on {', '.join(str(n) for n in fired)} documents; counter now {counter} / {threshold}"
    elif decision == Decision.cooldown:
        message = f"{counter} / {threshold}: held back by the cooldown until {format_utc(until)} ({remaining} s)"
    elif decision == Decision.below_threshold:
        message = f"{counter} / {threshold} documents: below threshold"
    else:
        message = f"{decision.value}: {counter} / {threshold} counted, nothing fires"
    return {
        "decision": decision.value,
        "message": message,
        "event_counter": counter,
        "threshold": threshold,
        "fired_documents": fired,
        "held_back_until": format_utc(until) if until else None,
        "cooldown_remaining_seconds": remaining,
    }
