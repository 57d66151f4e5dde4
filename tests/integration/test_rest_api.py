"""The REST API on a live server on 127.0.0.1: every endpoint, keys, namespaces, errors, and schemathesis."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from prefect import get_client
from prefect.client.schemas.actions import DeploymentUpdate
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
from prefect.client.schemas.sorting import FlowRunSort

from prefect_cluster_triggers.core.contract import ClusterTrigger, validate_request
from prefect_cluster_triggers.core.errors import QuotaExceeded
from prefect_cluster_triggers.core.models import format_utc
from prefect_cluster_triggers.core.names import namespace_id_of
from prefect_cluster_triggers.deployments.api.keys import KeyStore
from prefect_cluster_triggers.deployments.prefect_objects.translate import MANUAL_TAG
from prefect_cluster_triggers.deployments.service import commands, queries
from tests.integration.triggers import feed
from tests.seed_examples import CRON, EVENT, INTERVAL

SEED_CURL_BODY = """{
  "trigger_type": "cron",
  "schedule_config": {},
  "cluster_id": "cluster_abc123",
  "execution_config": {
    "collection_ids": [
      "<string>"
    ],
    "config": {}
  },
  "description": "Daily clustering at 2am UTC",
  "status": "active"
}"""


def _headers(key: str | None, namespace: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    if namespace is not None:
        headers["X-Namespace"] = namespace
    return headers


def test_key_format_and_only_its_hash_is_stored(keys: dict[str, str]) -> None:
    key = keys["team-a"]
    assert key.startswith("sk_") and len(key) >= 3 + 32
    stored = KeyStore().path.read_text()
    assert key not in stored and key[3:] not in stored


def test_seed_curl_example_creates_a_prefect_deployment(api: str, keys: dict[str, str]) -> None:
    curl = subprocess.run(
        ["curl", "--silent", "--show-error", "--write-out", "\n%{http_code}", "--request", "POST",
         "--url", f"{api}/v1/clusters/triggers",
         "--header", f"Authorization: Bearer {keys['team-a']}",
         "--header", "Content-Type: application/json",
         "--header", "X-Namespace: team-a",
         "--data", CRON],
        capture_output=True, text=True, check=True,
    )
    body, status = curl.stdout.rsplit("\n", 1)
    assert status == "200"
    trigger = json.loads(body)
    seed_fields = {
        "namespace_id", "internal_id", "execution_config", "trigger_type", "schedule_config", "trigger_id", "cluster_id",
        "status", "last_triggered_at", "last_execution_job_id", "next_scheduled_at", "execution_count",
        "consecutive_failures", "last_execution_status", "last_execution_error", "event_counter", "last_cooldown_at",
        "created_at", "updated_at", "created_by", "description",
    }
    # Every seed field; the only additions are the conditional triggers' last check.
    assert set(trigger) - seed_fields == {"last_measurement", "last_condition_check_at", "last_check_error",
                                          "stored_problem"}
    assert seed_fields <= set(trigger)
    assert trigger["namespace_id"] == namespace_id_of("team-a") and trigger["created_by"] == "team-a-owner"
    assert trigger["created_at"].endswith("Z") and trigger["status"] == "active"
    deployment = httpx.get(f"{os.environ['PREFECT_API_URL']}/deployments/name/cluster-collection/{trigger['trigger_id']}")
    assert deployment.status_code == 200 and "cluster-trigger" in deployment.json()["tags"]


def test_the_seed_curl_body_itself_is_refused_naming_each_field(api: str, keys: dict[str, str]) -> None:
    response = httpx.post(f"{api}/v1/clusters/triggers", content=SEED_CURL_BODY, headers=_headers(keys["team-a"], "team-a"))
    assert response.status_code == 422
    paths = [d["loc"] for d in response.json()["detail"]]
    assert paths == ["schedule_config.cron_expression", "execution_config.collection_ids[0]",
                     "execution_config.config.algorithm"]


def test_every_endpoint_in_one_namespace(api: str, keys: dict[str, str]) -> None:
    with httpx.Client(base_url=f"{api}/v1/clusters", headers=_headers(keys["team-a"], "team-a"), timeout=60) as c:
        created = c.post("/triggers", content=EVENT)
        assert created.status_code == 200, created.text
        trigger_id = created.json()["trigger_id"]
        assert c.get(f"/triggers/{trigger_id}").json()["schedule_config"]["event_threshold"] == 100
        listed = c.post("/triggers/list", json={"trigger_type": "event", "limit": 10}).json()
        assert trigger_id in [t["trigger_id"] for t in listed["results"]] and listed["limit"] == 10
        assert c.post("/triggers/list").status_code == 200
        patched = c.patch(f"/triggers/{trigger_id}", json={"description": "after 100 documents", "schedule_config": {
            **json.loads(EVENT)["schedule_config"], "event_threshold": 50}})
        assert patched.status_code == 200 and patched.json()["schedule_config"]["event_threshold"] == 50
        assert c.post(f"/triggers/{trigger_id}/pause").json()["status"] == "paused"
        assert c.post(f"/triggers/{trigger_id}/resume").json()["status"] == "active"
        executed = c.post(f"/triggers/{trigger_id}/execute")
        assert executed.status_code == 200 and executed.json()["status"] == "pending"
        history = c.post(f"/triggers/{trigger_id}/history", json={"limit": 5}).json()
        assert history["trigger_id"] == trigger_id and history["limit"] == 5 and history["evaluations"] is None
        explained = c.post(f"/triggers/{trigger_id}/history", json={"limit": 5, "include_evaluations": True}).json()
        assert all(e["event"] == "cluster.trigger.evaluated" and e["decision"] for e in explained["evaluations"])
        deleted = c.delete(f"/triggers/{trigger_id}")
        assert deleted.status_code == 200 and deleted.json()["status"] == "disabled", deleted.text
        assert c.get(f"/triggers/{trigger_id}").json()["status"] == "disabled"
    lifecycle_kinds = ["created", "updated", "paused", "resumed", "deleted"]
    events = feed(trigger_id, lambda names: all(f"cluster.trigger.{k}" in names for k in lifecycle_kinds))
    told = [e for e in events if e.event.removeprefix("cluster.trigger.") in lifecycle_kinds]
    assert [e.event.removeprefix("cluster.trigger.") for e in told] == lifecycle_kinds
    assert [e.payload["status"] for e in told] == ["active", "active", "paused", "active", "disabled"]
    assert told[1].payload["changed"] == ["description", "schedule_config"]
    assert all(e.related[0].id == f"cluster-namespace.{namespace_id_of('team-a')}" for e in told)


def test_deletes_at_once_all_answer_disabled(api: str, keys: dict[str, str]) -> None:
    """Each delete removes the event trigger's automation; the one that finds it gone still succeeds."""
    headers = _headers(keys["team-a"], "team-a")
    with httpx.Client(base_url=f"{api}/v1/clusters", headers=headers, timeout=60) as c:
        trigger_id = c.post("/triggers", content=EVENT).json()["trigger_id"]

    async def both() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=f"{api}/v1/clusters", headers=headers, timeout=60) as c:
            return await asyncio.gather(*(c.delete(f"/triggers/{trigger_id}") for _ in range(6)))

    for response in asyncio.run(both()):
        assert response.status_code == 200 and response.json()["status"] == "disabled", response.text


