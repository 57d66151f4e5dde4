"""Document collections: where the vectors come from.

`LanceCollection` is the embedded default (a LanceDB table in a directory or on object
storage); `HttpCollection` reads a collection page by page from an HTTP JSON API. Both
give the flow and the condition checks a stream of `DocumentBatch`es.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from typing import Any, ClassVar, Iterable, Iterator, Protocol, Sequence

import httpx
import numpy as np
import pyarrow as pa
from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from prefect_cluster_triggers.blocks.collection_events import notify_collection
from prefect_cluster_triggers.blocks.files.lance_documents import (
    WRITE_ROWS,
    DocumentBatch,
    LanceDocuments,
    LanceSnapshot,
    WriteCounts,
    id_prefix,
    record_batch,
)
from prefect_cluster_triggers.blocks.files.stream_snapshot import StreamSnapshot
from prefect_cluster_triggers.blocks.object_store import ObjectStore, default_object_store
from prefect_cluster_triggers.blocks.postgres_collection import PostgresCollection
from prefect_cluster_triggers.blocks.result_store import default_result_store
from prefect_cluster_triggers.blocks.saving import DOCS_URL, load_or_save
from prefect_cluster_triggers.core.errors import DataError, NotFound, SourceUnavailable
from prefect_cluster_triggers.core.names import namespace_id_of, owned_name, prefect_name
from prefect_cluster_triggers.core.settings import get_settings, storage_root


class DocumentSource(Protocol):
    """What the clustering flow and the condition checks need of a collection: a stream of batches."""

    collection_id: str

    def batches(self, *, ids: bool = True, with_payloads: bool = False) -> Iterator[DocumentBatch]:
        """The documents in batches; `ids=False` may leave each batch's ids empty (vectors only)."""
        ...

    def count(self) -> int | None:
        """The number of documents, when known without reading them."""
        ...

    def snapshot(self) -> LanceSnapshot | StreamSnapshot:
        """The collection as one run reads it: a fit sample and the parts every document is assigned in."""
        ...


class LanceCollection(Block):
    """A collection of embedded documents (id, float32 vector, JSON payload) in a LanceDB table.

    The table lives in a local directory or on object storage (`s3://...`, with an
    `ObjectStore` block for the endpoint and credentials), so a worker on any machine reads
    it. Adding a document whose id exists replaces it; adds emit `cluster.documents_added`
    and `cluster.documents_updated` with the counts the commits report, so event triggers
    see them at once. Reads stream in record batches.

    Example:
        ```python
        from prefect_cluster_triggers.blocks.collections import LanceCollection

        # BLOCK_NAME: a namespace's blocks are named `ns-<16 hex>--<id>`, e.g.
        # "ns-3b1e4c2a9f0d7e65--col-abc123-6c3d1e"; open_collection("col_abc123", "team-a") finds it too
        collection = LanceCollection.load("BLOCK_NAME")
        collection.add_documents(vectors, ids=["a", "b"], payloads=[{"title": "..."}, None])
        collection.delete_documents(["a"])
        ```
    """

    _block_type_name: ClassVar[str] = "Lance Collection"
    _documentation_url: ClassVar[str] = DOCS_URL
    _description: ClassVar[str] = "Embedded documents in a LanceDB table, on local disk or object storage."

    collection_id: str = Field(description="The collection's id, as triggers and execution configs name it.")
    namespace_id: str | None = Field(
        default=None, description="The namespace that owns the collection; its adds are events of that namespace only."
    )
    uri: str = Field(description="LanceDB database holding the collection's table: an absolute directory or `s3://...`.")
    table: str = Field(description="The table's name in that database.")
    object_store: ObjectStore | None = Field(default=None, description="Endpoint and credentials of an `s3://` uri.")

    def add_documents(
        self, vectors: np.ndarray, ids: Sequence[str] | None = None, payloads: Sequence[Any] | None = None
    ) -> WriteCounts:
        """Upsert documents by id in one commit, all or nothing; emit the added and updated
        counts as collection events.

        Without `ids`, the documents get `<prefix>-<row>`, 32 random hex digits drawn for this
        call and the row in `vectors` from 0, so they never replace a document already there.

        Raises:
            DataError: a dimension change, NaN or inf, vectors that are not real numbers, a
                count of ids or payloads other than of vectors, or an id repeated within the call.
        """
        rows = np.asarray(vectors)
        if ids is None:
            prefix = id_prefix()
            ids = [f"{prefix}-{i}" for i in range(len(rows))]
        for name, given in (("ids", ids), ("payloads", payloads)):
            if given is not None and len(given) != len(rows):
                raise DataError(f"{len(given)} {name} for {len(rows)} vectors; one per vector")
        texts = [None if p is None else json.dumps(p, separators=(",", ":")) for p in payloads] if payloads else None
        return self.upsert_batches(
            record_batch(rows[start : start + WRITE_ROWS],
                         [None if i is None else str(i) for i in ids[start : start + WRITE_ROWS]],  # None: refused
                         texts[start : start + WRITE_ROWS] if texts else None)
            for start in range(0, max(len(rows), 1), WRITE_ROWS)
        )

    def upsert_batches(self, batches: Iterable[pa.RecordBatch]) -> WriteCounts:
        """Upsert a stream of record batches (id, vector, payload) in one commit, all or nothing
        (see `lance_documents`); emit the counts.

        A first load (no documents yet) appends in bulk, and Lance lets two appends commit side
        by side: two first loads at once, from any machines, would store an id shared by both
        twice. They therefore take turns on a Prefect global concurrency limit of 1 for the
        collection; the second then finds documents and merges by id.
        """
        documents = self._documents()
        if documents.count():
            counts = documents.upsert(batches)
        else:
            with _loading_alone(self.table):
                counts = documents.upsert(batches)
        for event_type, count in (("documents_added", counts.inserted), ("documents_updated", counts.updated)):
            if count:
                notify_collection(self.collection_id, event_type, count=count, namespace=self.namespace_id)
        return counts

    def delete_documents(self, ids: Sequence[str]) -> int:
        """Delete documents by id; the number deleted (ids not in the collection are ignored)."""
        return self._documents().delete([str(i) for i in ids])

    def count(self) -> int:
        return self._documents().count()

    def batches(self, *, ids: bool = True, with_payloads: bool = False) -> Iterator[DocumentBatch]:
        return self._documents().batches(ids=ids, with_payloads=with_payloads)

    def snapshot(self) -> LanceSnapshot:
        return self._documents().snapshot()

    def _documents(self) -> LanceDocuments:
        options = self.object_store.lance_options() if self.object_store else {}
        return LanceDocuments(self.uri, self.table, options)


