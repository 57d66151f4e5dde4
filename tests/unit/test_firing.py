"""Exact counting and cooldown of event triggers, without a server."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from prefect_cluster_triggers.core.contract import EventType
from prefect_cluster_triggers.core.firing import GRACE, Checkpoint, CountedEvent, Firing, count_of, explain, fold, plan

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=timezone.utc)


def _event(seconds: float, count: int, n: int) -> CountedEvent:
    return CountedEvent(id=f"e{n:04d}", occurred=T0 + timedelta(seconds=seconds), count=count)


def _evaluate_after_each(events: list[CountedEvent], threshold: int, cooldown: int, step: float = 1.0):
    """Re-plan after each event arrives, keeping the firings made so far (as the evaluator does)."""
    firings: list[Firing] = []
    for i in range(len(events)):
        now = events[i].occurred + timedelta(seconds=step / 2)
        firings += plan(events[: i + 1], firings, created_at=T0 - timedelta(seconds=1), threshold=threshold,
                        cooldown_seconds=cooldown, now=now).firings
    return firings


def test_250_documents_in_5_batches_fire_exactly_twice_leaving_50_counted():
    batches = [_event(i, 50, i) for i in range(5)]
    firings = _evaluate_after_each(batches, threshold=100, cooldown=0)
    assert [f.cutoff_event_id for f in firings] == ["e0001", "e0003"]
    assert [f.documents for f in firings] == [100, 100]
    after = plan(batches, firings, created_at=T0, threshold=100, cooldown_seconds=0, now=T0 + timedelta(seconds=9))
    assert after.firings == [] and after.event_counter == 50


def test_all_batches_seen_at_once_give_the_same_two_firings():
    batches = [_event(i, 50, i) for i in range(5)]
    result = plan(batches, [], created_at=T0 - timedelta(seconds=1), threshold=100, cooldown_seconds=0,
                  now=T0 + timedelta(seconds=9))
    assert [f.cutoff_event_id for f in result.firings] == ["e0001", "e0003"]
    assert result.event_counter == 250, "until the firings exist, all 250 are counted"
    assert result.event_counter_after == 50
    after = plan(batches, result.firings, created_at=T0, threshold=100, cooldown_seconds=0,
                 now=T0 + timedelta(seconds=10))
    assert after.firings == [] and after.event_counter == 50


def test_a_burst_out_of_order_with_duplicates_fires_once():
    burst = [CountedEvent(id=f"e{i:04d}", occurred=T0, count=1) for i in range(50)]
    shuffled = burst + burst[:10]
    random.Random(7).shuffle(shuffled)
    first = plan(shuffled[:30], [], created_at=T0 - timedelta(seconds=1), threshold=50, cooldown_seconds=300,
                 now=T0 + timedelta(seconds=1))
    assert first.firings == [] and first.event_counter == len({e.id for e in shuffled[:30]})
    done = plan(shuffled, [], created_at=T0 - timedelta(seconds=1), threshold=50, cooldown_seconds=300,
                now=T0 + timedelta(seconds=2))
    assert len(done.firings) == 1 and done.firings[0].documents == 50
    again = plan(shuffled, done.firings, created_at=T0, threshold=50, cooldown_seconds=300, now=T0 + timedelta(seconds=3))
    assert again.firings == [] and again.event_counter == 0


def test_cooldown_holds_back_then_the_held_back_firing_takes_everything_until_due():
    created = T0 - timedelta(seconds=1)
    first = plan([_event(0, 10, 0)], [], created_at=created, threshold=10, cooldown_seconds=60, now=T0).firings
    assert len(first) == 1 and first[0].due == T0
    events = [_event(0, 10, 0), _event(10, 10, 1)]
    held = plan(events, first, created_at=created, threshold=10, cooldown_seconds=60, now=T0 + timedelta(seconds=11))
    assert len(held.firings) == 1
    deferred = held.firings[0]
    assert deferred.due == T0 + timedelta(seconds=60) and deferred.documents is None
    assert held.last_cooldown_at == T0 + timedelta(seconds=11) and held.event_counter == 10
    assert held.held_back_until == deferred.due and held.event_counter_after == 10
    # During the cooldown events keep counting, and nothing more is planned.
    events.append(_event(30, 5, 2))
    during = plan(events, first + held.firings, created_at=created, threshold=10, cooldown_seconds=60,
                  now=T0 + timedelta(seconds=31))
    assert during.firings == [] and during.event_counter == 15
    assert during.last_cooldown_at == T0 + timedelta(seconds=11) and during.held_back_until == deferred.due
    # Once it is due, it has consumed them all.
    events.append(_event(61, 3, 3))
    after = plan(events, first + held.firings, created_at=created, threshold=10, cooldown_seconds=60,
                 now=T0 + timedelta(seconds=62))
    assert after.firings == [] and after.event_counter == 3


def test_a_reader_that_sees_the_held_back_firing_before_its_events_still_shows_what_was_counted():
    created = T0 - timedelta(seconds=1)
    first = plan([_event(0, 10, 0)], [], created_at=created, threshold=10, cooldown_seconds=60, now=T0).firings
    held = plan([_event(0, 10, 0), _event(10, 15, 1)], first, created_at=created, threshold=10, cooldown_seconds=60,
                now=T0 + timedelta(seconds=11)).firings
    assert held[0].counted == 15
    # The evaluator learnt of the event from an automation; Prefect's events API does not show it yet.
    read = plan([_event(0, 10, 0)], first + held, created_at=created, threshold=10, cooldown_seconds=60,
                now=T0 + timedelta(seconds=12))
    assert read.event_counter == 15 and read.held_back_until == held[0].due


def test_before_its_firings_are_made_a_plan_shows_no_hold_back_yet():
    created = T0 - timedelta(seconds=1)
    # Both adds seen in one evaluation: it fires on the first ten and holds the next fifteen back.
    events = [_event(0, 10, 0), _event(1, 15, 1)]
    both = plan(events, [], created_at=created, threshold=10, cooldown_seconds=60, now=T0 + timedelta(seconds=2))
    assert [f.documents for f in both.firings] == [10, None] and both.last_cooldown_at == T0 + timedelta(seconds=2)
    # A reader (or a paused trigger) that does not make them shows the count, and no cooldown applied.
    shown = both.before()
    assert (shown.event_counter_after, shown.last_cooldown_at, shown.held_back_until) == (25, None, None)
    # Once made, the hold-back shows, and nothing new is planned while it waits.
    waiting = plan(events, both.firings, created_at=created, threshold=10, cooldown_seconds=60,
                   now=T0 + timedelta(seconds=3))
    assert waiting.before() == waiting and waiting.event_counter == 15
    assert waiting.last_cooldown_at == T0 + timedelta(seconds=2) and waiting.held_back_until == both.firings[1].due


def test_below_threshold_never_fires_and_events_before_creation_do_not_count():
    events = [_event(-5, 100, 0), _event(1, 99, 1)]
    result = plan(events, [], created_at=T0, threshold=100, cooldown_seconds=0, now=T0 + timedelta(seconds=2))
    assert result.firings == [] and result.event_counter == 99


def test_what_an_event_counts():
    assert count_of(EventType.documents_added, {"count": 50}) == 50
    assert count_of(EventType.documents_updated, {}) == 1
    assert count_of(EventType.documents_added, None) == 1
    assert count_of(EventType.documents_added, {"count": "7"}) == 1
    assert count_of(EventType.documents_added, {"count": True}) == 1
    assert count_of(EventType.batch_completed, {"count": 500}) == 1


def test_explain_says_why_a_trigger_fired_or_not():
    def explained(events: list[CountedEvent], firings: list[Firing], seconds: float, status: str = "active") -> dict:
        now = T0 + timedelta(seconds=seconds)
        result = plan(events, firings, created_at=T0 - timedelta(seconds=1), threshold=10, cooldown_seconds=60, now=now)
        return explain(result, threshold=10, now=now, status=status)

    assert explained([_event(0, 4, 0)], [], 1)["decision"] == "below threshold"
    fired = explained([_event(0, 12, 0)], [], 1)
    assert (fired["decision"], fired["fired_documents"], fired["event_counter"]) == ("fired", [12], 0)
    first = plan([_event(0, 12, 0)], [], created_at=T0 - timedelta(seconds=1), threshold=10, cooldown_seconds=60, now=T0 + timedelta(seconds=1))
    held = explained([_event(0, 12, 0), _event(5, 10, 1)], first.firings, 6)
    assert held["decision"] == "cooldown" and held["cooldown_remaining_seconds"] == 55.0
    assert held["held_back_until"] == "2026-11-26T08:01:01Z"
    paused = explained([_event(0, 30, 0)], [], 1, status="paused")
    assert (paused["decision"], paused["event_counter"], paused["fired_documents"]) == ("paused", 30, [30])


def _fold(checkpoint: Checkpoint, events: list[CountedEvent], firings: list[Firing], seconds: float,
          threshold: int = 100, cooldown: int = 0, fire: bool = True):
    return fold(checkpoint, events, firings, created_at=T0 - timedelta(seconds=1), threshold=threshold,
                cooldown_seconds=cooldown, now=T0 + timedelta(seconds=seconds), fire=fire)


def test_a_checkpoint_carries_counts_past_the_events_prefect_deleted():
    first = [_event(i, 1, i) for i in range(60)]
    plan1, checkpoint = _fold(Checkpoint(), first, [], 61)
    assert plan1.firings == [] and plan1.event_counter == 60
    # 11 minutes later Prefect has deleted the first 60 events; 60 more arrive.
    later = [_event(700 + i, 1, 100 + i) for i in range(60)]
    plan2, checkpoint = _fold(checkpoint, later, [], 761)
    assert [f.documents for f in plan2.firings] == [100] and plan2.firings[0].cutoff_event_id == "e0139"
    assert plan2.event_counter_after == 20
    again, unchanged = _fold(checkpoint, later, plan2.firings, 762)
    assert again.firings == [] and again.event_counter == 20 and unchanged == checkpoint


def test_late_events_after_a_firing_count_once_towards_the_next():
    plan1, checkpoint = _fold(Checkpoint(), [_event(200, 100, 0)], [], 201)
    assert len(plan1.firings) == 1
    late = [_event(20, 1, 10 + i) for i in range(20)]  # occurred three minutes before the firing's event
    plan2, checkpoint = _fold(checkpoint, late, plan1.firings, 205)
    assert plan2.firings == [] and plan2.event_counter == 20
    plan3, checkpoint3 = _fold(checkpoint, late + [_event(210, 80, 99)], plan1.firings, 215)
    assert [f.documents for f in plan3.firings] == [100], "the 20 late ones and 80 new ones, each once"
    too_late = CountedEvent(id="old", occurred=T0 + timedelta(seconds=215) - GRACE - timedelta(minutes=1), count=50)
    plan4, _ = _fold(checkpoint3, [too_late], plan1.firings + plan3.firings, 220)
    assert plan4.event_counter == 0, "beyond the grace window an event does not count"


def test_a_paused_trigger_keeps_its_count_in_the_checkpoint_and_fires_on_resume():
    events = [_event(i, 50, i) for i in range(3)]
    paused, checkpoint = _fold(Checkpoint(), events, [], 5, fire=False)
    assert paused.event_counter == 150 and sum(e.count for e in checkpoint.pending) == 150
    resumed, _ = _fold(checkpoint, [], [], 6)
    assert [f.documents for f in resumed.firings] == [100] and resumed.event_counter_after == 50


def test_old_pending_events_merge_into_one_keeping_their_total():
    events = [_event(i, 1, i) for i in range(500)]
    _, checkpoint = _fold(Checkpoint(), events, [], 501, threshold=10_000)
    assert [e.count for e in checkpoint.pending] == [500], "below the threshold, one event"
    newer = [_event(499 + GRACE.total_seconds() + i, 1, 1000 + i) for i in range(3)]
    plan, checkpoint = _fold(checkpoint, newer, [], 502 + GRACE.total_seconds(), threshold=10_000)
    assert plan.event_counter == 503 and sum(e.count for e in checkpoint.pending) == 503
    assert len(checkpoint.pending) < 10 and len(checkpoint.seen) < 10


def test_what_arrived_before_the_trigger_existed_never_counts_however_late_it_shows():
    created = T0 - timedelta(seconds=1)
    before = CountedEvent(id="p", occurred=T0 - timedelta(minutes=2), count=60, received=T0 - timedelta(minutes=2))
    _, checkpoint = _fold(Checkpoint(), [], [], 1)
    assert checkpoint.position == created, "a first fold with nothing to count still starts the cursor"
    shown_late, checkpoint = _fold(checkpoint, [before], [], 5)  # Prefect shows it only now
    assert shown_late.event_counter == 0 and "p" in checkpoint.seen
    stamped_early = CountedEvent(id="q", occurred=T0 - timedelta(minutes=2), count=5, received=T0 + timedelta(seconds=6))
    late, _ = _fold(checkpoint, [stamped_early], [], 7)
    assert late.event_counter == 5, "stamped before the creation, received after it: counted"
