"""A trigger's state as the Prefect UI shows it: its page (a markdown artifact) follows `get` within a sweep."""

from __future__ import annotations

import asyncio
import time

import pytest
from prefect.client.orchestration import get_client

from prefect_cluster_triggers.blocks.collection_events import notify_collection
from prefect_cluster_triggers.deployments import lifecycle
from prefect_cluster_triggers.deployments.dashboard import artifact_key
from tests.integration.triggers import create, wait_for

pytestmark = pytest.mark.usefixtures("api")  # its evaluator sweeps every 2 s


def _page(trigger_id: str, wanted: str, timeout: float = 60) -> str:
    """The trigger's latest page once it contains `wanted`."""
    async def latest() -> str:
        async with get_client() as client:
            response = await client.request("POST", "/artifacts/latest/filter",
                                            json={"artifacts": {"key": {"any_": [artifact_key(trigger_id)]}}})
            found = response.json()
            return found[0]["data"] if found else ""

    deadline = time.monotonic() + timeout
    while wanted not in (page := asyncio.run(latest())):
        assert time.monotonic() < deadline, f"{wanted!r} not on the page of {trigger_id}:\n{page}"
        time.sleep(1)
    return page


def test_an_event_triggers_counter_threshold_cooldown_and_status_show_on_its_page() -> None:
    create({"trigger_type": "event", "description": "re-cluster after 100 new documents",
            "schedule_config": {"event_type": "documents_added", "event_threshold": 100, "collection_id": "col_page",
                                "cooldown_seconds": 300},
            "execution_config": {"collection_ids": ["col_page"], "config": {"algorithm": "kmeans", "n_clusters": 3}}},
           "trg_page")
    page = _page("trg_page", "| event counter | 0 / 100 |")
    assert page.startswith("### Cluster trigger `trg_page`: re-cluster after 100 new documents")
    assert "| status | **active** |" in page and "| cooldown | 300 s, last applied never |" in page
    notify_collection("col_page", "documents_added", count=30, flush=True)
    wait_for("trg_page", lambda t: t.event_counter == 30, timeout=60)
    _page("trg_page", "| event counter | 30 / 100 |")
    lifecycle.run_sync(lifecycle.pause_trigger("trg_page"))
    _page("trg_page", "| status | **paused** |")
