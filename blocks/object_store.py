"""Object storage (S3 or any S3-compatible server) where collections and results live.

A block, so that a worker on any machine finds the endpoint and credentials with the
collection or result store that names it, instead of needing them in its environment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from prefect_cluster_triggers.blocks.saving import DOCS_URL, load_or_save

if TYPE_CHECKING:
    from pyarrow.fs import S3FileSystem

DEFAULT_OBJECT_STORE = "default"


class ObjectStore(Block):
    """An S3-compatible object store: endpoint, region and credentials for `s3://` URIs.

    Example:
        ```python
        from prefect_cluster_triggers.blocks.object_store import ObjectStore

        store = ObjectStore.load("BLOCK_NAME")  # the one made from the settings is saved as "default"
        ```
    """

    _block_type_name: ClassVar[str] = "Cluster Triggers Object Store"
    _documentation_url: ClassVar[str] = DOCS_URL
    _description: ClassVar[str] = "S3 or an S3-compatible server holding collections and clustering results."

    endpoint_url: str | None = Field(
        default=None, description="Endpoint of an S3-compatible server, e.g. `http://minio:9000`; AWS when empty."
    )
    region: str = Field(default="us-east-1", description="Region of the bucket.")
    access_key_id: str | None = Field(default=None, description="Access key id; the machine's AWS chain when empty.")
    secret_access_key: SecretStr | None = Field(default=None, description="Secret access key.")

    def lance_options(self) -> dict[str, str]:
        """Storage options of LanceDB (the secret is unwrapped here, where it is used)."""
        options = {"aws_region": self.region}
        if self.endpoint_url:
            options |= {"aws_endpoint": self.endpoint_url, "allow_http": str(self.endpoint_url.startswith("http:")).lower()}
        if self.access_key_id and self.secret_access_key:
            options |= {"aws_access_key_id": self.access_key_id,
                        "aws_secret_access_key": self.secret_access_key.get_secret_value()}
        return options

    def filesystem(self) -> S3FileSystem:
        """A pyarrow filesystem on the store (the secret is unwrapped here, where it is used)."""
        from pyarrow.fs import S3FileSystem

        endpoint = self.endpoint_url or None
        return S3FileSystem(
            access_key=self.access_key_id,
            secret_key=self.secret_access_key.get_secret_value() if self.secret_access_key else None,
            region=self.region,
            endpoint_override=endpoint.split("://", 1)[-1] if endpoint else None,
            scheme=endpoint.split("://", 1)[0] if endpoint else "https",
        )


def default_object_store() -> ObjectStore:
    """The store saved as `default`; saved now from the settings and the standard AWS variables when missing."""
    import os

    from prefect_cluster_triggers.core.settings import get_settings

    settings = get_settings()
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    return load_or_save(ObjectStore, DEFAULT_OBJECT_STORE, lambda: ObjectStore(
        endpoint_url=settings.storage.s3_endpoint_url, region=settings.storage.s3_region,
        access_key_id=os.environ.get("AWS_ACCESS_KEY_ID"), secret_access_key=SecretStr(secret) if secret else None,
    ))
