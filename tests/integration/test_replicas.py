"""Two `cluster-triggers api` replicas on one Prefect server; the sweeper is SIGKILLed mid-burst and restarted.

Wake-ups reach the replicas through a round-robin proxy (the load balancer a deployment puts in
front of them, `CLUSTER_TRIGGERS_WAKE_URL`), so both evaluate event triggers. Each of the 20
event triggers must fire exactly as often as one evaluator would: once per `threshold`
documents sent (threshold arithmetic on what the test sent). Each of the 10 conditional
triggers must decide every check slot once: fire it, or, when the last slot's run is still
queued (its runs are completed as they appear, which a busy server delays), record
`already running`. Nothing the killed replica held may hold a trigger up: the firings all
appear within three minutes.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import subprocess
import threading
import time
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import StateType
from prefect.events.worker import EventsWorker
from prefect.exceptions import ObjectAlreadyExists
from prefect.states import Completed

from prefect_cluster_triggers.blocks.collection_events import notify_collection
from prefect_cluster_triggers.core import checks
from prefect_cluster_triggers.core.firing import Decision
from prefect_cluster_triggers.deployments.prefect_objects.automations import automation_name, read_wake_webhook
from prefect_cluster_triggers.deployments.prefect_objects.event_reads import measurement_history
from prefect_cluster_triggers.deployments.prefect_objects.status import of_deployment
from prefect_cluster_triggers.deployments.prefect_objects.sweep_lease import sweeper
from prefect_cluster_triggers.deployments.prefect_objects.translate import CONDITION_TAG, EVENT_TAG, FLOW_NAME
from prefect_cluster_triggers.deployments.service import commands, queries
from prefect_cluster_triggers.deployments.stack.processes import BIN, child_process, free_port
from tests.integration.conftest import ApiProcess
from tests.integration.triggers import create

pytestmark = pytest.mark.skipif(
    not os.environ.get("CLUSTER_TRIGGERS_TEST_DATABASE_URL"),
    reason="replicas share a PostgreSQL-backed Prefect server in production: CI runs this test on PostgreSQL "
           "(set CLUSTER_TRIGGERS_TEST_DATABASE_URL to a database URL to run it here)")

NAMESPACE = "replicas"
POOL = "replicas-idle"  # no worker: firing runs stay as created, counted as they are
SWEEP = 4.0  # seconds; the sweep lease's beat is 2 s (its minimum)
CHECK = 60  # the shortest check interval
COLLECTIONS = {f"col_rep{j}": 1 + j % 3 for j in range(10)}  # collection -> documents per event
BURSTS = 5  # 30 events per collection: each event trigger fires 2 or 3 times
EVENTS_PER_BURST = 6  # per collection
KILL_AT, RESTART_AT = (2, 1), (3, 3)  # (burst, event): after every trigger fired once, before any fired twice
SETTLE = 6  # seconds in which no further firing may appear


def _event_triggers() -> dict[str, tuple[str, int]]:
    """trigger id -> (collection, threshold): two per collection, firing every 10 and every 13 events,
    with thresholds that are no multiple of the documents per event (a firing takes the whole event)."""
    found = {}
    for j, (collection, per_event) in enumerate(COLLECTIONS.items()):
        found[f"trg_rep_e{j}a"] = (collection, 10 * per_event - j % per_event)
        found[f"trg_rep_e{j}b"] = (collection, 12 * per_event + 1)
    return found


CONDITIONS = [f"trg_rep_c{j}" for j in range(10)]


def _expected_firings(trigger_id: str, events: int) -> tuple[int, int]:
    """(firings, documents each) one evaluator makes of `events` events of the trigger's collection."""
    collection, threshold = _event_triggers()[trigger_id]
    per_event = COLLECTIONS[collection]
    events_per_firing = -(-threshold // per_event)
    return events // events_per_firing, events_per_firing * per_event


class RoundRobin:
    """A TCP proxy on 127.0.0.1 handing each connection to the next replica that accepts it."""

    def __init__(self, ports: list[int]) -> None:
        self.ports, self.port = ports, free_port()
        self.connections = {p: 0 for p in ports}
        self._next = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in self.ports:
            port = self.ports[self._next % len(self.ports)]
            self._next += 1
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue  # that replica is down: the next one
            self.connections[port] += 1
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
            return
        writer.close()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


class Replica:
    """One `cluster-triggers api` process, which the test may SIGKILL."""

    def __init__(self, port: int, env: dict[str, str], log: Path) -> None:
        self.port, self.env, self.log = port, env, log
        self.process: subprocess.Popen | None = None
        self._stack: ExitStack | None = None

    def start(self) -> None:
        self._stack = ExitStack()
        self.process = self._stack.enter_context(
            child_process([BIN / "cluster-triggers", "api", "--port", str(self.port)], self.env, log=self.log))

    def wait_answering(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/openapi.json", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.process.poll() is None, f"replica on {self.port} exited; see {self.log}"
            assert time.monotonic() < deadline, f"replica on {self.port} not answering"
            time.sleep(0.25)

    @property
    def pid(self) -> int:
        """The `cluster-triggers api` process's own pid (`self.process` is the guard it runs under)."""
        guard = self.process.pid
        return int(Path(f"/proc/{guard}/task/{guard}/children").read_text().split()[0])

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.process.wait(10)
        self.stop()

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None


@pytest.fixture
def replicas(api_process: ApiProcess, server_env: dict[str, str], tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[list[Replica], RoundRobin]]:
    """The session's API stopped; two replicas of it behind a round-robin proxy; the session's API back after."""
    monkeypatch.setenv("CLUSTER_TRIGGERS_NAMESPACE", NAMESPACE)
    monkeypatch.setenv("CLUSTER_TRIGGERS_WORK_POOL", POOL)
    queries.run_sync(_create_pool())
    api_process.stop()
    ports = [free_port(), free_port()]
    proxy = RoundRobin(ports)
    env = {**server_env, **os.environ, "CLUSTER_TRIGGERS_EVALUATOR_SWEEP_SECONDS": str(SWEEP),
           "CLUSTER_TRIGGERS_WAKE_URL": f"http://127.0.0.1:{proxy.port}"}
    started = [Replica(port, env, tmp_path / f"replica-{i}.log") for i, port in enumerate(ports)]
    try:
        yield started, proxy
    finally:
        for replica in started:
            replica.stop()
        proxy.stop()
        queries.run_sync(_delete_all([*_event_triggers(), *CONDITIONS]))
        api_process.start()


async def _delete_all(trigger_ids: list[str]) -> None:
    """Delete the triggers at once (those not made, or gone, included): the session's later tests sweep less."""
    await asyncio.gather(*(commands.delete_trigger(t) for t in trigger_ids), return_exceptions=True)


async def _create_pool() -> None:
    async with get_client() as client:
        try:
            await client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
        except ObjectAlreadyExists:
            pass


async def _runs_by_trigger(trigger_ids: list[str], tag: str) -> dict[str, list[Any]]:
    async with get_client() as client:
        found = {}
        for trigger_id in trigger_ids:
            deployment = await client.read_deployment_by_name(f"{FLOW_NAME}/{trigger_id}")
            found[trigger_id] = await client.read_flow_runs(
                deployment_filter=of_deployment(deployment.id),
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])))
        return found


