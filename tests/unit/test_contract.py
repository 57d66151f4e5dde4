"""The trigger contract: the seed's examples pass, broken requests fail on the right field."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone

import pytest

from prefect_cluster_triggers.deployments.contract import ClusterTrigger, validate_request
from prefect_cluster_triggers.deployments.errors import ContractError
from prefect_cluster_triggers.deployments.render import EXAMPLE_TRIGGERS, trigger_files
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
        "last_measurement", "last_condition_check_at", "last_check_error",
    }
    assert ClusterTrigger.model_validate(wire) == trigger
