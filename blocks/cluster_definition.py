"""Cluster definitions: what a trigger's `cluster_id` points to."""

from __future__ import annotations

from typing import Any, ClassVar

from prefect.blocks.core import Block
from pydantic import Field

from prefect_cluster_triggers.blocks.saving import DOCS_URL
from prefect_cluster_triggers.core.contract import ExecutionConfig
from prefect_cluster_triggers.core.errors import NotFound
from prefect_cluster_triggers.core.names import namespace_id_of, owned_name


class ClusterDefinition(Block):
    """A named clustering setup (collections + algorithm config) that triggers can share.

    Triggers created with `cluster_id` read the definition when they run, so editing it here
    (or in the Prefect UI) changes the next run of every trigger that uses it.

    Example:
        ```python
        from prefect_cluster_triggers.blocks.cluster_definition import ClusterDefinition, definition_name

        # BLOCK_NAME: each namespace's definitions are its own blocks, `ns-<16 hex>--<id>`:
        # definition_name("cluster_xyz789", namespace="team-a")
        definition = ClusterDefinition.load("BLOCK_NAME")
        print(definition.execution_config().config.algorithm)
        ```
    """

    _block_type_name: ClassVar[str] = "Cluster Definition"
    _documentation_url: ClassVar[str] = DOCS_URL

    cluster_id: str = Field(description="The id triggers use in `cluster_id`.")
    collection_ids: list[str] = Field(description="Collections clustered together.")
    config: dict[str, Any] = Field(description="`execution_config.config`: algorithm, parameters, preprocessing.")
    description: str | None = Field(default=None, description="What this clustering is for.")

    def execution_config(self) -> ExecutionConfig:
        """The definition as a validated execution config.

        Raises:
            ContractError: the stored definition was edited into something invalid.
        """
        from prefect_cluster_triggers.core.contract import validate_execution_config

        return validate_execution_config({"collection_ids": self.collection_ids, "config": self.config})


def definition_name(cluster_id: str, namespace: str | None = None) -> str:
    """The block name of `namespace`'s (a name or id; the settings' when None) definition `cluster_id`."""
    return owned_name(namespace_id_of(namespace), cluster_id)


def load_cluster_definition(cluster_id: str, namespace: str | None = None) -> ClusterDefinition:
    """`namespace`'s definition `cluster_id`.

    Raises:
        NotFound: the namespace has no such definition (another namespace's of that id is never looked at).
    """
    try:
        return ClusterDefinition.load(definition_name(cluster_id, namespace))
    except ValueError:
        raise NotFound(
            f"cluster definition {cluster_id!r} not found: create it with `cluster-triggers clusters create FILE`"
        ) from None
