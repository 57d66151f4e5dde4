"""Clustering at scale: the whole flow run against bare MiniBatchKMeans, side by side in one run.

20 well-separated Gaussian blobs in 768 dimensions (float32), `minibatch_kmeans` k=20 with
the contract's defaults (batch_size 4096, max_iter 100, n_init 3). Each side runs in a
fresh child process, whose own peak RSS is reported:

* bare: the `.npy` loaded into memory, normalised, then scikit-learn's `MiniBatchKMeans`
  with the same parameters (`fit_predict`): the library's defaults, timed without the load;
* flow: one run of the shared flow `cluster-collection` on the same documents in a Lance
  collection (open, sample and fit, assign and persist, artifacts, events) against a
  Prefect server, timed from the call to its return.

It prints time and peak-RSS ratios (flow / bare) and the ARI of both against the
generating labels. With `--big N` (8,000,000: about 25 GB, more than this machine's
memory) it then runs the flow alone on N documents from the same generator and prints its
peak RSS, ARI and time per million documents against the first flow run's.

    .venv/bin/python benchmarks/scale.py [--documents 1000000] [--big 8000000] [--dask]

`--dask` adds a flow run on a `LocalCluster` of 2 worker processes. Uses PREFECT_API_URL
when set, else starts a temporary local server. Needs about 6 GB of disk, plus 3.1 GB per
million documents of `--big`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

_DIM, _K, _CHUNK = 768, 20, 65_536

_BARE = textwrap.dedent(
    """
    import json, resource, sys, time
    import numpy as np
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics import adjusted_rand_score
    data = sys.argv[1]
    loading = time.perf_counter()
    vectors = np.load(data + "/vectors.npy")
    load_seconds = time.perf_counter() - loading
    started = time.perf_counter()
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = MiniBatchKMeans(n_clusters=20, batch_size=4096, max_iter=100, n_init=3, random_state=42).fit_predict(vectors)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    truth = np.load(data + "/truth.npy")
    print(json.dumps({"seconds": seconds, "load_seconds": load_seconds, "peak_rss_mb": peak,
                      "ari": adjusted_rand_score(truth, labels)}))
    """
)

_FLOW = textwrap.dedent(
    """
    import json, resource, sys, time
    import numpy as np
    import pyarrow.parquet as pq
    from sklearn.metrics import adjusted_rand_score
    from prefect_cluster_triggers.flows.clustering_flow import cluster_collection
    from prefect_cluster_triggers.blocks.result_store import default_result_store
    data, collection, results = sys.argv[1], sys.argv[2], sys.argv[3]
    config = {"algorithm": "minibatch_kmeans", "n_clusters": 20}
    started = time.perf_counter()
    state = cluster_collection(execution_config={"collection_ids": [collection], "config": config},
                               results_id=results, return_state=True)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert state.is_completed(), state.message
    run = default_result_store().latest(results)
    members = pq.read_table(run.path + "/members.parquet", filesystem=run.filesystem, columns=["id", "cluster"])
    rows = members.column("id").to_numpy(zero_copy_only=False).astype(np.int64)
    truth = np.load(data + "/truth-" + collection + ".npy")
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak,
                      "ari": adjusted_rand_score(truth[rows], members.column("cluster").to_numpy()),
                      "timings_ms": run.record["timings_ms"], "sample": run.record["sample"]}))
    """
)


def _chunks(n: int, centers: np.ndarray, seed: int):
    """The generator both sizes share: chunk i of any collection is drawn from the same seeds."""
    for index, start in enumerate(range(0, n, _CHUNK)):
        rng = np.random.default_rng([seed, index])
        rows = min(_CHUNK, n - start)
        truth = rng.integers(0, _K, rows)
        noise = rng.standard_normal((rows, _DIM), dtype=np.float32)
        noise *= 0.15
        noise += centers[truth]
        yield start, truth, noise


def _make(data: Path, collection_id: str, n: int, *, npy: bool) -> None:
    from prefect_cluster_triggers.blocks._lance_documents import record_batch
    from prefect_cluster_triggers.blocks.collections import open_collection

    centers = np.random.default_rng(0).normal(size=(_K, _DIM)).astype(np.float32)
    truth = np.empty(n, dtype=np.int64)
    array = np.lib.format.open_memmap(data / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, _DIM)) if npy else None

    def batches():
        for start, labels, vectors in _chunks(n, centers, seed=7):
            truth[start : start + len(labels)] = labels
            if array is not None:
                array[start : start + len(labels)] = vectors
            yield record_batch(vectors, [str(i) for i in range(start, start + len(labels))])

    open_collection(collection_id).upsert_batches(batches())
    if array is not None:
        array.flush()
        del array
    np.save(data / f"truth-{collection_id}.npy", truth)
    if npy:
        np.save(data / "truth.npy", truth)


def _child(code: str, args: list[str], env: dict[str, str]) -> dict:
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        sys.exit(f"child failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--big", type=int, default=0, help="then the flow alone on this many documents")
    parser.add_argument("--dask", action="store_true", help="also a flow run on a LocalCluster of 2 workers")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    os.environ["CLUSTER_TRIGGERS_DATA_DIR"] = str(data)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    from contextlib import nullcontext

    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    server = nullcontext() if os.environ.get("PREFECT_API_URL") else prefect_test_harness(server_startup_timeout=120)
    try:
        with server:
            env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_LOGGING_LEVEL": "WARNING"}
            _make(data, "bench", args.documents, npy=True)
            print(f"{args.documents:,} x {_DIM} float32, {_K} blobs, minibatch_kmeans k={_K}; each side in a fresh process")
            bare = _child(_BARE, [str(data)], env)
            flow = _child(_FLOW, [str(data), "bench", "bench"], env)
            print(f"{'side':<22} {'seconds':>8} {'peak MB':>8} {'ARI':>6}")
            print(f"{'bare (library defaults)':<22} {bare['seconds']:8.1f} {bare['peak_rss_mb']:8.0f} {bare['ari']:6.3f}"
                  f"   (+ {bare['load_seconds']:.1f} s np.load)")
            print(f"{'flow':<22} {flow['seconds']:8.1f} {flow['peak_rss_mb']:8.0f} {flow['ari']:6.3f}"
                  f"   steps ms {flow['timings_ms']}, fitted on {flow['sample']}")
            print(f"flow / bare: time {flow['seconds'] / bare['seconds']:.2f}x "
                  f"({flow['seconds'] / (bare['seconds'] + bare['load_seconds']):.2f}x with the load), "
                  f"peak RSS {flow['peak_rss_mb'] / bare['peak_rss_mb']:.2f}x")
            if args.dask:
                from distributed import LocalCluster

                with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
                    on_dask = _child(_FLOW, [str(data), "bench", "bench-dask"],
                                     {**env, "CLUSTER_TRIGGERS_DASK_ADDRESS": cluster.scheduler_address})
                print(f"{'flow on Dask (2 workers)':<22} {on_dask['seconds']:8.1f} {on_dask['peak_rss_mb']:8.0f} "
                      f"{on_dask['ari']:6.3f}   (peak of the run's process; the workers read the vectors)")
            if args.big:
                (data / "vectors.npy").unlink()
                _make(data, "bench-big", args.big, npy=False)
                big = _child(_FLOW, [str(data), "bench-big", "bench-big"], env)
                per_million = big["seconds"] / (args.big / 1e6)
                base = flow["seconds"] / (args.documents / 1e6)
                print(f"{'flow ' + format(args.big, ','):<22} {big['seconds']:8.1f} {big['peak_rss_mb']:8.0f} "
                      f"{big['ari']:6.3f}   steps ms {big['timings_ms']}")
                print(f"{args.big:,} documents: {per_million:.1f} s per million vs {base:.1f} s "
                      f"({per_million / base:.2f}x), ARI {big['ari'] - flow['ari']:+.4f} vs the first run, "
                      f"peak RSS {big['peak_rss_mb'] / 1024:.2f} GB")
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
