"""The evaluator: fires event and conditional triggers, exactly, from what Prefect records.

It runs inside every `cluster-triggers api` replica of a Prefect server and acts on two inputs:

* wake-ups: each event trigger's automation posts every matching event to the API's wake
  endpoint; the evaluator adds the event to what it knows (Prefect's events API shows an
  event only after its next persistence flush) and re-plans that trigger at once;
* a sweep every `evaluator_sweep_seconds`, by the one replica holding the sweep lease
  (`prefect_objects.sweep_lease`; another takes over within a sweep interval when it dies). It
  visits the triggers that may have changed (`core.sweeps`: a changed deployment, an event that
  names the trigger, a held-back firing or check slot come due, and a sixtieth of the others):
  an event trigger is re-planned from Prefect's events (catching a wake-up an automation
  dropped), its automation brought in line with its status (also for triggers made by
  `prefect deploy`), a due conditional check is run, a run record whose run ended without our
  code (a killed process) is recounted, and the trigger's page in the Prefect UI is brought up
  to date (`service.dashboard`).

The decisions are pure (`core.firing`, `core.checks`); the services here feed them and act:
`event_triggers`, `condition_triggers`, and `shown` (what a trigger shows between runs,
written in the background); paused event triggers are re-counted too, never fired.

A firing is a flow run of the trigger's deployment tagged `trigger-run:event` (or
`trigger-run:condition`) whose `firing` parameter records what it consumed; runs are
created with an idempotency key derived from the data (the event that completed the count,
the cooldown's due time, the condition check's slot), so a second evaluator or a replayed
wake-up cannot fire twice, and an event trigger's checkpoint is saved with the firings it decided
by compare-and-set before they are made (`cursors`), so two replicas never fire from different
views of its events, and one killed at any instant holds nothing up. Everything decided from lives in Prefect, so restarting any process loses nothing.
A trigger that is not active is never fired, and its runs are cancelled at start.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import secrets
import socket
import time
from contextlib import asynccontextmanager, suppress
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Awaitable
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.logging import get_logger

from prefect_cluster_triggers.blocks.result_store import ResultStore, default_result_store_with
from prefect_cluster_triggers.core import sweeps
from prefect_cluster_triggers.core.contract import (
    ConditionalScheduleConfig,
    EventScheduleConfig,
    TriggerStatus,
    TriggerType,
)
from prefect_cluster_triggers.core.firing import collection_resource
from prefect_cluster_triggers.core.models import format_utc
from prefect_cluster_triggers.core.settings import get_settings
from prefect_cluster_triggers.deployments.evaluator.condition_triggers import ConditionTriggers
from prefect_cluster_triggers.deployments.evaluator.event_triggers import DeploymentChanged, EventTriggers
from prefect_cluster_triggers.deployments.evaluator.shown import ShownState
from prefect_cluster_triggers.deployments.prefect_objects import batched_reads, cursors, records, trigger_records
from prefect_cluster_triggers.deployments.prefect_objects.automations import (
    automation_name,
    automations_by_name,
    read_wake_webhook,
    save_wake_webhook,
    sync_automation,
    wake_webhook_id,
)
from prefect_cluster_triggers.deployments.prefect_objects.client import CONNECTIONS, prefect_client
from prefect_cluster_triggers.deployments.prefect_objects.deployment_reads import TriggerDeployments, parsed
from prefect_cluster_triggers.deployments.prefect_objects.event_reads import Touched, touched_triggers
from prefect_cluster_triggers.deployments.prefect_objects.status import trigger_status
from prefect_cluster_triggers.deployments.prefect_objects.sweep_lease import SweepLease
from prefect_cluster_triggers.deployments.prefect_objects.translate import (
    TRIGGER_TAG,
    TriggerRecord,
    stored_record,
    type_tag,
)
from prefect_cluster_triggers.deployments.service import dashboard, idempotency, queries

_logger = get_logger("cluster_triggers.evaluator")
_KEYS_EXPIRE_EVERY = timedelta(hours=1)
_BEATS_PER_SWEEP = 5  # a dead sweeper is replaced within (MISSED_BEATS + 1) beats + settle (1 s): 0.8 interval + 1 s
_MIN_BEAT = 2.0  # seconds: a beat a loaded server answers within (a missed beat drops the lease)
_TOKEN_REREAD = 1.0  # seconds between re-reads of the wake-up secret on an unknown one


class WakeUpsFirst:
    """While a wake-up is evaluated, the sweep's next Prefect calls and checks wait for it (each at most
    `YIELD_SECONDS`).

    On a busy Prefect server every call queues behind those already sent, and a sweep at thousands
    of triggers keeps `CONNECTIONS` calls in flight (due checks, pages, automations), so a firing's
    calls, one after the other, each waited behind a sweep's. The sweep's work can wait a moment; the
    firing is what a user measures. The wait is bounded, so a steady stream of events slows the sweep
    but never stops it."""

    YIELD_SECONDS = 1.0

    def __init__(self) -> None:
        self._evaluating = 0
        self._quiet = asyncio.Event()
        self._quiet.set()

    @asynccontextmanager
    async def evaluating(self) -> AsyncIterator[None]:
        """Around a wake-up's evaluation."""
        self._evaluating += 1
        self._quiet.clear()
        try:
            yield
        finally:
            self._evaluating -= 1
            if not self._evaluating:
                self._quiet.set()

    async def yield_to_wake_ups(self) -> None:
        """Wait until no wake-up is being evaluated, or `YIELD_SECONDS`."""
        if not self._quiet.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(self._quiet.wait(), self.YIELD_SECONDS)

    async def before_sweep_call(self, request: httpx.Request) -> None:
        """The sweep's client's request hook."""
        await self.yield_to_wake_ups()


