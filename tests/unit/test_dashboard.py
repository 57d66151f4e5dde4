"""A trigger's page in the Prefect UI says what a data team asks of it, in words."""

from __future__ import annotations

from datetime import datetime, timezone

from prefect_cluster_triggers.deployments.contract import ClusterTrigger, validate_request
from prefect_cluster_triggers.deployments.dashboard import markdown

_WHEN = datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc)


def _trigger(body: dict, **shown: object) -> ClusterTrigger:
    request = validate_request(body)
    return ClusterTrigger(namespace_id="ns_1", internal_id="local", execution_config=request.execution_config,
                          trigger_type=request.trigger_type, schedule_config=request.schedule_config, trigger_id="trg_1",
                          created_at=_WHEN, updated_at=_WHEN, description=request.description, **shown)


_EXECUTION = {"collection_ids": ["col_a"], "config": {"algorithm": "kmeans", "n_clusters": 3}}


def test_a_failed_trigger_says_why_and_how_to_resume() -> None:
    page = markdown(_trigger({"trigger_type": "cron", "schedule_config": {"cron_expression": "0 2 * * *"},
                              "execution_config": _EXECUTION}, status="failed", consecutive_failures=5,
                             execution_count=7, last_execution_status="failed", last_execution_job_id="run-9",
                             last_execution_error="the collection is empty: nothing to cluster", last_triggered_at=_WHEN))
    assert ('| status | **failed**: 5 runs failed in a row, the last with "the collection is empty: nothing to '
            'cluster"; runs stopped until `cluster-triggers resume trg_1` |') in page
    assert "| rule | runs on cron `0 2 * * *` (UTC) |" in page and "| executions | 7, 5 failed in a row |" in page
    assert "| next run | none planned |" in page


def test_a_conditional_trigger_shows_its_last_measurement_against_its_threshold() -> None:
    body = {"trigger_type": "conditional", "execution_config": _EXECUTION,
            "schedule_config": {"condition_type": "drift", "metric": "cosine_drift", "threshold": 0.25,
                                "check_interval_seconds": 600}}
    page = markdown(_trigger(body, last_measurement=0.3125, last_condition_check_at=_WHEN))
    assert "| last measurement | 0.3125 (threshold 0.25), checked 2026-11-26T02:00:00Z |" in page
    failed = markdown(_trigger(body, last_check_error="collection col_a | not found", last_condition_check_at=_WHEN))
    assert "| last measurement | failed: collection col_a \\| not found (threshold 0.25)" in failed
