"""`cluster-triggers clusters`: cluster definitions, the collections and clustering config a trigger can name."""

from __future__ import annotations

import secrets
from typing import Annotated

import typer

from prefect_cluster_triggers.core.contract import validate_cluster_definition
from prefect_cluster_triggers.deployments.cli.common import Namespace, needs_prefect, print_json
from prefect_cluster_triggers.deployments.cli.documents import load_document

app = typer.Typer(name="clusters", help="Cluster definitions.", no_args_is_help=True)


@app.command("create", help="Store a cluster definition (collection_ids, config).")
@needs_prefect
def create(file: Annotated[str, typer.Argument(metavar="FILE", help="JSON or YAML; - reads stdin.")],
           namespace: Namespace = None) -> int:
    """Save a definition once so that triggers name it by `cluster_id` instead of repeating its config."""
    from prefect_cluster_triggers.blocks.cluster_definition import ClusterDefinition, definition_name

    spec = validate_cluster_definition(load_document(file))
    cluster_id = spec.cluster_id or f"cluster_{secrets.token_hex(6)}"
    definition = ClusterDefinition(
        cluster_id=cluster_id,
        collection_ids=list(spec.collection_ids),
        config=spec.config.model_dump(mode="json"),
        description=spec.description,
    )
    definition.save(definition_name(cluster_id, namespace), overwrite=True)
    print_json({"cluster_id": cluster_id, "collection_ids": definition.collection_ids, "config": definition.config,
                "description": definition.description})
    return 0
