"""A collection that lives in a PostgreSQL table, read in batches by a server-side cursor.

Data teams that keep embeddings next to their other data in PostgreSQL (a pgvector
`vector` column, or a plain `real[]`) cluster them where they are: the block names the
table and its id, vector and payload columns, and the flow streams the rows without a
copy into our own store. Writes stay the team's own (their pipeline inserts the rows), so
this source emits no `cluster.documents_*` events: pair it with cron, interval or
conditional triggers, or emit the events from the pipeline that writes the table.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, ClassVar, Iterator

import numpy as np
import psycopg
from prefect.blocks.core import Block
from psycopg import sql
from psycopg.adapt import Loader
from psycopg.pq import Format
from psycopg.types import TypeInfo
from pydantic import Field, SecretStr

from prefect_cluster_triggers.blocks.files.lance_documents import DocumentBatch
from prefect_cluster_triggers.blocks.files.stream_snapshot import StreamSnapshot
from prefect_cluster_triggers.blocks.saving import DOCS_URL
from prefect_cluster_triggers.core.errors import DataError, NotFound, SourceUnavailable


class PostgresCollection(Block):
    """Embedded documents in a PostgreSQL table: an id column, a vector column, payload columns.

    The vector column is pgvector's `vector` or a `real[]` / `double precision[]` array.
    Rows are read by a server-side cursor, `batch_size` at a time in binary, so a worker's
    memory holds one batch however large the table. Row order is the table's scan order.

    Example:
        ```python
        from pydantic import SecretStr
        from prefect_cluster_triggers.blocks import PostgresCollection, collection_block_name

        PostgresCollection(
            collection_id="col_articles",
            url=SecretStr("postgresql://reader:secret@db.internal:5432/content"),
            table="public.articles", id_column="article_id", vector_column="embedding",
            payload_columns=["title", "body"],
        ).save(collection_block_name("col_articles"))  # where runs look for col_articles
        collection = PostgresCollection.load("BLOCK_NAME")  # BLOCK_NAME: collection_block_name("col_articles")
        ```
    """

    _block_type_name: ClassVar[str] = "Postgres Collection"
    _documentation_url: ClassVar[str] = DOCS_URL
    _description: ClassVar[str] = "Embedded documents in a PostgreSQL table (pgvector `vector` or `real[]`), read in batches."

    collection_id: str = Field(description="The collection's id, as triggers and execution configs name it.")
    url: SecretStr = Field(description="libpq connection URL, `postgresql://user:password@host:port/database`.")
    table: str = Field(description="The table or view, optionally schema-qualified: `schema.table`.")
    id_column: str = Field(default="id", description="Column holding each document's id (any type; read as text).")
    vector_column: str = Field(default="embedding", description="Column holding the vector: `vector(n)` or `real[]`.")
    payload_columns: list[str] = Field(
        default_factory=list, description="Columns passed on as each document's payload (used for cluster keywords)."
    )
    batch_size: int = Field(default=16_384, ge=1, le=1_000_000, description="Rows fetched per round trip.")
    connect_timeout_seconds: int = Field(default=10, ge=1, description="Timeout of the connection.")

    def count(self) -> int:
        with self._connect() as connection, self._explained():
            return connection.execute(sql.SQL("SELECT count(*) FROM {}").format(self._table())).fetchone()[0]

    def snapshot(self) -> StreamSnapshot:
        return StreamSnapshot(self)

    def batches(self, *, ids: bool = True, with_payloads: bool = False) -> Iterator[DocumentBatch]:
        """The table's rows in batches, read by one server-side cursor in one read-only transaction."""
        columns = [sql.Identifier(self.id_column), sql.Identifier(self.vector_column)]
        if with_payloads and self.payload_columns:
            pairs = sql.SQL(", ").join(sql.SQL("{}, {}").format(sql.Literal(c), sql.Identifier(c))
                                       for c in self.payload_columns)
            columns.append(sql.SQL("json_build_object({})::text").format(pairs))
        query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(columns), self._table())
        with self._connect() as connection, connection.transaction():
            with connection.cursor(name="cluster_triggers_read", binary=True) as cursor:
                with self._explained():
                    cursor.execute(query)
                dim: int | None = None
                while rows := cursor.fetchmany(self.batch_size):
                    batch = self._batch(rows, with_payloads and bool(self.payload_columns), dim)
                    dim = batch.vectors.shape[1]
                    yield batch

    def _batch(self, rows: list[tuple[Any, ...]], with_payloads: bool, dim: int | None) -> DocumentBatch:
        ids = [str(row[0]) for row in rows]
        vectors = [row[1] for row in rows]
        for document_id, vector in zip(ids, vectors):
            if vector is None:
                raise DataError(f"collection {self.collection_id}: document {document_id!r} has a NULL "
                                f"{self.vector_column}")
        try:
            matrix = np.asarray(vectors, dtype=np.float32)
        except ValueError:
            raise DataError(f"collection {self.collection_id}: {self.table}.{self.vector_column} holds vectors "
                            f"of different lengths") from None
        if matrix.ndim != 2 or (dim is not None and matrix.shape[1] != dim):
            raise DataError(f"collection {self.collection_id}: {self.table}.{self.vector_column} holds vectors "
                            f"of different lengths")
        payloads = [row[2] for row in rows] if with_payloads else [None] * len(rows)
        return DocumentBatch(ids, matrix, payloads)

    @contextmanager
    def _explained(self) -> Iterator[None]:
        """A table or column the block names that the database lacks: one line saying which."""
        try:
            yield
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
            raise NotFound(f"collection {self.collection_id}: {exc.diag.message_primary} "
                           f"(the PostgresCollection block names table {self.table!r})") from None

    def _table(self) -> sql.Identifier:
        return sql.Identifier(*self.table.split(".", 1))

    def _connect(self) -> psycopg.Connection:
        try:
            connection = psycopg.connect(self.url.get_secret_value(), connect_timeout=self.connect_timeout_seconds)
        except psycopg.OperationalError as exc:
            raise SourceUnavailable(f"collection {self.collection_id}: cannot connect to PostgreSQL "
                                    f"({_first_line(exc)})") from None
        vector_type = TypeInfo.fetch(connection, "vector")
        if vector_type is not None:  # pgvector is installed in this database
            connection.adapters.register_loader(vector_type.oid, _VectorLoader)
        return connection


class _VectorLoader(Loader):
    """pgvector's binary `vector` (uint16 dimension, uint16 unused, big-endian float32s) as numpy.

    Copied out (to native order) at once: `data` points into the result, which psycopg frees.
    """

    format = Format.BINARY

    def load(self, data: Any) -> np.ndarray:
        return np.frombuffer(data, dtype=">f4", offset=4).astype(np.float32)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

