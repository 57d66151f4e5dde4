"""Validation of arbitrary JSON never raises anything but a contract error."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from prefect_cluster_triggers.core.contract import validate_request
from prefect_cluster_triggers.core.errors import ContractError
from tests.seed_examples import ALL

_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)

_KEYS = [
    "trigger_type", "schedule_config", "cluster_id", "execution_config", "description", "status", "cron_expression",
    "timezone", "interval_seconds", "start_immediately", "event_type", "event_threshold", "collection_id",
    "cooldown_seconds", "condition_type", "threshold", "metric", "check_interval_seconds", "collection_ids", "config",
    "algorithm", "n_clusters", "reduce", "method", "n_components", "sample_size", "distance_threshold",
]
_VALUES = st.sampled_from(
    ["cron", "interval", "event", "conditional", "kmeans", "hdbscan", "agglomerative", "pca", "drift", "volume",
     "cosine_drift", "0 2 * * *", "UTC", "documents_added", "paused", "failed"]
) | _scalars


def _shaped(depth: int) -> st.SearchStrategy:
    """Objects made of the contract's own keys and values, to reach the deep validators."""
    if depth == 0:
        return _VALUES
    return st.dictionaries(st.sampled_from(_KEYS), _VALUES | _shaped(depth - 1) | st.lists(_VALUES, max_size=3), max_size=6)


def _mutated_seed() -> st.SearchStrategy:
    def mutate(pair: tuple[str, object]) -> dict:
        name, replacement = pair
        return {**json.loads(ALL[name]), "schedule_config": replacement}

    return st.tuples(st.sampled_from(list(ALL)), _shaped(1)).map(mutate)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_json, _shaped(3), _mutated_seed()))
@example({**json.loads(ALL["cron"]), "execution_config": {"collection_ids": ["a"], "config": {"algorithm": {}}}})
@example({**json.loads(ALL["cron"]), "schedule_config": {"cron_expression": ["0", "2"], "timezone": {}}})
def test_validation_raises_only_contract_errors(data: object) -> None:
    try:
        validate_request(data)
    except ContractError as exc:
        assert exc.problems
        assert all(problem.path and problem.message for problem in exc.problems)
