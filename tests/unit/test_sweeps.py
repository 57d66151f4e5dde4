"""Which triggers a sweep visits (`core.sweeps`): what moved, plus a slice of the rest; all after taking the lease."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from prefect_cluster_triggers.core.sweeps import (
    EVENT_LAG,
    ROTATION,
    SLICE,
    SweepMemory,
    evaluated_already,
    events_since,
    newly_named,
    remember,
    to_visit,
)

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
TRIGGERS = {f"trg_{i}": f"v{i}" for i in range(10_000)}


def _swept_once() -> SweepMemory:
    memory = SweepMemory()
    remember(memory, TRIGGERS, set(TRIGGERS), began=NOW - timedelta(seconds=30))
    return memory


def test_the_first_sweep_visits_every_trigger_without_reading_events() -> None:
    memory = SweepMemory()
    assert events_since(memory) is None
    assert to_visit(TRIGGERS, memory, None, {}, now=NOW) == set(TRIGGERS)


def test_a_quiet_sweep_visits_only_its_slice_however_many_triggers_there_are() -> None:
    memory = _swept_once()
    assert events_since(memory) == NOW - timedelta(seconds=30) - EVENT_LAG
    assert len(to_visit(TRIGGERS, memory, set(), {}, now=NOW)) == SLICE


def test_a_sweep_visits_what_changed_what_events_named_and_what_came_due() -> None:
    memory = _swept_once()
    changed = {**TRIGGERS, "trg_1": "paused in the UI", "trg_new": "created"}
    due = {"trg_3": NOW - timedelta(seconds=1), "trg_4": NOW + timedelta(seconds=1)}
    visit = to_visit(changed, memory, {"trg_2"}, due, now=NOW)
    assert {"trg_1", "trg_new", "trg_2", "trg_3"} <= visit and "trg_4" not in visit and len(visit) <= 4 + SLICE


def test_an_event_read_by_several_sweeps_makes_one_visit_and_is_forgotten_once_out_of_reach() -> None:
    memory = _swept_once()
    occurred = NOW - timedelta(seconds=5)
    named = {"trg_2": {"e1": occurred}}
    assert newly_named(named, memory) == {"trg_2"}
    remember(memory, TRIGGERS, to_visit(TRIGGERS, memory, {"trg_2"}, {}, now=NOW), began=NOW, named=named)
    # The next sweeps read e1 again (it is within EVENT_LAG of where they read from): no visit for it ...
    assert newly_named(named, memory) == set()
    # ... but one for a newer event naming the same trigger.
    assert newly_named({"trg_2": {"e1": occurred, "e2": NOW}}, memory) == {"trg_2"}
    # A visit that failed leaves its events to the next sweep.
    failed = {"trg_3": {"e3": NOW}}
    remember(memory, TRIGGERS, {"trg_3"}, began=NOW + timedelta(seconds=10), failed={"trg_3"}, named=failed)
    assert newly_named(failed, memory) == {"trg_3"}
    # Once no sweep reads it any more, it is forgotten: the memory does not grow with time.
    remember(memory, TRIGGERS, set(), began=occurred + EVENT_LAG + timedelta(seconds=1))
    assert "e1" not in memory.acted


def test_a_trigger_a_wake_up_evaluated_after_each_new_collection_event_is_visited_without_a_second_evaluation() -> None:
    memory = _swept_once()
    named = {"trg_1": {"e1": NOW}, "trg_2": {"e2": NOW, "run-state": NOW}, "trg_3": {"e3": NOW},
             "trg_4": {"e4": NOW}, "trg_5": {"e5": NOW}}
    handled = {"trg_1": {"e1"}, "trg_2": {"e2"}, "trg_4": {"e4"}, "trg_5": {"e5"}}
    edited = {**TRIGGERS, "trg_4": "v4-paused"}
    due = {"trg_5": NOW - timedelta(seconds=1)}
    counted = {t: {e for e in events if e != "run-state"} for t, events in named.items()}
    settled = evaluated_already(named, counted, memory, handled, edited, due, now=NOW)
    assert settled == {"trg_1", "trg_2"}, "an event no wake-up delivered, an edit or a due firing: evaluated again"
    assert {"trg_1", "trg_2", "trg_3", "trg_4", "trg_5"} <= to_visit(edited, memory, newly_named(named, memory), due,
                                                                     now=NOW), "each still visited"
    memory.acted["e2"] = NOW
    assert "trg_2" not in evaluated_already({"trg_2": {"e2": NOW}}, {"trg_2": {"e2"}}, memory, {}, edited, {}, now=NOW), \
        "events acted on make no new visit to settle"
    runs_only = {"trg_6": {"scheduled": NOW, "late": NOW}}
    assert evaluated_already(runs_only, {}, memory, {}, TRIGGERS, {}, now=NOW) == {"trg_6"}, \
        "its runs' state changes alone: its page is brought up to date, its plan is not made again"


def test_a_visit_that_failed_is_made_again() -> None:
    memory = SweepMemory()
    remember(memory, TRIGGERS, set(TRIGGERS), began=NOW, failed={"trg_7"})
    assert "trg_7" in to_visit(TRIGGERS, memory, set(), {}, now=NOW + timedelta(seconds=30))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 2 * ROTATION * SLICE), st.integers(0, ROTATION))
def test_quiet_sweeps_visit_every_trigger_within_rotation_sweeps_or_n_over_slice(size: int, start: int) -> None:
    triggers = {f"trg_{i}": "v" for i in range(size)}
    memory = SweepMemory()
    remember(memory, triggers, set(triggers), began=NOW)
    for _ in range(start):  # wherever the rotation stands
        remember(memory, triggers, to_visit(triggers, memory, set(), {}, now=NOW), began=NOW)
    seen: set[str] = set()
    for _ in range(max(ROTATION, -(-size // SLICE))):
        visit = to_visit(triggers, memory, set(), {}, now=NOW)
        assert len(visit) <= min(SLICE, -(-size // ROTATION))
        seen |= visit
        remember(memory, triggers, visit, began=NOW)
    assert seen == set(triggers)


def test_taking_the_lease_again_visits_all() -> None:
    memory = _swept_once()
    memory.forget()
    assert events_since(memory) is None