def test_an_idle_kept_alive_connection_is_still_served(api: str, keys: dict[str, str]) -> None:
    """A pooled client reusing a connection after a pause gets an answer, not a dropped connection.

    httpx keeps an idle connection for 5 s; a server that closes it at the same moment drops the
    request the client sends on it. The server keeps idle connections well beyond that.
    """
    host, port = api.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        for pause in (0, 8):
            time.sleep(pause)
            connection.request("GET", "/v1/clusters/triggers/trg_nowhere",
                               headers={"Authorization": f"Bearer {keys['team-a']}", "X-Namespace": "team-a"})
            response = connection.getresponse()  # RemoteDisconnected if the server dropped the connection
            assert response.status == 404 and response.read(), f"after {pause} s idle"
    finally:
        connection.close()


def test_errors_are_422_404_409(api: str, keys: dict[str, str]) -> None:
    with httpx.Client(base_url=f"{api}/v1/clusters", headers=_headers(keys["team-a"], "team-a"), timeout=60) as c:
        bad = c.post("/triggers", json={**json.loads(CRON), "schedule_config": {"cron_expression": "0 2 * *"}})
        assert bad.status_code == 422
        assert bad.json()["detail"] == [{"loc": "schedule_config.cron_expression",
                                        "msg": "must have 5 fields (minute hour day-of-month month day-of-week) "
                                               "or be a macro such as @daily, found 4 (got \"0 2 * *\")"}]
        assert c.get("/triggers/trg_nowhere").status_code == 404
        trigger_id = c.post("/triggers", content=CRON).json()["trigger_id"]
        forbidden = c.patch(f"/triggers/{trigger_id}", json={"trigger_type": "interval"})
        assert forbidden.status_code == 409 and "trigger_type cannot change" in forbidden.json()["detail"]
        assert c.patch(f"/triggers/{trigger_id}", json={"schedule_config": {"cron_expression": "bad"}}).status_code == 422
        assert c.post("/triggers/list", json={"limit": 0}).json()["detail"][0]["loc"] == "limit"


