"""Requests a careless or hostile client sends: seed requests with non-finite and extreme
numbers, cron-ish strings and any unicode in their fields. Shared by the CLI and REST tests."""

from __future__ import annotations

import json
import math

from hypothesis import strategies as st

from tests.seed_examples import ALL

_EXTREME = [math.nan, math.inf, -math.inf, 10**400, -(10**400), 2**63, 2**64, 315360000000, 31_536_000, 31_536_001,
            10**9, 10**9 + 1, 1e308, -0.0, 0, 1, 60, 1e-320]
NUMBERS = st.sampled_from(_EXTREME) | st.floats() | st.integers()
_CRON_ATOMS = ["*", "?", "0", "1", "5", "7", "15", "23", "29", "31", "59", "60", "L", "W", "15W", "#", "#2", "5#3", "-",
              "/", "/2", "*/5", ",", "1-5", "L-1", "R", "H", "r", "h", "mon", "THU", "fri", "jan", "MAR", "dec",
              "mon-fri", "@daily", "٣"]
_CRON_FIELD = st.lists(st.sampled_from(_CRON_ATOMS) | st.text(max_size=2), min_size=1, max_size=3).map("".join)
CRONISH = st.lists(_CRON_FIELD, min_size=1, max_size=7).map(" ".join)
VALUES = NUMBERS | CRONISH | st.text(max_size=30) | st.none() | st.booleans()

# Where a hostile value goes: every schedule field of any type, the algorithm's parameters, the rest.
_SCHEDULE_KEYS = ["cron_expression", "timezone", "interval_seconds", "start_immediately", "event_type",
                  "event_threshold", "collection_id", "cooldown_seconds", "threshold", "metric",
                  "check_interval_seconds"]
_CONFIG_KEYS = ["n_clusters", "max_iter", "n_init", "tol", "sample_size", "batch_size", "min_cluster_size",
                "max_cluster_size", "min_samples", "eps", "n_neighbors", "n_components", "random_state"]
_PLACES = (
    [("schedule_config", key) for key in _SCHEDULE_KEYS]
    + [("execution_config", "config", key) for key in _CONFIG_KEYS]
    + [("description",), ("status",)]
)
_COLLECTIONS = st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), unique=True, min_size=1, max_size=120)


def _put(document: dict, place: tuple[str, ...], value: object) -> dict:
    target = document
    for key in place[:-1]:
        target = target.setdefault(key, {})
    target[place[-1]] = value
    return document


@st.composite
def hostile_requests(draw: st.DrawFn) -> dict:
    """A seed request with one to three fields replaced, sometimes with many collections."""
    document = json.loads(ALL[draw(st.sampled_from(sorted(ALL)))])
    for place in draw(st.lists(st.sampled_from(_PLACES), min_size=1, max_size=3, unique=True)):
        _put(document, place, draw(VALUES))
    if draw(st.booleans()):
        _put(document, ("execution_config", "collection_ids"), draw(_COLLECTIONS))
    return document


def hostile_schedule_changes(trigger_type: str) -> st.SearchStrategy[dict]:
    """A PATCH body: the seed's schedule of `trigger_type` with one or two fields replaced."""
    schedule = json.loads(ALL[trigger_type])["schedule_config"]
    keys = st.lists(st.sampled_from(_SCHEDULE_KEYS), min_size=1, max_size=2, unique=True)
    return st.tuples(keys, st.lists(VALUES, min_size=2, max_size=2)).map(
        lambda pair: {"schedule_config": {**schedule, **dict(zip(*pair))}}
    )
