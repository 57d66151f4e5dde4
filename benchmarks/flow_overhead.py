"""Whole clustering flow run vs the bare scikit-learn / hdbscan call, side by side in one run.

On a 200k x 384 float32 collection of 20 Gaussian blobs (a LocalCollection on disk), for
kmeans and for hdbscan (after PCA to 16 dimensions) this runs, each in a fresh child process:

* bare: the array already in memory, then normalise (+ PCA) + the estimator's fit_predict;
* flow: one run of the shared flow `cluster-collection` (load, preprocess, cluster, score,
  persist, artifacts, events) against a Prefect server.

It prints time ratio (flow / bare), peak-RSS ratio (flow / bare, each child's own peak)
and ARI of both against the true labels. Targets: time <= 1.15, peak RSS <= 1.2.

    .venv/bin/python benchmarks/flow_overhead.py [--documents 200000] [--dim 384]

Uses PREFECT_API_URL when set, else starts a temporary local server.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

_BARE = textwrap.dedent(
    """
    import json, resource, sys, time
    import numpy as np
    from sklearn.metrics import adjusted_rand_score
    path, n, d, algorithm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    vectors = np.fromfile(path + "/collections/bench/vectors.f32", dtype=np.float32).reshape(n, d)
    truth = np.load(path + "/truth.npy")
    started = time.perf_counter()
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    if algorithm == "kmeans":
        from sklearn.cluster import KMeans
        labels = KMeans(n_clusters=20, random_state=42, n_init=10).fit_predict(vectors)
    else:
        import hdbscan
        from sklearn.decomposition import PCA
        reduced = PCA(n_components=16, svd_solver="randomized", random_state=42).fit_transform(vectors)
        labels = hdbscan.HDBSCAN(min_cluster_size=5, core_dist_n_jobs=2).fit_predict(reduced)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak, "ari": adjusted_rand_score(truth, labels)}))
    """
)

_FLOW = textwrap.dedent(
    """
    import json, resource, sys, time
    import numpy as np
    from sklearn.metrics import adjusted_rand_score
    from prefect_cluster_triggers.flows.clustering_flow import cluster_collection
    from prefect_cluster_triggers.blocks.result_store import default_result_store
    path, n, d, algorithm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    config = {"algorithm": "kmeans", "n_clusters": 20} if algorithm == "kmeans" else {"algorithm": "hdbscan"}
    started = time.perf_counter()
    state = cluster_collection(execution_config={"collection_ids": ["bench"], "config": config},
                               results_id="bench-" + algorithm, return_state=True)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert state.is_completed(), state.message
    record = state.result()
    labels = [m["cluster"] for m in default_result_store().latest("bench-" + algorithm).members()]
    truth = np.load(path + "/truth.npy")
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak, "ari": adjusted_rand_score(truth, labels),
                      "timings_ms": record["timings_ms"]}))
    """
)


def _make_collection(data_dir: Path, n: int, dim: int) -> None:
    from prefect_cluster_triggers.blocks._naming import prefect_name
    from prefect_cluster_triggers.blocks.collections import LocalCollection

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(20, dim)).astype(np.float32)
    truth = rng.integers(0, 20, n)
    collection = LocalCollection(collection_id="bench", path=str(data_dir / "collections" / "bench"))
    collection.save(prefect_name("bench"), overwrite=True)
    for start in range(0, n, 50_000):
        rows = truth[start : start + 50_000]
        collection.add_documents(centers[rows] + rng.normal(scale=0.15, size=(len(rows), dim)).astype(np.float32))
    np.save(data_dir / "truth.npy", truth)


def _child(code: str, data_dir: Path, n: int, dim: int, algorithm: str, env: dict[str, str]) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", code, str(data_dir), str(n), str(dim), algorithm],
        capture_output=True, text=True, env=env, check=False,
    )
    if result.returncode != 0:
        sys.exit(f"{algorithm} child failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--algorithms", nargs="+", default=["kmeans", "hdbscan"])
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-flow-"))
    os.environ["CLUSTER_TRIGGERS_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    from contextlib import nullcontext

    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    server = nullcontext() if os.environ.get("PREFECT_API_URL") else prefect_test_harness(server_startup_timeout=120)
    with server:
        env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_LOGGING_LEVEL": "WARNING"}
        _make_collection(data_dir, args.documents, args.dim)
        print(f"{args.documents} x {args.dim} float32, 20 blobs; each side in a fresh process")
        print(f"{'algorithm':<10} {'bare s':>8} {'flow s':>8} {'time x':>7} {'bare MB':>8} {'flow MB':>8} {'RSS x':>6} {'ARI bare':>9} {'ARI flow':>9}")
        for algorithm in args.algorithms:
            bare = _child(_BARE, data_dir, args.documents, args.dim, algorithm, env)
            flow = _child(_FLOW, data_dir, args.documents, args.dim, algorithm, env)
            print(
                f"{algorithm:<10} {bare['seconds']:8.1f} {flow['seconds']:8.1f} {flow['seconds'] / bare['seconds']:7.2f} "
                f"{bare['peak_rss_mb']:8.0f} {flow['peak_rss_mb']:8.0f} {flow['peak_rss_mb'] / bare['peak_rss_mb']:6.2f} "
                f"{bare['ari']:9.3f} {flow['ari']:9.3f}"
            )
            print(f"{'':<10} flow steps (ms): {flow['timings_ms']}")


if __name__ == "__main__":
    main()