def test_no_key_or_a_wrong_key_is_401_and_namespaces_are_enforced(api: str, keys: dict[str, str]) -> None:
    url = f"{api}/v1/clusters/triggers"
    trigger_id = httpx.post(url, content=CRON, headers=_headers(keys["team-a"], "team-a"), timeout=60).json()["trigger_id"]
    calls = [("GET", f"/{trigger_id}", None), ("PATCH", f"/{trigger_id}", {"description": "x"}),
             ("DELETE", f"/{trigger_id}", None), ("POST", f"/{trigger_id}/pause", None),
             ("POST", f"/{trigger_id}/resume", None), ("POST", f"/{trigger_id}/history", {}),
             ("POST", f"/{trigger_id}/execute", None), ("POST", "/list", {}), ("POST", "", json.loads(CRON))]
    for method, path, body in calls:
        for headers, status in [(_headers(None, "team-a"), 401), (_headers("sk_" + "x" * 43, "team-a"), 401),
                                (_headers(keys["team-a"], None), 400), (_headers(keys["team-a"], "team-b"), 403)]:
            response = httpx.request(method, url + path, json=body, headers=headers, timeout=60)
            assert response.status_code == status, (method, path, status, response.text)
        if path.startswith(f"/{trigger_id}"):
            other = httpx.request(method, url + path, json=body, headers=_headers(keys["team-b"], "team-b"), timeout=60)
            assert other.status_code == 404, (method, path, other.text)
    listed = httpx.post(url + "/list", json={}, headers=_headers(keys["team-b"], "team-b"), timeout=60).json()
    assert trigger_id not in [t["trigger_id"] for t in listed["results"]]
    assert httpx.get(url + f"/{trigger_id}", headers=_headers(keys["team-a"], "team-a")).json()["status"] == "active"


