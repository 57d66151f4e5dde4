"""The evaluator: fires event and conditional triggers, exactly, from what Prefect records.

It runs inside `cluster-triggers api` (one per Prefect server) and acts on two inputs:

* wake-ups: each event trigger's automation posts every matching event to the API's wake
  endpoint; the evaluator adds the event to what it knows (Prefect's events API shows an
  event only after its next persistence flush) and re-plans that trigger at once;
* a sweep every `evaluator_sweep_seconds`: every active event trigger is re-planned from
  Prefect's events (catching a wake-up an automation dropped, or a held-back firing), every
  trigger's automation is brought in line with its status (also for triggers made by
  `prefect deploy`), the conditional checks that are due are run, the run snapshots of
  triggers whose runs ended without our code (a killed process) are recounted, and every
  trigger's page in the Prefect UI is brought up to date (`deployments.dashboard`).

After each decision it writes, in the background, what the trigger shows (counter,
cooldown, last check) to the trigger's state snapshot, which `ls` reads
(`deployments.snapshots`); paused event triggers are re-counted too, never fired.

A firing is a flow run of the trigger's deployment tagged `trigger-run:event` (or
`trigger-run:condition`) whose `firing` parameter records what it consumed; runs are
created with an idempotency key, so a second evaluator or a replayed wake-up cannot fire
twice. Everything decided from lives in Prefect, so restarting any process loses nothing.
A trigger that is not active is never fired, and its runs are cancelled at start.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags
from prefect.client.schemas.objects import StateType
from prefect.events import emit_event
from prefect.exceptions import ObjectNotFound
from prefect.logging import get_logger
from prefect.states import Scheduled

from prefect_cluster_triggers.deployments import dashboard, idempotency, lifecycle, snapshots
from prefect_cluster_triggers.deployments.announcements import announce, trigger_resource
from prefect_cluster_triggers.deployments.automations import automation_name, save_wake_webhook, sync_automation
from prefect_cluster_triggers.deployments.contract import ConditionalScheduleConfig, EventScheduleConfig, TriggerStatus
from prefect_cluster_triggers.deployments.errors import ContractError
from prefect_cluster_triggers.deployments.cursors import CursorCache
from prefect_cluster_triggers.deployments.firing import EVENT_NAMES, CountedEvent, Firing, count_of, explain
from prefect_cluster_triggers.deployments.settings import get_settings
from prefect_cluster_triggers.deployments.snapshots import EvaluatorState
from prefect_cluster_triggers.deployments.status import in_states, of_deployment, trigger_status
from prefect_cluster_triggers.deployments.translate import CONDITION_TAG, EVENT_TAG, FLOW_NAME, TRIGGER_TAG, TriggerRecord
from prefect_cluster_triggers.deployments.trigger_events import MEASURED, Measurement, event_plan, last_measurement
from prefect_cluster_triggers.flows.condition_check import measure
from prefect_cluster_triggers.flows.errors import ClusterTriggersError

_logger = get_logger("cluster_triggers.evaluator")
_REMEMBER = timedelta(minutes=10)  # far longer than Prefect takes to persist an event
_BUSY = (StateType.PENDING, StateType.RUNNING, StateType.SCHEDULED)
_KEYS_EXPIRE_EVERY = timedelta(hours=1)


class Evaluator:
    """Fires the event and conditional triggers of one Prefect server."""

    def __init__(self, wake_url: str) -> None:
        self.wake_url = wake_url
        self.token = secrets.token_urlsafe(32)
        self._webhook_id: UUID | None = None
        self._recent: dict[str, dict[str, CountedEvent]] = defaultdict(dict)
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._checked: dict[str, datetime] = {}
        self._evaluated: dict[str, tuple[Any, ...]] = {}
        self._cursors = CursorCache()
        self._shown: dict[str, EvaluatorState] = {}
        self._to_show: dict[str, EvaluatorState] = {}
        self._writers: dict[str, asyncio.Task] = {}
        self._task: asyncio.Task | None = None
        self._keys_expire_at = 0.0

    async def start(self) -> None:
        """Register the wake-up webhook and start sweeping."""
        self._webhook_id = await save_wake_webhook(self.wake_url, self.token)
        self._task = asyncio.create_task(self._sweep_forever())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def wake(self, trigger_id: str, event: dict[str, Any]) -> None:
        """One matching event, straight from the trigger's automation."""
        async with get_client() as client:
            found = await _trigger(client, trigger_id)
            if found is None:
                return
            deployment, record = found
            config = record.request.schedule_config
            if not isinstance(config, EventScheduleConfig) or event.get("event") != EVENT_NAMES[config.event_type]:
                return
            self._recent[trigger_id][event["id"]] = CountedEvent(  # an automation calls as Prefect receives it
                id=event["id"], occurred=datetime.fromisoformat(event["occurred"]),
                count=count_of(config.event_type, event.get("payload")), received=datetime.now(timezone.utc),
            )
            if trigger_status(deployment.paused, deployment.tags) == TriggerStatus.active:
                await self._fire_events(client, deployment, record)

    async def sweep(self) -> None:
        """One pass over every trigger: automations in line, owed firings made, due checks run, run
        snapshots that missed a run (a killed process) recounted, the triggers' pages in the Prefect UI
        brought up to date; hourly, Idempotency-Keys past their lifetime deleted."""
        async with get_client() as client:
            if time.monotonic() >= self._keys_expire_at:
                self._keys_expire_at = time.monotonic() + _KEYS_EXPIRE_EVERY.total_seconds()
                await idempotency.expire(client)
            automations = {a.name: a for a in await client.read_automations()}
            deployments = await _trigger_deployments(client)
            for deployment in deployments:
                try:
                    await self._sweep_one(client, deployment, automations)
                except Exception:  # one broken trigger must not starve the others
                    _logger.exception("evaluating deployment %s failed; retrying at the next sweep", deployment.name)
            records = {d.id: r for d in deployments if (r := _record_of(d)) is not None}  # a broken one was logged above
            trigger_ids = {deployment_id: r.trigger_id for deployment_id, r in records.items()}
            await snapshots.recount_missed(client, trigger_ids, now=datetime.now(timezone.utc))
            await dashboard.publish_changed(client, await lifecycle.statuses(client, [d for d in deployments if d.id in records]))

    async def _sweep_one(self, client: PrefectClient, deployment: Any, automations: dict[str, Any]) -> None:
        record = TriggerRecord.model_validate(deployment.parameters["trigger"])
        status = trigger_status(deployment.paused, deployment.tags)
        existing = automations.get(automation_name(record.trigger_id))
        await sync_automation(client, record, status, self._webhook_id, [existing] if existing else [])
        config = record.request.schedule_config
        if isinstance(config, EventScheduleConfig) and status != TriggerStatus.disabled:
            await self._fire_events(client, deployment, record, status=status)
        elif isinstance(config, ConditionalScheduleConfig) and status == TriggerStatus.active:
            await self._check_condition(client, deployment, record, config)

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # a sweep that fails (Prefect restarting) is retried at the next one
                _logger.exception("sweep failed; retrying in %s s", get_settings().evaluator_sweep_seconds)
            await asyncio.sleep(get_settings().evaluator_sweep_seconds)

    async def _fire_events(self, client: PrefectClient, deployment: Any, record: TriggerRecord, *,
                           status: TriggerStatus = TriggerStatus.active) -> None:
        """Re-plan an event trigger, make the firings it owes (when active), show its counter, and
        record the evaluation when its outcome changed."""
        trigger_id = record.trigger_id
        async with self._locks[trigger_id]:
            now = datetime.now(timezone.utc)
            recent = self._recent[trigger_id]
            for event_id in [i for i, e in recent.items() if e.occurred < now - _REMEMBER]:
                del recent[event_id]
            active = status == TriggerStatus.active
            stored = await self._cursors.load(client, trigger_id)
            plan, checkpoint = await event_plan(client, deployment, record, stored, now=now,
                                                recent=list(recent.values()), fire=active)
            if active:
                for firing in plan.firings:  # before the checkpoint that says they consumed their events
                    await _create_firing_run(client, deployment, record, firing)
            await self._cursors.save(client, trigger_id, checkpoint)
            self._show(trigger_id, EvaluatorState(
                event_counter=plan.event_counter_after if active else plan.event_counter,
                last_cooldown_at=plan.last_cooldown_at, held_back_until=plan.held_back_until if active else None,
            ))
            threshold = record.request.schedule_config.event_threshold
            self._record_evaluation(record, explain(plan, threshold=threshold, now=now, status=status.value))

    def _record_evaluation(self, record: TriggerRecord, outcome: dict[str, Any]) -> None:
        """`cluster.trigger.evaluated` when the decision or the counter changed since the last one recorded.

        The feed then reads as the trigger's story (counting, held back, fired) rather than
        one event per sweep; after an evaluator restart the first evaluation is recorded again.
        """
        key = (outcome["decision"], outcome["event_counter"], outcome["held_back_until"])
        if self._evaluated.get(record.trigger_id) == key:
            return
        self._evaluated[record.trigger_id] = key
        announce("evaluated", record.trigger_id, record.namespace_id, **outcome)

    def _show(self, trigger_id: str, state: EvaluatorState) -> None:
        """Keep the trigger's state snapshot (what `ls` shows) current, off the firing path.

        One writer per trigger writes the latest state until it is shown, so a burst of
        wake-ups costs a write or two instead of one each, and never delays a firing.
        """
        self._to_show[trigger_id] = state
        if trigger_id not in self._writers:
            self._writers[trigger_id] = asyncio.create_task(self._write_shown(trigger_id))

    async def _write_shown(self, trigger_id: str) -> None:
        try:
            async with get_client() as client:
                while (state := self._to_show[trigger_id]) != self._shown.get(trigger_id):
                    await snapshots.save(client, snapshots.variable_name("state", trigger_id), state)
                    self._shown[trigger_id] = state
        except Exception:  # shown at the next decision instead
            _logger.exception("could not write the state snapshot of trigger %s", trigger_id)
        finally:
            del self._writers[trigger_id]

    async def _check_condition(
        self, client: PrefectClient, deployment: Any, record: TriggerRecord, config: ConditionalScheduleConfig
    ) -> None:
        trigger_id = record.trigger_id
        if trigger_id not in self._checked:  # first sight since start: continue from the last recorded check
            last = await last_measurement(client, trigger_id)
            self._checked[trigger_id] = last.checked_at if last else datetime.min.replace(tzinfo=timezone.utc)
        now = datetime.now(timezone.utc)
        if now - self._checked[trigger_id] < timedelta(seconds=config.check_interval_seconds):
            return
        self._checked[trigger_id] = now
        request = record.request
        collections = list(request.execution_config.collection_ids) if request.execution_config else None
        value, error = None, None
        try:
            value = await asyncio.to_thread(measure, trigger_id, config.metric, collections, request.cluster_id)
        except (ClusterTriggersError, ContractError) as exc:
            error = str(exc)
        except Exception as exc:  # a broken check is recorded as one, never stops the evaluator
            _logger.exception("check of trigger %s failed", trigger_id)
            error = f"{type(exc).__name__}: {exc}"
        crossed = error is None and (value is None or value > config.threshold)
        busy = crossed and await _busy(client, deployment.id)
        fired = crossed and not busy
        decision = ("check failed" if error else "already running" if busy else "fired" if fired
                    else "below threshold")
        measurement = Measurement(metric=config.metric, value=value, threshold=config.threshold, fired=fired,
                                  decision=decision, error=error, checked_at=now)
        emit_event(event=MEASURED, resource={"prefect.resource.id": trigger_resource(trigger_id)},
                   payload=measurement.model_dump(mode="json"))
        self._show(trigger_id, EvaluatorState(
            last_measurement=value, last_condition_check_at=now, last_check_error=error
        ))
        if fired:
            await client.create_flow_run_from_deployment(
                deployment.id, parameters={"firing": measurement.model_dump(mode="json")}, tags=[CONDITION_TAG],
                idempotency_key=f"{trigger_id}:check:{now.isoformat()}",
            )


