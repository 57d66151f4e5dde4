"""The local collection and result formats: atomic, and nothing half-written is ever read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from prefect_cluster_triggers.blocks._document_files import DocumentFiles
from prefect_cluster_triggers.blocks._result_files import ResultFiles
from prefect_cluster_triggers.flows.errors import DataError, NotFound


def test_append_and_read_back(tmp_path: Path) -> None:
    files = DocumentFiles(tmp_path / "c")
    assert files.append(np.ones((3, 4)), ["a", "b", "c"], [{"t": "x"}, None, {"t": "z"}]) == 3
    assert files.append(np.zeros((2, 4)), None, None) == 5
    ids, vectors = files.read()
    assert ids == ["a", "b", "c", "3", "4"]
    assert vectors.dtype == np.float32 and vectors.shape == (5, 4) and isinstance(vectors, np.memmap)
    assert not vectors.flags.writeable
    assert files.read_payloads() == [{"t": "x"}, None, {"t": "z"}, None, None]


def test_in_place_changes_to_a_writable_read_never_reach_the_file(tmp_path: Path) -> None:
    files = DocumentFiles(tmp_path / "c")
    files.append(np.full((2, 3), 2.0), None, None)
    _, vectors = files.read(writable=True)
    vectors *= 10
    assert (files.read()[1] == 2.0).all()


@pytest.mark.parametrize(
    ("vectors", "ids", "message"),
    [
        (np.ones((2, 5)), None, "dimension 5 does not match the collection's dimension 4"),
        (np.array([[1, np.nan, 0, 0]]), None, "NaN or inf"),
        (np.array([[1, np.inf, 0, 0]]), None, "NaN or inf"),
        (np.ones((1, 4)), ["a"], "'a' is already in the collection"),
        (np.ones((2, 4)), ["x", "x"], "not unique"),
        (np.ones((0, 4)), None, "non-empty"),
    ],
)
def test_bad_adds_are_rejected_and_change_nothing(tmp_path: Path, vectors: np.ndarray, ids: list | None, message: str) -> None:
    files = DocumentFiles(tmp_path / "c")
    files.append(np.ones((1, 4)), ["a"], None)
    with pytest.raises(DataError, match=message):
        files.append(vectors, ids, None)
    assert files.count() == 1 and files.read()[0] == ["a"]


def test_crash_mid_add_loses_nothing_and_shows_nothing_half_written(tmp_path: Path) -> None:
    path = tmp_path / "c"
    DocumentFiles(path).append(np.ones((2, 4)), ["a", "b"], None)
    # A writer killed after appending bytes but before committing the manifest.
    crash = (
        "import os, numpy as np\n"
        "from prefect_cluster_triggers.blocks._document_files import DocumentFiles\n"
        "files = DocumentFiles(__import__('pathlib').Path(%r))\n"
        "files._write_manifest = lambda manifest: os._exit(9)\n"
        "files.append(np.full((3, 4), 7.0), ['x', 'y', 'z'], None)\n" % str(path)
    )
    assert subprocess.run([sys.executable, "-c", crash]).returncode == 9
    files = DocumentFiles(path)
    ids, vectors = files.read()
    assert ids == ["a", "b"] and vectors.shape == (2, 4) and (vectors == 1).all()
    assert files.append(np.zeros((1, 4)), ["x"], None) == 3  # the orphaned bytes are overwritten
    assert files.read()[0] == ["a", "b", "x"]


def _write(store: ResultFiles, run_id: str, value: float) -> None:
    store.write("trg_1", run_id, {"run_id": run_id, "value": value}, np.full((2, 3), value, np.float32),
                ["a", "b"], np.array([0, 1]), np.array([0.5, np.nan], np.float32))


def test_results_latest_moves_only_after_a_complete_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ResultFiles(tmp_path)
    with pytest.raises(NotFound):
        store.latest("trg_1")
    _write(store, "run-1", 1.0)
    monkeypatch.setattr(np, "savez", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        _write(store, "run-2", 2.0)
    monkeypatch.undo()
    latest = store.latest("trg_1")
    assert latest.record == {"run_id": "run-1", "value": 1.0}
    assert latest.members() == [{"id": "a", "cluster": 0, "distance": 0.5}, {"id": "b", "cluster": 1, "distance": None}]
    assert not [p for p in (tmp_path / "trg_1" / "runs").iterdir() if p.name.startswith(".")]
    _write(store, "run-3", 3.0)
    assert store.latest("trg_1").record["value"] == 3.0
    with pytest.raises(FileExistsError):
        _write(store, "run-3", 4.0)
    assert json.loads((tmp_path / "trg_1" / "runs" / "run-1" / "run.json").read_text())["value"] == 1.0
