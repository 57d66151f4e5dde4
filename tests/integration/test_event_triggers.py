"""Event and conditional triggers end to end: a real Prefect server, its automations, a worker, the evaluator."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.events import emit_event
from prefect.events.actions import DoNothing
from prefect.events.schemas.automations import AutomationCore, EventTrigger
from prefect.events.worker import EventsWorker

from prefect_cluster_triggers.blocks.collection_events import notify_collection
from prefect_cluster_triggers.blocks.collections import HttpCollection, open_collection
from prefect_cluster_triggers.core.firing import Decision, collection_resource
from prefect_cluster_triggers.core.names import namespace_id_of, owned_name
from prefect_cluster_triggers.deployments.prefect_objects.automations import automation_name
from prefect_cluster_triggers.deployments.prefect_objects.client import PAGE
from prefect_cluster_triggers.deployments.prefect_objects.event_reads import Measurement, measurement_history
from prefect_cluster_triggers.deployments.prefect_objects.status import of_deployment
from prefect_cluster_triggers.deployments.prefect_objects.sweep_lease import sweeper
from prefect_cluster_triggers.deployments.prefect_objects.translate import CONDITION_TAG, EVENT_TAG, FLOW_NAME
from prefect_cluster_triggers.deployments.service import commands, queries
from tests.integration.conftest import ApiProcess
from tests.integration.triggers import PATIENCE, create, feed, get, wait_for

pytestmark = pytest.mark.usefixtures("prefect_worker", "api")
_SETTLE = 8  # seconds: four evaluator sweeps, in which no further firing may appear
_CENTRES = np.random.default_rng(11).normal(size=(3, 16)) * 5


def _blobs(n: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (_CENTRES[rng.integers(0, 3, n)] + rng.normal(size=(n, 16)) + shift).astype(np.float32)


def _event_trigger(collection_id: str, threshold: int, cooldown: int, **request: object) -> dict:
    return {
        "trigger_type": "event",
        "schedule_config": {"event_type": "documents_added", "event_threshold": threshold,
                            "collection_id": collection_id, "cooldown_seconds": cooldown},
        "execution_config": {"collection_ids": [collection_id], "config": {"algorithm": "kmeans", "n_clusters": 3}},
        **request,
    }


def _runs(trigger_id: str, tag: str) -> list:
    async def read() -> list:
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(f"{FLOW_NAME}/{trigger_id}")
            return await client.read_flow_runs(deployment_filter=of_deployment(deployment.id),
                                               flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])))
    return queries.run_sync(read())


def _wait_runs(trigger_id: str, tag: str, count: int, timeout: float = PATIENCE) -> list:
    deadline = time.monotonic() + timeout
    while len(runs := _runs(trigger_id, tag)) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"{trigger_id}: {len(runs)} runs tagged {tag}, expected {count}")
        time.sleep(0.5)
    return runs


def _automation_enabled(trigger_id: str) -> bool | None:
    async def read() -> bool | None:
        async with get_client() as client:
            found = await client.read_automations_by_name(automation_name(trigger_id))
            return found[0].enabled if found else None
    return queries.run_sync(read())


def test_250_documents_in_5_batches_fire_exactly_twice() -> None:
    collection = open_collection("col_batches")
    create(_event_trigger("col_batches", threshold=100, cooldown=0), "trg_batches")
    assert _automation_enabled("trg_batches") is True
    for batch in range(5):
        collection.add_documents(_blobs(50, seed=batch))
    _wait_runs("trg_batches", EVENT_TAG, 2)
    time.sleep(_SETTLE)
    runs = _runs("trg_batches", EVENT_TAG)
    assert len(runs) == 2
    assert sorted(r.parameters["firing"]["documents"] for r in runs) == [100, 100]
    trigger = wait_for("trg_batches", lambda t: t.execution_count == 2 and t.last_execution_status == "completed")
    assert trigger.event_counter == 50 and trigger.last_cooldown_at is None


def test_50_events_sent_0_ms_apart_fire_exactly_once() -> None:
    open_collection("col_burst").add_documents(_blobs(60, seed=5))  # data to cluster; before the trigger
    create(_event_trigger("col_burst", threshold=50, cooldown=300), "trg_burst")
    for _ in range(50):
        notify_collection("col_burst", "documents_added")
    runs = _wait_runs("trg_burst", EVENT_TAG, 1)
    time.sleep(_SETTLE)
    fired = [r.parameters["firing"] for r in _runs("trg_burst", EVENT_TAG)]
    assert len(fired) == 1 and runs[0].parameters["firing"]["documents"] == 50, fired
    assert get("trg_burst").event_counter == 0


_COOLDOWN = 45
"""Longer than a busy server takes to deliver the second add's event, so it arrives within the cooldown."""


