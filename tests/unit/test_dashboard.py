"""A trigger's page in the Prefect UI says what a data team asks of it, in words."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from prefect_cluster_triggers.core.contract import ClusterTrigger, validate_request
from prefect_cluster_triggers.deployments.prefect_objects.translate import state_line_of, with_state_line
from prefect_cluster_triggers.deployments.service.dashboard import changed, facts, markdown, state_line

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
                             execution_count=7, last_execution_status="failed",
                             last_execution_job_id="0f3d80d3-6c92-4ebf-adda-02b725c3483f",
                             last_execution_error="the collection is empty: nothing to cluster", last_triggered_at=_WHEN))
    assert "**failed** (5 runs failed in a row; runs stopped until `cluster-triggers resume trg_1`): runs on cron" in page
    assert "**last error**: the collection is empty: nothing to cluster" in page
    assert "| executions | 7, 5 failed in a row |" in page and "| next run | none planned |" in page
    # the run id links to the flow run's page in the Prefect UI
    assert ("| last run | failed, 2026-11-26 02:00 UTC, run "
            "[0f3d80d3](/flow-runs/flow-run/0f3d80d3-6c92-4ebf-adda-02b725c3483f) |") in page


_CONDITIONAL = {"trigger_type": "conditional", "execution_config": _EXECUTION,
                "schedule_config": {"condition_type": "drift", "metric": "cosine_drift", "threshold": 0.25,
                                    "check_interval_seconds": 600}}


def test_a_conditional_trigger_shows_its_last_measurement_against_its_threshold() -> None:
    page = markdown(_trigger(_CONDITIONAL, last_measurement=0.3125, last_condition_check_at=_WHEN))
    assert "| last measurement | 0.312 \\(threshold 0.25\\) |" in page  # parentheses escaped: they open no link
    failed = markdown(_trigger(_CONDITIONAL, last_check_error="collection col_a | not found", last_condition_check_at=_WHEN))
    assert "| last measurement | check failed \\(threshold 0.25\\) |" in failed
    assert "**check error**: collection col_a | not found" in failed


def test_a_check_that_measures_the_same_value_later_changes_nothing_on_the_page() -> None:
    first = _trigger(_CONDITIONAL, last_measurement=0.123401, last_condition_check_at=_WHEN)
    later = _trigger(_CONDITIONAL, last_measurement=0.123449, last_condition_check_at=_WHEN + timedelta(hours=5))
    assert markdown(first) == markdown(later) and facts(first) == facts(later)
    other = _trigger(_CONDITIONAL, last_measurement=0.2, last_condition_check_at=_WHEN + timedelta(hours=5))
    assert changed(facts(first), facts(other)) == "last measurement 0.123 (threshold 0.25) → 0.2 (threshold 0.25)"


def test_every_table_row_is_short_enough_for_the_prefect_ui_and_long_text_is_a_paragraph() -> None:
    """Prefect's V1 UI cuts a table cell at the table's width (about 100 characters at 1440 px)."""
    event = {"trigger_type": "event", "execution_config": {**_EXECUTION, "collection_ids": [f"col_{i}" for i in range(40)]},
             "schedule_config": {"event_type": "documents_added", "event_threshold": 500, "collection_id": "col_1"}}
    for trigger in (_trigger(event, last_execution_error="x" * 300, last_execution_status="failed",
                             last_execution_job_id="0f3d80d3-6c92-4ebf-adda-02b725c3483f", last_triggered_at=_WHEN),
                    _trigger(_CONDITIONAL, last_check_error="y" * 300, last_condition_check_at=_WHEN)):
        rows = [line for line in markdown(trigger).splitlines() if line.startswith("| ")]
        shown = [re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", row) for row in rows]  # a link shows its label
        assert rows and max(len(row) for row in shown) <= 100, shown


def test_the_state_line_says_what_the_trigger_waits_for_and_links_its_page() -> None:
    event = _trigger({"trigger_type": "event", "execution_config": _EXECUTION,
                      "schedule_config": {"event_type": "documents_added", "event_threshold": 500,
                                          "collection_id": "col_a", "cooldown_seconds": 300}},
                     event_counter=340, last_triggered_at=_WHEN)
    line = state_line(event, "5aa8c714-b5c2-457f-817f-c67f9c45da6c")
    assert line.startswith("**event trigger**: active, 340 / 500 documents\\_added on col\\_a, cooldown 300 s, "
                           "last fired 2026-11-26 02:00Z — [state](/artifacts/artifact/5aa8c714-b5c2-457f-817f-c67f9c45da6c)")
    conditional = state_line(_trigger(_CONDITIONAL, last_measurement=0.05), "a1")
    assert "cosine\\_drift 0.05 of threshold 0.25, checked every 600 s, last fired never" in conditional
    assert state_line_of(with_state_line("Nightly [run](x)", line)) == line


def test_a_new_state_line_has_the_next_sweep_visit_nothing_a_users_edit_does() -> None:
    from prefect_cluster_triggers.deployments.prefect_objects.deployment_reads import fingerprint

    trigger = _trigger(_CONDITIONAL, last_measurement=0.05)
    raw = {"paused": False, "tags": ["a"], "parameters": {"p": 1},
           "description": with_state_line("Nightly", state_line(trigger, "a1"))}
    checked = {**raw, "description": with_state_line(raw["description"], state_line(
        trigger.model_copy(update={"last_measurement": 0.07}), "a2"))}
    edited = {**raw, "description": with_state_line("Nightly, reviewed", state_line(trigger, "a1"))}
    assert fingerprint(checked) == fingerprint(raw)
    assert fingerprint(edited) != fingerprint(raw)


def test_a_trends_page_gets_a_version_for_a_new_value_or_hourly_not_for_every_check() -> None:
    from prefect_cluster_triggers.deployments.service.run_pages import TRENDS_REFRESH, trends_due

    shown = {"last_check": "2026-11-26T02:00:00Z", "last_value": "0.123"}
    later = _WHEN + timedelta(minutes=1)
    assert not trends_due(None, 0.5, shown)  # never checked
    assert trends_due(_WHEN, 0.123, None) and trends_due(_WHEN, 0.123, {})  # no page yet
    assert not trends_due(_WHEN, 0.9, shown)  # the page already shows this check
    assert not trends_due(later, 0.12301, shown)  # the same value to three digits
    assert trends_due(later, 0.124, shown)
    assert trends_due(_WHEN + TRENDS_REFRESH, 0.123, shown)  # an unchanged value, an hour on
    assert trends_due(later, None, shown)  # a failed measurement is a change
