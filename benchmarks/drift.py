"""cosine_drift of a collection on disk vs the bare in-memory computation, side by side in one run.

1M x 128 float32 in a LanceDB table on disk (as a LanceCollection stores it, bulk-loaded
in fragments) against 20 centroids. Timings, each the best of --repeat runs, in this process:

* floor: one full read of the same array as a memory-mapped file (`np.sum`), page cache;
* bare: the array already in memory, `C @ X.T` and the max over centroids;
* first check: `flows.condition_check.collection_pass` with nothing cached, reading every
  fragment (what a process's first check of a collection costs);
* next check: the same after 1% new documents were added (--added), with the passes of the
  earlier check kept: what the evaluator's repeated checks cost. Both also normalise, which
  the bare line does not, and give the exact full-pass value (checked here).

Prints each time and the ratios to bare (target <= 1.5) and to the floor.

    .venv/bin/python benchmarks/drift.py [--documents 1000000] [--dim 128] [--added 10000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from prefect_cluster_triggers.blocks._lance_documents import BATCH_ROWS, LanceDocuments, record_batch
from prefect_cluster_triggers.flows.condition_check import PassCache, collection_pass
from prefect_cluster_triggers.flows.conditions import Baseline, cosine_drift, cosine_drift_of


def _best(repeat: int, function, before=lambda: None) -> float:
    times = []
    for _ in range(repeat):
        before()
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--added", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(20, args.dim)).astype(np.float32)
    path = Path(tempfile.mkdtemp(prefix="bench-drift-")) / "vectors.f32"
    rows = 100_000
    with open(path, "wb") as handle:
        for _ in range(0, args.documents, rows):
            handle.write(rng.normal(size=(rows, args.dim)).astype(np.float32).tobytes())
    mapped = np.memmap(path, dtype=np.float32, mode="r", shape=(args.documents, args.dim))
    in_memory = np.array(mapped)
    baseline = Baseline(centroids, 0.5, args.documents, None)
    table = LanceDocuments(str(path.parent / "db"), "bench")
    table.upsert(record_batch(in_memory[start : start + BATCH_ROWS], [str(i) for i in range(start, min(start + BATCH_ROWS, args.documents))])
                 for start in range(0, args.documents, BATCH_ROWS))
    warm = PassCache()

    def check(cache: PassCache) -> float:
        return cosine_drift_of(collection_pass([table], centroids, ["bench"], with_sums=False, cache=cache), baseline)

    def add() -> None:
        start = table.count()
        new = rng.normal(size=(args.added, args.dim)).astype(np.float32)
        table.upsert([record_batch(new, [str(i) for i in range(start, start + args.added)])])

    floor = _best(args.repeat, lambda: np.sum(mapped))
    bare = _best(args.repeat, lambda: np.max(centroids @ in_memory.T, axis=0).mean())
    first = _best(args.repeat, lambda: check(PassCache()))
    check(warm)
    following = _best(args.repeat, lambda: check(warm), before=add)
    everything = np.concatenate([b.vectors for b in table.batches(ids=False)])
    assert abs(check(warm) - cosine_drift(everything, baseline)) < 1e-9, "the cached check must equal a full pass"
    print(f"{args.documents} x {args.dim} float32 on disk, 20 centroids, best of {args.repeat}")
    print(f"floor (np.sum of the map)            {floor:7.3f} s")
    print(f"bare  (C @ X.T, max)                 {bare:7.3f} s")
    print(f"first check (every fragment read)    {first:7.3f} s   /bare {first / bare:5.2f}   /floor {first / floor:5.2f}")
    print(f"next check (+{args.added} documents)      {following:7.3f} s   /bare {following / bare:5.2f}   "
          f"/floor {following / floor:5.2f}")
    path.unlink()


if __name__ == "__main__":
    main()
