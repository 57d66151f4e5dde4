"""Clustering at scale: whole flow runs against bare scikit-learn, side by side in one run.

Each side runs in a fresh child process and reports its own peak RSS (VmHWM: `ru_maxrss`
would include the parent's memory inherited through fork). The flow side is one run of
the shared flow `cluster-collection` on a Lance collection (open, sample and fit, assign
and persist, artifacts, events) against a Prefect server, timed from the call to its
return; the bare side loads the `.npy`, normalises it and calls scikit-learn with the same
parameters, timed without the load. ARI is against the generating labels.

1. Always: 1M x 768 float32, 20 blobs (centres N(0, 1), noise 0.15), `minibatch_kmeans`
   k=20 with the contract's defaults, flow vs bare `MiniBatchKMeans`.
2. `--dask`: the same flow run on a `LocalCluster` of 2 worker processes: time, peak RSS
   of the run's process and of each worker, ARI against the in-process run.
3. `--defaults`: 2M x 384, 20 blobs (centres U(-10, 10), noise 4), where scikit-learn's
   `MiniBatchKMeans` with those defaults stops in a local minimum: bare vs flow, ARI and time.
4. `--hdbscan`: the flow's `hdbscan` (PCA to 16 dimensions) on that 2M x 384 collection:
   fitted on the default bounded sample, every document assigned.
5. `--big N` (8,000,000: about 25 GB, more than this machine's memory): the flow alone on N
   documents of the first generator: peak RSS, ARI and time per million against run 1's.

    .venv/bin/python benchmarks/scale.py [--documents 1000000] [--dask] [--defaults] [--hdbscan] [--big 8000000]

Uses PREFECT_API_URL when set, else starts a temporary local server. Disk: about 6 GB,
6 GB more for `--defaults` / `--hdbscan`, 3.1 GB per million documents of `--big`.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

_K, _CHUNK = 20, 65_536
_PEAK = 'int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1]) / 1024'

_BARE = textwrap.dedent(
    f"""
    import json, sys, time
    import numpy as np
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics import adjusted_rand_score
    data, name = sys.argv[1], sys.argv[2]
    loading = time.perf_counter()
    vectors = np.load(data + "/" + name + ".npy")
    load_seconds = time.perf_counter() - loading
    started = time.perf_counter()
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = MiniBatchKMeans(n_clusters=20, batch_size=4096, max_iter=100, n_init=3, random_state=42).fit_predict(vectors)
    seconds = time.perf_counter() - started
    truth = np.load(data + "/truth-" + name + ".npy")
    print(json.dumps({{"seconds": seconds, "load_seconds": load_seconds, "peak_rss_mb": {_PEAK},
                      "ari": adjusted_rand_score(truth, labels)}}))
    """
)

_FLOW = textwrap.dedent(
    f"""
    import json, sys, time
    import numpy as np
    import pyarrow.parquet as pq
    from sklearn.metrics import adjusted_rand_score
    from prefect_cluster_triggers.flows.clustering_flow import cluster_collection
    from prefect_cluster_triggers.blocks.result_store import default_result_store, results_owner
    from prefect_cluster_triggers.deployments.api.keys import namespace_id_of
    data, name, results, config = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    started = time.perf_counter()
    state = cluster_collection(execution_config={{"collection_ids": [name], "config": config}},
                               results_id=results, return_state=True)
    seconds = time.perf_counter() - started
    peak = {_PEAK}
    assert state.is_completed(), state.message
    run = default_result_store().latest(results_owner(namespace_id_of(None), results))
    members = pq.read_table(run.path + "/members.parquet", filesystem=run.filesystem, columns=["id", "cluster"])
    rows = members.column("id").to_numpy(zero_copy_only=False).astype(np.int64)
    labels = members.column("cluster").to_numpy()
    np.save(data + "/labels-" + results + ".npy", labels[np.argsort(rows)])
    truth = np.load(data + "/truth-" + name + ".npy")[rows]
    clustered = labels >= 0
    print(json.dumps({{"seconds": seconds, "peak_rss_mb": peak, "ari": adjusted_rand_score(truth[clustered], labels[clustered]),
                      "clustered": float(clustered.mean()), "timings_ms": run.record["timings_ms"],
                      "sample": run.record["sample"], "assignment": run.record["assignment"]}}))
    """
)

_MINIBATCH = {"algorithm": "minibatch_kmeans", "n_clusters": _K}


@dataclass(frozen=True)
class Blobs:
    """A generator of 20 Gaussian blobs; chunk i of any size is drawn from the same seeds."""

    dim: int
    centre_low: float | None  # centres U(low, -low) when set, else N(0, 1)
    noise: float
    seed: int = 0  # of the centres
    whole: bool = False  # drawn at once (in memory) rather than chunk by chunk

    def centres(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        if self.centre_low is None:
            return rng.normal(size=(_K, self.dim)).astype(np.float32)
        return rng.uniform(self.centre_low, -self.centre_low, size=(_K, self.dim)).astype(np.float32)

    def chunks(self, n: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        if self.whole:
            yield from self._whole(n)
            return
        centres = self.centres()
        for index, start in enumerate(range(0, n, _CHUNK)):
            rng = np.random.default_rng([7, index])
            rows = min(_CHUNK, n - start)
            truth = rng.integers(0, _K, rows)
            vectors = rng.standard_normal((rows, self.dim), dtype=np.float32)
            vectors *= self.noise
            vectors += centres[truth]
            yield start, truth, vectors

    def _whole(self, n: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """All at once from one generator (seeded centres, labels, then noise), in memory: the draw in which
        scikit-learn's defaults were seen to stop in a local minimum."""
        rng = np.random.default_rng(self.seed)
        centres = rng.uniform(self.centre_low, -self.centre_low, size=(_K, self.dim)).astype(np.float32)
        truth = rng.integers(0, _K, n)
        vectors = rng.standard_normal((n, self.dim), dtype=np.float32)
        vectors *= self.noise
        vectors += centres[truth]
        for start in range(0, n, _CHUNK):
            yield start, truth[start : start + _CHUNK], vectors[start : start + _CHUNK]


