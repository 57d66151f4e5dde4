"""Event triggers: count a trigger's collection events and fire when they reach its threshold.

The decision is `core.firing.plan` (pure, `now` passed in); this service feeds it what Prefect
recorded (the checkpoint, the events since), adds the events automations delivered before
Prefect's events API shows them, makes the firings it owes (keyed by the event that completed the
count, or the cooldown's due time, so a second evaluator or a replayed wake-up cannot fire
twice). The checkpoint and the firings are saved together, by compare-and-set
(`prefect_objects.cursors`), before the runs are made: of two replicas that planned from the
same checkpoint one saves, the other plans again from what it saved. No lock is held, so a
replica killed mid-evaluation blocks nobody; the runs it owed are made by the next evaluation.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable

from prefect.client.orchestration import PrefectClient
from prefect.exceptions import ObjectNotFound
from prefect.logging import get_logger
from prefect.states import Scheduled

from prefect_cluster_triggers.core.contract import EventScheduleConfig, TriggerStatus
from prefect_cluster_triggers.core.errors import ClusterTriggersError
from prefect_cluster_triggers.core.firing import EVENT_NAMES, CountedEvent, Firing, count_of, explain
from prefect_cluster_triggers.deployments.evaluator.shown import ShownState
from prefect_cluster_triggers.deployments.prefect_objects.client import loop_lock, retry_lost_races
from prefect_cluster_triggers.deployments.prefect_objects.cursors import CursorCache, CursorMoved, Head
from prefect_cluster_triggers.deployments.prefect_objects.event_reads import event_plan, events_after, recent_firings
from prefect_cluster_triggers.deployments.prefect_objects.status import trigger_status
from prefect_cluster_triggers.deployments.prefect_objects.translate import EVENT_TAG, TriggerRecord
from prefect_cluster_triggers.deployments.prefect_objects.trigger_events import announce
from prefect_cluster_triggers.deployments.prefect_objects.trigger_records import EvaluatorState

_logger = get_logger("cluster_triggers.evaluator")
_REMEMBER = timedelta(minutes=10)  # far longer than Prefect takes to persist an event
_ATTEMPTS = 6  # plans of one evaluation, each after another replica saved first; then the next wake-up or sweep


class DeploymentChanged(ClusterTriggersError):
    """The trigger's deployment read now is not the copy an evaluation started from: start again from it."""