def test_cooldown_holds_a_firing_back_then_lets_it_through(cli) -> None:
    collection = open_collection("col_cooldown")
    create(_event_trigger("col_cooldown", threshold=10, cooldown=_COOLDOWN), "trg_cooldown")
    collection.add_documents(_blobs(10, seed=1))
    collection.add_documents(_blobs(15, seed=2))
    held = wait_for("trg_cooldown", lambda t: t.last_cooldown_at is not None)
    assert held.event_counter == 15, "events during the cooldown still count"
    runs = _wait_runs("trg_cooldown", EVENT_TAG, 2)
    [first] = [r for r in runs if r.parameters["firing"]["documents"] == 10]
    deferred = [r for r in runs if r.parameters["firing"]["documents"] is None]
    assert len(deferred) == 1, "one firing held back, scheduled for the cooldown's end"
    wait = (deferred[0].expected_start_time - first.expected_start_time).total_seconds()
    assert wait == pytest.approx(_COOLDOWN, abs=0.5)
    done = wait_for("trg_cooldown", lambda t: t.execution_count == 2 and t.last_execution_status == "completed")
    assert done.event_counter == 0 and done.last_triggered_at >= deferred[0].expected_start_time
    assert len(_runs("trg_cooldown", EVENT_TAG)) == 2

    # Why it fired, held back, then fired: in Prefect's event feed and from the CLI.
    events = feed("trg_cooldown", lambda names: names.count("cluster.trigger.fired") == 2
                  and "cluster.trigger.created" in names)
    assert events[0].event == "cluster.trigger.created"
    assert events[0].related[0].id == f"cluster-namespace.{done.namespace_id}"
    decisions = [e.payload["decision"] for e in events if e.event == "cluster.trigger.evaluated"]
    assert decisions[decisions.index("fired"):].count("cooldown") >= 1, decisions
    held_back = next(e for e in events if e.payload.get("decision") == "cooldown")
    cooldown = held_back.payload
    assert cooldown["event_counter"] == 15 and cooldown["threshold"] == 10
    assert 0 < cooldown["cooldown_remaining_seconds"] <= _COOLDOWN
    # Stamped when decided, not when published: its time plus the time it says remains is the cooldown's end.
    until = datetime.fromisoformat(cooldown["held_back_until"])
    assert abs((until - held_back.occurred).total_seconds() - cooldown["cooldown_remaining_seconds"]) <= 0.1
    assert {(r.id, r.name) for r in held_back.related if r.role == "decision"} == {
        ("cluster-decision.cooldown", cooldown["message"])}
    assert [e.payload["reason"] for e in events if e.event == "cluster.trigger.fired"] == ["event", "event"]
    shown = cli("history", "trg_cooldown", "--evaluations", "--json")
    assert shown.returncode == 0, shown.stderr
    listed = json.loads(shown.stdout)["evaluations"]
    assert [e["decision"] for e in reversed(listed)] == decisions
    assert listed[0]["occurred"].endswith("Z")


def test_a_paused_trigger_never_runs_and_counts_on() -> None:
    collection = open_collection("col_paused")
    create(_event_trigger("col_paused", threshold=10, cooldown=0, status="paused"), "trg_paused")
    assert _automation_enabled("trg_paused") is False
    collection.add_documents(_blobs(30, seed=3))
    time.sleep(_SETTLE)
    trigger = get("trg_paused")
    assert _runs("trg_paused", EVENT_TAG) == [] and trigger.execution_count == 0
    assert trigger.event_counter == 30 and trigger.status == "paused"


def _checks(trigger_id: str) -> list[Measurement]:
    """The trigger's recorded condition checks, newest first."""
    async def read() -> list[Measurement]:
        async with get_client() as client:
            return await measurement_history(client, trigger_id, limit=50)
    return queries.run_sync(read())