async def _automations_exist() -> bool:
    async with get_client() as client:
        names = {a.name for a in await client.read_automations()}
    return all(automation_name(t) in names for t in _event_triggers())


def _complete_condition_runs(stop: threading.Event) -> None:
    """Complete each conditional firing as it appears (as a worker would), so the next slot is not busy."""
    async def complete(deployment_ids: list[Any]) -> None:
        async with get_client() as client:
            runs = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=deployment_ids)),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
                    any_=[StateType.SCHEDULED, StateType.PENDING]))))
            for run in runs:
                await client.set_flow_run_state(run.id, Completed(), force=True)

    async def ids() -> list[Any]:
        async with get_client() as client:
            return [(await client.read_deployment_by_name(f"{FLOW_NAME}/{t}")).id for t in CONDITIONS]

    deployment_ids = queries.run_sync(ids())
    while not stop.wait(2.0):
        try:
            queries.run_sync(complete(deployment_ids))
        except Exception:  # the server busy: the next round
            pass


def _watch_sweeps(sweeps: dict[tuple[str, datetime], datetime], stop: threading.Event) -> None:
    """Record every sweep the sweepers report in the lease, (holder, start) -> end, until `stop`."""
    while not stop.wait(0.5):
        try:
            report = queries.run_sync(_sweeper()) or {}
        except Exception:  # the server busy: the next round
            continue
        if report.get("last_sweep_started_at"):
            start = datetime.fromisoformat(report["last_sweep_started_at"])
            sweeps[(report["holder"], start)] = start + timedelta(seconds=report["last_sweep_seconds"])