_SEPARATED = Blobs(768, None, 0.15)
_LOCAL_MINIMUM = Blobs(384, -10.0, 4.0, seed=1, whole=True)  # scikit-learn's defaults: ARI 0.937 (seeds 3, 4 too)


def _make(data: Path, name: str, n: int, blobs: Blobs, *, npy: bool) -> None:
    """Collection `name` (ids "0".."n-1") with its labels in truth-<name>.npy, and <name>.npy for the bare side."""
    from prefect_cluster_triggers.blocks.collections import open_collection
    from prefect_cluster_triggers.blocks.files.lance_documents import record_batch

    truth = np.empty(n, dtype=np.int64)
    array = np.lib.format.open_memmap(data / f"{name}.npy", mode="w+", dtype=np.float32, shape=(n, blobs.dim)) if npy else None

    def batches() -> Iterator[Any]:
        for start, labels, vectors in blobs.chunks(n):
            truth[start : start + len(labels)] = labels
            if array is not None:
                array[start : start + len(labels)] = vectors
            yield record_batch(vectors, [str(i) for i in range(start, start + len(labels))])

    open_collection(name).upsert_batches(batches())
    if array is not None:
        array.flush()
    np.save(data / f"truth-{name}.npy", truth)


def _child(code: str, args: list[str], env: dict[str, str]) -> dict:
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        sys.exit(f"child failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _flow(data: Path, name: str, results: str, config: dict, env: dict[str, str]) -> dict:
    return _child(_FLOW, [str(data), name, results, json.dumps(config)], env)


def _row(side: str, result: dict, extra: str = "") -> None:
    print(f"{side:<26} {result['seconds']:8.1f} {result['peak_rss_mb']:8.0f} {result['ari']:6.3f}   {extra}")


def _steps(flow: dict) -> str:
    return f"steps ms {flow['timings_ms']}, fitted on {flow['sample']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--dask", action="store_true", help="the same flow run on a LocalCluster of 2 workers")
    parser.add_argument("--defaults", action="store_true", help="2M x 384 where MiniBatchKMeans' defaults fail")
    parser.add_argument("--hdbscan", action="store_true", help="hdbscan on the 2M x 384 collection")
    parser.add_argument("--big", type=int, default=0, help="then the flow alone on this many documents")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    os.environ["CLUSTER_TRIGGERS_DATA_DIR"] = str(data)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    from contextlib import nullcontext

    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness
    from sklearn.metrics import adjusted_rand_score

    server = nullcontext() if os.environ.get("PREFECT_API_URL") else prefect_test_harness(server_startup_timeout=120)
    try:
        with server:
            env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_LOGGING_LEVEL": "WARNING"}
            print(f"{'side':<26} {'seconds':>8} {'peak MB':>8} {'ARI':>6}")
            _make(data, "bench", args.documents, _SEPARATED, npy=True)
            print(f"-- {args.documents:,} x 768 float32, 20 blobs, minibatch_kmeans k=20")
            bare = _child(_BARE, [str(data), "bench"], env)
            flow = _flow(data, "bench", "bench", _MINIBATCH, env)
            _row("bare MiniBatchKMeans", bare, f"(+ {bare['load_seconds']:.1f} s np.load)")
            _row("flow", flow, _steps(flow))
            print(f"   flow / bare: time {flow['seconds'] / bare['seconds']:.2f}x "
                  f"({flow['seconds'] / (bare['seconds'] + bare['load_seconds']):.2f}x counting the load), "
                  f"peak RSS {flow['peak_rss_mb'] / bare['peak_rss_mb']:.2f}x")
            (data / "bench.npy").unlink()
            if args.dask:
                from distributed import Client, LocalCluster

                with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
                    on_dask = _flow(data, "bench", "bench-dask", _MINIBATCH,
                                    {**env, "CLUSTER_TRIGGERS_DASK_ADDRESS": cluster.scheduler_address})
                    with Client(cluster) as client:
                        workers = client.run(lambda: int(next(
                            line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1]) / 1024)
                same = adjusted_rand_score(np.load(data / "labels-bench.npy"), np.load(data / "labels-bench-dask.npy"))
                _row("flow on Dask, 2 workers", on_dask, f"{on_dask['assignment']}, workers' peak MB "
                     f"{sorted(round(p) for p in workers.values())}, ARI vs in-process {same:.4f}")
            if args.defaults or args.hdbscan:
                _make(data, "blobs384", 2_000_000, _LOCAL_MINIMUM, npy=args.defaults)
                print("-- 2,000,000 x 384 float32, 20 blobs (centres U(-10, 10), noise 4)")
            if args.defaults:
                bare = _child(_BARE, [str(data), "blobs384"], env)
                flow = _flow(data, "blobs384", "blobs384", _MINIBATCH, env)
                _row("bare MiniBatchKMeans", bare, f"(+ {bare['load_seconds']:.1f} s np.load)")
                _row("flow minibatch_kmeans", flow, _steps(flow))
                print(f"   flow / bare: time {flow['seconds'] / bare['seconds']:.2f}x, ARI {bare['ari']:.3f} -> {flow['ari']:.3f}")
                (data / "blobs384.npy").unlink()
            if args.hdbscan:
                flow = _flow(data, "blobs384", "blobs384-hdbscan", {"algorithm": "hdbscan", "min_cluster_size": 100}, env)
                _row("flow hdbscan", flow, f"{flow['clustered']:.1%} clustered, " + _steps(flow))
            if args.big:
                _make(data, "bench-big", args.big, _SEPARATED, npy=False)
                big = _flow(data, "bench-big", "bench-big", _MINIBATCH, env)
                first = _flow(data, "bench", "bench-again", _MINIBATCH, env)  # the 1M run again, after the big write
                per_million = big["seconds"] / (args.big / 1e6)
                base = first["seconds"] / (args.documents / 1e6)
                print(f"-- {args.big:,} x 768 float32, the first generator")
                _row(f"flow {args.big:,}", big, _steps(big))
                _row(f"flow {args.documents:,} again", first)
                print(f"   {per_million:.1f} s per million documents vs {base:.1f} s ({per_million / base:.2f}x), "
                      f"ARI {big['ari'] - first['ari']:+.4f}, peak RSS {big['peak_rss_mb'] / 1024:.2f} GB")
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
