"""Helpers of the end-to-end trigger tests: create, read and wait through the lifecycle API."""

from __future__ import annotations

import time
from typing import Callable

import pytest

from prefect_cluster_triggers.core.contract import ClusterTrigger, validate_request
from prefect_cluster_triggers.deployments.service import commands, queries


def create(body: dict, trigger_id: str) -> ClusterTrigger:
    return queries.run_sync(commands.create_trigger(validate_request(body), trigger_id=trigger_id))


def get(trigger_id: str, namespace: str | None = None) -> ClusterTrigger:
    return queries.run_sync(queries.get_trigger(trigger_id, namespace))


PATIENCE = 300.0  # seconds a test waits on what a busy SQLite server does within a sweep or two on a quiet one


def wait_for(trigger_id: str, done: Callable[[ClusterTrigger], bool], timeout: float = PATIENCE, *,
             namespace: str | None = None) -> ClusterTrigger:
    deadline = time.monotonic() + timeout
    while True:
        trigger = get(trigger_id, namespace)
        if done(trigger):
            return trigger
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting on {trigger_id}: {trigger.model_dump_json()}")
        time.sleep(1)


def feed(trigger_id: str, done: Callable[[list[str]], bool], timeout: float = 30) -> list:
    """The trigger's events in Prefect's event feed, oldest first, once `done(their names)` holds.

    Prefect persists events in batches (4-5 s here), so the feed is polled.
    """
    from datetime import datetime, timedelta, timezone

    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventOccurredFilter, EventOrder, EventResourceFilter

    async def read() -> list:
        query = EventFilter(occurred=EventOccurredFilter(since=datetime.now(timezone.utc) - timedelta(hours=1),
                                                         until=datetime.now(timezone.utc) + timedelta(minutes=1)),
                            resource=EventResourceFilter(id=[f"cluster-trigger.{trigger_id}"]), order=EventOrder.ASC)
        async with get_client() as client:
            page = await client.read_events(filter=query, limit=50)
            events = list(page.events)
            while page.next_page:
                page = await client.read_events_page(str(page.next_page))
                events += page.events
            return events

    deadline = time.monotonic() + timeout
    while True:
        events = queries.run_sync(read())
        if done([e.event for e in events]):
            return events
        if time.monotonic() > deadline:
            pytest.fail(f"{trigger_id}: the event feed shows {[e.event for e in events]}")
        time.sleep(1)