class HttpCollection(Block):
    """A collection served by an HTTP JSON API, read page by page.

    Each page is `GET <url>?limit=<page_size>[&cursor=<cursor>]` answering
    `{"documents": [{"id": str, "vector": [float, ...], "payload": {...}}], "next_cursor": str | null}`.
    429, 5xx and connection errors are retried with exponential backoff (honouring
    `Retry-After`); anything else that is not such a page is an error naming the page.

    Example:
        ```python
        from prefect_cluster_triggers.blocks.collections import HttpCollection

        collection = HttpCollection.load("BLOCK_NAME")  # e.g. collection_block_name("products")
        for batch in collection.batches():
            print(len(batch.ids))
        ```
    """

    _block_type_name: ClassVar[str] = "HTTP Collection"
    _documentation_url: ClassVar[str] = DOCS_URL

    collection_id: str = Field(description="The collection's id, as triggers and execution configs name it.")
    url: str = Field(description="Address of the collection's documents endpoint.")
    token: SecretStr | None = Field(default=None, description="Credential sent with every request.")
    auth_header: str = Field(
        default="Authorization",
        description="Header carrying the token; `Authorization` sends `Bearer <token>`, any other header the token as is.",
    )
    page_size: int = Field(default=1000, ge=1, le=100_000, description="Documents asked for per page.")
    timeout_seconds: float = Field(default=30.0, gt=0, description="Timeout of each request.")
    max_retries: int = Field(default=5, ge=0, description="Retries of a page on 429, 5xx or a connection error.")
    backoff_seconds: float = Field(default=0.5, ge=0, description="First retry delay; doubles on each retry.")

    _RETRY_STATUS: ClassVar[frozenset[int]] = frozenset({429, 500, 502, 503, 504})

    def count(self) -> int | None:
        return None  # known only by reading every page

    def snapshot(self) -> StreamSnapshot:
        return StreamSnapshot(self)

    def batches(self, *, ids: bool = True, with_payloads: bool = False) -> Iterator[DocumentBatch]:
        """One batch per page (ids always: the page has them), so a large collection never sits in memory twice."""
        cursor: str | None = None
        dim: int | None = None
        with httpx.Client(timeout=self.timeout_seconds, headers=self._headers()) as client:
            for page_number in range(1, 1_000_000):
                page = self._fetch(client, page_number, cursor)
                batch = self._parse(page, page_number)
                if batch.ids:
                    if dim is not None and batch.vectors.shape[1] != dim:
                        raise DataError(f"collection {self.collection_id}: page {page_number} has dimension "
                                        f"{batch.vectors.shape[1]}, earlier pages {dim}")
                    dim = batch.vectors.shape[1]
                    yield batch
                cursor = page.get("next_cursor")
                if not cursor:
                    break

    def _headers(self) -> dict[str, str]:
        if self.token is None:
            return {}
        secret = self.token.get_secret_value()
        return {self.auth_header: f"Bearer {secret}" if self.auth_header.lower() == "authorization" else secret}

    def _fetch(self, client: httpx.Client, page_number: int, cursor: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": self.page_size}
        if cursor:
            params["cursor"] = cursor
        delay = self.backoff_seconds
        problem = ""
        for attempt in range(self.max_retries + 1):
            try:
                response = client.get(self.url, params=params)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code not in self._RETRY_STATUS:
                    return self._page_json(response, page_number)
                problem = f"HTTP {response.status_code}"
                delay = max(delay, _retry_after(response))
            if attempt < self.max_retries:
                time.sleep(delay)
                delay *= 2
        raise SourceUnavailable(
            f"collection {self.collection_id}: page {page_number} of {self.url} failed after "
            f"{self.max_retries + 1} attempts ({problem})"
        )

    def _page_json(self, response: httpx.Response, page_number: int) -> dict[str, Any]:
        where = f"collection {self.collection_id}: page {page_number} of {self.url}"
        if response.status_code in (401, 403):
            raise SourceUnavailable(f"{where}: HTTP {response.status_code}, check the block's token")
        if response.status_code == 404:
            raise NotFound(f"{where}: HTTP 404")
        if response.is_error:
            raise SourceUnavailable(f"{where}: HTTP {response.status_code}")
        try:
            page = response.json()
        except ValueError:
            raise DataError(f"{where}: not JSON") from None
        if not isinstance(page, dict) or not isinstance(page.get("documents"), list):
            raise DataError(f"{where}: expected an object with a 'documents' list")
        return page

    def _parse(self, page: dict[str, Any], page_number: int) -> DocumentBatch:
        ids: list[str] = []
        payloads: list[str | None] = []
        rows = []
        for index, document in enumerate(page["documents"]):
            where = f"collection {self.collection_id}: page {page_number}, document {index}"
            if not isinstance(document, dict) or "id" not in document or not isinstance(document.get("vector"), list):
                raise DataError(f"{where}: expected an object with 'id' and a 'vector' list")
            ids.append(str(document["id"]))
            payload = document.get("payload")
            payloads.append(json.dumps(payload) if isinstance(payload, dict) else None)
            rows.append(document["vector"])
        try:
            vectors = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1) if rows else np.empty((0, 0), np.float32)
        except (ValueError, TypeError):
            raise DataError(
                f"collection {self.collection_id}: page {page_number}: vectors are not lists of numbers of one length"
            ) from None
        return DocumentBatch(ids, vectors, payloads)


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(float(response.headers.get("Retry-After", 0)), 60.0)
    except ValueError:
        return 0.0


