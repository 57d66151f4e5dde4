"""Collection tables and result files: atomic, upserting, and nothing half-written is ever read."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prefect_cluster_triggers.blocks.files.document_input import open_input
from prefect_cluster_triggers.blocks.files.lance_documents import WRITE_ROWS, LanceDocuments, WriteCounts, record_batch
from prefect_cluster_triggers.blocks.files.result_files import ResultFiles
from prefect_cluster_triggers.core.errors import DataError, NotFound
from prefect_cluster_triggers.flows.engine.preprocess import sample_rows
from tests.bad_inputs import BAD_INPUTS, write_bad_input


def _docs(tmp_path: Path) -> LanceDocuments:
    return LanceDocuments(str(tmp_path / "db"), "c")


def _read(documents: LanceDocuments) -> dict[str, tuple[list[float], str | None]]:
    return {i: (v.tolist(), p) for b in documents.batches(with_payloads=True) for i, v, p in zip(b.ids, b.vectors, b.payloads)}


def test_upsert_inserts_new_ids_replaces_existing_ones_and_counts_each(tmp_path: Path) -> None:
    documents = _docs(tmp_path)
    assert documents.count() == 0 and list(documents.batches()) == []
    assert documents.upsert([record_batch(np.ones((3, 2)), ["a", "b", "c"], ['{"t":"x"}', None, None])]) == WriteCounts(3, 0)
    assert documents.upsert([record_batch(np.full((2, 2), 5.0), ["c", "d"])]) == WriteCounts(1, 1)
    assert _read(documents) == {"a": ([1, 1], '{"t":"x"}'), "b": ([1, 1], None), "c": ([5, 5], None), "d": ([5, 5], None)}
    assert documents.delete(["a", "zz"]) == 1
    assert sorted(_read(documents)) == ["b", "c", "d"] and documents.dimension() == 2


@pytest.mark.parametrize(
    ("vectors", "ids", "message"),
    [
        (np.ones((2, 5)), ["x", "y"], "dimension 5 does not match the collection's dimension 4"),
        (np.array([[1, np.nan, 0, 0]]), ["x"], "NaN or inf, first at row 0"),
        (np.array([[1, np.inf, 0, 0]]), ["x"], "NaN or inf"),
        (np.ones((2, 4)), ["x", "x"], "'x' appears more than once"),
        (np.ones((1, 4)), [""], "non-empty"),
        (np.ones((0, 4)), [], "non-empty 2-d array"),
    ],
)
def test_bad_adds_are_rejected_and_change_nothing(tmp_path: Path, vectors: np.ndarray, ids: list, message: str) -> None:
    documents = _docs(tmp_path)
    documents.upsert([record_batch(np.ones((1, 4)), ["a"])])
    with pytest.raises(DataError, match=message):
        documents.upsert([record_batch(vectors, ids)])
    assert _read(documents) == {"a": ([1, 1, 1, 1], None)}


def _twenty_thousand(problem: str) -> list[pa.RecordBatch]:
    """20,000 documents in two batches, the problem (if any) at row 18,000, in the second batch."""
    vectors, ids = np.ones((20_000, 8)), [f"n{i}" for i in range(20_000)]
    if problem == "nan":
        vectors[18_000, 3] = np.nan
    elif problem == "repeat":
        ids[18_000] = "n5"
    elif problem == "null id":
        ids[18_000] = None
    return [record_batch(vectors[s : s + WRITE_ROWS], ids[s : s + WRITE_ROWS]) for s in range(0, 20_000, WRITE_ROWS)]


@pytest.mark.parametrize("held", [0, 100], ids=["empty", "with documents"])
@pytest.mark.parametrize(("problem", "message"), [
    ("nan", "1 vector.s. contain NaN or inf, first at row 18000"),
    ("repeat", "'n5' appears more than once in the same add"),
    ("null id", "the id of row 18000 is null"),
])
def test_every_add_is_all_or_nothing_whatever_the_collection_holds(tmp_path: Path, held: int, problem: str,
                                                                   message: str) -> None:
    """Before, an add into a collection with documents committed batch by batch: a NaN at row
    18,000 left the first 16,384 rows in."""
    documents = _docs(tmp_path)
    if held:
        documents.upsert([record_batch(np.zeros((held, 8)), [f"d{i}" for i in range(held)])])
    version, rows = documents.snapshot().version, _read(documents)  # None: no collection yet
    with pytest.raises(DataError, match=message):
        documents.upsert(_twenty_thousand(problem))
    assert documents.snapshot().version == version and _read(documents) == rows
    assert documents.upsert(_twenty_thousand("")) == WriteCounts(20_000, 0)
    assert documents.snapshot().version == (version or 1) + 1  # one commit (a first add makes the table: version 1)


def test_more_ids_than_vectors_writes_nothing(tmp_path: Path) -> None:
    """The ids file's extra line is found after the last vector: before, every batch was committed by then."""
    documents = _docs(tmp_path)
    documents.upsert([record_batch(np.zeros((3, 8)), ["a", "b", "c"])])
    np.save(tmp_path / "x.npy", np.ones((20_000, 8), np.float32))
    (tmp_path / "ids.txt").write_text("".join(f"n{i}\n" for i in range(20_001)))
    version = documents.snapshot().version
    with pytest.raises(DataError, match="ids.txt: more ids than the 20000 vectors"):
        documents.upsert(open_input(str(tmp_path / "x.npy"), ids=str(tmp_path / "ids.txt")).batches)
    assert documents.snapshot().version == version and sorted(_read(documents)) == ["a", "b", "c"]


