"""Where clustering results go: Parquet and JSON, immutable per run, `LATEST` moving only after a complete write."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from prefect.blocks.core import Block
from prefect.client.orchestration import PrefectClient
from pydantic import Field

from prefect_cluster_triggers.blocks.files.result_files import ResultFiles, StoredRun
from prefect_cluster_triggers.blocks.object_store import ObjectStore, default_object_store
from prefect_cluster_triggers.blocks.saving import DOCS_URL, load_or_save
from prefect_cluster_triggers.core.names import owned_name
from prefect_cluster_triggers.core.settings import get_settings, storage_root

DEFAULT_STORE = "default"


class ResultStore(Block):
    """Clustering results in a directory or on object storage, one folder per run and a `LATEST` pointer per owner.

    Example:
        ```python
        from prefect_cluster_triggers.blocks.result_store import ResultStore

        store = ResultStore.load("BLOCK_NAME")  # the one runs write to is saved as "default"
        run = store.latest("cluster_xyz789")
        print(run.record["num_clusters"])
        ```
    """

    _block_type_name: ClassVar[str] = "Cluster Result Store"
    _documentation_url: ClassVar[str] = DOCS_URL
    _description: ClassVar[str] = "Clustering results (Parquet members and centroids, a JSON record) per run."

    uri: str = Field(description="Root of the results: an absolute directory or `s3://bucket/prefix`.")
    object_store: ObjectStore | None = Field(default=None, description="Endpoint and credentials of an `s3://` uri.")

    @property
    def files(self) -> ResultFiles:
        return ResultFiles(self.uri, self.object_store.filesystem() if self.object_store else None)

    def latest(self, owner: str) -> StoredRun:
        return self.files.latest(owner)


def results_owner(namespace_id: str, results_id: str) -> str:
    """Where an ad-hoc run's results are kept (a trigger's are kept under its id, unique on the server):
    within its namespace, so another namespace's `results` of the same id finds nothing."""
    return owned_name(namespace_id, results_id)


def default_result_store() -> ResultStore:
    """The store saved as `default`; saved now at the settings' storage root when there is none.

    Saving it fixes one place for the whole Prefect server: a run on any worker writes where
    `get` and `history` read, instead of each process picking a directory of its own.
    """
    root = storage_root(get_settings().storage)
    store = default_object_store() if root.startswith("s3://") else None
    return load_or_save(ResultStore, DEFAULT_STORE, lambda: ResultStore(uri=f"{root}/results", object_store=store))


async def default_result_store_with(client: PrefectClient) -> ResultStore:
    """`default_result_store` read with a client the caller holds: a long-lived process (the evaluator)
    does not pay a new client's TLS setup at each read. Saved (in a thread) when there is none yet."""
    try:
        return await ResultStore.aload(DEFAULT_STORE, client=client)
    except ValueError:  # not saved yet
        return await asyncio.to_thread(default_result_store)
