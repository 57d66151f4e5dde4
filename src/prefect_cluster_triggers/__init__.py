"""prefect-cluster-triggers: re-cluster embedded document collections on Prefect triggers.

One import name. Its subpackages live in the repository's top-level folders, where a
Prefect user looks for them:

- `prefect_cluster_triggers.flows` (`flows/`): the shared clustering flow and its
  Prefect-free engine;
- `prefect_cluster_triggers.blocks` (`blocks/`): the Prefect blocks (collections, cluster
  definitions, result stores), registered through the `prefect.collections` entry point;
- `prefect_cluster_triggers.deployments` (`deployments/`): the trigger contract, its
  translation into deployments, the trigger service, the CLI and the REST API.

This module imports nothing, so the Prefect-free core stays importable without Prefect.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("prefect-cluster-triggers")
except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
    __version__ = "0+unknown"