def test_a_writer_killed_mid_add_leaves_the_collection_as_it_was(tmp_path: Path) -> None:
    documents = _docs(tmp_path)
    documents.upsert([record_batch(np.zeros((2, 64)), ["a", "b"])])
    version = documents.snapshot().version
    writer = (
        "import numpy as np, sys\n"
        "from prefect_cluster_triggers.blocks.files.lance_documents import LanceDocuments, record_batch\n"
        "documents = LanceDocuments(%r, 'c')\n"
        "def batches():\n"
        "    for n in range(10_000):\n"
        "        yield record_batch(np.full((5000, 64), n + 1.0), [f'{n}-{i}' for i in range(5000)])\n"
        "        print(n, flush=True)\n"
        "documents.upsert(batches())\n" % str(tmp_path / "db")
    )
    process = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    for _ in range(3):
        process.stdout.readline()  # three batches read by Lance, the fourth on its way
    time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert _docs(tmp_path).snapshot().version == version
    assert _read(_docs(tmp_path)) == {"a": ([0.0] * 64, None), "b": ([0.0] * 64, None)}
    again = _docs(tmp_path).upsert([record_batch(np.ones((1, 64)), ["a"])])  # the next add just works
    assert again == WriteCounts(0, 1)


def test_inputs_stream_from_npy_parquet_and_json_lines(tmp_path: Path) -> None:
    vectors = np.arange(12, dtype=np.float32).reshape(6, 2)
    np.save(tmp_path / "x.npy", vectors)
    (tmp_path / "ids.txt").write_text("".join(f"n{i}\n" for i in range(6)))
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"i": i}) + "\n" for i in range(6)))
    pq.write_table(pa.table({"id": [f"p{i}" for i in range(6)], "vector": vectors.tolist(), "title": list("abcdef")}),
                   tmp_path / "x.parquet")
    (tmp_path / "x.jsonl").write_text("".join(json.dumps({"id": f"j{i}", "vector": v.tolist(), "payload": {"i": i}})
                                              + "\n" for i, v in enumerate(vectors)))
    for name, extra in (("x.npy", {"ids": str(tmp_path / "ids.txt"), "payloads": str(tmp_path / "p.jsonl")}),
                        ("x.parquet", {}), ("x.jsonl", {})):
        source = open_input(str(tmp_path / name), batch_rows=4, **extra)
        batches = list(source.batches)
        assert [b.num_rows for b in batches] == [4, 2]
        table = pa.Table.from_batches(batches)
        assert table.column("vector").combine_chunks().values.to_numpy().reshape(6, 2).tolist() == vectors.tolist()
        assert table.column("payload")[0].as_py() in ('{"i":0}', '{"title": "a"}')
    assert open_input(str(tmp_path / "x.npy")).rows == 6


