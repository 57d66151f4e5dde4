"""cosine_drift of a collection on disk vs the bare in-memory computation, side by side in one run.

1M x 128 float32 in a LanceDB table on disk (as a LanceCollection stores it) against 20
centroids. Three timings, each the best of --repeat runs, in this process:

* floor: one full read of the same array as a memory-mapped file (`np.sum`), page cache;
* bare: the array already in memory, `C @ X.T` and the max over centroids;
* ours: `flows.conditions.cosine_drift` streaming the table's record batches, as a
  condition check does (it also normalises, which the bare line does not).

Prints each time and the ratios ours / bare (target <= 1.5) and ours / floor.

    .venv/bin/python benchmarks/drift.py [--documents 1000000] [--dim 128]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from prefect_cluster_triggers.blocks._lance_documents import BATCH_ROWS, LanceDocuments, record_batch
from prefect_cluster_triggers.flows.conditions import Baseline, cosine_drift


def _best(repeat: int, function) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
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

    floor = _best(args.repeat, lambda: np.sum(mapped))
    bare = _best(args.repeat, lambda: np.max(centroids @ in_memory.T, axis=0).mean())
    ours = _best(args.repeat, lambda: cosine_drift((b.vectors for b in table.batches(ids=False)), baseline))
    print(f"{args.documents} x {args.dim} float32 on disk, 20 centroids, best of {args.repeat}")
    print(f"floor (np.sum of the map)   {floor:7.3f} s")
    print(f"bare  (C @ X.T, max)        {bare:7.3f} s")
    print(f"ours  (cosine_drift, lance) {ours:7.3f} s   ours/bare {ours / bare:5.2f}   ours/floor {ours / floor:5.2f}")
    path.unlink()


if __name__ == "__main__":
    main()
