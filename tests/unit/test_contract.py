"""The trigger contract: the seed's examples pass, broken requests fail on the right field."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from prefect_cluster_triggers.core.clustering_config import (
    MAX_CLUSTERS,
    MAX_DIMENSIONS,
    MAX_DOCUMENTS,
    MAX_INITS,
    MAX_ITERATIONS,
    MAX_NEIGHBOURS,
)
from prefect_cluster_triggers.core.contract import (
    MAX_COLLECTIONS,
    MAX_EVENT_THRESHOLD,
    MAX_SECONDS,
    ClusterTrigger,
    validate_request,
)
from prefect_cluster_triggers.core.errors import ContractError
from prefect_cluster_triggers.deployments.cli.render import EXAMPLE_TRIGGERS, trigger_files
from tests.seed_examples import ALL, CRON, EVENT

TRIGGER_FILES = sorted(p.name for p in trigger_files())


@pytest.mark.parametrize("name", ALL)
def test_seed_examples_validate_verbatim(name: str) -> None:
    request = validate_request(json.loads(ALL[name]))
    assert request.trigger_type == json.loads(ALL[name])["trigger_type"]
    assert request.status == "active"


@pytest.mark.parametrize("name", TRIGGER_FILES)
def test_example_trigger_files_are_the_seed_examples(name: str) -> None:
    """The examples ship as package data, read through importlib.resources as an installed package would."""
    seeds = [json.loads(text) for text in ALL.values()]
    body = json.loads((EXAMPLE_TRIGGERS / name).read_text())
    assert body in seeds
    validate_request(body)


def test_defaults_are_filled_in() -> None:
    cron = {"trigger_type": "cron", "schedule_config": {"cron_expression": "0 2 * * *"}, "cluster_id": "c1"}
    assert validate_request(cron).schedule_config.timezone == "UTC"
    event = validate_request(json.loads(EVENT))
    config = event.execution_config.config
    assert (config.max_iter, config.n_init, config.init, config.tol, config.random_state) == (
        300,
        10,
        "k-means++",
        1e-4,
        42,
    )
    assert config.normalize is True and config.reduce.method == "none"
    hdbscan = validate_request(
        {**cron, "cluster_id": None, "execution_config": {"collection_ids": ["a"], "config": {"algorithm": "hdbscan"}}}
    ).execution_config.config
    assert (hdbscan.min_cluster_size, hdbscan.cluster_selection_method, hdbscan.reduce.n_components) == (5, "eom", 16)


def test_interval_minimum_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    request = {"trigger_type": "interval", "schedule_config": {"interval_seconds": 30}, "cluster_id": "c"}
    with pytest.raises(ContractError, match="at least 60"):
        validate_request(request)
    monkeypatch.setenv("CLUSTER_TRIGGERS_MIN_INTERVAL_SECONDS", "10")
    assert validate_request(request).schedule_config.interval_seconds == 30


def _cron(**changes: object) -> dict:
    request = json.loads(CRON)
    for path, value in changes.items():
        target = request
        *parents, leaf = path.split("__")
        for key in parents:
            target = target[key]
        if value is _DELETE:
            del target[leaf]
        else:
            target[leaf] = value
    return request


_DELETE = object()
_EVENT = json.loads(EVENT)["schedule_config"]
_COND = {"condition_type": "drift", "threshold": 0.3, "metric": "cosine_drift", "check_interval_seconds": 3600}

INVALID = [
    # (id, request, the field path the first problem names, a word of the message)
    ("no-trigger-type", _cron(trigger_type=_DELETE), "trigger_type", "required"),
    ("unknown-trigger-type", _cron(trigger_type="weekly"), "trigger_type", "'cron'"),
    ("no-schedule", _cron(schedule_config=_DELETE), "schedule_config", "required"),
    ("schedule-not-object", _cron(schedule_config="0 2 * * *"), "schedule_config", "object"),
    ("cron-4-fields", _cron(schedule_config__cron_expression="0 2 * *"), "schedule_config.cron_expression", "5 fields"),
    ("cron-6-fields", _cron(schedule_config__cron_expression="0 0 2 * * *"), "schedule_config.cron_expression", "5 fields"),
    ("cron-bad-hour", _cron(schedule_config__cron_expression="0 25 * * *"), "schedule_config.cron_expression", "valid"),
    ("cron-hashed", _cron(schedule_config__cron_expression="H 2 * * *"), "schedule_config.cron_expression", "valid"),
    ("cron-never", _cron(schedule_config__cron_expression="0 0 31 2 *"), "schedule_config.cron_expression", "never"),
    ("cron-bad-timezone", _cron(schedule_config__timezone="Mars/Olympus"), "schedule_config.timezone", "IANA"),
    ("cron-unknown-key", _cron(schedule_config__interval_seconds=60), "schedule_config.interval_seconds", "allowed"),
    ("interval-too-short", _cron(trigger_type="interval", schedule_config={"interval_seconds": 59}),
     "schedule_config.interval_seconds", "at least 60"),
    ("interval-string", _cron(trigger_type="interval", schedule_config={"interval_seconds": "3600"}),
     "schedule_config.interval_seconds", "integer"),
    ("interval-start-not-bool", _cron(trigger_type="interval",
     schedule_config={"interval_seconds": 3600, "start_immediately": "yes"}), "schedule_config.start_immediately", "bool"),
    ("event-bad-type", _cron(trigger_type="event", schedule_config={**_EVENT, "event_type": "documents_deleted"}),
     "schedule_config.event_type", "documents_added"),
    ("event-zero-threshold", _cron(trigger_type="event", schedule_config={**_EVENT, "event_threshold": 0}),
     "schedule_config.event_threshold", "greater than or equal to 1"),
    ("event-negative-cooldown", _cron(trigger_type="event", schedule_config={**_EVENT, "cooldown_seconds": -1}),
     "schedule_config.cooldown_seconds", "greater than or equal to 0"),
    ("event-no-collection", _cron(trigger_type="event",
     schedule_config={k: v for k, v in _EVENT.items() if k != "collection_id"}), "schedule_config.collection_id", "required"),
    ("cond-custom", _cron(trigger_type="conditional", schedule_config={**_COND, "condition_type": "custom"}),
     "schedule_config.condition_type", "'drift'"),
    ("cond-metric-of-other-type", _cron(trigger_type="conditional",
     schedule_config={**_COND, "condition_type": "volume"}), "schedule_config.metric", "document_growth"),
    ("cond-threshold-above-range", _cron(trigger_type="conditional", schedule_config={**_COND, "threshold": 2.5}),
     "schedule_config.threshold", "0 < threshold <= 2"),
    ("cond-threshold-zero", _cron(trigger_type="conditional",
     schedule_config={**_COND, "condition_type": "volume", "metric": "document_growth", "threshold": 0}),
     "schedule_config.threshold", "threshold > 0"),
    ("cond-check-too-often", _cron(trigger_type="conditional", schedule_config={**_COND, "check_interval_seconds": 30}),
     "schedule_config.check_interval_seconds", "60"),
    ("neither-cluster-nor-config", _cron(execution_config=_DELETE), "execution_config", "cluster_id"),
    ("both-cluster-and-config", _cron(cluster_id="cluster_abc123"), "cluster_id", "not both"),
    ("empty-collections", _cron(execution_config__collection_ids=[]), "execution_config.collection_ids", "at least 1"),
    ("duplicate-collection", _cron(execution_config__collection_ids=["a", "b", "a"]),
     "execution_config.collection_ids[2]", "twice"),
    ("bad-collection-id", _cron(execution_config__collection_ids=["has space"]),
     "execution_config.collection_ids[0]", "pattern"),
    ("no-algorithm", _cron(execution_config__config={}), "execution_config.config.algorithm", "kmeans"),
    ("unknown-algorithm", _cron(execution_config__config__algorithm="kmedoids"),
     "execution_config.config.algorithm", "hdbscan"),
    ("unknown-parameter", _cron(execution_config__config__n_cluster=5), "execution_config.config.n_cluster", "n_clusters"),
    ("hdbscan-param-on-kmeans", _cron(execution_config__config__min_cluster_size=5),
     "execution_config.config.min_cluster_size", "allowed"),
    ("too-few-clusters", _cron(execution_config__config__n_clusters=1), "execution_config.config.n_clusters", "2"),
    ("too-many-clusters", _cron(execution_config__config__n_clusters=1001),
     "execution_config.config.n_clusters", "1000"),
    ("bad-kmeans-init", _cron(execution_config__config__init="farthest"), "execution_config.config.init", "k-means++"),
    ("bad-reduce", _cron(execution_config__config__reduce="umap"), "execution_config.config.reduce.method", "pca"),
    ("pca-zero-components", _cron(execution_config__config__reduce={"method": "pca", "n_components": 0}),
     "execution_config.config.reduce.n_components", "1"),
    ("sample-size-one", _cron(execution_config__config__sample_size=1), "execution_config.config.sample_size", "2"),
    ("normalize-not-bool", _cron(execution_config__config__normalize="no"), "execution_config.config.normalize", "bool"),
    ("agglomerative-count-and-threshold", _cron(execution_config__config={
        "algorithm": "agglomerative", "n_clusters": 3, "distance_threshold": 0.5}), "execution_config.config", "exactly one"),
    ("hdbscan-bad-selection", _cron(execution_config__config={"algorithm": "hdbscan", "cluster_selection_method": "max"}),
     "execution_config.config.cluster_selection_method", "leaf"),
    ("dbscan-zero-eps", _cron(execution_config__config={"algorithm": "dbscan", "eps": 0}), "execution_config.config.eps", "0"),
    ("gmm-bad-covariance", _cron(execution_config__config={"algorithm": "gaussian_mixture", "covariance_type": "full-ish"}),
     "execution_config.config.covariance_type", "spherical"),
    ("optics-xi-above-one", _cron(execution_config__config={"algorithm": "optics", "xi": 1.5}),
     "execution_config.config.xi", "1"),
    # bounds: every number finite, every count at most what one run can do
    ("interval-past-a-year", _cron(trigger_type="interval", schedule_config={"interval_seconds": 315360000000}),
     "schedule_config.interval_seconds", "less than or equal to 31536000"),
    ("event-threshold-huge", _cron(trigger_type="event", schedule_config={**_EVENT, "event_threshold": 10**10}),
     "schedule_config.event_threshold", "less than or equal to 1000000000"),
    ("cooldown-past-a-year", _cron(trigger_type="event", schedule_config={**_EVENT, "cooldown_seconds": 10**12}),
     "schedule_config.cooldown_seconds", "less than or equal to 31536000"),
    ("check-interval-past-a-year", _cron(trigger_type="conditional",
     schedule_config={**_COND, "check_interval_seconds": 31_536_001}), "schedule_config.check_interval_seconds",
     "less than or equal to 31536000"),
    ("threshold-nan", _cron(trigger_type="conditional", schedule_config={**_COND, "threshold": float("nan")}),
     "schedule_config.threshold", "finite number (got NaN)"),
    ("growth-threshold-infinite", _cron(trigger_type="conditional", schedule_config={
        **_COND, "condition_type": "volume", "metric": "document_growth", "threshold": float("inf")}),
     "schedule_config.threshold", "finite number (got Infinity)"),
    ("too-many-collections", _cron(execution_config__collection_ids=[f"c{i}" for i in range(101)]),
     "execution_config.collection_ids", "at most 100"),
    ("max-iter-huge", _cron(execution_config__config__max_iter=10**400), "execution_config.config.max_iter", "10000"),
    ("n-init-huge", _cron(execution_config__config__n_init=101), "execution_config.config.n_init", "100"),
    ("tol-infinite", _cron(execution_config__config__tol=float("inf")), "execution_config.config.tol", "finite"),
    ("sample-size-huge", _cron(execution_config__config__sample_size=10**9), "execution_config.config.sample_size",
     "100000000"),
    ("pca-components-huge", _cron(execution_config__config__reduce={"method": "pca", "n_components": 4097}),
     "execution_config.config.reduce.n_components", "4096"),
    ("batch-size-huge", _cron(execution_config__config={"algorithm": "minibatch_kmeans", "batch_size": 10**9}),
     "execution_config.config.batch_size", "100000000"),
    ("hdbscan-min-cluster-size-huge", _cron(execution_config__config={"algorithm": "hdbscan", "min_cluster_size": 10**9}),
     "execution_config.config.min_cluster_size", "100000000"),
    ("hdbscan-max-cluster-size-huge", _cron(execution_config__config={"algorithm": "hdbscan", "max_cluster_size": 10**9}),
     "execution_config.config.max_cluster_size", "100000000"),
    ("hdbscan-min-samples-huge", _cron(execution_config__config={"algorithm": "hdbscan", "min_samples": 10**5}),
     "execution_config.config.min_samples", "10000"),
    ("hdbscan-epsilon-nan", _cron(execution_config__config={"algorithm": "hdbscan", "cluster_selection_epsilon":
     float("nan")}), "execution_config.config.cluster_selection_epsilon", "finite"),
    ("dbscan-min-samples-huge", _cron(execution_config__config={"algorithm": "dbscan", "min_samples": 10**5}),
     "execution_config.config.min_samples", "10000"),
    ("dbscan-eps-infinite", _cron(execution_config__config={"algorithm": "dbscan", "eps": float("inf")}),
     "execution_config.config.eps", "finite"),
    ("spectral-neighbours-huge", _cron(execution_config__config={"algorithm": "spectral", "n_neighbors": 10**5}),
     "execution_config.config.n_neighbors", "10000"),
    ("gmm-max-iter-huge", _cron(execution_config__config={"algorithm": "gaussian_mixture", "max_iter": 10**5}),
     "execution_config.config.max_iter", "10000"),
    ("gmm-components-huge", _cron(execution_config__config={"algorithm": "gaussian_mixture", "n_components": 1001}),
     "execution_config.config.n_components", "1000"),
    ("mean-shift-bandwidth-infinite", _cron(execution_config__config={"algorithm": "mean_shift", "bandwidth":
     float("inf")}), "execution_config.config.bandwidth", "finite"),
    ("optics-min-samples-huge", _cron(execution_config__config={"algorithm": "optics", "min_samples": 10**5}),
     "execution_config.config.min_samples", "10000"),
    ("optics-max-eps-infinite", _cron(execution_config__config={"algorithm": "optics", "max_eps": float("inf")}),
     "execution_config.config.max_eps", "finite"),
    ("agglomerative-threshold-nan", _cron(execution_config__config={"algorithm": "agglomerative",
     "distance_threshold": float("nan")}), "execution_config.config.distance_threshold", "finite"),
    ("cron-nearest-weekday", _cron(schedule_config__cron_expression="0 0 15W * *"), "schedule_config.cron_expression",
     "nearest weekday"),
    ("cron-random", _cron(schedule_config__cron_expression="R/5 * * * *"), "schedule_config.cron_expression", "random"),
    ("status-disabled", _cron(status="disabled"), "status", "system"),
    ("status-failed", _cron(status="failed"), "status", "system"),
    ("unknown-top-level", _cron(namespace="ns"), "namespace", "allowed"),
    ("description-not-string", _cron(description=5), "description", "string"),
    ("not-an-object", [], "request", "object"),
]


@pytest.mark.parametrize(("request_body", "path", "word"), [case[1:] for case in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_request_fails_on_the_right_field(request_body: object, path: str, word: str) -> None:
    with pytest.raises(ContractError) as caught:
        validate_request(copy.deepcopy(request_body))
    problems = caught.value.problems
    assert problems[0].path == path, problems
    assert word in problems[0].message, problems


def test_every_problem_is_reported_at_once() -> None:
    request = _cron(
        schedule_config__timezone="Nowhere", execution_config__collection_ids=[], execution_config__config__tol=-1
    )
    with pytest.raises(ContractError) as caught:
        validate_request(request)
    assert [p.path for p in caught.value.problems] == [
        "schedule_config.timezone",
        "execution_config.collection_ids",
        "execution_config.config.tol",
    ]


def test_bad_value_is_named_in_the_message() -> None:
    with pytest.raises(ContractError) as caught:
        validate_request(_cron(schedule_config__timezone="Mars/Olympus"))
    assert str(caught.value) == (
        'schedule_config.timezone: not an IANA timezone name, e.g. \'UTC\', '
        "'America/New_York', 'Europe/Berlin' (got \"Mars/Olympus\")"
    )


def test_a_bound_is_named_in_one_line() -> None:
    request = _cron(trigger_type="interval", schedule_config={"interval_seconds": 315360000000})
    with pytest.raises(ContractError) as caught:
        validate_request(request)
    assert str(caught.value) == (
        "schedule_config.interval_seconds: Input should be less than or equal to 31536000 (got 315360000000)"
    )


AT_THE_BOUNDS = [
    _cron(trigger_type="interval", schedule_config={"interval_seconds": MAX_SECONDS}),
    _cron(trigger_type="event", schedule_config={**_EVENT, "event_threshold": MAX_EVENT_THRESHOLD,
                                                 "cooldown_seconds": MAX_SECONDS}),
    _cron(trigger_type="conditional", schedule_config={**_COND, "check_interval_seconds": MAX_SECONDS}),
    _cron(execution_config__collection_ids=[f"c{i}" for i in range(MAX_COLLECTIONS)]),
    _cron(execution_config__config={"algorithm": "kmeans", "n_clusters": MAX_CLUSTERS, "max_iter": MAX_ITERATIONS,
                                    "n_init": MAX_INITS, "sample_size": MAX_DOCUMENTS,
                                    "reduce": {"method": "pca", "n_components": MAX_DIMENSIONS}}),
    _cron(execution_config__config={"algorithm": "minibatch_kmeans", "batch_size": MAX_DOCUMENTS}),
    _cron(execution_config__config={"algorithm": "hdbscan", "min_cluster_size": MAX_DOCUMENTS,
                                    "max_cluster_size": MAX_DOCUMENTS, "min_samples": MAX_NEIGHBOURS}),
    _cron(execution_config__config={"algorithm": "spectral", "n_neighbors": MAX_NEIGHBOURS}),
    _cron(execution_config__config={"algorithm": "gaussian_mixture", "n_components": MAX_CLUSTERS}),
    _cron(execution_config__config={"algorithm": "optics", "min_samples": MAX_NEIGHBOURS}),
]


@pytest.mark.parametrize("request_body", AT_THE_BOUNDS)
def test_each_bound_itself_is_allowed(request_body: dict) -> None:
    validate_request(request_body)


def test_readme_contract_section_states_each_bound() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## The trigger contract")[1].split("\n## ")[0]
    bounds = [MAX_SECONDS, MAX_EVENT_THRESHOLD, MAX_COLLECTIONS, MAX_CLUSTERS, MAX_ITERATIONS, MAX_INITS,
              MAX_DOCUMENTS, MAX_NEIGHBOURS, MAX_DIMENSIONS]
    assert [b for b in bounds if f"{b:,}" not in section] == []


def test_response_model_writes_utc_with_z() -> None:
    request = validate_request(json.loads(CRON))
    created = datetime(2027, 3, 14, 3, 0, tzinfo=timezone.utc)
    trigger = ClusterTrigger(
        namespace_id="ns_1",
        internal_id="org_1",
        trigger_id="trg_1",
        trigger_type=request.trigger_type,
        schedule_config=request.schedule_config,
        execution_config=request.execution_config,
        created_at=created,
        updated_at=created.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York")),
        next_scheduled_at=datetime(2027, 3, 14, 7, 0, 0, 250000, tzinfo=timezone.utc),
    )
    wire = json.loads(trigger.model_dump_json())
    assert wire["created_at"] == "2027-03-14T03:00:00Z"
    assert wire["updated_at"] == "2027-03-14T03:00:00Z"
    assert wire["next_scheduled_at"] == "2027-03-14T07:00:00.250Z"
    assert (wire["execution_count"], wire["consecutive_failures"], wire["event_counter"]) == (0, 0, 0)
    assert set(wire) == {
        "namespace_id", "internal_id", "execution_config", "trigger_type", "schedule_config", "trigger_id",
        "cluster_id", "status", "last_triggered_at", "last_execution_job_id", "next_scheduled_at",
        "execution_count", "consecutive_failures", "last_execution_status", "last_execution_error",
        "event_counter", "last_cooldown_at", "created_at", "updated_at", "created_by", "description",
        # ours, beyond the seed: a conditional trigger's last check
        "last_measurement", "last_condition_check_at", "last_check_error", "stored_problem",
    }
    assert ClusterTrigger.model_validate(wire) == trigger