def _drift_trigger(collection_id: str, status: str = "active") -> dict:
    return {
        "trigger_type": "conditional",
        "schedule_config": {"condition_type": "drift", "metric": "cosine_drift", "threshold": 0.05,
                            "check_interval_seconds": 60},
        "execution_config": {"collection_ids": [collection_id], "config": {"algorithm": "kmeans", "n_clusters": 3}},
        "status": status,
    }


def test_drift_fires_on_off_distribution_documents_only() -> None:
    for name in ("col_same", "col_shifted"):
        open_collection(name).add_documents(_blobs(300, seed=7))
        create(_drift_trigger(name, status="paused"), f"trg_{name}")
        baseline = queries.run_sync(commands.execute_trigger(f"trg_{name}", wait=True, timeout_seconds=90))
        assert baseline.status == "completed"
    open_collection("col_same").add_documents(_blobs(300, seed=8))
    shifted = np.random.default_rng(9).normal(size=(300, 16)).astype(np.float32) * 5  # no cluster fits these
    open_collection("col_shifted").add_documents(shifted)
    for name in ("col_same", "col_shifted"):
        queries.run_sync(commands.resume_trigger(f"trg_{name}"))

    fired = _wait_runs("trg_col_shifted", CONDITION_TAG, 1)[0]
    assert fired.parameters["firing"]["value"] > 0.05
    same = wait_for("trg_col_same", lambda t: t.last_condition_check_at is not None)
    assert same.last_measurement is not None and abs(same.last_measurement) < 0.05 and same.last_check_error is None
    wait_for("trg_col_shifted", lambda t: t.execution_count == 2)
    first = _checks("trg_col_shifted")[-1]  # a later slot's check may already have measured the new clustering
    assert first.decision == Decision.fired and first.value == pytest.approx(fired.parameters["firing"]["value"])
    time.sleep(_SETTLE)
    assert _runs("trg_col_same", CONDITION_TAG) == []


def test_with_no_clustering_yet_the_first_check_fires() -> None:
    open_collection("col_fresh").add_documents(_blobs(100, seed=10))
    create(_drift_trigger("col_fresh"), "trg_fresh")
    _wait_runs("trg_fresh", CONDITION_TAG, 1)
    wait_for("trg_fresh", lambda t: t.last_execution_status == "completed")
    first = _checks("trg_fresh")[-1]  # a later slot's check may already have measured the clustering
    assert (first.value, first.decision, first.fired) == (None, Decision.fired, True)


def test_a_failing_check_is_a_failed_check_not_a_failed_clustering() -> None:
    open_collection("col_gone").add_documents(_blobs(100, seed=12))
    create(_drift_trigger("col_gone", status="paused"), "trg_gone")
    assert queries.run_sync(commands.execute_trigger("trg_gone", wait=True, timeout_seconds=90)).status == "completed"
    # The collection now lives behind an HTTP API that does not answer: the check cannot read it.
    HttpCollection(collection_id="col_gone", url="http://127.0.0.1:9/documents", max_retries=0,
                   timeout_seconds=2).save(owned_name(namespace_id_of(None), "col_gone"), overwrite=True)
    queries.run_sync(commands.resume_trigger("trg_gone"))
    checked = wait_for("trg_gone", lambda t: t.last_condition_check_at is not None)
    assert checked.last_measurement is None and "col_gone" in checked.last_check_error
    assert (checked.execution_count, checked.consecutive_failures, checked.status) == (1, 0, "active")
    assert _runs("trg_gone", CONDITION_TAG) == []


def test_counting_survives_a_restart_of_the_evaluator(api_process: ApiProcess) -> None:
    collection = open_collection("col_restart")
    create(_event_trigger("col_restart", threshold=100, cooldown=0), "trg_restart")
    collection.add_documents(_blobs(60, seed=13))
    assert wait_for("trg_restart", lambda t: t.event_counter == 60).execution_count == 0
    api_process.stop()  # the evaluator is down: its wake-ups fail, nothing counts in memory
    try:
        collection.add_documents(_blobs(60, seed=14))
        time.sleep(3)
        assert _runs("trg_restart", EVENT_TAG) == []
    finally:
        api_process.start()
    fired = _wait_runs("trg_restart", EVENT_TAG, 1)
    time.sleep(_SETTLE)
    assert len(_runs("trg_restart", EVENT_TAG)) == 1 and fired[0].parameters["firing"]["documents"] == 120
    assert get("trg_restart").event_counter == 0


