"""Prefect blocks of prefect-cluster-triggers; `prefect block register -m blocks` registers them all."""

from blocks.cluster_definition import ClusterDefinition
from blocks.collections import HttpCollection, LocalCollection
from blocks.result_store import LocalResultStore

__all__ = ["ClusterDefinition", "HttpCollection", "LocalCollection", "LocalResultStore"]