@pytest.mark.parametrize(("content", "message"), [
    ('{"id": "a", "vector": [1, 2]}\n{"id": "b", "vector": [1]}\n', "x.jsonl: lines 1-2: vectors are not lists"),
    ('{"id": "a", "vector": [1, 2]}\nnot json\n', "x.jsonl:2: not JSON"),
    ('{"vector": [1, 2]}\n', "x.jsonl:1: expected an object with 'id'"),
])
def test_bad_input_lines_are_named(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "x.jsonl").write_text(content)
    with pytest.raises(DataError, match=message):
        list(open_input(str(tmp_path / "x.jsonl")).batches)


def test_npy_without_ids_numbers_its_rows_after_a_prefix_drawn_per_add(tmp_path: Path) -> None:
    """Before, the rows were numbered from the collection's count: after a delete, an add replaced a document."""
    np.save(tmp_path / "x.npy", np.ones((3, 2), np.float32))
    first, second = (open_input(str(tmp_path / "x.npy")) for _ in range(2))
    assert first.id_prefix != second.id_prefix and len(first.id_prefix) == 32
    assert next(first.batches).column("id").to_pylist() == [f"{first.id_prefix}-{i}" for i in range(3)]
    assert open_input(str(tmp_path / "x.npy"), ids=str(tmp_path / "ids.txt")).id_prefix is None


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_bad_input_files_are_refused_with_their_name(tmp_path: Path, kind: str) -> None:
    with pytest.raises(DataError, match=BAD_INPUTS[kind]):
        list(open_input(str(write_bad_input(tmp_path, kind))).batches)


