"""Trigger -> deployment translation and status rules, without a server."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from prefect.client.schemas.objects import FlowRun, StateType

from deployments.contract import validate_request
from deployments.render import PREFECT_YAML, render_prefect_yaml
from deployments.status import consecutive_failures, status_of, trigger_status
from deployments.translate import FAILED_TAG, DISABLED_TAG, TriggerRecord, deployment_fields
from tests.seed_examples import CRON, INTERVAL


def test_prefect_yaml_is_in_sync_with_the_trigger_files() -> None:
    assert PREFECT_YAML.read_text() == render_prefect_yaml(), "run `cluster-triggers render`"


def _record(text: str, **changes: object) -> TriggerRecord:
    return TriggerRecord(trigger_id="trg_1", namespace_id="ns", request=validate_request({**json.loads(text), **changes}))


def test_cron_trigger_becomes_a_cron_schedule_in_its_timezone() -> None:
    record = _record(CRON, schedule_config={"cron_expression": "0 2 * * *", "timezone": "Europe/Berlin"})
    fields = deployment_fields(record, anchor=datetime(2027, 1, 1, tzinfo=timezone.utc), work_pool="p", paused=False)
    assert fields["schedules"] == [{"cron": "0 2 * * *", "timezone": "Europe/Berlin"}]
    assert fields["name"] == "trg_1" and fields["tags"] == ["cluster-trigger", "namespace:ns", "trigger-type:cron"]
    assert fields["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    assert TriggerRecord.model_validate(fields["parameters"]["trigger"]) == record


def test_interval_schedule_first_slot_is_one_interval_after_creation() -> None:
    fields = deployment_fields(_record(INTERVAL), anchor=datetime(2027, 1, 1, tzinfo=timezone.utc), work_pool="p",
                               paused=True)
    assert fields["schedules"] == [{"interval": 21600, "anchor_date": "2027-01-01T06:00:00Z", "timezone": "UTC"}]
    assert fields["paused"] is True


def _runs(*types: StateType) -> list[FlowRun]:
    return [FlowRun.model_construct(state_type=t) for t in types]


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        ((), 0),
        ((StateType.COMPLETED, StateType.FAILED), 0),
        ((StateType.FAILED, StateType.CRASHED, StateType.COMPLETED, StateType.FAILED), 2),
        ((StateType.FAILED,) * 5, 5),
    ],
)
def test_consecutive_failures_count_back_to_the_last_success(types: tuple, expected: int) -> None:
    assert consecutive_failures(_runs(*types)) == expected


def test_status_comes_from_pause_and_tags() -> None:
    assert trigger_status(False, ["cluster-trigger"]) == "active"
    assert trigger_status(True, []) == "paused"
    assert trigger_status(True, [FAILED_TAG]) == "failed"
    assert trigger_status(True, [FAILED_TAG, DISABLED_TAG]) == "disabled"


def test_seed_execution_statuses() -> None:
    assert [status_of(t) for t in (StateType.SCHEDULED, StateType.RUNNING, StateType.COMPLETED, StateType.CRASHED)] == [
        "pending", "processing", "completed", "failed"]
