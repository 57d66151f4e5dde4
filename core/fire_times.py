"""When a trigger will fire: the exact times Prefect's scheduler will create runs for.

Prefect walks cron wall-clock times in the schedule's timezone and resolves each to an
instant with *first occurrence* semantics: a wall time skipped by spring-forward moves
forward by the gap (02:30 -> 03:30 EDT), a wall time repeated by fall-back runs once, at
its first (summer-time) occurrence. croniter alone yields the repeated hour twice, so we
reimplement Prefect's resolution here, without importing Prefect, and test the two
against each other across DST changes.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from itertools import islice
from zoneinfo import ZoneInfo

from croniter import croniter

from prefect_cluster_triggers.core.contract import (
    ConditionalScheduleConfig,
    CronScheduleConfig,
    EventScheduleConfig,
    IntervalScheduleConfig,
    ScheduleConfig,
)

# No zone shifts its UTC offset by more than this at once; a wall time resolves at most
# this far from where it sorts among its neighbours.
_MAX_OFFSET_JUMP = timedelta(hours=3)
# Like Prefect's scheduler: give up after this many candidates (an expression like
# "0 0 31 2 *" never fires).
_MAX_CANDIDATES = 1000
_MAX_REMEMBERED = 4096
_next_cron: dict[tuple[str, str], tuple[datetime, datetime]] = {}


def next_fire_times(schedule: ScheduleConfig, *, after: datetime, count: int) -> list[datetime]:
    """The next `count` UTC instants at or after `after` at which the schedule fires.

    Interval triggers are anchored at their creation, here `after`: `start_immediately`
    fires at `after`, otherwise one interval later.

    Raises:
        TypeError: for event and conditional schedules, which have no fire times.
    """
    after = after.astimezone(timezone.utc)
    if isinstance(schedule, CronScheduleConfig):
        return _cron_fire_times(schedule.cron_expression, schedule.timezone, after, count)
    if isinstance(schedule, IntervalScheduleConfig):
        step = timedelta(seconds=schedule.interval_seconds)
        first = after if schedule.start_immediately else after + step
        return [first + i * step for i in range(count)]
    raise TypeError(f"{type(schedule).__name__} fires on events, not on a clock")


def next_cron_time(expression: str, zone_name: str, *, after: datetime) -> datetime | None:
    """The first fire time at or after `after` (None for an expression that never fires).

    Remembered per expression and zone until it passes: no fire time lies between the
    instant it was computed for and it, so `get` and `ls` pay the DST-exact walk once.
    """
    known = _next_cron.get((expression, zone_name))
    if known is not None and known[0] <= after <= known[1]:
        return known[1]
    found = _cron_fire_times(expression, zone_name, after.astimezone(timezone.utc), 1)
    if not found:
        return None
    if len(_next_cron) >= _MAX_REMEMBERED:
        _next_cron.clear()
    _next_cron[(expression, zone_name)] = (after, found[0])
    return found[0]


def next_interval_slot(anchor: datetime, interval: timedelta, now: datetime) -> datetime:
    """The first slot `anchor + k * interval` (any integer k) at or after `now`: Prefect's next run."""
    anchor = datetime.fromtimestamp(anchor.timestamp(), tz=timezone.utc)  # also from Prefect's pendulum types
    step = timedelta(seconds=interval.total_seconds())
    return anchor + math.ceil((now - anchor) / step) * step  # slots run both ways from the anchor


def describe_wait(schedule: EventScheduleConfig | ConditionalScheduleConfig) -> str:
    """One line saying what an event or conditional trigger waits for."""
    if isinstance(schedule, EventScheduleConfig):
        unit = "batches" if schedule.event_type == "batch_completed" else "documents"
        return (
            f"fires when {schedule.event_threshold} {unit} ({schedule.event_type}) have reached collection "
            f"{schedule.collection_id} since its last firing, at most once every {schedule.cooldown_seconds} s"
        )
    return (
        f"measures {schedule.metric} ({schedule.condition_type}) every {schedule.check_interval_seconds} s "
        f"and fires when it exceeds {schedule.threshold:g}"
    )


def _cron_fire_times(expression: str, zone_name: str, after: datetime, count: int) -> list[datetime]:
    zone = ZoneInfo(zone_name)
    # Start early enough that a wall time resolving forward across a gap is not missed.
    start_wall = (after - _MAX_OFFSET_JUMP).astimezone(zone).replace(tzinfo=None) - timedelta(seconds=1)
    walls = croniter(expression, start_wall)
    found: set[datetime] = set()
    for _ in islice(iter(int, 1), _MAX_CANDIDATES):
        wall: datetime = walls.get_next(datetime)
        instant = wall.replace(tzinfo=zone, fold=0).astimezone(timezone.utc)
        if instant >= after:
            found.add(instant)
        if len(found) >= count and instant - _MAX_OFFSET_JUMP > sorted(found)[count - 1]:
            break
    return sorted(found)[:count]