def test_integer_vectors_are_read_as_floats_and_complex_ones_refused(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": [1, 2], "vector": [[1, 2], [3, 4]]}), tmp_path / "x.parquet")
    batch = next(open_input(str(tmp_path / "x.parquet")).batches)
    assert batch.column("id").to_pylist() == ["1", "2"] and batch.column("vector").to_pylist() == [[1, 2], [3, 4]]
    with pytest.raises(DataError, match="vectors must be real numbers .integers or floats., got complex128"):
        record_batch(np.ones((1, 2)) * 1j, ["a"])


def _write(store: ResultFiles, run_id: str, value: float) -> None:
    with store.new_run("trg_1", run_id) as run:
        run.write_members(["a"], np.array([0]), np.array([0.5], np.float32))
        run.write_members(["b"], np.array([1]), np.array([np.nan], np.float32))
        run.commit({"run_id": run_id, "value": value}, np.full((2, 3), value, np.float32))


def test_results_latest_moves_only_after_a_complete_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ResultFiles(str(tmp_path))
    with pytest.raises(NotFound):
        store.latest("trg_1")
    _write(store, "run-1", 1.0)
    monkeypatch.setattr(pq, "write_table", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        _write(store, "run-2", 2.0)
    monkeypatch.undo()
    latest = store.latest("trg_1")
    assert latest.record == {"run_id": "run-1", "value": 1.0}
    assert latest.members() == [{"id": "a", "cluster": 0, "distance": 0.5}, {"id": "b", "cluster": 1, "distance": None}]
    assert store.record_of("trg_1", "run-2") == {}
    _write(store, "run-3", 3.0)
    assert store.latest("trg_1").record["value"] == 3.0 and store.latest("trg_1").centroids.shape == (2, 3)
    with pytest.raises(FileExistsError):
        _write(store, "run-3", 4.0)
    assert json.loads((tmp_path / "trg_1" / "runs" / "run-1" / "run.json").read_text())["value"] == 1.0
    members = pq.read_table(tmp_path / "trg_1" / "runs" / "run-3" / "members.parquet")  # what DuckDB or pandas read
    assert members.column_names == ["id", "cluster", "distance"]


def test_concurrent_writers_count_every_insert_and_update_exactly_once(tmp_path: Path) -> None:
    documents = _docs(tmp_path)
    documents.upsert([record_batch(np.zeros((100, 8)), [f"base-{i}" for i in range(100)])])
    writer = (
        "import json, sys, numpy as np\n"
        "from prefect_cluster_triggers.blocks.files.lance_documents import LanceDocuments, record_batch\n"
        "me = int(sys.argv[1])\n"
        "ids = [f'base-{i}' for i in range(me * 20, me * 20 + 40)] + [f'new-{me}-{i}' for i in range(30)]\n"
        "counts = LanceDocuments(%r, 'c').upsert(record_batch(np.full((10, 8), me + 1.0), ids[s:s + 10])\n"
        "                                        for s in range(0, len(ids), 10))\n"
        "print(json.dumps([counts.inserted, counts.updated]))\n" % str(tmp_path / "db")
    )
    writers = [subprocess.Popen([sys.executable, "-c", writer, str(me)], stdout=subprocess.PIPE, text=True)
               for me in range(3)]
    results = [json.loads(w.communicate(timeout=300)[0]) for w in writers]
    assert all(w.returncode == 0 for w in writers)
    assert sum(inserted for inserted, _ in results) == 90  # 3 x 30 new ids, each inserted once
    assert sum(updated for _, updated in results) == 120  # 3 x 40 existing ids, overlapping, each update counted
    assert documents.count() == 190


def test_a_sample_after_updates_and_deletes_is_the_rows_at_those_numbers(tmp_path) -> None:
    """A run's fit sample takes rows by number fragment by fragment; after an update and a delete
    (new deletion files, a new fragment) they are still the rows a full read finds at those numbers."""
    rng = np.random.default_rng(0)
    table = LanceDocuments(str(tmp_path / "db"), "docs")
    table.upsert([record_batch(rng.normal(size=(3000, 8)).astype(np.float32), [f"d{i}" for i in range(3000)])])
    table.upsert([record_batch(rng.normal(size=(5, 8)).astype(np.float32), ["d10", "d1500", "d2999", "n1", "n2"])])
    table.delete(["d7", "d2000"])
    snapshot = table.snapshot()
    everything = list(table.batches(with_payloads=True))
    ids = [i for b in everything for i in b.ids]
    vectors = np.concatenate([b.vectors for b in everything])
    picked_ids, picked, _, count = snapshot.sample(500, random_state=3)
    rows = sample_rows(count, 500, random_state=3)
    assert count == len(ids) == 3000  # 2 new, 2 deleted
    assert picked_ids == [ids[r] for r in rows] and np.array_equal(picked, vectors[rows])


def _chain(store: ResultFiles, owner: str, run_ids: list[str]) -> None:
    previous = None
    for run_id in run_ids:
        with store.new_run(owner, run_id) as run:
            run.write_members(["a"], np.array([0]), np.array([0.5], np.float32))
            run.commit({"run_id": run_id, "previous_run_id": previous, "trigger_id": None}, np.zeros((1, 2)))
        previous = run_id


def test_history_walks_back_from_latest_and_stops_at_the_limit_or_a_run_without_a_record(tmp_path: Path) -> None:
    store = ResultFiles(str(tmp_path))
    assert store.history("cluster_h", 5) == [] and store.latest_record("cluster_h") == {}
    _chain(store, "cluster_h", ["r1", "r2", "r3", "r4"])
    assert [r["run_id"] for r in store.history("cluster_h", 10)] == ["r4", "r3", "r2", "r1"]
    assert [r["run_id"] for r in store.history("cluster_h", 2)] == ["r4", "r3"]
    (tmp_path / "cluster_h" / "runs" / "r2" / "run.json").unlink()  # a run that left no record ends the walk
    assert [r["run_id"] for r in store.history("cluster_h", 10)] == ["r4", "r3"]
    assert store.latest_record("cluster_h")["run_id"] == "r4"


def test_an_owners_runs_move_whole_and_never_over_another_owners(tmp_path: Path) -> None:
    store = ResultFiles(str(tmp_path))
    _chain(store, "cluster_m", ["r1", "r2"])
    _chain(store, "taken", ["t1"])
    assert store.owners() == ["cluster_m", "taken"]
    assert not store.move_owner("cluster_m", "taken")  # the target has results: nothing moves
    assert store.latest("cluster_m").record["run_id"] == "r2" and store.latest("taken").record["run_id"] == "t1"
    assert store.move_owner("cluster_m", "ns-0123456789abcdef--cluster-m")
    assert store.owners() == ["ns-0123456789abcdef--cluster-m", "taken"]
    assert [r["run_id"] for r in store.history("ns-0123456789abcdef--cluster-m", 5)] == ["r2", "r1"]
    assert store.owner_of_run("r1") == "ns-0123456789abcdef--cluster-m"