class Evaluator:
    """Fires the event and conditional triggers of one Prefect server, as one of any number of replicas."""

    def __init__(self, wake_url: str) -> None:
        self.wake_url = wake_url
        self.token = secrets.token_urlsafe(32)
        self.shown = ShownState()
        self.events = EventTriggers(self.shown)
        self.conditions = ConditionTriggers(self.shown)
        self._webhook_id: UUID | None = None
        self._tasks: list[asyncio.Task] = []
        self._keys_expire_at = 0.0
        self._token_read_at = 0.0
        self._sweep_now = asyncio.Event()
        self.memory = sweeps.SweepMemory()
        self.deployments = TriggerDeployments()  # read whole on a sweep with no memory, else those changed
        self._counts: dict[str, str] = {}  # event trigger -> the collection resource it counts, as last visited
        self.wake_ups_first = WakeUpsFirst()
        beat = max(_MIN_BEAT, get_settings().evaluator.evaluator_sweep_seconds / _BEATS_PER_SWEEP)
        holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.lease = SweepLease(holder, wake_url, beat_seconds=beat)

    async def start(self) -> None:
        """Take the wake-up secret the replicas share (making it when none exists), then keep the
        sweep lease and sweep while holding it."""
        existing = await read_wake_webhook()
        if existing is None:
            self._webhook_id = await save_wake_webhook(self.wake_url, self.token)
        else:
            self.token = existing.token
            async with get_client() as client:
                self._webhook_id = await wake_webhook_id(client)
        self._tasks = [asyncio.create_task(self._keep_lease()), asyncio.create_task(self._sweep_forever()),
                       asyncio.create_task(_move_records())]

    async def stop(self) -> None:
        """Stop sweeping and give the sweep lease up (wake-ups in flight finish)."""
        for task in self._tasks:
            task.cancel()
        try:
            async with get_client() as client:
                await self.lease.release(client)
        except Exception:  # the others take over once its beat stops
            _logger.warning("could not release the sweep lease; another replica takes over within %.0f s",
                            self.lease.silence)

    async def accepts(self, authorization: str | None) -> bool:
        """Whether a wake-up carries the webhook's secret; re-read from the webhook block (at most once a
        second) when it does not match, since a replica that started at the same time may have written it."""
        if _same(authorization, self.token):
            return True
        if time.monotonic() - self._token_read_at < _TOKEN_REREAD:
            return False
        self._token_read_at = time.monotonic()
        current = await read_wake_webhook()
        if current is not None:
            self.token = current.token
        return _same(authorization, self.token)

    async def wake(self, trigger_id: str, event: dict[str, Any]) -> None:
        """One matching event, straight from the trigger's automation: counted, and the trigger re-planned.

        The trigger's deployment is read again, but when the last sweep saw it active its evaluation starts
        from that copy, reading the trigger's checkpoint and events while the deployment is read: a round
        trip off the firing's path. Nothing is planned from the copy unless the deployment read now is the
        same (`DeploymentChanged` starts again from the new one)."""
        async with prefect_client() as client, self.wake_ups_first.evaluating():
            reading = asyncio.ensure_future(_trigger(client, trigger_id))
            seen = _active(self.deployments.raws.get(trigger_id))
            try:
                if seen is not None and self.events.received(seen[1], event):
                    try:
                        return await self._evaluate_woken(client, *seen, current=reading)
                    except DeploymentChanged:
                        pass
                found = await reading
            finally:
                reading.cancel()
            if found is None:
                return
            deployment, record = found
            if self.events.received(record, event) and \
                    trigger_status(deployment.paused, deployment.tags) == TriggerStatus.active:
                await self._evaluate_woken(client, deployment, record)

    async def _evaluate_woken(self, client: PrefectClient, deployment: Any, record: TriggerRecord, *,
                              current: Awaitable[tuple[Any, TriggerRecord] | None] | None = None) -> None:
        try:
            await self.events.evaluate(client, deployment, record, current=current)
        except DeploymentChanged:
            raise
        except Exception as exc:  # a busy server: the event is kept, the next wake-up or sweep counts it
            _logger.warning("evaluating trigger %s on a wake-up failed (%s); the next evaluation counts it",
                            record.trigger_id, exc)

    async def sweep(self) -> int:
        """One pass over the triggers that may have changed (`core.sweeps`) and a slice of the rest:
        automations in line, owed firings made, due checks run, run records that missed a run (a
        killed process) recounted, the triggers' pages in the Prefect UI brought up to date;
        hourly, Idempotency-Keys past their lifetime deleted. How many triggers it visited."""
        began = datetime.now(timezone.utc)
        hooks = {"request": [self.wake_ups_first.before_sweep_call]}
        async with get_client(httpx_settings={"event_hooks": hooks}) as client:
            await self._point_webhook_here()
            if time.monotonic() >= self._keys_expire_at:
                self._keys_expire_at = time.monotonic() + _KEYS_EXPIRE_EVERY.total_seconds()
                await idempotency.expire(client)
            await self.deployments.refresh(client, sweeps.events_since(self.memory))
            raws, fingerprints = self.deployments.raws, self.deployments.fingerprints
            found = await self._touched(client, raws)
            named = None if found is None else found.named
            touched = None if named is None else sweeps.newly_named(named, self.memory)
            for kept in (self.events.due, self.conditions.due, self._counts):  # of triggers that still exist
                for gone in kept.keys() - raws.keys():
                    del kept[gone]
            due = {**self.events.due, **self.conditions.due}
            visit = sweeps.to_visit(fingerprints, self.memory, touched, due, now=began)
            settled = set() if found is None else sweeps.evaluated_already(
                found.named, found.counted, self.memory, self.events.handled(), fingerprints, due, now=began)
            checks = type_tag(TriggerType.conditional)  # first: a check has its slot to meet
            deployments = [parsed(raws[t]) for t in sorted(visit, key=lambda t: (checks not in raws[t]["tags"], t))]
            automations: dict[str, list[Any]] | None = None  # a full sweep reads them all at once
            store = await default_result_store_with(client)  # once for the sweep's checks
            if touched is None:
                automations = await automations_by_name(client)
            parallel, failed = asyncio.Semaphore(CONNECTIONS), set()

            async def one(deployment: Any) -> None:
                async with parallel:
                    if not self.lease.held:
                        return  # another replica sweeps now
                    try:
                        await self._sweep_one(client, deployment, automations, store,
                                              evaluate=deployment.name not in settled,
                                              changed=self.memory.seen.get(deployment.name) != fingerprints[deployment.name])
                    except Exception:  # one broken trigger must not starve the others
                        failed.add(deployment.name)
                        _logger.exception("evaluating deployment %s failed; retrying at the next sweep",
                                          deployment.name)

            await asyncio.gather(*(one(d) for d in deployments))
            if not self.lease.held:
                return 0
            usable = {d.id: r for d in deployments if (r := stored_record(d)) is not None}
            trigger_ids = {deployment_id: r.trigger_id for deployment_id, r in usable.items()}
            await trigger_records.recount_missed(client, trigger_ids, now=datetime.now(timezone.utc))
            ids = list(trigger_ids.values())
            stored = await records.read(client, trigger_records.record_names(ids))
            stored |= {trigger_records.record_name(trigger_records.STATE, t): state.model_dump(mode="json")
                       for t, state in self.shown.pending(ids).items()}  # this sweep's decisions, their writes in flight
            shown = await queries.statuses(client, [d for d in deployments if d.id in usable], stored=stored)
            await dashboard.publish_changed(client, shown)
            sweeps.remember(self.memory, fingerprints, visit, began=began, failed=failed, named=named)
            return len(deployments)

    async def _touched(self, client: PrefectClient, raws: dict[str, dict[str, Any]]) -> Touched | None:
        """The triggers events named since the last sweep (`core.sweeps.events_since`), with those events;
        None: visit all (the first sweep since taking the lease, or the events could not be read or were too many)."""
        since = sweeps.events_since(self.memory)
        if since is None:
            return None
        counted: dict[str, list[str]] = {}
        for trigger_id, resource in self._counts.items():
            counted.setdefault(resource, []).append(trigger_id)
        try:
            return await touched_triggers(client, since, deployments={r["id"]: t for t, r in raws.items()},
                                          collections=counted)
        except Exception:  # Prefect busy or restarting: this sweep visits every trigger
            _logger.warning("could not read the events since %s; this sweep visits every trigger", since,
                            exc_info=True)
            return None

    async def _sweep_one(self, client: PrefectClient, deployment: Any, automations: dict[str, list[Any]] | None,
                         store: ResultStore, *, evaluate: bool, changed: bool) -> None:
        """Bring one trigger in line: its automation, and (unless `evaluate` is False: a wake-up evaluated
        it after each of its new events) its event plan or due check.

        Only an event trigger has an automation: another one's is looked for when its deployment
        changed (a PATCH from an event trigger) or on a full sweep, not at each of its checks."""
        record = stored_record(deployment)
        if record is None:
            return  # it cannot run; `get` and `ls` show why (stored_problem)
        status = trigger_status(deployment.paused, deployment.tags)
        config = record.request.schedule_config
        if isinstance(config, EventScheduleConfig) or changed or automations is not None:
            existing = None if automations is None else automations.get(automation_name(record.trigger_id), [])
            await sync_automation(client, record, deployment.id, status, self._webhook_id, existing)
        if isinstance(config, EventScheduleConfig):
            self._counts[record.trigger_id] = collection_resource(record.namespace_id, config.collection_id)
        else:
            self._counts.pop(record.trigger_id, None)
        if isinstance(config, EventScheduleConfig) and status != TriggerStatus.disabled:
            if evaluate:
                await self.events.evaluate(client, deployment, record, status=status)
        elif isinstance(config, ConditionalScheduleConfig) and status == TriggerStatus.active:
            await self.wake_ups_first.yield_to_wake_ups()  # a check's measurement reads Prefect with a client of its own
            await self.conditions.check(client, deployment, record, config, store)
        else:
            self.conditions.due.pop(record.trigger_id, None)  # paused or deleted: no check until it changes

    async def _keep_lease(self) -> None:
        """Step the sweep lease every beat; on taking it, point the wake-up webhook here and sweep at once."""
        async with get_client() as client:
            while True:
                began, was_held = time.monotonic(), self.lease.held
                try:
                    if await self.lease.step(client) and not was_held:
                        _logger.info("this replica (%s) now sweeps", self.lease.holder)
                        self.memory.forget()  # others swept meanwhile: its first sweep visits every trigger
                        try:
                            await self._point_webhook_here()
                        finally:
                            self._sweep_now.set()
                except TimeoutError:  # a busy server: a missed beat
                    _logger.warning("a beat of the sweep lease took over %.1f s", self.lease.beat_seconds)
                except Exception:  # Prefect restarting: try again at the next beat
                    _logger.exception("could not step the sweep lease")
                await asyncio.sleep(max(0.0, self.lease.beat_seconds - (time.monotonic() - began)))

    async def _point_webhook_here(self) -> None:
        """The wake-up webhook at this replica's address (the same one when replicas share a load balancer's).

        On taking the lease and at every sweep: a replica that stopped (or a stack's API on another
        address) may have written its own address after this one took the lease."""
        current = await read_wake_webhook()
        if current is None or current.url != self.wake_url.rstrip("/"):
            _logger.warning("the wake-up webhook pointed at %s; pointing it at this sweeper, %s",
                            current.url if current else None, self.wake_url)
            self._webhook_id = await save_wake_webhook(self.wake_url, current.token if current else self.token)

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._sweep_now.wait(), get_settings().evaluator.evaluator_sweep_seconds)
            except TimeoutError:
                pass
            self._sweep_now.clear()
            if not self.lease.held:
                continue
            try:
                began, started, cpu = datetime.now(timezone.utc), time.monotonic(), time.process_time()
                visited = await self.sweep()
                self.lease.report = {"last_sweep_started_at": format_utc(began),
                                     "last_sweep_seconds": round(time.monotonic() - started, 3),
                                     "last_sweep_cpu_seconds": round(time.process_time() - cpu, 3),
                                     "last_sweep_visited": visited}
            except Exception:  # a sweep that fails (Prefect restarting) is retried at the next one
                _logger.exception("sweep failed; retrying in %s s", get_settings().evaluator.evaluator_sweep_seconds)


