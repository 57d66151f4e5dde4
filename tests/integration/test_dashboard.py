"""A trigger's state as the Prefect UI shows it: its page (a markdown artifact) follows `get` within a sweep."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import quote

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from prefect.client.orchestration import get_client

from prefect_cluster_triggers.blocks.collection_events import notify_collection
from prefect_cluster_triggers.deployments.service import commands, queries
from prefect_cluster_triggers.deployments.service.dashboard import artifact_key
from tests.integration.triggers import PATIENCE, create, feed, wait_for

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
    assert "\n\n**active**: fires when 100 documents" in page and "| cooldown | 300 s, last applied never |" in page
    notify_collection("col_page", "documents_added", count=30, flush=True)
    wait_for("trg_page", lambda t: t.event_counter == 30)
    _page("trg_page", "| event counter | 30 / 100 |")
    queries.run_sync(commands.pause_trigger("trg_page"))
    _page("trg_page", "\n\n**paused**: fires when")


def _versions(key: str) -> int:
    async def count() -> int:
        async with get_client() as client:
            response = await client.request("POST", "/artifacts/count", json={"artifacts": {"key": {"any_": [key]}}})
            return int(response.json())

    return asyncio.run(count())


def test_an_hour_of_checks_with_an_unchanged_value_writes_a_handful_of_versions_at_most() -> None:
    """60 checks a minute apart measuring the same value (to three digits), published as the sweep publishes: the
    state page gets one version, the trends page two (its first, and one after an hour of checks)."""
    from datetime import datetime, timedelta, timezone

    from prefect_cluster_triggers.core.contract import ClusterTrigger, validate_request
    from prefect_cluster_triggers.deployments.service import dashboard
    from prefect_cluster_triggers.deployments.service.run_pages import trends_key

    request = validate_request({"trigger_type": "conditional", "execution_config": {
        "collection_ids": ["col_hour"], "config": {"algorithm": "kmeans", "n_clusters": 3}},
        "schedule_config": {"condition_type": "drift", "metric": "cosine_drift", "threshold": 0.2,
                            "check_interval_seconds": 60}})
    start = datetime.now(timezone.utc).replace(microsecond=0)
    trigger = ClusterTrigger(namespace_id="ns_hour", internal_id="local", execution_config=request.execution_config,
                             trigger_type=request.trigger_type, schedule_config=request.schedule_config,
                             trigger_id="trg_hour_of_checks", created_at=start, updated_at=start)

    async def checks() -> list[int]:
        written = []
        async with get_client() as client:
            for minute in range(61):
                checked = trigger.model_copy(update={"last_condition_check_at": start + timedelta(minutes=minute),
                                                     "last_measurement": 0.1234 + minute * 1e-7})
                written.append(await dashboard.publish_changed(client, [checked]))
        return written

    written = asyncio.run(checks())
    assert sum(written) == 1
    assert _versions(dashboard.artifact_key("trg_hour_of_checks")) == 1
    assert _versions(trends_key("trg_hour_of_checks")) == 2

    async def once_more() -> None:  # another value: one more version, saying what changed
        async with get_client() as client:
            await dashboard.publish_changed(client, [trigger.model_copy(update={
                "last_condition_check_at": start + timedelta(minutes=62), "last_measurement": 0.25})])

    asyncio.run(once_more())
    assert _versions(dashboard.artifact_key("trg_hour_of_checks")) == 2
    described = _latest_artifact(dashboard.artifact_key("trg_hour_of_checks"))["description"]
    assert described == "trg_hour_of_checks: last measurement 0.123 (threshold 0.2) → 0.25 (threshold 0.2)"


def _latest_artifact(key: str) -> dict:
    async def latest() -> dict:
        async with get_client() as client:
            response = await client.request("POST", "/artifacts/latest/filter", json={"artifacts": {"key": {"any_": [key]}}})
            return response.json()[0]

    return asyncio.run(latest())


def _description(trigger_id: str) -> str:
    async def read() -> str:
        async with get_client() as client:
            return (await client.read_deployment_by_name(f"cluster-collection/{trigger_id}")).description or ""

    return asyncio.run(read())


def test_the_deployment_description_starts_with_the_state_line_and_keeps_the_users_text() -> None:
    from prefect_cluster_triggers.deployments.prefect_objects.translate import state_line_of

    create({"trigger_type": "event", "description": "re-cluster after 50 new documents",
            "schedule_config": {"event_type": "documents_added", "event_threshold": 50, "collection_id": "col_line",
                                "cooldown_seconds": 120},
            "execution_config": {"collection_ids": ["col_line"], "config": {"algorithm": "kmeans", "n_clusters": 3}}},
           "trg_line")
    deadline = time.monotonic() + 60
    while not state_line_of(description := _description("trg_line")):
        assert time.monotonic() < deadline, description
        time.sleep(1)
    page_id = _latest_artifact(artifact_key("trg_line"))["latest_id"]
    assert description == (f"**event trigger**: active, 0 / 50 documents\\_added on col\\_line, cooldown 120 s, last "
                           f"fired never — [state](/artifacts/artifact/{page_id}) · [trends](/artifacts/key/"
                           f"cluster-trends-trg-line-{description.rsplit('trg-line-', 1)[1].split(')')[0]})"
                           "\n\nre-cluster after 50 new documents")
    assert queries.run_sync(queries.get_trigger("trg_line")).description == "re-cluster after 50 new documents"

    # A PATCH of the description keeps the line (one line, not two); the same PATCH again changes nothing.
    for _ in range(2):
        updated = queries.run_sync(commands.update_trigger("trg_line", {"description": "after 50 documents"}))
        assert updated.description == "after 50 documents"
        text = _description("trg_line")
        assert text.count("**event trigger**") == 1 and text.endswith("\n\nafter 50 documents")

    # The counter moves: the line follows within a sweep, and the page has a new version.
    notify_collection("col_line", "documents_added", count=20, flush=True)
    deadline = time.monotonic() + 60
    while "20 / 50 documents" not in (text := _description("trg_line")):
        assert time.monotonic() < deadline, text
        time.sleep(1)
    assert text.count("**event trigger**") == 1 and text.endswith("\n\nafter 50 documents")


def _deployment_triggers(trigger_id: str) -> list[str]:
    """The automations the deployment page lists under "Triggers" (what the UI asks Prefect for)."""
    async def related() -> list[str]:
        async with get_client() as client:
            deployment, _ = await queries.find_trigger(client, trigger_id, None)
            response = await client.request("GET", f"/automations/related-to/prefect.deployment.{deployment.id}")
            return [automation["name"] for automation in response.json()]

    return asyncio.run(related())


def test_an_event_triggers_deployment_lists_its_automation_and_gets_it_back_after_prefect_deploy() -> None:
    create({"trigger_type": "event",
            "schedule_config": {"event_type": "documents_added", "event_threshold": 50, "collection_id": "col_owned"},
            "execution_config": {"collection_ids": ["col_owned"], "config": {"algorithm": "kmeans", "n_clusters": 3}}},
           "trg_owned")
    assert _deployment_triggers("trg_owned") == ["cluster-trigger/trg_owned"]

    async def as_prefect_deploy_does() -> None:  # it deletes what the deployment owns, then makes its own
        async with get_client() as client:
            deployment, _ = await queries.find_trigger(client, "trg_owned", None)
            await client.delete_resource_owned_automations(f"prefect.deployment.{deployment.id}")

    asyncio.run(as_prefect_deploy_does())
    assert _deployment_triggers("trg_owned") == []
    deadline = time.monotonic() + 60
    while _deployment_triggers("trg_owned") != ["cluster-trigger/trg_owned"]:
        assert time.monotonic() < deadline, "the sweep did not make the automation again"
        time.sleep(1)
    notify_collection("col_owned", "documents_added", count=20, flush=True)
    wait_for("trg_owned", lambda t: t.event_counter == 20)


@pytest.fixture(scope="module")
def held_back_trigger() -> str:
    """An event trigger evaluated below its threshold (made before the browser opens: Playwright's sync API
    keeps an event loop running in this thread, and `asyncio.run` refuses to start beside it)."""
    create({"trigger_type": "event",
            "schedule_config": {"event_type": "documents_added", "event_threshold": 100, "collection_id": "col_feed"},
            "execution_config": {"collection_ids": ["col_feed"], "config": {"algorithm": "kmeans", "n_clusters": 3}}},
           "trg_feed")
    notify_collection("col_feed", "documents_added", count=30, flush=True)
    wait_for("trg_feed", lambda t: t.event_counter == 30)
    feed("trg_feed", lambda names: "cluster.trigger.evaluated" in names, timeout=PATIENCE)
    return "trg_feed"


def test_the_event_feed_shows_why_a_trigger_did_not_fire_without_opening_raw(prefect_api: str, held_back_trigger: str,
                                                                            browser) -> None:
    """Prefect's Event Feed shows an event's related resources on its row, not its payload: the decision's
    message is the name of its `cluster-decision.*` resource (drawn by the V2 UI; V1 draws the id). The feed
    is filtered by the trigger's resource, as a user looks for one trigger: unfiltered, it shows the newest
    50 events of every deployment and flow run."""
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    resource = f"cluster-trigger.{held_back_trigger}"
    for path, wanted in ((f"/v2/events?resource={quote(json.dumps([resource]))}", "30 / 100 documents: below threshold"),
                         (f"/events?resource={resource}", "cluster-decision.below-threshold")):
        deadline = time.monotonic() + 120  # the V2 feed's range ends at the start of the current minute
        while True:
            page.goto(prefect_api.removesuffix("/api") + path)
            try:
                page.get_by_text(wanted).first.wait_for(timeout=10_000)
                break
            except PlaywrightTimeout:
                assert time.monotonic() < deadline, f"{wanted!r} not in the Event Feed at {path}"


HOSTILE = 'nightly <img src="x" onerror="window.__hit=1"> [docs](javascript:window.__hit=2) **bold**'


@pytest.fixture(scope="module")
def hostile_text_deployment() -> str:
    """The id of the deployment of a trigger whose description is hostile (made before the browser opens)."""
    from prefect_cluster_triggers.deployments.prefect_objects.translate import FLOW_NAME

    create({"trigger_type": "interval", "schedule_config": {"interval_seconds": 3600}, "description": HOSTILE,
            "execution_config": {"collection_ids": ["col_text"], "config": {"algorithm": "kmeans", "n_clusters": 3}}},
           "trg_hostile_text")
    assert queries.run_sync(queries.get_trigger("trg_hostile_text")).description == HOSTILE

    async def deployment_id() -> str:
        async with get_client() as client:
            return str((await client.read_deployment_by_name(f"{FLOW_NAME}/trg_hostile_text")).id)

    return asyncio.run(deployment_id())


def test_a_hostile_description_shows_as_literal_text_on_the_deployment_page(prefect_api: str,
                                                                           hostile_text_deployment: str,
                                                                           browser) -> None:
    """The Prefect UI renders a deployment's description (V1 draws its HTML and links): a tenant's text is
    shown as written, and opens no element or link; `get` gives it back as given."""
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.goto(f"{prefect_api.removesuffix('/api')}/deployments/deployment/{hostile_text_deployment}")
    page.get_by_text("Description", exact=True).first.click()
    page.get_by_text("[docs](javascript:window.__hit=2)", exact=False).first.wait_for(timeout=60_000)
    found = page.evaluate("""() => ({images: document.querySelectorAll('img[src="x"]').length,
        scripts: [...document.querySelectorAll('a')].filter(a => /^javascript:/i.test(a.getAttribute('href') || '')).length,
        hit: window.__hit || null})""")
    assert found == {"images": 0, "scripts": 0, "hit": None}
