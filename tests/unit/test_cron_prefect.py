"""Our cron check accepts what Prefect's `CronSchedule` accepts, and previews what its scheduler runs.

The contract is checked without Prefect (its croniter is a different, vendored copy), so the
two are compared here, expression by expression, in both directions. Ours refuses on purpose
what could not run as previewed; `_refused_on_purpose` says which, without asking our code.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from prefect._vendor.croniter import CroniterBadDateError
from prefect.client.schemas.schedules import CronSchedule
from prefect.server.schemas.schedules import CronSchedule as ServerCronSchedule
from pydantic import ValidationError

from prefect_cluster_triggers.core.contract import CronScheduleConfig
from prefect_cluster_triggers.core.fire_times import next_fire_times
from tests.hostile_requests import CRONISH

CORPUS = [
    # plain fields, ranges, lists, steps
    "0 2 * * *", "*/15 * * * *", "0-59/15 * * * *", "5,35 1-3 * * *", "0 0 1,15 * *", "0 0 1 */3 *",
    "5-2 * * * *", "0 0 * * 1/2", "0 0 * * */2", "0 0 * * 1-5/2", "0 0 1 * 1", "59 23 31 12 *",
    # day and month names, either case, alone, in ranges and lists
    "0 2 * * THU", "0 2 1 MAR *", "0 0 * * mon-fri", "0 0 * * MON-FRI", "0 0 * jan-mar *", "0 0 * * THU,SAT",
    "0 0 * DEC,JAN *", "0 0 * * SUN-SAT", "0 0 * * SAT-SUN", "0 0 * OCT-FEB *", "0 9 * * Wed", "0 0 * * thursday",
    # 7 as Sunday
    "0 0 * * 7", "0 0 * * 0-7",
    # L, #, ?
    "0 0 L * *", "0 0 l * *", "0 0 1-L * *", "0 0 L 2 *", "0 0 L-2 * *", "0 0 LW * *", "0 0 * * L", "0 0 * * 5L",
    "0 0 * * 1,L", "0 0 * * 5#2", "0 0 * * FRI#2", "0 0 * * sun#5", "0 0 * * 1#6", "0 0 * * 1#0", "0 0 ? * *",
    "0 0 * * ?", "0 0 ? * ?", "0 0 ?/2 * *",
    # W (nearest weekday): our croniter knows it, Prefect's does not
    "0 0 15W * *", "0 0 15w * *", "0 0 1W * *", "0 0 W * *", "0 0 1W,15W * *",
    # random and hashed
    "R * * * *", "r 2 * * *", "R/5 * * * *", "R(0-29) * * * *", "0 R(0-5) * * *", "H * * * *", "h 2 * * *",
    "H/5 * * * *", "H(0-29) * * * *", "0 H * * *",
    # macros
    "@daily", "@hourly", "@weekly", "@monthly", "@yearly", "@annually", "@midnight", "@DAILY", "@reboot", "@every 5m",
    # seconds and year fields
    "0 0 * * * *", "0 0 * * * 30", "0 0 * * * * 2030", "0 0 * * * 2020", "* * * * * * * *",
    # out of range, never firing, garbage
    "60 * * * *", "0 24 * * *", "0 0 0 * *", "0 0 32 * *", "0 0 * 13 *", "0 0 * * 8", "*/0 * * * *", "1-60 * * * *",
    "0 0 31 2 *", "0 0 30 2 *", "0 0 29 2 *", "0 0 31 4 *", "a b c d e", "", " ", "* * * *", "%", "0 2 * * * # daily",
    # whitespace and non-ASCII
    " 0 2 * * * ", "0\t2\t*\t*\t*", "0 2 * * *\n", "٣ * * * *", "0 ２ * * *", "0 2 * * *\u00a0", "0 2 * * thü",
]

def _prefect_accepts(expression: str) -> bool:
    try:
        CronSchedule(cron=expression)
    except ValidationError:
        return False
    return True


def _prefect_fire_times(expression: str, zone: str, after: datetime, count: int) -> list[datetime]:
    schedule = ServerCronSchedule(cron=expression, timezone=zone)
    return [d.astimezone(timezone.utc) for d in asyncio.run(schedule.get_dates(n=count, start=after))]


def _refused_on_purpose(expression: str) -> bool:
    """What Prefect takes and we refuse: seconds or year fields, random fields (Prefect draws
    them anew on each scheduling pass), non-ASCII digits, and expressions that never fire."""
    fields = expression.split()
    macro = len(fields) == 1 and fields[0].startswith("@")
    return (
        (len(fields) != 5 and not macro)
        or any(field[0] in "Rr" for field in fields)
        or not expression.isascii()
        or _never_fires(expression)
    )


def _never_fires(expression: str) -> bool:
    try:
        return not _prefect_fire_times(expression, "UTC", datetime(2027, 1, 1, tzinfo=timezone.utc), 1)
    except CroniterBadDateError:  # the scheduler's croniter gives up looking
        return True


def _ours_accepts(expression: str) -> bool:
    try:
        CronScheduleConfig(cron_expression=expression)
    except ValidationError:
        return False
    return True


def _agree(expression: str) -> None:
    expected = _prefect_accepts(expression) and not _refused_on_purpose(expression)
    assert _ours_accepts(expression) == expected, f"{expression!r}: Prefect accepts: {_prefect_accepts(expression)}"


@pytest.mark.parametrize("expression", CORPUS)
def test_accepted_exactly_when_prefect_accepts(expression: str) -> None:
    _agree(expression)


@settings(max_examples=300, deadline=None)
@given(CRONISH)
@example("* * * *\x1f*")  # a control character Python's split and Prefect's croniter read as whitespace
@example("@daily ")  # a macro with a space: Prefect refuses it, a 5-field expression with one it takes
def test_random_cron_strings_accepted_exactly_when_prefect_accepts(expression: str) -> None:
    _agree(expression)


def test_what_every_cron_user_writes_is_accepted_and_what_prefect_refuses_is_not() -> None:
    assert _ours_accepts("0 2 * * THU") and _ours_accepts("0 2 1 MAR *") and _ours_accepts("0 0 * * mon-fri")
    with pytest.raises(ValidationError, match="W \\(nearest weekday\\)"):
        CronScheduleConfig(cron_expression="0 0 15W * *")
    with pytest.raises(ValidationError, match="random"):
        CronScheduleConfig(cron_expression="R(0-29) 2 * * *")


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
@pytest.mark.parametrize("expression", [e for e in CORPUS if _ours_accepts(e)])
def test_preview_of_every_accepted_expression_is_prefects(expression: str, zone: str) -> None:
    after = datetime(2027, 3, 1, tzinfo=timezone.utc)  # New York springs forward on the 14th
    schedule = CronScheduleConfig(cron_expression=expression, timezone=zone)
    assert next_fire_times(schedule, after=after, count=12) == _prefect_fire_times(expression, zone, after, 12)
