"""Non-finite and extreme numbers, random cron strings and unicode against the live REST API:
a 422 naming the field, never a 5xx, and every trigger it accepted reads back and is listed."""

from __future__ import annotations

import json
from typing import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile_requests import hostile_requests, hostile_schedule_changes
from tests.seed_examples import ALL, CONDITIONAL, CRON, INTERVAL

_TYPES = ["cron", "interval", "event", "conditional"]
_FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def client(api: str, keys: dict[str, str]) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {keys['team-b']}", "X-Namespace": "team-b", "Content-Type": "application/json"}
    with httpx.Client(base_url=f"{api}/v1/clusters", headers=headers, timeout=60) as c:
        yield c


def _post(client: httpx.Client, document: object) -> httpx.Response:
    return client.post("/triggers", content=json.dumps(document))  # NaN and Infinity written as Python's JSON writes them


def _deployments(prefect_api: str) -> int:
    return httpx.post(f"{prefect_api}/deployments/count", json={}, timeout=60).json()


def _listed(client: httpx.Client) -> set[str]:
    return {t["trigger_id"] for t in client.post("/triggers/list", json={"limit": 1000}).json()["results"]}


def test_interval_past_a_year_is_422_naming_the_field_and_the_bound(client: httpx.Client) -> None:
    response = _post(client, {**json.loads(INTERVAL), "schedule_config": {"interval_seconds": 315360000000}})
    assert response.status_code == 422
    assert response.json()["detail"] == [{"loc": "schedule_config.interval_seconds",
                                          "msg": "Input should be less than or equal to 31536000 (got 315360000000)"}]


def test_nan_threshold_is_422_and_creates_no_deployment(client: httpx.Client, prefect_api: str) -> None:
    before = _deployments(prefect_api)
    body = json.loads(CONDITIONAL)
    body["schedule_config"]["threshold"] = float("nan")
    response = _post(client, body)
    assert response.status_code == 422
    assert response.json()["detail"] == [{"loc": "schedule_config.threshold", "msg": "Input should be a finite number "
                                                                                    "(got NaN)"}]
    assert _deployments(prefect_api) == before


def test_cron_with_day_names_is_created_and_nearest_weekday_is_422(client: httpx.Client) -> None:
    body = {**json.loads(CRON), "status": "paused"}
    created = _post(client, {**body, "schedule_config": {"cron_expression": "0 2 * * THU"}})
    assert created.status_code == 200, created.text
    assert client.get(f"/triggers/{created.json()['trigger_id']}").json()["schedule_config"]["cron_expression"] == "0 2 * * THU"
    refused = _post(client, {**body, "schedule_config": {"cron_expression": "0 0 15W * *"}})
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == "schedule_config.cron_expression"
    client.delete(f"/triggers/{created.json()['trigger_id']}")


def test_nan_in_a_patch_is_422_and_changes_nothing(client: httpx.Client) -> None:
    trigger_id = _post(client, {**json.loads(CONDITIONAL), "status": "paused"}).json()["trigger_id"]
    before = client.get(f"/triggers/{trigger_id}").json()
    schedule = {**before["schedule_config"], "threshold": float("inf")}
    response = client.patch(f"/triggers/{trigger_id}", content=json.dumps({"schedule_config": schedule}))
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == "schedule_config.threshold"
    assert client.get(f"/triggers/{trigger_id}").json() == before
    client.delete(f"/triggers/{trigger_id}")


@_FAST
@given(document=hostile_requests())
def test_create_never_answers_5xx_and_what_it_accepts_reads_back(client: httpx.Client, document: dict) -> None:
    response = _post(client, document)
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        trigger_id = response.json()["trigger_id"]
        _reads_back(client, trigger_id)
        client.delete(f"/triggers/{trigger_id}")  # keeps the namespace under its active-trigger quota


@pytest.fixture(scope="module")
def patched(client: httpx.Client) -> dict[str, str]:
    """One paused trigger of each type, for the PATCH tests."""
    return {kind: _post(client, {**json.loads(ALL[kind]), "status": "paused"}).json()["trigger_id"] for kind in _TYPES}


@_FAST
@given(data=st.data())
def test_patch_never_answers_5xx_and_what_it_accepts_reads_back(
    client: httpx.Client, patched: dict[str, str], data: st.DataObject
) -> None:
    kind = data.draw(st.sampled_from(_TYPES))
    response = client.patch(f"/triggers/{patched[kind]}", content=json.dumps(data.draw(hostile_schedule_changes(kind))))
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        _reads_back(client, patched[kind])


def _reads_back(client: httpx.Client, trigger_id: str) -> None:
    """Read, listed, and read as a valid trigger: not one shown `failed` because its record no longer validates."""
    got = client.get(f"/triggers/{trigger_id}")
    assert got.status_code == 200 and got.json().get("stored_problem") is None, got.text
    assert trigger_id in _listed(client)
