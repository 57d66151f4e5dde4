"""`collections add` through the CLI: all or nothing into a collection with documents, default
ids that never replace a document, one line and exit 2 for a bad file (issue 21)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from prefect_cluster_triggers.blocks.collections import open_collection
from tests.bad_inputs import BAD_INPUTS, write_bad_input


def _state(collection_id: str) -> tuple[int | None, int, list[str]]:
    """The collection's Lance version, count and ids: what a refused add must leave as they were."""
    collection = open_collection(collection_id)
    snapshot = collection.snapshot()
    return snapshot.version, snapshot.count, sorted(i for batch in collection.batches() for i in batch.ids)


def _refused(result, folder: Path, line: str) -> None:
    """Exit 2 and one line on stderr, `line` (a pattern) after the file's folder."""
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and re.match(re.escape(f"{folder}/") + line, result.stderr), result.stderr


def test_a_refused_add_into_a_collection_with_documents_writes_nothing(cli, tmp_path: Path) -> None:
    """Before, the 16,384 rows of the first batch were committed each time."""
    np.save(tmp_path / "base.npy", np.zeros((50, 8), np.float32))
    assert cli("collections", "add", "col_refused_add", "--vectors", str(tmp_path / "base.npy")).returncode == 0
    before = _state("col_refused_add")
    vectors = np.ones((20_000, 8), np.float32)
    vectors[18_000, 2] = np.nan
    np.save(tmp_path / "nan.npy", vectors)
    _refused(cli("collections", "add", "col_refused_add", "--vectors", str(tmp_path / "nan.npy")),
             tmp_path, "nan.npy: 1 vector.s. contain NaN or inf, first at row 18000$")
    assert _state("col_refused_add") == before
    np.save(tmp_path / "ok.npy", np.ones((20_000, 8), np.float32))
    (tmp_path / "ids.txt").write_text("".join(f"n{i}\n" for i in range(20_001)))
    _refused(cli("collections", "add", "col_refused_add", "--vectors", str(tmp_path / "ok.npy"), "--ids",
                 str(tmp_path / "ids.txt")), tmp_path, "ids.txt: more ids than the 20000 vectors$")
    assert _state("col_refused_add") == before


def test_default_ids_never_replace_a_document(cli, tmp_path: Path) -> None:
    """Before, rows were numbered from the count: after one delete, 10 new vectors were 'added': 9, 'updated': 1."""
    np.save(tmp_path / "x.npy", np.ones((20, 4), np.float32))
    first = cli("collections", "add", "col_default_ids", "--vectors", str(tmp_path / "x.npy"))
    assert first.returncode == 0, first.stderr
    deleted = _state("col_default_ids")[2][-1]
    assert cli("collections", "delete", "col_default_ids", "--id", deleted).returncode == 0
    np.save(tmp_path / "y.npy", np.ones((10, 4), np.float32))
    second = cli("collections", "add", "col_default_ids", "--vectors", str(tmp_path / "y.npy"))
    assert second.returncode == 0, second.stderr
    answer = json.loads(second.stdout)
    assert {k: answer[k] for k in ("added", "updated", "total")} == {"added": 10, "updated": 0, "total": 29}
    assert re.fullmatch("[0-9a-f]{32}", answer["id_prefix"]) and answer["id_prefix"] != json.loads(first.stdout)["id_prefix"]
    assert [i for i in _state("col_default_ids")[2] if i.startswith(answer["id_prefix"])] == sorted(
        f"{answer['id_prefix']}-{row}" for row in range(10))


@pytest.fixture(scope="module")
def with_documents(cli, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A collection of five documents, which every refused add below must leave as it is."""
    base = tmp_path_factory.mktemp("base") / "base.npy"
    np.save(base, np.zeros((5, 2), np.float32))
    assert cli("collections", "add", "col_bad_files", "--vectors", str(base)).returncode == 0
    return "col_bad_files"


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_a_bad_input_file_is_one_line_and_exit_2(cli, with_documents: str, tmp_path: Path, kind: str) -> None:
    before = _state(with_documents)
    path = write_bad_input(tmp_path, kind)
    _refused(cli("collections", "add", with_documents, "--vectors", str(path)), tmp_path, BAD_INPUTS[kind])
    assert _state(with_documents) == before