async def _create_firing_run(client: PrefectClient, deployment: Any, record: TriggerRecord, firing: Firing) -> None:
    held_back = firing.documents is None
    key = f"cooldown:{firing.due.isoformat()}" if held_back else f"event:{firing.cutoff_event_id}"
    await client.create_flow_run_from_deployment(
        deployment.id,
        parameters={"firing": firing.model_dump(mode="json")},
        tags=[EVENT_TAG],
        state=Scheduled(scheduled_time=firing.due),
        idempotency_key=f"{record.trigger_id}:{key}",
    )
    _logger.info("trigger %s fired%s (%s)", record.trigger_id, " at the end of its cooldown" if held_back else "",
                 f"due {firing.due.isoformat()}" if held_back else f"{firing.documents} counted")


async def _busy(client: PrefectClient, deployment_id: Any) -> bool:
    """A run of the trigger is queued or running: a check does not pile another one on it."""
    return await client.count_flow_runs(deployment_filter=of_deployment(deployment_id),
                                        flow_run_filter=in_states(*_BUSY)) > 0


async def _trigger(client: PrefectClient, trigger_id: str) -> tuple[Any, TriggerRecord] | None:
    try:
        deployment = await client.read_deployment_by_name(f"{FLOW_NAME}/{trigger_id}")
    except ObjectNotFound:
        return None
    if TRIGGER_TAG not in deployment.tags:
        return None
    return deployment, TriggerRecord.model_validate(deployment.parameters["trigger"])


def _record_of(deployment: Any) -> TriggerRecord | None:
    try:
        return TriggerRecord.model_validate(deployment.parameters["trigger"])
    except (KeyError, ValueError):
        return None


async def _trigger_deployments(client: PrefectClient) -> list[Any]:
    tags = DeploymentFilter(tags=DeploymentFilterTags(all_=[TRIGGER_TAG]))
    found: list[Any] = []
    while True:
        page = await client.read_deployments(deployment_filter=tags, offset=len(found), limit=200)
        found += page
        if len(page) < 200:
            return found
