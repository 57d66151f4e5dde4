"""Previewed fire times are the ones Prefect's scheduler creates, across DST changes.

The reference is Prefect's own server-side schedule (`CronSchedule.get_dates`), the code
its scheduler service calls to make runs.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prefect.server.schemas.schedules import CronSchedule

from prefect_cluster_triggers.core.contract import CronScheduleConfig, IntervalScheduleConfig
from prefect_cluster_triggers.core.fire_times import next_cron_time, next_fire_times, next_interval_slot


def _prefect_times(expression: str, zone: str, after: datetime, count: int) -> list[datetime]:
    dates = asyncio.run(CronSchedule(cron=expression, timezone=zone).get_dates(n=count, start=after))
    return [d.astimezone(timezone.utc) for d in dates]


def _ours(expression: str, zone: str, after: datetime, count: int) -> list[datetime]:
    schedule = CronScheduleConfig(cron_expression=expression, timezone=zone)
    return next_fire_times(schedule, after=after, count=count)


# (zone, a day before the 2027 change, the change's name)
DST_2027 = [
    ("America/New_York", datetime(2027, 3, 13, tzinfo=timezone.utc), "spring"),
    ("America/New_York", datetime(2027, 11, 6, tzinfo=timezone.utc), "autumn"),
    ("Europe/Berlin", datetime(2027, 3, 27, tzinfo=timezone.utc), "spring"),
    ("Europe/Berlin", datetime(2027, 10, 30, tzinfo=timezone.utc), "autumn"),
]
EXPRESSIONS = ["0 2 * * *", "30 2 * * *", "30 1 * * *", "0 * * * *", "*/15 * * * *", "0 3 * * 0", "45 0-4 * * *"]


@pytest.mark.parametrize(("zone", "start", "change"), DST_2027, ids=[f"{z}-{c}" for z, _, c in DST_2027])
@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_preview_matches_prefect_across_dst(zone: str, start: datetime, change: str, expression: str) -> None:
    assert _ours(expression, zone, start, 60) == _prefect_times(expression, zone, start, 60)


def test_spring_forward_new_york_runs_at_three_edt() -> None:
    times = _ours("0 2 * * *", "America/New_York", datetime(2027, 3, 13, tzinfo=timezone.utc), 3)
    assert [t.isoformat() for t in times] == [
        "2027-03-13T07:00:00+00:00",
        "2027-03-14T07:00:00+00:00",  # 02:00 does not exist; 03:00 EDT
        "2027-03-15T06:00:00+00:00",
    ]


def test_fall_back_new_york_runs_the_repeated_hour_once() -> None:
    times = _ours("30 1 * * *", "America/New_York", datetime(2027, 11, 6, tzinfo=timezone.utc), 3)
    assert [t.isoformat() for t in times] == [
        "2027-11-06T05:30:00+00:00",
        "2027-11-07T05:30:00+00:00",  # once, at the first 01:30 (EDT)
        "2027-11-08T06:30:00+00:00",
    ]


@settings(max_examples=60, deadline=None)
@given(
    minute=st.sampled_from(["0", "30", "*/10", "5,55"]),
    hour=st.sampled_from(["*", "0", "1", "2", "3", "1-3", "*/2"]),
    zone_and_day=st.sampled_from(DST_2027),
    offset_minutes=st.integers(min_value=0, max_value=3 * 24 * 60),
)
def test_preview_matches_prefect_from_any_start(
    minute: str, hour: str, zone_and_day: tuple[str, datetime, str], offset_minutes: int
) -> None:
    zone, day, _ = zone_and_day
    after = day + timedelta(minutes=offset_minutes, seconds=offset_minutes % 7)
    expression = f"{minute} {hour} * * *"
    assert _ours(expression, zone, after, 20) == _prefect_times(expression, zone, after, 20)


def test_interval_starts_at_creation_or_one_interval_later() -> None:
    after = datetime(2027, 1, 1, 12, tzinfo=timezone.utc)
    now = next_fire_times(IntervalScheduleConfig(interval_seconds=3600, start_immediately=True), after=after, count=2)
    later = next_fire_times(IntervalScheduleConfig(interval_seconds=3600), after=after, count=2)
    assert now == [after, after + timedelta(hours=1)]
    assert later == [after + timedelta(hours=1), after + timedelta(hours=2)]


@pytest.mark.parametrize("anchor_offset", [-10_000_000, -3600, -1, 0, 1, 5000])
@pytest.mark.parametrize("seconds", [60, 3600, 21600])
def test_next_interval_slot_is_the_run_prefect_makes_next(anchor_offset: int, seconds: int) -> None:
    from prefect.server.schemas.schedules import IntervalSchedule

    now = datetime(2026, 11, 26, 9, 3, 7, 123456, tzinfo=timezone.utc)
    schedule = IntervalSchedule(interval=timedelta(seconds=seconds), anchor_date=now + timedelta(seconds=anchor_offset),
                                timezone="UTC")
    prefects = asyncio.run(schedule.get_dates(n=1, start=now))[0]
    assert next_interval_slot(schedule.anchor_date, schedule.interval, now) == prefects


def test_the_remembered_next_cron_time_is_the_walked_one_at_every_instant() -> None:
    """`get` and `ls` reuse a computed next time until it passes; across a DST change it never goes stale."""
    start = datetime(2026, 3, 8, 5, 0, tzinfo=timezone.utc)  # New York springs forward at 07:00 UTC
    for minutes in range(0, 6 * 60, 7):
        after = start + timedelta(minutes=minutes)
        for expression in ("*/20 * * * *", "30 2 * * *"):
            expected = _ours(expression, "America/New_York", after, 1)
            assert next_cron_time(expression, "America/New_York", after=after) == expected[0], (expression, after)
