"""A run's change report over two big members files: in parts (what a run does) against both runs read whole.

Two members files of --documents rows (ids like a collection's default ids; 5% moved, 2%
removed, 2% added between them) are compared twice, each in a fresh process so that its
peak memory is its own:

* baseline: both files read whole and compared in memory (`compare_runs`);
* parts: `member_parts` (hash-partitioned spill, --part-rows a part) and `compare_parts`.

Prints each one's time and peak memory (maximum RSS), the ratios parts / baseline, and
whether the two reports agree.

    .venv/bin/python benchmarks/change_reports.py [--documents 8000000] [--part-rows 2000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from prefect_cluster_triggers.blocks.files.member_parts import member_parts
from prefect_cluster_triggers.flows.engine.changes import DEFAULT_MOVED_LIMIT, compare_parts, compare_runs


def _write(path: Path, ids: pa.Array, clusters: np.ndarray) -> None:
    pq.write_table(pa.table({"id": ids, "cluster": pa.array(clusters.astype(np.int32)),
                             "distance": pa.array(np.zeros(len(ids), np.float32))}), path, row_group_size=1 << 20)


def _files(folder: Path, n: int) -> tuple[str, str]:
    rng = np.random.default_rng(1)
    prefix = "3f9c2a7be41d4c0f8a6b5e2d1c0b9a87-"
    ids = pc.binary_join_element_wise(prefix, pa.array(np.arange(n)).cast(pa.string()), "")
    before = rng.integers(0, 50, n)
    after = before.copy()
    moved = rng.random(n) < 0.05
    after[moved] = (after[moved] + 1) % 50
    kept = rng.random(n) >= 0.02
    added = pc.binary_join_element_wise("new-", pa.array(np.arange(n // 50)).cast(pa.string()), "")
    _write(folder / "previous.parquet", ids, before)
    _write(folder / "current.parquet", pa.concat_arrays([ids.filter(pa.array(kept)), added]),
           np.concatenate([after[kept], rng.integers(0, 50, len(added))]))
    return str(folder / "previous.parquet"), str(folder / "current.parquet")


def _measure(way: str, previous: str, current: str, part_rows: int) -> None:
    """In a child process: one comparison, printed as JSON with its time and this process's peak memory."""
    from pyarrow import fs

    started = time.perf_counter()
    if way == "baseline":
        ((p_ids, p_clusters, c_ids, c_clusters),) = member_parts(fs.LocalFileSystem(), previous, current,
                                                                 part_rows=10**12)
        report = compare_runs(p_ids, p_clusters, c_ids, c_clusters, moves_kept=DEFAULT_MOVED_LIMIT)
    else:
        report = compare_parts(member_parts(fs.LocalFileSystem(), previous, current, part_rows=part_rows),
                               moves_kept=DEFAULT_MOVED_LIMIT)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "report": report.to_dict()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=8_000_000)
    parser.add_argument("--part-rows", type=int, default=2_000_000)
    parser.add_argument("--measure", choices=["baseline", "parts"], help=argparse.SUPPRESS)
    parser.add_argument("--files", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        _measure(args.measure, *args.files, args.part_rows)
        return
    with tempfile.TemporaryDirectory() as folder:
        files = _files(Path(folder), args.documents)
        results = {}
        for way in ("baseline", "parts"):
            child = subprocess.run([sys.executable, __file__, "--measure", way, "--files", *files,
                                    "--part-rows", str(args.part_rows)], capture_output=True, text=True, check=True)
            results[way] = json.loads(child.stdout)
    base, parts = results["baseline"], results["parts"]
    print(f"{args.documents:,} documents a run, parts of {args.part_rows:,} rows")
    for way, result in results.items():
        print(f"  {way:8s} {result['seconds']:7.1f} s   peak {result['peak_mb']:7.0f} MB")
    print(f"  parts / baseline: time {parts['seconds'] / base['seconds']:.2f}x, "
          f"peak memory {parts['peak_mb'] / base['peak_mb']:.2f}x")
    print(f"  reports agree: {parts['report'] == base['report']} ({parts['report']['summary'][:80]}…)")


if __name__ == "__main__":
    main()
