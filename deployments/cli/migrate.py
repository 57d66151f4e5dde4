"""`cluster-triggers migrate`: collections, cluster definitions and results saved before namespaces, given to one."""

from __future__ import annotations

from typing import Any

import typer

from prefect_cluster_triggers.core.names import namespace_id_of
from prefect_cluster_triggers.deployments.cli.common import Namespace, needs_prefect, print_json

app = typer.Typer()


@app.command(help="Give the collections, cluster definitions and results saved before namespaces to one namespace.")
@needs_prefect
def migrate(namespace: Namespace = None) -> int:
    """Adopt every block and results folder without a namespace into `namespace`, so that its triggers,
    runs and `results` find them."""
    from prefect.client.orchestration import get_client

    from prefect_cluster_triggers.blocks.result_store import default_result_store
    from prefect_cluster_triggers.deployments.service.migrate import adopt, adopt_results, unowned, unowned_results
    from prefect_cluster_triggers.deployments.service.queries import run_sync

    async def found() -> list[Any]:
        async with get_client() as client:
            return await unowned(client)

    namespace_id = namespace_id_of(namespace)
    files = default_result_store().files
    print_json({"namespace_id": namespace_id,
                "blocks": [adopt(kind, name, namespace_id) for kind, name in run_sync(found())],
                "results": [adopt_results(files, owner, results_id, namespace_id)
                            for owner, results_id in unowned_results(files)]})
    return 0
