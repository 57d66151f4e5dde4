"""When a conditional trigger is checked, and what a check decides: pure rules, `now` passed in.

Checks fall on a fixed grid of slots, one every `check_interval_seconds` counted from the Unix
epoch, so every evaluator (another replica, or this one after a restart) finds the same slot
for the same instant. The slot, not the clock, keys the firing run: Prefect creates one run per
idempotency key, so a slot fires at most once however many evaluators check it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prefect_cluster_triggers.core.firing import Decision
from prefect_cluster_triggers.core.models import format_utc

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def check_slot(moment: datetime, interval_seconds: int) -> datetime:
    """The start of the check slot holding `moment`."""
    elapsed = (moment - EPOCH) // timedelta(seconds=interval_seconds)
    return EPOCH + elapsed * timedelta(seconds=interval_seconds)


def next_slot(moment: datetime, interval_seconds: int) -> datetime:
    """The start of the check slot after the one holding `moment`: when the next check falls due."""
    return check_slot(moment, interval_seconds) + timedelta(seconds=interval_seconds)


def is_due(last_checked: datetime | None, now: datetime, interval_seconds: int) -> bool:
    """A check is due once per slot: none yet, or the last one was in an earlier slot."""
    return last_checked is None or check_slot(last_checked, interval_seconds) < check_slot(now, interval_seconds)


def decide(value: float | None, error: str | None, threshold: float, *, busy: bool) -> Decision:
    """What a measurement decides. No value without an error means nothing was clustered yet:
    the first clustering is owed, so it fires."""
    if error is not None:
        return Decision.check_failed
    if value is not None and value <= threshold:
        return Decision.below_threshold
    return Decision.already_running if busy else Decision.fired


def explain(metric: str, value: float | None, error: str | None, threshold: float, decision: Decision) -> str:
    """What a check decided, in a line a person reads (the Event Feed shows it on the check's row)."""
    if error is not None:
        return f"{metric}: check failed ({error})"[:200]
    if value is None:
        return f"{metric}: nothing clustered yet, {decision.value}"
    return f"{metric} {value:.4g} against threshold {threshold:g}: {decision.value}"


def firing_key(trigger_id: str, slot: datetime) -> str:
    """The idempotency key of the run a check fires: the same for every evaluator checking this slot."""
    return f"{trigger_id}:check:{format_utc(slot)}"
