"""Cluster definitions: what a trigger's `cluster_id` points to."""

from __future__ import annotations

from typing import Any, ClassVar

from prefect.blocks.core import Block
from pydantic import Field

from prefect_cluster_triggers.blocks._naming import DOCS_URL, prefect_name
from prefect_cluster_triggers.deployments.contract import ExecutionConfig
from prefect_cluster_triggers.flows.errors import NotFound


class ClusterDefinition(Block):
    """A named clustering setup (collections + algorithm config) that triggers can share.

    Triggers created with `cluster_id` read the definition when they run, so editing it here
    (or in the Prefect UI) changes the next run of every trigger that uses it.

    Example:
        ```python
        from prefect_cluster_triggers.blocks.cluster_definition import ClusterDefinition

        definition = ClusterDefinition.load("cluster-xyz789-1f2e3d")
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
        from prefect_cluster_triggers.deployments.contract import validate_execution_config

        return validate_execution_config({"collection_ids": self.collection_ids, "config": self.config})


def load_cluster_definition(cluster_id: str) -> ClusterDefinition:
    """Raises NotFound when no definition is saved for `cluster_id`."""
    try:
        return ClusterDefinition.load(prefect_name(cluster_id))
    except ValueError:
        raise NotFound(
            f"cluster definition {cluster_id!r} not found: create it with `cluster-triggers clusters create FILE`"
        ) from None