class EventTriggers:
    """Evaluates event triggers: on a wake-up from an automation, and on every sweep."""

    def __init__(self, shown: ShownState) -> None:
        self._shown = shown
        self._recent: dict[str, dict[str, CountedEvent]] = defaultdict(dict)
        self._evaluated: dict[str, tuple[Any, ...]] = {}
        self._cursors = CursorCache()
        self._waiting: set[str] = set()  # triggers with an evaluation waiting for the lock
        self._made: dict[str, str] = {}  # trigger -> version of the cursor whose firings this process made
        self._evaluated_at: dict[str, datetime] = {}  # trigger -> when its last completed evaluation began
        self.due: dict[str, datetime] = {}  # trigger -> when its held-back firing comes due: a sweep visits it then

    def received(self, record: TriggerRecord, event: dict[str, Any]) -> bool:
        """Remember one event an automation delivered (Prefect's events API shows it only after its next
        flush); False when it is not an event this trigger, as `record` says now, counts (forgotten if it
        was remembered from an earlier record)."""
        config = record.request.schedule_config
        if not isinstance(config, EventScheduleConfig) or event.get("event") != EVENT_NAMES[config.event_type]:
            self._recent[record.trigger_id].pop(event.get("id"), None)
            return False
        self._recent[record.trigger_id][event["id"]] = CountedEvent(
            id=event["id"], occurred=datetime.fromisoformat(event["occurred"]),
            count=count_of(config.event_type, event.get("payload")), received=datetime.now(timezone.utc),
        )
        return True

    def handled(self) -> dict[str, set[str]]:
        """Per trigger, the delivered events a completed evaluation planned with: a sweep that reads them
        need not evaluate the trigger again for them."""
        return {trigger_id: {i for i, e in self._recent[trigger_id].items() if e.received <= began}
                for trigger_id, began in self._evaluated_at.items()}

    async def evaluate(self, client: PrefectClient, deployment: Any, record: TriggerRecord, *,
                       status: TriggerStatus = TriggerStatus.active,
                       current: Awaitable[tuple[Any, TriggerRecord] | None] | None = None) -> None:
        """Re-plan the trigger, make the firings it owes (when active), show its counter, and record the
        evaluation when its outcome changed. A paused or failed trigger counts on and never fires.

        Planned from the trigger's newest checkpoint and saved as the next one only if nobody saved
        it first (`cursors`); otherwise planned again from that one, so two replicas never fire from
        different views of the events. In this process, evaluations of one trigger take turns; a
        wake-up while one waits already is left to that one, which sees its event.

        `current`: the deployment being read now, when `deployment` is an earlier copy; it is awaited
        with the first reads, and nothing is written unless it is the same (else `DeploymentChanged`).
        """
        trigger_id = record.trigger_id
        if trigger_id in self._waiting and status == TriggerStatus.active:
            return
        lock = loop_lock(f"evaluate:{trigger_id}")
        self._waiting.add(trigger_id)
        try:
            await lock.acquire()
        finally:
            self._waiting.discard(trigger_id)
        try:
            for attempt in range(_ATTEMPTS):
                try:
                    await self._evaluate(client, deployment, record, status, current)
                    return
                except CursorMoved:  # another replica saved first: plan again from its checkpoint
                    await asyncio.sleep(random.uniform(0, min(1.0, 0.05 * 2**attempt)))
            _logger.info("trigger %s not evaluated now: other evaluations saved first %d times; the next one counts",
                         trigger_id, _ATTEMPTS)
        except ObjectNotFound as exc:  # deleted meanwhile
            _logger.info("trigger %s not evaluated now: %s", trigger_id, exc)
        finally:
            lock.release()

    async def _evaluate(self, client: PrefectClient, deployment: Any, record: TriggerRecord,
                        status: TriggerStatus, current: Awaitable[tuple[Any, TriggerRecord] | None] | None) -> None:
        trigger_id = record.trigger_id
        now = datetime.now(timezone.utc)
        recent = self._recent[trigger_id]
        for event_id in [i for i, e in recent.items() if e.occurred < now - _REMEMBER]:
            del recent[event_id]
        active = status == TriggerStatus.active
        ahead = self._read_ahead(client, record, now)
        try:
            head, made, read_now = await asyncio.gather(self._cursors.load(client, trigger_id),
                                                        recent_firings(client, deployment.id), current or _none())
            if current is not None and not _same(read_now, deployment, record, status):
                raise DeploymentChanged(f"trigger {trigger_id} changed since the copy its evaluation began from")
            events = await ahead[1] if ahead is not None and head is ahead[0] else None
        finally:
            if ahead is not None:
                ahead[1].cancel()
        missing = [f for f in head.firings if f not in made]  # saved by an evaluation that died before making them
        if missing and self._made.get(trigger_id) != head.version:
            for firing in missing:
                await _create_firing_run(client, deployment, record, firing)
            made = await recent_firings(client, deployment.id)
        self._made[trigger_id] = head.version
        known = [*made, *(f for f in head.firings if f not in made)]  # the head's, even beyond the runs read
        plan, checkpoint = await event_plan(client, deployment, record, head.checkpoint, now=now,
                                            recent=list(recent.values()), fire=active, firings=known, events=events)
        firings = plan.firings if active else []
        saved = await self._cursors.save(client, trigger_id, head, checkpoint, firings)  # CursorMoved: plan again
        await self._make_firings(client, deployment, record, saved)
        if saved is not head:
            await self._cursors.tidy(client, trigger_id, saved)
        if active and plan.held_back_until is not None:
            self.due[trigger_id] = plan.held_back_until
        else:
            self.due.pop(trigger_id, None)
        shown = plan if active else plan.before()
        self._shown.show(trigger_id, EvaluatorState(event_counter=shown.event_counter_after,
                                                    last_cooldown_at=shown.last_cooldown_at,
                                                    held_back_until=shown.held_back_until if active else None))
        threshold = record.request.schedule_config.event_threshold
        self._record_evaluation(record, explain(plan, threshold=threshold, now=now, status=status.value), now)
        self._evaluated_at[trigger_id] = now  # every event delivered by then was in `recent`, so in the plan

    def _read_ahead(self, client: PrefectClient, record: TriggerRecord,
                    now: datetime) -> tuple[Head, asyncio.Task[list[CountedEvent]]] | None:
        """The events after the checkpoint this process holds, read while the newest one is loaded: in the
        usual case nobody saved since, the read is the one the plan needs, a round trip off the firing's path."""
        held = self._cursors.held(record.trigger_id)
        if held is None or held.checkpoint is None or held.checkpoint.position is None:
            return None
        task = asyncio.ensure_future(events_after(client, record, held.checkpoint, now))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # unused when another saved first
        return held, task

    async def _make_firings(self, client: PrefectClient, deployment: Any, record: TriggerRecord, head: Head) -> None:
        """The runs of the firings saved with `head`, once per process (keyed by their data: once in Prefect)."""
        if not head.firings or self._made.get(record.trigger_id) == head.version:
            return
        for firing in head.firings:
            await _create_firing_run(client, deployment, record, firing)
        self._made[record.trigger_id] = head.version

    def _record_evaluation(self, record: TriggerRecord, outcome: dict[str, Any], decided_at: datetime) -> None:
        """`cluster.trigger.evaluated` when the decision or the counter changed since the last one recorded.

        The feed then reads as the trigger's story (counting, held back, fired) rather than
        one event per sweep; after an evaluator restart the first evaluation is recorded again.
        """
        key = (outcome["decision"], outcome["event_counter"], outcome["held_back_until"])
        if self._evaluated.get(record.trigger_id) == key:
            return
        self._evaluated[record.trigger_id] = key
        announce("evaluated", record.trigger_id, record.namespace_id, occurred=decided_at, **outcome)


