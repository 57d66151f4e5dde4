"""Two runs' members in parts (blocks/files/member_parts.py): every id's rows in one part, the report
of the parts that of the whole, and ids hashed alike in every process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as fs
import pyarrow.parquet as pq

from prefect_cluster_triggers.blocks.files.member_parts import hash_buckets, member_parts
from prefect_cluster_triggers.flows.engine.changes import compare_parts, compare_runs


def _members(path: Path, ids: list[str], clusters: np.ndarray) -> str:
    pq.write_table(pa.table({"id": pa.array(ids, pa.string()), "cluster": pa.array(clusters.astype(np.int32)),
                             "distance": pa.array(np.zeros(len(ids), np.float32))}), path)
    return str(path)


def _two_runs(tmp_path: Path) -> tuple[str, str]:
    """20,000 documents in 8 clusters, then: 3,000 moved, 2,000 removed, 1,000 added, one id repeated."""
    rng = np.random.default_rng(5)
    ids = [f"doc-{i}-é" for i in range(20_000)]
    before = rng.integers(0, 8, len(ids))
    after = before.copy()
    after[:3000] = (after[:3000] + 1) % 8
    current_ids = ids[2000:] + [f"new-{i}" for i in range(1000)] + [ids[2500]]
    current = np.concatenate([after[2000:], rng.integers(0, 9, 1000), [0]])
    return _members(tmp_path / "p.parquet", ids, before), _members(tmp_path / "c.parquet", current_ids, current)


def test_parts_hold_each_id_once_and_give_the_report_of_the_whole(tmp_path: Path) -> None:
    previous, current = _two_runs(tmp_path)
    local = fs.LocalFileSystem()
    parts = list(member_parts(local, previous, current, part_rows=4000))
    assert len(parts) == 5  # 20,000 rows of the bigger run, 4,000 a part
    seen = [set(p_ids) | set(c_ids) for p_ids, _, c_ids, _ in parts]
    assert sum(map(len, seen)) == len(set().union(*seen)) == 21_000  # no id in two parts
    assert max(len(p[0]) for p in parts) < 4000 * 1.3  # the hash spreads them evenly
    (whole,) = member_parts(local, previous, current)  # one part: read whole
    expected = compare_runs(*whole)
    assert compare_parts(parts) == expected
    assert list(compare_parts(iter(parts), moves_kept=10).moves()) == list(expected.moves())[:10]
    assert (expected.moved, expected.added, expected.removed, expected.duplicates_ignored) == (1000, 1000, 2000, 1)


def test_a_first_run_has_no_previous_members(tmp_path: Path) -> None:
    _, current = _two_runs(tmp_path)
    for rows in (4000, 100_000):
        parts = list(member_parts(fs.LocalFileSystem(), None, current, part_rows=rows))
        report = compare_parts(parts)
        assert (report.num_previous, report.added, report.moved) == (0, report.num_current, 0)


def test_the_hash_is_the_same_in_another_process_and_takes_any_text() -> None:
    ids = pa.array(["", "a", "é", "doc-1", "doc-10", "x" * 300, "日本語"], pa.string())
    here = hash_buckets(ids, 1_000_003).tolist()
    there = subprocess.run([sys.executable, "-c", "import pyarrow as pa; from prefect_cluster_triggers.blocks.files."
                            "member_parts import hash_buckets; print(hash_buckets(pa.array(%r), 1_000_003).tolist())"
                            % ids.to_pylist()], capture_output=True, text=True, check=True).stdout.strip()
    assert str(here) == there and len(set(here)) == len(here)
    assert hash_buckets(ids.slice(3, 2), 1_000_003).tolist() == here[3:5]  # a slice hashes as its values