def test_active_triggers_per_namespace_are_capped(prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLUSTER_TRIGGERS_MAX_ACTIVE_TRIGGERS", "2")
    request = validate_request(json.loads(CRON))
    for _ in range(2):
        queries.run_sync(commands.create_trigger(request, namespace_id="team-quota"))
    with pytest.raises(QuotaExceeded, match="already has 2 active triggers, the maximum"):
        queries.run_sync(commands.create_trigger(request, namespace_id="team-quota"))
    paused = validate_request({**json.loads(CRON), "status": "paused"})
    trigger: ClusterTrigger = queries.run_sync(commands.create_trigger(paused, namespace_id="team-quota"))
    with pytest.raises(QuotaExceeded):
        queries.run_sync(commands.resume_trigger(trigger.trigger_id, "team-quota"))


def test_schemathesis_finds_no_server_error(api: str, keys: dict[str, str], tmp_path: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "run", f"{api}/openapi.json",
         "--checks", "not_a_server_error", "--max-examples", "10", "--seed", "1",
         "-H", f"Authorization: Bearer {keys['team-b']}", "-H", "X-Namespace: team-b", "--request-timeout", "60"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,  # its cache stays out of the project
    )
    assert result.returncode == 0, result.stdout[-4000:]


def test_schedules_edited_in_the_prefect_ui_show_in_get_ls_and_rest(api: str, keys: dict[str, str]) -> None:
    """What the UI's schedule editor, schedule toggle, pause button and description field do,
    done through Prefect's client; the three views agree with each other and with Prefect."""
    namespace = namespace_id_of("team-a")
    fields = ("schedule_config", "status", "next_scheduled_at", "description")
    with httpx.Client(base_url=f"{api}/v1/clusters", headers=_headers(keys["team-a"], "team-a"), timeout=60) as c:
        interval_id = c.post("/triggers", content=INTERVAL).json()["trigger_id"]
        cron_id = c.post("/triggers", content=CRON).json()["trigger_id"]

        def shown(trigger_id: str) -> dict:
            rest = {f: c.get(f"/triggers/{trigger_id}").json()[f] for f in fields}
            got = queries.run_sync(queries.get_trigger(trigger_id, namespace)).model_dump(mode="json")
            listed = [t for t in queries.run_sync(queries.list_triggers(namespace, limit=1000))[0]
                      if t.trigger_id == trigger_id][0].model_dump(mode="json")
            assert rest == {f: got[f] for f in fields} == {f: listed[f] for f in fields}
            return rest

        assert shown(interval_id)["schedule_config"]["interval_seconds"] == 21600
        _ui(interval_id, lambda d, s: {"schedule": IntervalSchedule(
            interval=timedelta(minutes=15), anchor_date=datetime.now(timezone.utc) + timedelta(minutes=15))})
        after = shown(interval_id)
        assert after["schedule_config"]["interval_seconds"] == 900 and after["status"] == "active"
        assert after["next_scheduled_at"] == _prefect_next_run(interval_id)

        _ui(cron_id, lambda d, s: {"active": False})
        switched_off = shown(cron_id)
        assert switched_off["status"] == "paused" and switched_off["next_scheduled_at"] is None
        assert c.post(f"/triggers/{cron_id}/resume").json()["status"] == "active"
        back = shown(cron_id)
        assert back["next_scheduled_at"] == _prefect_next_run(cron_id)
        assert back["schedule_config"] == {"cron_expression": "0 2 * * *", "timezone": "UTC"}

        _ui(cron_id, lambda d, s: {"schedule": CronSchedule(cron="30 4 * * 1", timezone="Europe/Berlin")})
        assert shown(cron_id)["schedule_config"] == {"cron_expression": "30 4 * * 1", "timezone": "Europe/Berlin"}
        assert shown(cron_id)["next_scheduled_at"] == _prefect_next_run(cron_id)

        async def pause_and_describe() -> None:
            async with get_client() as client:
                deployment = await client.read_deployment_by_name(f"cluster-collection/{cron_id}")
                await client.pause_deployment(deployment.id)
                await client.update_deployment(deployment.id, DeploymentUpdate(description="edited in the UI"))

        queries.run_sync(pause_and_describe())
        paused = shown(cron_id)
        assert (paused["status"], paused["next_scheduled_at"], paused["description"]) == ("paused", None, "edited in the UI")


def _ui(trigger_id: str, change) -> None:
    """Change the deployment's first schedule as the UI's editor or toggle does."""
    async def edit() -> None:
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(f"cluster-collection/{trigger_id}")
            schedule = deployment.schedules[0]
            await client.update_deployment_schedule(deployment.id, schedule.id, **change(deployment, schedule))
    queries.run_sync(edit())


def _prefect_next_run(trigger_id: str, timeout: float = 30) -> str:
    """The earliest run Prefect's scheduler holds for the deployment (waiting for it to make them), as the API shows times."""
    async def earliest() -> str | None:
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(f"cluster-collection/{trigger_id}")
            runs = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=10)
            by_schedule = [r for r in runs if MANUAL_TAG not in r.tags]  # not a start_immediately run
            return format_utc(by_schedule[0].expected_start_time) if by_schedule else None
    deadline = time.monotonic() + timeout
    while (found := queries.run_sync(earliest())) is None:
        assert time.monotonic() < deadline, f"no scheduled run of {trigger_id} after {timeout} s"
        time.sleep(1)
    return found
