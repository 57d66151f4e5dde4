"""Document collections: where the vectors come from.

`LocalCollection` is the embedded default (files on local disk); `HttpCollection` reads a
collection page by page from an HTTP JSON API. Both give the flow one `Documents`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar, Protocol, Sequence

import httpx
import numpy as np
from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from prefect_cluster_triggers.blocks._document_files import DocumentFiles
from prefect_cluster_triggers.blocks._naming import load_or_save, prefect_name
from prefect_cluster_triggers.blocks.collection_events import notify_collection
from prefect_cluster_triggers.deployments.settings import get_settings
from prefect_cluster_triggers.flows.engine import Documents
from prefect_cluster_triggers.flows.errors import DataError, NotFound, SourceUnavailable
from prefect_cluster_triggers.flows.keywords import payload_text

DOCS_URL = "https://github.com/prefect-cluster-triggers/prefect-cluster-triggers#blocks"


class DocumentSource(Protocol):
    """What the clustering flow needs of a collection."""

    collection_id: str

    def read_documents(self) -> Documents: ...

    def read_vectors(self) -> np.ndarray:
        """The vectors alone, read-only: what condition checks measure."""
        ...


class LocalCollection(Block):
    """A collection of embedded documents (id, float32 vector, JSON payload) on local disk.

    Adds are atomic and emit a `cluster.documents_added` event, so event triggers see them
    at once; a read gives one float32 matrix, read from disk in one go.

    Example:
        ```python
        from prefect_cluster_triggers.blocks.collections import LocalCollection

        collection = LocalCollection.load("col-abc123-6c3d1e")
        collection.add_documents(vectors, ids=["a", "b"], payloads=[{"title": "..."}, None])
        ```
    """

    _block_type_name: ClassVar[str] = "Local Collection"
    _documentation_url: ClassVar[str] = DOCS_URL

    collection_id: str = Field(description="The collection's id, as triggers and execution configs name it.")
    path: str | None = Field(
        default=None,
        description="Directory holding the collection's files; `<data dir>/collections/<collection_id>` when empty.",
    )

    @property
    def directory(self) -> Path:
        return Path(self.path) if self.path else get_settings().data_dir / "collections" / self.collection_id

    def add_documents(
        self, vectors: np.ndarray, ids: Sequence[str] | None = None, payloads: Sequence[Any] | None = None
    ) -> int:
        """Append documents atomically, emit `cluster.documents_added`, return the new total.

        Raises:
            DataError: a dimension change, NaN or inf, or duplicate ids.
        """
        total = DocumentFiles(self.directory).append(vectors, ids, payloads)
        notify_collection(self.collection_id, "documents_added", count=len(vectors), total=total)
        return total

    def count(self) -> int:
        return DocumentFiles(self.directory).count()

    def read_documents(self) -> Documents:
        """The documents, vectors in memory: the run normalises them in place."""
        files = DocumentFiles(self.directory)
        ids, vectors = files.read(writable=True)
        texts = [payload_text(p) for p in files.read_payloads()]
        return Documents(ids, vectors, texts if any(texts) else ())

    def read_vectors(self) -> np.ndarray:
        """A memory map of the vectors: a check streams over it without loading the collection."""
        return DocumentFiles(self.directory).read()[1]


class HttpCollection(Block):
    """A collection served by an HTTP JSON API, read page by page.

    Each page is `GET <url>?limit=<page_size>[&cursor=<cursor>]` answering
    `{"documents": [{"id": str, "vector": [float, ...], "payload": {...}}], "next_cursor": str | null}`.
    429, 5xx and connection errors are retried with exponential backoff (honouring
    `Retry-After`); anything else that is not such a page is an error naming the page.

    Example:
        ```python
        from prefect_cluster_triggers.blocks.collections import HttpCollection

        documents = HttpCollection.load("products").read_documents()
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

    def read_documents(self) -> Documents:
        ids: list[str] = []
        texts: list[str] = []
        pages: list[np.ndarray] = []
        cursor: str | None = None
        with httpx.Client(timeout=self.timeout_seconds, headers=self._headers()) as client:
            for page_number in range(1, 1_000_000):
                page = self._fetch(client, page_number, cursor)
                vectors = self._parse(page, page_number, ids, texts)
                if len(vectors):
                    pages.append(vectors)
                cursor = page.get("next_cursor")
                if not cursor:
                    break
        dims = {p.shape[1] for p in pages}
        if len(dims) > 1:
            raise DataError(f"collection {self.collection_id}: vectors of different dimensions {sorted(dims)}")
        matrix = np.concatenate(pages) if pages else np.empty((0, 0), dtype=np.float32)
        return Documents(ids, matrix, texts if any(texts) else ())

    def read_vectors(self) -> np.ndarray:
        return self.read_documents().vectors

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

    def _parse(self, page: dict[str, Any], page_number: int, ids: list[str], texts: list[str]) -> np.ndarray:
        rows = []
        for index, document in enumerate(page["documents"]):
            where = f"collection {self.collection_id}: page {page_number}, document {index}"
            if not isinstance(document, dict) or "id" not in document or not isinstance(document.get("vector"), list):
                raise DataError(f"{where}: expected an object with 'id' and a 'vector' list")
            ids.append(str(document["id"]))
            texts.append(payload_text(document.get("payload") if isinstance(document.get("payload"), dict) else None))
            rows.append(document["vector"])
        try:
            return np.asarray(rows, dtype=np.float32).reshape(len(rows), -1) if rows else np.empty((0, 0), np.float32)
        except (ValueError, TypeError):
            raise DataError(
                f"collection {self.collection_id}: page {page_number}: vectors are not lists of numbers of one length"
            ) from None


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(float(response.headers.get("Retry-After", 0)), 60.0)
    except ValueError:
        return 0.0


def open_local_collection(collection_id: str) -> LocalCollection:
    """The LocalCollection block saved for `collection_id`, saved now if there is none yet.

    A new block records the absolute directory of its documents, resolved once here: every
    process that loads it (a worker's flow run, a condition check, another user's CLI) reads
    that directory, whatever its own home, data-directory setting or working directory.
    """
    directory = get_settings().data_dir.resolve() / "collections" / collection_id
    return load_or_save(LocalCollection, prefect_name(collection_id),
                        lambda: LocalCollection(collection_id=collection_id, path=str(directory)))


def load_collection(collection_id: str) -> DocumentSource:
    """The collection block saved for `collection_id` (HTTP first, then local).

    Raises:
        NotFound: no block of either kind is saved under the collection's name.
    """
    name = prefect_name(collection_id)
    for kind in (HttpCollection, LocalCollection):
        try:
            return kind.load(name)
        except ValueError:
            continue
    raise NotFound(
        f"collection {collection_id!r} not found: add documents with `cluster-triggers collections add "
        f"{collection_id} --vectors FILE.npy`, or save an HttpCollection block named {name!r}"
    )
