"""The shared clustering flow on a real Prefect server, driven through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from uuid import UUID

import numpy as np
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, LogFilter, LogFilterFlowRunId
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter
from prefect.events.worker import EventsWorker
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from prefect_cluster_triggers.blocks.collections import HttpCollection, open_collection
from prefect_cluster_triggers.blocks.result_store import results_owner
from prefect_cluster_triggers.core.firing import collection_resource
from prefect_cluster_triggers.core.names import namespace_id_of, owned_name, prefect_name
from prefect_cluster_triggers.flows.clustering_flow import cluster_collection
from tests.integration.http_server import serve_pages
from tests.seed_examples import CRON, INTERVAL


def _add_blobs(cli, tmp_path: Path, collection_id: str, centers: int, n: int = 1200, dim: int = 48) -> np.ndarray:
    vectors, truth = make_blobs(n_samples=n, centers=centers, n_features=dim, cluster_std=1.0, random_state=centers)
    np.save(tmp_path / f"{collection_id}.npy", vectors.astype(np.float32))
    (tmp_path / f"{collection_id}.txt").write_text("".join(f"{collection_id}-{i}\n" for i in range(n)))
    (tmp_path / f"{collection_id}.jsonl").write_text(
        "".join(json.dumps({"title": f"topic{t} item", "n": i}) + "\n" for i, t in enumerate(truth))
    )
    added = cli("collections", "add", collection_id, "--vectors", str(tmp_path / f"{collection_id}.npy"),
                "--ids", str(tmp_path / f"{collection_id}.txt"), "--payloads", str(tmp_path / f"{collection_id}.jsonl"))
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {"collection_id": collection_id, "added": n, "updated": 0, "total": n}
    return truth


def _truth_by_id(collection_id: str, truth: np.ndarray) -> dict[str, int]:
    return {f"{collection_id}-{i}": int(t) for i, t in enumerate(truth)}


@pytest.mark.parametrize(("seed", "collection_id", "centers"), [(CRON, "col_abc123", 5), (INTERVAL, "col_products", 4)],
                         ids=["kmeans", "hdbscan"])
def test_seed_examples_find_the_true_clusters_and_keep_ids(cli, tmp_path: Path, seed: str, collection_id: str,
                                                            centers: int) -> None:
    truth = _add_blobs(cli, tmp_path, collection_id, centers)
    (tmp_path / "trigger.json").write_text(seed)

    first = cli("cluster", str(tmp_path / "trigger.json"))
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["status"] == "completed" and summary["num_documents"] == 1200
    assert summary["num_clusters"] == centers
    assert set(summary["metrics"]) == {"silhouette_score", "davies_bouldin_index", "calinski_harabasz_score"}

    results = cli("results", summary["results_id"], "--members")
    assert results.returncode == 0, results.stderr
    latest = json.loads(results.stdout)
    assert latest["run_id"] == summary["run_id"]
    assert all(len(c["centroid"]) == 48 and c["num_members"] > 0 for c in latest["clusters"])
    assert {kw for c in latest["clusters"] for kw in c["keywords"][:1]} == {f"topic{t}" for t in range(centers)}
    by_id = _truth_by_id(collection_id, truth)
    members = latest["members"]
    assert adjusted_rand_score([by_id[m["id"]] for m in members], [m["cluster"] for m in members]) >= 0.95

    second = cli("cluster", str(tmp_path / "trigger.json"))
    assert second.returncode == 0, second.stderr
    again = json.loads(cli("results", summary["results_id"], "--members").stdout)
    assert again["run_id"] != latest["run_id"]
    assert [m["cluster"] for m in again["members"]] == [m["cluster"] for m in members]


def test_adds_and_runs_emit_their_events(prefect_api: str) -> None:
    collection = open_collection("col_events")
    collection.add_documents(np.random.default_rng(0).normal(size=(30, 4)))
    added = _events("cluster.documents_added", collection_resource(namespace_id_of(None), "col_events"))
    assert [e.payload["count"] for e in added] == [30]

    good = {"collection_ids": ["col_events"], "config": {"algorithm": "kmeans", "n_clusters": 2}}
    run = cluster_collection(execution_config=good, results_id="events-ok", return_state=True)
    completed = _events("cluster.execution.completed", f"cluster-results.{results_owner(namespace_id_of(None), 'events-ok')}")
    assert [e.payload["run_id"] for e in completed] == [str(run.state_details.flow_run_id)]
    assert completed[0].payload["num_clusters"] == 2

    bad = {**good, "collection_ids": ["col_absent"]}
    assert cluster_collection(execution_config=bad, results_id="events-bad", return_state=True).is_failed()
    failed = _events("cluster.execution.failed", f"cluster-results.{results_owner(namespace_id_of(None), 'events-bad')}")
    assert len(failed) == 1 and "col_absent" in failed[0].payload["error"]


def test_run_artifacts_are_readable_through_the_api(prefect_api: str) -> None:
    vectors, _ = make_blobs(n_samples=300, centers=3, n_features=8, random_state=5)
    collection = open_collection("col_artifacts")
    collection.add_documents(vectors)
    config = {"collection_ids": ["col_artifacts"], "config": {"algorithm": "kmeans", "n_clusters": 3}}
    state = cluster_collection(execution_config=config, results_id="trg_artifacts", return_state=True)
    assert state.is_completed()
    key = prefect_name(results_owner(namespace_id_of(None), "trg_artifacts"))  # an ad-hoc run: its namespace's
    with get_client(sync_client=True) as client:
        tables = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"clusters-{key}"])))
        summaries = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"cluster-summary-{key}"]))
        )
    assert len(tables) == 1 and tables[0].type == "table" and str(tables[0].flow_run_id) == str(state.state_details.flow_run_id)
    assert len(json.loads(tables[0].data)) == 3
    assert len(summaries) == 1 and "3 clusters" in summaries[0].data


def test_bad_data_fails_the_run_with_its_reason_and_keeps_the_previous_result(cli, prefect_api: str, tmp_path: Path) -> None:
    vectors, _ = make_blobs(n_samples=40, centers=2, n_features=6, random_state=2)
    open_collection("col_small").add_documents(vectors)
    open_collection("col_empty")
    open_collection("col_wide").add_documents(np.ones((5, 9)))

    good = {"collection_ids": ["col_small"], "config": {"algorithm": "kmeans", "n_clusters": 2}}
    assert cluster_collection(execution_config=good, results_id="trg_bad", return_state=True).is_completed()
    before = json.loads(cli("results", "trg_bad").stdout)

    cases = {
        "n_clusters=50 but only 40 documents": {**good, "config": {"algorithm": "kmeans", "n_clusters": 50}},
        "collection is empty": {**good, "collection_ids": ["col_empty"]},
        "different dimensions": {**good, "collection_ids": ["col_small", "col_wide"]},
        "collection 'col_missing' not found": {**good, "collection_ids": ["col_missing"]},
    }
    for reason, config in cases.items():
        state = cluster_collection(execution_config=config, results_id="trg_bad", return_state=True)
        assert state.is_failed(), reason
        assert reason in state.message
    assert json.loads(cli("results", "trg_bad").stdout) == before


def test_nan_from_a_collection_fails_the_run(cli, prefect_api: str, tmp_path: Path) -> None:
    pages = [{"documents": [{"id": "ok", "vector": [1.0, 2.0]}, {"id": "bad", "vector": [float("nan"), 1.0]}],
              "next_cursor": None}]
    with serve_pages(pages) as url:
        HttpCollection(collection_id="col_nan", url=url).save(owned_name(namespace_id_of(None), "col_nan"), overwrite=True)
        config = {"collection_ids": ["col_nan"], "config": {"algorithm": "kmeans", "n_clusters": 2}}
        state = cluster_collection(execution_config=config, return_state=True)
    assert state.is_failed()
    assert state.message == "document 'bad' has a NaN or infinite value"


def test_cluster_command_reports_a_failed_run_in_one_line(cli, tmp_path: Path) -> None:
    request = json.loads(CRON)
    request["execution_config"]["collection_ids"] = ["col_nowhere"]
    (tmp_path / "t.json").write_text(json.dumps(request))
    result = cli("cluster", str(tmp_path / "t.json"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("run ")
    assert "failed: collection 'col_nowhere' not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_collections_add_rejects_a_dimension_change(cli, tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.ones((3, 4), np.float32))
    np.save(tmp_path / "b.npy", np.ones((3, 5), np.float32))
    assert cli("collections", "add", "col_dims", "--vectors", str(tmp_path / "a.npy")).returncode == 0
    result = cli("collections", "add", "col_dims", "--vectors", str(tmp_path / "b.npy"))
    assert result.returncode == 2
    assert result.stderr == f"{tmp_path / 'b.npy'}: dimension 5 does not match the collection's dimension 4\n"


def test_cluster_definitions_are_used_by_cluster_id(cli, tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", make_blobs(n_samples=200, centers=3, n_features=8, random_state=3)[0].astype(np.float32))
    assert cli("collections", "add", "col_def", "--vectors", str(tmp_path / "v.npy")).returncode == 0
    (tmp_path / "def.yaml").write_text(
        "cluster_id: cluster_xyz789\ncollection_ids: [col_def]\nconfig: {algorithm: kmeans, n_clusters: 3}\n"
    )
    created = cli("clusters", "create", str(tmp_path / "def.yaml"))
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["config"]["n_init"] == 10
    (tmp_path / "trigger.json").write_text(
        json.dumps({"trigger_type": "interval", "schedule_config": {"interval_seconds": 3600}, "cluster_id": "cluster_xyz789"})
    )
    run = cli("cluster", str(tmp_path / "trigger.json"))
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["num_clusters"] == 3
    assert json.loads(cli("results", "cluster_xyz789").stdout)["cluster_id"] == "cluster_xyz789"

    bad = cli("clusters", "create", "-", input='{"collection_ids": [], "config": {"algorithm": "kmeans", "k": 3}}')
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        "collection_ids: List should have at least 1 item after validation, not 0",
        "config.k: unknown field; allowed: algorithm, normalize, reduce, sample_size, n_clusters, max_iter, n_init, "
        "init, tol, random_state",
    ]


def test_blocks_register_with_prefect(prefect_api: str) -> None:
    prefect = Path(sys.executable).with_name("prefect")
    result = subprocess.run([str(prefect), "block", "register", "-m", "prefect_cluster_triggers.blocks"], capture_output=True, text=True,
                            env={**os.environ, "PREFECT_API_URL": prefect_api}, timeout=120)
    assert result.returncode == 0, result.stderr
    for name in ("Lance Collection", "HTTP Collection", "Cluster Definition", "Cluster Result Store",
                 "Cluster Triggers Object Store"):
        assert name in result.stdout


def _events(name: str, resource_id: str, timeout: float = 30) -> list:
    """Events of one name and resource, once the server has persisted them (a few seconds after sending)."""
    EventsWorker.drain_all()
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    event_filter = EventFilter(occurred=EventOccurredFilter(since=since), event=EventNameFilter(name=[name]),
                               resource=EventResourceFilter(id=[resource_id]))
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_events(filter=event_filter, limit=50)
            if page.events or time.monotonic() > deadline:
                return page.events
            time.sleep(1)


def test_a_refused_run_says_why_in_one_line_without_a_traceback(cli, prefect_api: str, tmp_path: Path) -> None:
    np.save(tmp_path / "small.npy", make_blobs(n_samples=40, centers=2, n_features=6, random_state=3)[0].astype(np.float32))
    assert cli("collections", "add", "col_refused", "--vectors", str(tmp_path / "small.npy")).returncode == 0
    request = json.loads(CRON)
    request["execution_config"] = {"collection_ids": ["col_refused"], "config": {"algorithm": "kmeans", "n_clusters": 50}}
    (tmp_path / "t.json").write_text(json.dumps(request))
    result = cli("cluster", str(tmp_path / "t.json"))
    reason = "n_clusters=50 but only 40 documents to cluster; set n_clusters to at most 40"
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].endswith(f"failed: {reason}")
    assert "Traceback" not in result.stderr + result.stdout
    run_id = result.stderr.strip().splitlines()[-1].split()[1]
    with get_client(sync_client=True) as client:
        logs = [log.message for log in client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(run_id)])),
                                                        limit=200)]
    assert any(reason in message for message in logs)
    assert not any("Traceback" in message for message in logs)  # what the Prefect UI shows for the run
