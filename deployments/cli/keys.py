"""`cluster-triggers keys`: REST API keys, made here because only their hash is kept."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated, Optional

import typer

from prefect_cluster_triggers.deployments.api.keys import KeyStore
from prefect_cluster_triggers.deployments.cli.common import print_json

app = typer.Typer(name="keys", help="REST API keys.", no_args_is_help=True)


@app.command("create", help="Make an API key (printed once; only its hash is kept).")
def create(
    namespace: Annotated[list[str], typer.Option(metavar="NS", help="Namespace name or id the key may use "
                                                 "(repeat for several).")],
    created_by: Annotated[Optional[str], typer.Option(help="Recorded as created_by (default: your user name).")] = None,
) -> int:
    """Give a person or service access to the REST API for some namespaces; no server needed."""
    key, record = KeyStore().create(namespace, created_by or getpass.getuser())
    print_json({"api_key": key, "key_id": record.key_id, "namespace_ids": record.namespace_ids})
    print("store the api_key now: it is not kept and cannot be shown again", file=sys.stderr)
    return 0