@contextmanager
def _loading_alone(table: str) -> Iterator[None]:
    """Hold the table's load slot (a global concurrency limit of 1, made on first use) for the block."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists

    name = f"cluster-collection-first-load-{prefect_name(table)}"
    with get_client(sync_client=True) as client:
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        except ObjectAlreadyExists:
            pass  # made by an earlier load, or by the other first load right now
    with concurrency(name, occupy=1, strict=True):
        yield


def collection_block_name(collection_id: str, namespace: str | None = None) -> str:
    """The block name under which runs of `namespace` (a name or id; the settings' when None) look
    for `collection_id`: save an HttpCollection or PostgresCollection block under it."""
    return owned_name(namespace_id_of(namespace), collection_id)


def open_collection(collection_id: str, namespace: str | None = None) -> LanceCollection:
    """The LanceCollection block of `namespace`'s (a name or id; the settings' when None) `collection_id`,
    saved now if there is none yet.

    A new block records where its table lives, resolved once here from the settings (an
    absolute directory, or `s3://...` with the default `ObjectStore`): every process that
    loads it, on any worker, reads that place, whatever its own home, settings or working
    directory. The default result store is fixed at the same moment from the same settings
    (a worker never picks its own).
    """
    namespace_id = namespace_id_of(namespace)
    name = owned_name(namespace_id, collection_id)

    def make() -> LanceCollection:
        root = storage_root(get_settings().storage)
        default_result_store()
        return LanceCollection(collection_id=collection_id, namespace_id=namespace_id, uri=f"{root}/collections",
                               table=name, object_store=default_object_store() if root.startswith("s3://") else None)

    return load_or_save(LanceCollection, name, make)


def load_collection(collection_id: str, namespace: str | None = None) -> DocumentSource:
    """The collection block `namespace` (a name or id; the settings' when None) saved for
    `collection_id`: a source the team configured (HTTP, PostgreSQL) first, then our own Lance table.

    Raises:
        NotFound: the namespace has no block of any kind under the collection's name (another
            namespace's collection of that id is never looked at: the answer is the same).
    """
    name = collection_block_name(collection_id, namespace)
    for kind in (HttpCollection, PostgresCollection, LanceCollection):
        try:
            return kind.load(name)
        except ValueError:
            continue
    raise NotFound(
        f"collection {collection_id!r} not found: add documents with `cluster-triggers collections add "
        f"{collection_id} --vectors FILE.npy`, or save an HttpCollection or PostgresCollection block named {name!r}"
    )