async def _none() -> None:
    return None


def _same(read_now: tuple[Any, TriggerRecord] | None, deployment: Any, record: TriggerRecord,
          status: TriggerStatus) -> bool:
    """Whether the deployment read now is the one an evaluation started from, as far as it plans from it."""
    return read_now is not None and read_now[0].id == deployment.id and read_now[1] == record and \
        trigger_status(read_now[0].paused, read_now[0].tags) == status


_creating: asyncio.Semaphore | None = None  # run creations of this process at once (see _CREATING)
_CREATING = 2  # on SQLite, every write beyond the one in progress is a lost race retried: few at a time


async def _create_firing_run(client: PrefectClient, deployment: Any, record: TriggerRecord, firing: Firing) -> None:
    global _creating
    held_back = firing.documents is None
    key = f"cooldown:{firing.due.isoformat()}" if held_back else f"event:{firing.cutoff_event_id}"
    _creating = _creating or asyncio.Semaphore(_CREATING)
    async with _creating:
        await retry_lost_races(lambda: client.create_flow_run_from_deployment(  # keyed: a retry makes it once
            deployment.id,
            parameters={"firing": firing.model_dump(mode="json")},
            tags=[EVENT_TAG],
            state=Scheduled(scheduled_time=firing.due),
            idempotency_key=f"{record.trigger_id}:{key}",
        ))
    _logger.info("trigger %s fired%s (%s)", record.trigger_id, " at the end of its cooldown" if held_back else "",
                 f"due {firing.due.isoformat()}" if held_back else f"{firing.documents} counted")