def _wait(condition: Any, timeout: float, what: str, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(every)


def _sweeper_pid() -> int | None:
    holder = queries.run_sync(_sweeper())
    return int(holder["holder"].split(":")[1]) if holder else None


async def _sweeper() -> dict[str, Any] | None:
    async with get_client() as client:
        return await sweeper(client)


def test_two_replicas_one_killed_mid_burst_fire_every_trigger_exactly_once(replicas) -> None:
    started, proxy = replicas
    execution = {"collection_ids": ["col_rep0"], "config": {"algorithm": "kmeans", "n_clusters": 2}}
    for trigger_id, (collection, threshold) in _event_triggers().items():
        create({"trigger_type": "event", "execution_config": execution,
                "schedule_config": {"event_type": "documents_added", "event_threshold": threshold,
                                    "collection_id": collection, "cooldown_seconds": 0}}, trigger_id)
    for trigger_id in CONDITIONS:
        create({"trigger_type": "conditional", "execution_config": execution,
                "schedule_config": {"condition_type": "drift", "metric": "cosine_drift", "threshold": 0.05,
                                    "check_interval_seconds": CHECK}}, trigger_id)
    for replica in started:
        replica.start()
    for replica in started:
        replica.wait_answering()
    _wait(lambda: _sweeper_pid() in {r.pid for r in started}, 30, "a replica to sweep")
    first_sweep = _sweep_after(datetime.now(timezone.utc) - timedelta(minutes=5), 60)[1]  # checked all by its end
    _wait(lambda: (queries.run_sync(read_wake_webhook()) or (None,))[0] == f"http://127.0.0.1:{proxy.port}", 30,
          "the sweeper to point the wake-up webhook at the proxy")
    _wait(lambda: queries.run_sync(_automations_exist()), 30, "the event triggers' automations")
    stop_completing = threading.Event()
    completer = threading.Thread(target=contextvars.copy_context().run, args=(_complete_condition_runs, stop_completing),
                                 daemon=True)  # the test's Prefect settings (its server) in the thread too
    completer.start()
    sweeps: dict[tuple[str, datetime], datetime] = {}  # (holder, start) -> end of every sweep reported
    watcher = threading.Thread(target=contextvars.copy_context().run, args=(_watch_sweeps, sweeps, stop_completing),
                               daemon=True)
    watcher.start()

    sent, victim, handover, killed_wall, swept_again = 0, None, 0.0, None, None
    for burst in range(BURSTS):
        for event in range(EVENTS_PER_BURST):
            for collection, per_event in COLLECTIONS.items():
                notify_collection(collection, count=per_event, namespace=NAMESPACE)
            sent += 1
            if (burst, event) == KILL_AT:  # mid-burst: SIGKILL the replica that sweeps
                EventsWorker.drain_all()
                victim = next(r for r in started if r.pid == _sweeper_pid())
                killed, killed_at, killed_wall = victim.pid, time.monotonic(), datetime.now(timezone.utc)
                victim.kill()
                _wait(lambda: _sweeper_pid() not in (None, killed), 30, "another replica to sweep")
                handover = time.monotonic() - killed_at
                swept_again = datetime.now(timezone.utc)  # the new sweeper sweeps at once
                new_sweeper = queries.run_sync(_sweeper())["holder"]
            if (burst, event) == RESTART_AT:  # mid-burst: back
                victim.start()
            time.sleep(0.02)
        EventsWorker.drain_all()
        time.sleep(1.0)
    victim.wait_answering()
    print(f"sweep lease handed over {handover:.1f} s after the SIGKILL (sweep interval {SWEEP} s); "
          f"wake-up connections per replica: {proxy.connections}")

    expected = {t: _expected_firings(t, sent) for t in _event_triggers()}

    def all_fired() -> bool:
        runs = queries.run_sync(_runs_by_trigger(list(expected), EVENT_TAG))
        short = {t: (len(runs[t]), n) for t, (n, _) in expected.items() if len(runs[t]) < n}
        print(f"{time.strftime('%X')} firings short of the expected (made, expected): {short}", flush=True)
        return not short

    assert sum(proxy.connections.values()) > 0, "no wake-up reached a replica through the proxy"
    _wait(all_fired, 180, "every event trigger's firings", every=3.0)  # nothing the victim held can hold a trigger up
    time.sleep(SETTLE)
    runs = queries.run_sync(_runs_by_trigger(list(expected), EVENT_TAG))
    got = {t: (len(found), sorted({r.parameters["firing"]["documents"] for r in found})) for t, found in runs.items()}
    assert got == {t: (n, [each]) for t, (n, each) in expected.items()}

    # Conditional triggers: every check slot from the first sweep's to that of a sweep started after the
    # firings decided once. Only a slot from the SIGKILL's to the one in which the new sweeper's first sweep
    # ended may be left out: the dead sweeper may not have reached a trigger in it, and the new one's first
    # sweep (every trigger, on a busy server) may reach it only in the next slot.
    last_sweep = _sweep_after(datetime.now(timezone.utc), 150, within_a_slot=True)[0]
    stop_completing.set()
    completer.join(10)
    watcher.join(10)
    interval = timedelta(seconds=CHECK)
    first, last = checks.check_slot(first_sweep, CHECK), checks.check_slot(last_sweep, CHECK)
    taken_over = min(((start, end) for (holder, start), end in sweeps.items()
                      if holder == new_sweeper and start >= killed_wall), default=(swept_again, swept_again))[1]
    excusable = {s for s in _slots(checks.check_slot(killed_wall, CHECK), last)
                 if s < checks.check_slot(max(taken_over, swept_again + timedelta(seconds=SWEEP)), CHECK)}
    checked = queries.run_sync(_runs_by_trigger(CONDITIONS, CONDITION_TAG))
    for trigger_id, found in checked.items():
        slots = sorted(checks.check_slot(datetime.fromisoformat(r.parameters["firing"]["checked_at"]), CHECK)
                       for r in found)
        assert len(slots) == len(set(slots)), f"{trigger_id}: a slot fired twice: {slots}"
        busy = queries.run_sync(_slots_decided(trigger_id, Decision.already_running))  # the last slot's run not done yet
        missed = set(_slots(first, last)) - set(slots) - busy - excusable
        assert not missed, f"{trigger_id}: slots {sorted(missed)} never fired: {slots} (first sweep {first_sweep}, " \
                           f"SIGKILL {killed_wall}, new sweeper {swept_again}, its first sweep ended {taken_over}, " \
                           f"last sweep {last_sweep}, every {interval})"


async def _slots_decided(trigger_id: str, decision: Decision) -> set[datetime]:
    """The check slots in which the trigger's recorded check decided `decision`."""
    async with get_client() as client:
        found = await measurement_history(client, trigger_id, limit=50)
    return {checks.check_slot(m.checked_at, CHECK) for m in found if m.decision == decision}


def _slots(first: datetime, last: datetime) -> list[datetime]:
    """The check slots from `first` to `last`, both included."""
    return [first + i * timedelta(seconds=CHECK) for i in range((last - first) // timedelta(seconds=CHECK) + 1)]


def _sweep_after(moment: datetime, timeout: float, *, within_a_slot: bool = False) -> tuple[datetime, datetime]:
    """(start, end) of the first finished sweep started after `moment` that the sweeper reports in the lease;
    `within_a_slot`: one that started and ended in the same check slot, so it checked every trigger in it."""
    found: list[tuple[datetime, datetime]] = []

    def swept() -> bool:
        report = queries.run_sync(_sweeper()) or {}
        if not report.get("last_sweep_started_at"):
            return False
        start = datetime.fromisoformat(report["last_sweep_started_at"])
        end = start + timedelta(seconds=report["last_sweep_seconds"])
        if start > moment and (not within_a_slot or checks.check_slot(start, CHECK) == checks.check_slot(end, CHECK)):
            found.append((start, end))
        return bool(found)

    _wait(swept, timeout, f"a sweep started after {moment}")
    return found[0]
