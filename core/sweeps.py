"""Which triggers a sweep visits: those that may have changed since the last sweep, and a slice of the rest.

Wake-ups fire event triggers as their events arrive; the sweep is the safety net (a dropped
wake-up, a trigger changed in the Prefect UI, a run that ended without our hooks) and the
clock of conditional checks. Visiting every trigger each time makes its work grow with the
number of triggers, so a sweep visits a trigger

* whose deployment (pause, tags, parameters, description) differs from what the last sweep saw,
* that an event named since the last sweep began, less `EVENT_LAG`: a state change of one of
  its runs, one of its own events, a collection event it counts (each event once: the sweeps
  that read it again within `EVENT_LAG` leave it to the one that acted on it),
* that is due: a held-back firing comes due, a check slot begins,
* or that is among the `1 / ROTATION` of the triggers visited longest ago, at most `SLICE`: the
  backstop for an event Prefect persisted later than `EVENT_LAG` after it occurred, a little at
  every sweep rather than all at once, so every trigger is visited at least once in `ROTATION`
  sweeps, or in `n / SLICE` sweeps of n triggers past `ROTATION * SLICE`, whatever their number.

The first sweep of a replica that took the lease, and a sweep that could not read the events,
visit all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from datetime import datetime, timedelta

EVENT_LAG = timedelta(seconds=60)  # events reach Prefect's events API within seconds; read this far back
ROTATION = 60  # sweeps: every trigger is visited at least once in this many, up to ROTATION * SLICE triggers
SLICE = 25  # most triggers a sweep visits only for the rotation: a sweep's work follows what changed


@dataclass
class SweepMemory:
    """What one replica remembers between its sweeps."""

    seen: dict[str, str] = field(default_factory=dict)  # trigger id -> fingerprint of its deployment
    visited: dict[str, int] = field(default_factory=dict)  # trigger id -> the sweep that last visited it
    sweeps: int = 0  # sweeps since taking the lease
    began: datetime | None = None  # when the last sweep began; None: no sweep since taking the lease
    acted: dict[str, datetime] = field(default_factory=dict)  # event id -> occurred, of events a sweep acted on

    def forget(self) -> None:
        """The lease was lost or taken: the next sweep visits all."""
        self.seen.clear()
        self.visited.clear()
        self.acted.clear()
        self.began = None


def events_since(memory: SweepMemory) -> datetime | None:
    """Where this sweep reads events from; None when it visits all without reading them."""
    return None if memory.began is None else memory.began - EVENT_LAG


def newly_named(named: Mapping[str, Mapping[str, datetime]], memory: SweepMemory) -> set[str]:
    """The triggers named by an event no earlier sweep acted on. `named`: trigger id -> the events (id ->
    occurred) naming it since `events_since`, which the next sweeps read again for `EVENT_LAG`."""
    return {t for t, events in named.items() if not events.keys() <= memory.acted.keys()}


def evaluated_already(named: Mapping[str, Mapping[str, datetime]], counted: Mapping[str, Set[str]],
                      memory: SweepMemory, handled: Mapping[str, Set[str]], fingerprints: Mapping[str, str],
                      due: Mapping[str, datetime], *, now: datetime) -> set[str]:
    """Of the triggers named by new events (`newly_named`), those whose new collection events (`counted`:
    trigger id -> the ids of those among its events) were each planned with by a wake-up's evaluation
    (`handled`: trigger id -> event ids), whose deployment is as last seen and that owe nothing due: the
    sweep visits them (automation, page) without evaluating them again, which would read what the
    wake-up read, on the Prefect server the next wake-ups wait on. An event trigger's plan counts only
    collection events: its runs' state changes and its own announcements change its page, not its plan."""
    return {t for t, events in named.items()
            if (new := events.keys() - memory.acted.keys()) and new & counted.get(t, set()) <= handled.get(t, set())
            and memory.seen.get(t) == fingerprints.get(t) and not (t in due and due[t] <= now)}


def to_visit(fingerprints: Mapping[str, str], memory: SweepMemory, touched: Set[str] | None,
             due: Mapping[str, datetime], *, now: datetime) -> set[str]:
    """The triggers this sweep visits. `touched`: those events named since `events_since`; None visits all."""
    if touched is None:
        return set(fingerprints)
    changed = {t for t, fingerprint in fingerprints.items()
               if memory.seen.get(t) != fingerprint or t in touched or (t in due and due[t] <= now)}
    rest = sorted((memory.visited.get(t, -1), t) for t in fingerprints if t not in changed)
    return changed | {t for _, t in rest[:min(SLICE, math.ceil(len(fingerprints) / ROTATION))]}


def remember(memory: SweepMemory, fingerprints: Mapping[str, str], visited: Set[str], *, began: datetime,
             failed: Set[str] = frozenset(), named: Mapping[str, Mapping[str, datetime]] | None = None) -> None:
    """After a sweep that visited `visited`: what the next one compares with. The `failed` visits are made
    again next time; the events of `named` (as given to `newly_named`) were acted on, and are forgotten
    once no sweep reads them again."""
    for trigger, events in (named or {}).items():
        if trigger in visited and trigger not in failed:
            memory.acted.update(events)
    memory.acted = {i: occurred for i, occurred in memory.acted.items() if occurred >= began - EVENT_LAG}
    memory.sweeps += 1
    memory.seen = {t: f for t, f in fingerprints.items()
                   if t not in failed and (t in visited or memory.seen.get(t) == f)}
    memory.visited = {t: memory.sweeps if t in visited else memory.visited.get(t, -1) for t in fingerprints}
    memory.began = began
