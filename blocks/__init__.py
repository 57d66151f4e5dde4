"""Prefect blocks of prefect-cluster-triggers; `prefect block register -m prefect_cluster_triggers.blocks` registers them all."""

from prefect_cluster_triggers.blocks.cluster_definition import ClusterDefinition
from prefect_cluster_triggers.blocks.collections import HttpCollection, LanceCollection, collection_block_name
from prefect_cluster_triggers.blocks.object_store import ObjectStore
from prefect_cluster_triggers.blocks.postgres_collection import PostgresCollection
from prefect_cluster_triggers.blocks.result_store import ResultStore

__all__ = [
    "ClusterDefinition", "HttpCollection", "LanceCollection", "ObjectStore", "PostgresCollection", "ResultStore",
    "collection_block_name",
]