def test_a_starting_evaluator_makes_no_second_automation_past_prefects_first_page(api_process: ApiProcess) -> None:
    """Prefect answers at most a page of automations to a read without a limit: the full sweep of an evaluator
    that starts sees them all, or it would make again every event trigger's automation past the first page."""
    create(_event_trigger("col_pages", threshold=100, cooldown=0), "trg_pages")
    assert _automation_enabled("trg_pages") is True

    async def fillers(count: int) -> list:  # named to come first: ours are past the first page
        async with get_client() as client:
            return [await client.create_automation(AutomationCore(
                name=f"a-filler-{i:04d}", enabled=False, trigger=EventTrigger(expect={"test.filler"}, threshold=1),
                actions=[DoNothing()])) for i in range(count)]

    async def sweep_after(moment: datetime) -> None:
        async with get_client() as client:
            while not ((report := await sweeper(client) or {}).get("last_sweep_started_at")
                       and datetime.fromisoformat(report["last_sweep_started_at"]) > moment):
                await asyncio.sleep(0.5)

    async def remove(ids: list) -> None:
        async with get_client() as client:
            for automation_id in ids:
                await client.delete_automation(automation_id)

    made = queries.run_sync(fillers(PAGE + 1))
    try:
        api_process.stop()
        restarted = datetime.now(timezone.utc)
        api_process.start()  # its first sweep visits every trigger with every automation read at once
        queries.run_sync(asyncio.wait_for(sweep_after(restarted), PATIENCE))
        assert _automations("trg_pages") == 1
    finally:
        queries.run_sync(remove(made))


def _automations(trigger_id: str) -> int:
    async def read() -> int:
        async with get_client() as client:
            return len(await client.read_automations_by_name(automation_name(trigger_id)))
    return queries.run_sync(read())


def test_20_events_stamped_3_minutes_ago_after_a_firing_count_once() -> None:
    """A batching pipeline reports late: its events' `occurred` is before the last firing's."""
    collection = open_collection("col_late")
    create(_event_trigger("col_late", threshold=20, cooldown=0), "trg_late")
    collection.add_documents(_blobs(20, seed=21))
    _wait_runs("trg_late", EVENT_TAG, 1)
    stamped = datetime.now(timezone.utc) - timedelta(minutes=3)
    for i in range(20):
        emit_event(event="cluster.documents_added", resource={"prefect.resource.id": collection_resource(namespace_id_of(None), "col_late")},
                   occurred=stamped + timedelta(milliseconds=i), payload={"count": 1})
    EventsWorker.drain_all()
    fired = _wait_runs("trg_late", EVENT_TAG, 2)
    time.sleep(_SETTLE)
    assert len(_runs("trg_late", EVENT_TAG)) == 2
    assert sorted(r.parameters["firing"]["documents"] for r in fired) == [20, 20]
    assert get("trg_late").event_counter == 0


def test_updating_10_documents_and_deleting_5_is_what_the_trigger_counts_and_the_next_run_clusters() -> None:
    collection = open_collection("col_upsert")
    ids = [f"doc-{i}" for i in range(100)]
    counts = collection.add_documents(_blobs(100, seed=20), ids=ids)
    assert (counts.inserted, counts.updated) == (100, 0)
    create({**_event_trigger("col_upsert", threshold=10, cooldown=0),
            "schedule_config": {"event_type": "documents_updated", "event_threshold": 10,
                                "collection_id": "col_upsert", "cooldown_seconds": 0}}, "trg_upsert")
    assert collection.delete_documents(ids[95:] + ["not-there"]) == 5
    counts = collection.add_documents(_blobs(10, seed=21, shift=0.5), ids=ids[:10])
    assert (counts.inserted, counts.updated) == (0, 10)
    run = _wait_runs("trg_upsert", EVENT_TAG, 1)[0]
    assert run.parameters["firing"]["documents"] == 10
    trigger = wait_for("trg_upsert", lambda t: t.last_execution_status == "completed")
    assert trigger.execution_count == 1 and trigger.event_counter == 0
    time.sleep(_SETTLE)
    assert len(_runs("trg_upsert", EVENT_TAG)) == 1  # the 100 adds and the 5 deletes are no updates
    from prefect_cluster_triggers.blocks.result_store import default_result_store

    latest = default_result_store().latest("trg_upsert")
    assert latest.record["num_documents"] == 95
    assert sorted(m["id"] for m in latest.members()) == sorted(ids[:95])
