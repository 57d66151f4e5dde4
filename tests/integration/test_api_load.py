"""The REST API as a client fleet uses it: bursts of creates against a quota, and retries with Idempotency-Key.

CI runs this file on SQLite (`make test`) and again on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import httpx
import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.states import Crashed, Running

from prefect_cluster_triggers.core.contract import validate_request
from prefect_cluster_triggers.core.errors import QuotaExceeded
from prefect_cluster_triggers.deployments.api.keys import KeyStore
from prefect_cluster_triggers.deployments.prefect_objects.status import of_deployment
from prefect_cluster_triggers.deployments.prefect_objects.translate import MANUAL_TAG
from prefect_cluster_triggers.deployments.service import commands
from tests.integration.triggers import PATIENCE
from tests.seed_examples import CRON, INTERVAL

_QUOTA = 50  # the default CLUSTER_TRIGGERS_MAX_ACTIVE_TRIGGERS of the session's API and of this process
_BURST_TIMEOUT = 180  # seconds a request may take: these tests assert exact counts; benchmarks/api_load.py times bursts


def _client(api: str, namespace: str, **options) -> httpx.AsyncClient:
    key, _ = KeyStore().create([namespace], created_by=f"{namespace}-owner")
    return httpx.AsyncClient(base_url=f"{api}/v1/clusters", timeout=options.pop("timeout", _BURST_TIMEOUT),
                             headers={"Authorization": f"Bearer {key}", "X-Namespace": namespace}, **options)


def test_sixty_concurrent_creates_from_two_processes_leave_exactly_the_quota_active(api: str) -> None:
    """30 through the REST API's process and 30 through this process's lifecycle, all at once."""

    async def burst() -> tuple[Counter, list[dict]]:
        async with _client(api, "team-burst") as client:
            async def by_api() -> str:
                response = await client.post("/triggers", json=json.loads(CRON))
                return str(response.status_code)

            async def in_this_process() -> str:
                try:
                    await commands.create_trigger(validate_request(json.loads(CRON)), namespace_id="team-burst")
                    return "200"
                except QuotaExceeded:
                    return "409"

            answers = await asyncio.gather(*(by_api() if i % 2 else in_this_process() for i in range(60)))
            listed = (await client.post("/triggers/list", json={"limit": 1000})).json()["results"]
            gotten = [(await client.get(f"/triggers/{t['trigger_id']}")).json() for t in listed]
            assert listed == gotten  # ls equals get, field by field
            return Counter(answers), listed

    answers, listed = asyncio.run(burst())
    assert answers == {"200": _QUOTA, "409": 60 - _QUOTA}
    assert len(listed) == _QUOTA and all(t["status"] == "active" for t in listed)


def test_a_paused_trigger_gives_its_slot_back_at_once(api: str) -> None:
    async def scenario() -> None:
        async with _client(api, "team-slots") as client:
            made = await asyncio.gather(*(client.post("/triggers", json=json.loads(CRON)) for _ in range(_QUOTA)))
            assert {r.status_code for r in made} == {200}
            refused = await client.post("/triggers", json=json.loads(CRON))
            assert refused.status_code == 409 and f"already has {_QUOTA} active triggers" in refused.json()["detail"]
            paused = await client.post(f"/triggers/{made[0].json()['trigger_id']}/pause")
            assert paused.json()["status"] == "paused"
            assert (await client.post("/triggers", json=json.loads(CRON))).status_code == 200
            resumed = await client.post(f"/triggers/{made[0].json()['trigger_id']}/resume")
            assert resumed.status_code == 409, resumed.text

    asyncio.run(scenario())


def test_a_create_retried_after_a_client_timeout_makes_one_trigger(api: str) -> None:
    async def scenario() -> tuple[list[dict], str, str]:
        async with _client(api, "team-retry") as client:
            headers = {"Idempotency-Key": "create-retry-1"}
            with pytest.raises(httpx.TimeoutException):
                await client.post("/triggers", json=json.loads(INTERVAL), headers=headers, timeout=0.05)
            first = await client.post("/triggers", json=json.loads(INTERVAL), headers=headers)
            again = await client.post("/triggers", json=json.loads(INTERVAL), headers=headers)
            assert first.status_code == again.status_code == 200, first.text
            other = await client.post("/triggers", json={**json.loads(INTERVAL), "description": "another"}, headers=headers)
            assert other.status_code == 409 and "Idempotency-Key" in other.json()["detail"]
            listed = (await client.post("/triggers/list", json={"limit": 1000})).json()["results"]
            return listed, first.json()["trigger_id"], again.json()["trigger_id"]

    listed, first, again = asyncio.run(scenario())
    assert first == again and [t["trigger_id"] for t in listed] == [first]


def test_an_execute_retried_with_its_key_starts_one_run(api: str) -> None:
    async def scenario() -> None:
        async with _client(api, "team-execute") as client:
            trigger_id = (await client.post("/triggers", json=json.loads(CRON))).json()["trigger_id"]
            headers = {"Idempotency-Key": "run-it-once"}
            runs = await asyncio.gather(*(client.post(f"/triggers/{trigger_id}/execute", headers=headers) for _ in range(3)))
            assert {r.status_code for r in runs} == {200}
            assert len({r.json()["job_id"] for r in runs}) == 1
            assert await _runs_of(trigger_id) == 1
            second = await client.post(f"/triggers/{trigger_id}/execute", headers={"Idempotency-Key": "run-it-again"})
            assert second.json()["job_id"] != runs[0].json()["job_id"] and await _runs_of(trigger_id) == 2
            bad = await client.post(f"/triggers/{trigger_id}/execute", headers={"Idempotency-Key": "x" * 300})
            assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == "Idempotency-Key"

    asyncio.run(scenario())


async def _runs_of(trigger_id: str) -> int:
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(f"cluster-collection/{trigger_id}")
        asked = FlowRunFilter(tags=FlowRunFilterTags(all_=[MANUAL_TAG]))  # not the runs its schedule makes
        return await client.count_flow_runs(deployment_filter=of_deployment(deployment.id), flow_run_filter=asked)


def test_a_run_that_ended_without_our_code_shows_in_get_and_ls_within_a_sweep(api: str) -> None:
    """A killed flow process runs no hook: its worker marks the run Crashed. The evaluator's sweep
    (every 2 s here) recounts the trigger, and `get` and `ls` show the run alike."""

    async def scenario() -> tuple[dict, dict]:
        async with _client(api, "team-crash") as client:
            trigger_id = (await client.post("/triggers", json=json.loads(CRON))).json()["trigger_id"]
            async with get_client() as prefect:
                deployment = await prefect.read_deployment_by_name(f"cluster-collection/{trigger_id}")
                run = await prefect.create_flow_run_from_deployment(deployment.id, state=Running(), tags=[MANUAL_TAG])
                await prefect.set_flow_run_state(run.id, Crashed(message="worker process killed"), force=True)
            deadline = time.monotonic() + PATIENCE
            while (got := (await client.get(f"/triggers/{trigger_id}")).json())["execution_count"] != 1:
                assert time.monotonic() < deadline, got
                await asyncio.sleep(0.5)
            listed = (await client.post("/triggers/list", json={})).json()["results"]
            return got, next(t for t in listed if t["trigger_id"] == trigger_id)

    got, listed = asyncio.run(scenario())
    assert (got["execution_count"], got["consecutive_failures"], got["last_execution_status"]) == (1, 1, "failed")
    assert got["last_execution_error"] == "worker process killed" and listed == got
