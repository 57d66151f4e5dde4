"""The same run in its own process and on a Dask cluster (a LocalCluster of 2 worker processes): the same answer."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from prefect_cluster_triggers.blocks.collections import open_collection
from prefect_cluster_triggers.blocks.result_store import default_result_store, results_owner
from prefect_cluster_triggers.core.names import namespace_id_of
from prefect_cluster_triggers.flows.clustering_flow import cluster_collection

_N = 300_000  # two parts of a collection (262,144 rows each at most): two tasks


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def truth(prefect_api: str) -> np.ndarray:
    vectors, labels = make_blobs(n_samples=_N, centers=12, n_features=16, cluster_std=1.0, random_state=11)
    open_collection("col_dask").add_documents(vectors.astype(np.float32))  # ids "<prefix>-0" .. "<prefix>-299999"
    return labels


@pytest.mark.parametrize("config", [
    {"algorithm": "minibatch_kmeans", "n_clusters": 12},
    {"algorithm": "hdbscan", "min_cluster_size": 50, "sample_size": 4000},
], ids=lambda c: c["algorithm"])
def test_a_run_on_dask_gives_the_in_process_answer(dask_address: str, truth: np.ndarray, config: dict,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    execution = {"collection_ids": ["col_dask"], "config": config}
    here = cluster_collection(execution_config=execution, results_id=f"here-{config['algorithm']}", return_state=True)
    monkeypatch.setenv("CLUSTER_TRIGGERS_DASK_ADDRESS", dask_address)
    there = cluster_collection(execution_config=execution, results_id=f"there-{config['algorithm']}", return_state=True)
    assert here.is_completed() and there.is_completed(), (here.message, there.message)

    store = default_result_store()
    runs = [store.latest(results_owner(namespace_id_of(None), f"{side}-{config['algorithm']}")) for side in ("here", "there")]
    assert [r.record["assignment"] for r in runs] == [{"on": "in-process", "parts": 2}, {"on": dask_address, "parts": 2}]
    members = [pq.read_table(f"{r.path}/members.parquet", filesystem=r.filesystem).to_pydict() for r in runs]
    assert members[0]["id"] == members[1]["id"] and len(members[0]["id"]) == _N
    local, remote = (np.array(m["cluster"]) for m in members)
    assert adjusted_rand_score(local, remote) >= 0.99
    assert (local == remote).all()  # the same stable ids, document by document
    assert [c["id"] for c in runs[0].record["clusters"]] == [c["id"] for c in runs[1].record["clusters"]]
    # The condition passes stored for the checks that follow: one per piece, every document, the same on Dask.
    here_passes, there_passes = (r.passes() for r in runs)
    assert here_passes.keys() == there_passes.keys() and len(here_passes) == 3  # fragments of 131,072, 131,072, 37,856
    assert sum(p.documents for p in there_passes.values()) == _N
    for piece, stored in here_passes.items():
        assert there_passes[piece].similarity_sum == pytest.approx(stored.similarity_sum, rel=1e-9)
        assert (there_passes[piece].counts == stored.counts).all()
    clustered = local >= 0
    assert adjusted_rand_score(truth[np.array([int(i.rsplit("-", 1)[1]) for i in members[0]["id"]])][clustered], local[clustered]) >= 0.99
    if "sample_size" in config:
        assert runs[1].record["sample"] == {"used": True, "size": 4000}
