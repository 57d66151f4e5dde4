"""`cluster-triggers api`: the REST API and the evaluator in this process, for a deployment without `make run`."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer

from prefect_cluster_triggers.core.settings import get_settings
from prefect_cluster_triggers.deployments.cli.common import needs_prefect

app = typer.Typer()

KEEP_ALIVE_SECONDS = 75
"""How long an idle client connection stays open: longer than any client's or load balancer's own idle
timeout (httpx 5 s, AWS ALB 60 s), so the server never closes a connection a client is reusing that instant."""


@app.command(help="Serve the REST API (/v1/clusters/triggers) and the evaluator.")
@needs_prefect
def api(host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[Optional[int], typer.Option(help="Default: setting CLUSTER_TRIGGERS_API_PORT (8080).")] = None) -> int:
    """Run uvicorn on the API app until stopped; the evaluator's wake-up address follows the port."""
    import uvicorn

    port = port or get_settings().stack.api_port
    os.environ["CLUSTER_TRIGGERS_API_PORT"] = str(port)  # the evaluator's wake-up address uses it
    uvicorn.run("prefect_cluster_triggers.deployments.api.app:app", host=host, port=port, log_level="info",
                timeout_keep_alive=KEEP_ALIVE_SECONDS)
    return 0
