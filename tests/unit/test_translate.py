"""Trigger -> deployment translation and status rules, without a server."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from prefect.client.schemas.objects import DeploymentSchedule, FlowRun, StateType
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule, RRuleSchedule

from prefect_cluster_triggers.core.contract import validate_request
from prefect_cluster_triggers.core.settings import DeploymentTarget
from prefect_cluster_triggers.deployments.cli.render import render_prefect_yaml
from prefect_cluster_triggers.deployments.prefect_objects.status import consecutive_failures, status_of, trigger_status
from prefect_cluster_triggers.deployments.prefect_objects.translate import (
    DISABLED_TAG,
    FAILED_TAG,
    FLOW_DESCRIPTION,
    TriggerRecord,
    as_scheduled,
    deployment_fields,
    shown_description,
    state_line_of,
    user_description,
    with_state_line,
)
from tests.seed_examples import CRON, INTERVAL

PREFECT_YAML = Path(__file__).parents[2] / "prefect.yaml"
TARGET = DeploymentTarget(work_pool="p")


def test_prefect_yaml_is_in_sync_with_the_trigger_files() -> None:
    assert PREFECT_YAML.read_text() == render_prefect_yaml(), "run `cluster-triggers render`"


def test_deployments_name_no_file_of_the_machine_that_made_them() -> None:
    project = yaml.safe_load(render_prefect_yaml())
    assert project["pull"] == []  # explicit: `prefect deploy` adds no step into the deploying directory
    assert {d["entrypoint"] for d in project["deployments"]} == {
        "prefect_cluster_triggers.flows.clustering_flow.cluster_collection"
    }


def test_the_configured_target_reaches_every_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLUSTER_TRIGGERS_WORK_POOL", "docker-pool")
    monkeypatch.setenv("CLUSTER_TRIGGERS_JOB_VARIABLES", '{"image": "registry.example/team/clustering:1.2"}')
    monkeypatch.setenv("CLUSTER_TRIGGERS_PULL_STEPS",
                       '[{"prefect.deployments.steps.set_working_directory": {"directory": "/opt/prefect"}}]')
    project = yaml.safe_load(render_prefect_yaml())
    assert project["pull"] == [{"prefect.deployments.steps.set_working_directory": {"directory": "/opt/prefect"}}]
    assert {json.dumps(d["work_pool"]) for d in project["deployments"]} == {
        json.dumps({"name": "docker-pool", "job_variables": {"image": "registry.example/team/clustering:1.2"}})
    }


def _record(text: str, **changes: object) -> TriggerRecord:
    return TriggerRecord(trigger_id="trg_1", namespace_id="ns", request=validate_request({**json.loads(text), **changes}))


def test_cron_trigger_becomes_a_cron_schedule_in_its_timezone() -> None:
    record = _record(CRON, schedule_config={"cron_expression": "0 2 * * *", "timezone": "Europe/Berlin"})
    fields = deployment_fields(record, anchor=datetime(2027, 1, 1, tzinfo=timezone.utc), target=TARGET, paused=False)
    assert fields["schedules"] == [{"cron": "0 2 * * *", "timezone": "Europe/Berlin"}]
    assert fields["name"] == "trg_1" and fields["tags"] == ["cluster-trigger", "namespace:ns", "trigger-type:cron"]
    assert fields["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    assert TriggerRecord.model_validate(fields["parameters"]["trigger"]) == record


def test_interval_schedule_first_slot_is_one_interval_after_creation() -> None:
    fields = deployment_fields(_record(INTERVAL), anchor=datetime(2027, 1, 1, tzinfo=timezone.utc), target=TARGET,
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


def test_a_schedule_edited_in_the_ui_is_the_schedule_the_trigger_shows() -> None:
    cron = validate_request(json.loads(CRON)).schedule_config
    interval = validate_request(json.loads(INTERVAL)).schedule_config
    weekly = CronSchedule(cron="30 4 * * 1", timezone="Europe/Berlin")
    quarter = IntervalSchedule(interval=timedelta(minutes=15), anchor_date=datetime(2027, 1, 1, tzinfo=timezone.utc))
    shown, running = as_scheduled(cron, [_deployed(CronSchedule(cron="0 2 * * *"), False), _deployed(weekly)])
    assert (shown.cron_expression, shown.timezone, running) == ("30 4 * * 1", "Europe/Berlin", weekly)
    assert as_scheduled(interval, [_deployed(quarter)])[0].interval_seconds == 900
    assert as_scheduled(cron, [_deployed(weekly, False)]) == (cron, None), "switched off: nothing runs"
    assert as_scheduled(cron, []) == (cron, None), "removed: nothing runs"
    rrule = RRuleSchedule(rrule="FREQ=DAILY")
    assert as_scheduled(interval, [_deployed(rrule)]) == (interval, rrule), "not expressible: the recorded config stays"


def _deployed(schedule: object, active: bool = True) -> DeploymentSchedule:
    return DeploymentSchedule(schedule=schedule, active=active, deployment_id=None)


HOSTILE = 'nightly <img src="x" onerror="alert(1)"> [docs](javascript:alert(2)) <script>x</script> **bold** a_b'


def test_a_description_shows_in_the_deployment_as_literal_text_and_reads_back_as_given() -> None:
    shown = shown_description(HOSTILE)
    assert "<" not in shown and ">" not in shown and "](" not in shown.replace("\\](", "")
    assert user_description(with_state_line(shown, None)) == HOSTILE


def test_no_description_shows_the_flows_and_reads_back_as_none() -> None:
    line = "**cron trigger**: active, cron 0 2 * * * (UTC) — [state](/artifacts/artifact/1) · [trends](/artifacts/key/t)"
    assert shown_description(None) == shown_description("") == FLOW_DESCRIPTION
    assert user_description(with_state_line(shown_description(None), line)) is None
    assert user_description(shown_description(FLOW_DESCRIPTION)) == FLOW_DESCRIPTION, "a user's own text is theirs"


def test_the_text_prefect_stores_for_no_description_reads_as_none_unless_the_user_wrote_it() -> None:
    line = "**cron trigger**: active, cron 0 2 * * * (UTC) — [state](/artifacts/artifact/1) · [trends](/artifacts/key/t)"
    assert user_description(with_state_line("None", line), described=False) is None
    assert user_description(with_state_line(shown_description("None"), line), described=True) == "None"


@given(st.text(max_size=300))
def test_any_description_reads_back_from_its_deployment(text: str) -> None:
    line = "**event trigger**: active, 0 / 5 documents — [state](/artifacts/artifact/1) · [trends](/artifacts/key/t)"
    shown = with_state_line(shown_description(text), line)
    assert state_line_of(shown) == line
    assert user_description(shown) == (text.strip() or None)
