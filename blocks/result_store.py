"""Where clustering results go: Parquet and JSON, immutable per run, `LATEST` moving only after a complete write."""

from __future__ import annotations

from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field

from prefect_cluster_triggers.blocks._naming import DOCS_URL, load_or_save
from prefect_cluster_triggers.blocks._result_files import ResultFiles, StoredRun
from prefect_cluster_triggers.blocks.object_store import ObjectStore, default_object_store
from prefect_cluster_triggers.deployments.settings import get_settings, storage_root

DEFAULT_STORE = "default"


class ResultStore(Block):
    """Clustering results in a directory or on object storage, one folder per run and a `LATEST` pointer per owner.

    Example:
        ```python
        from prefect_cluster_triggers.blocks.result_store import ResultStore

        run = ResultStore.load("default").latest("cluster_xyz789")
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


def default_result_store() -> ResultStore:
    """The store saved as `default`; saved now at the settings' storage root when there is none.

    Saving it fixes one place for the whole Prefect server: a run on any worker writes where
    `get` and `history` read, instead of each process picking a directory of its own.
    """
    root = storage_root(get_settings())
    store = default_object_store() if root.startswith("s3://") else None
    return load_or_save(ResultStore, DEFAULT_STORE, lambda: ResultStore(uri=f"{root}/results", object_store=store))