async def _move_records() -> None:
    """Move the records earlier versions kept in Prefect Variables or named block documents (once per start,
    beside the sweeps): a write to either is a Prefect event, stored and matched against every automation."""
    derived = [trigger_records.record_name(trigger_records.RUNS, ""), trigger_records.record_name(trigger_records.STATE, ""),
               cursors.cursor_name("")]
    try:
        async with get_client() as client:
            moved = await records.move_from_variables(client)
            made = await records.make_anonymous(client, derived)
    except Exception:  # Prefect restarting: the next start moves the rest
        _logger.exception("could not move the records of an earlier version; the next start tries again")
        return
    if moved or made:
        _logger.info("moved %d records from Prefect Variables to blocks, made %d named records anonymous", moved, made)


def _same(authorization: str | None, token: str) -> bool:
    return hmac.compare_digest((authorization or "").encode(), f"Bearer {token}".encode())


def _active(raw: dict[str, Any] | None) -> tuple[Any, TriggerRecord] | None:
    """A deployment as a sweep read it, with its record, when its trigger was active then."""
    if raw is None or TRIGGER_TAG not in raw.get("tags", ()):
        return None
    deployment = parsed(raw)
    record = stored_record(deployment)
    if record is None or trigger_status(deployment.paused, deployment.tags) != TriggerStatus.active:
        return None
    return deployment, record


async def _trigger(client: PrefectClient, trigger_id: str) -> tuple[Any, TriggerRecord] | None:
    deployment = await batched_reads.trigger_deployment(client, trigger_id)  # a burst of wake-ups: a few reads
    if deployment is None:
        return None
    record = stored_record(deployment)
    if TRIGGER_TAG not in deployment.tags or record is None:
        return None
    return deployment, record
