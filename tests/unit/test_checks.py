"""The conditional trigger's check rules: a slot grid every evaluator agrees on, and the decision."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prefect_cluster_triggers.core import checks
from prefect_cluster_triggers.core.firing import Decision

_UTC = timezone.utc
instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(_UTC))
intervals = st.integers(min_value=60, max_value=31_536_000)


@given(instants, intervals, st.floats(min_value=0, max_value=1, exclude_max=True))
def test_every_instant_of_a_slot_gives_the_same_firing_key(moment: datetime, interval: int, fraction: float) -> None:
    slot = checks.check_slot(moment, interval)
    assert slot <= moment < slot + timedelta(seconds=interval)
    other = slot + timedelta(microseconds=min(int(interval * 1_000_000 * fraction), interval * 1_000_000 - 1))
    assert checks.firing_key("t", checks.check_slot(other, interval)) == checks.firing_key("t", slot)


@given(instants, intervals)
def test_a_check_is_due_once_per_slot(moment: datetime, interval: int) -> None:
    assert checks.is_due(None, moment, interval)
    assert not checks.is_due(moment, moment, interval)
    nxt = checks.check_slot(moment, interval) + timedelta(seconds=interval)
    assert checks.is_due(moment, nxt, interval)
    assert not checks.is_due(moment, nxt - timedelta(microseconds=1), interval)


@pytest.mark.parametrize(("value", "error", "busy", "decision"), [
    (0.2, None, False, Decision.fired),
    (0.2, None, True, Decision.already_running),
    (0.05, None, False, Decision.below_threshold),  # at the threshold is not over it
    (0.01, None, True, Decision.below_threshold),
    (None, None, False, Decision.fired),  # nothing clustered yet: the first clustering is owed
    (None, "collection gone", False, Decision.check_failed),
])
def test_what_a_check_decides(value: float | None, error: str | None, busy: bool, decision: Decision) -> None:
    assert checks.decide(value, error, 0.05, busy=busy) == decision


def test_the_next_check_falls_due_at_the_start_of_the_following_slot() -> None:
    moment = datetime(2026, 12, 6, 12, 0, 59, tzinfo=timezone.utc)
    assert checks.next_slot(moment, 60) == datetime(2026, 12, 6, 12, 1, tzinfo=timezone.utc)
    assert checks.is_due(moment, checks.next_slot(moment, 60), 60)


def test_a_check_explains_its_decision_in_one_line() -> None:
    assert checks.explain("cosine_drift", 0.0412, None, 0.1, Decision.below_threshold) == \
        "cosine_drift 0.0412 against threshold 0.1: below threshold"
    assert checks.explain("cosine_drift", None, None, 0.1, Decision.fired) == "cosine_drift: nothing clustered yet, fired"
    assert checks.explain("silhouette_drop", None, "no documents", 0.1, Decision.check_failed) == \
        "silhouette_drop: check failed (no documents)"
