"""What the REST API shows of Prefect's own answers, and of user text in the Prefect UI."""

from __future__ import annotations

from datetime import datetime, timezone

import httpx
from fastapi.testclient import TestClient
from prefect.exceptions import PrefectHTTPStatusError

from prefect_cluster_triggers.core.contract import ClusterTrigger
from prefect_cluster_triggers.deployments.api import app as api
from prefect_cluster_triggers.deployments.service import dashboard

_INTERNAL = "http://10.1.2.3:4200/api/deployments/"


def _raising(status: int, detail: str) -> TestClient:
    def answer() -> None:
        request = httpx.Request("POST", _INTERNAL)
        response = httpx.Response(status, json={"detail": detail}, request=request)
        raise PrefectHTTPStatusError.from_httpx_error(httpx.HTTPStatusError("refused", request=request, response=response))

    app = api.app
    path = f"/probe/{status}"
    if not any(getattr(r, "path", None) == path for r in app.routes):
        app.add_api_route(path, answer)
    return TestClient(app)  # no lifespan: no evaluator, no Prefect


def test_a_prefect_refusal_is_our_422_without_its_address() -> None:
    answer = _raising(422, "Value too long for the parameters column\nsecond line").get("/probe/422")
    assert answer.status_code == 422
    assert answer.json() == {"detail": "refused: Value too long for the parameters column"}
    assert "10.1.2.3" not in answer.text


def test_a_prefect_failure_is_503_without_its_address() -> None:
    answer = _raising(500, "boom").get("/probe/500")
    assert answer.status_code == 503 and "10.1.2.3" not in answer.text and "boom" not in answer.text


def test_user_text_on_the_trigger_page_opens_no_tag_link_or_image() -> None:
    now = datetime(2027, 1, 1, tzinfo=timezone.utc)
    hostile = '<img src=x onerror="alert(1)"> [click](javascript:alert(1)) ![i](http://x/y.png) \\[y](javascript:z) | c'
    trigger = ClusterTrigger(
        namespace_id="ns_0123456789abcdef", internal_id="local", execution_config=None, trigger_type="interval",
        schedule_config={"interval_seconds": 3600}, trigger_id="trg_x", cluster_id="cl", status="failed",
        created_at=now, updated_at=now, description=hostile, last_execution_job_id="run-1",
        last_execution_status="failed", last_execution_error=hostile, consecutive_failures=5,
    )
    page = dashboard.markdown(trigger)
    assert "<img" not in page and "](javascript:" not in page and "![i](" not in page
    assert "&lt;img" in page and r"\[click\]" in page
    assert all(line.count("|") - line.count(r"\|") == 3 for line in page.splitlines() if line.startswith("| "))
