"""Project settings, read from `CLUSTER_TRIGGERS_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Bounds and defaults a deployment may tune without a code change."""

    model_config = SettingsConfigDict(env_prefix="CLUSTER_TRIGGERS_")

    min_interval_seconds: int = Field(
        60, ge=1, description="Smallest `interval_seconds` an interval trigger may use."
    )
    max_consecutive_failures: int = Field(
        5, ge=1, description="Failed runs in a row after which a trigger becomes `failed` and stops."
    )
    work_pool: str = Field(
        "cluster-triggers", description="Work pool that runs trigger deployments (process, Docker, Kubernetes, ...)."
    )
    job_variables: dict[str, Any] = Field(
        default_factory=dict,
        description="Job variables of every trigger deployment, as JSON, e.g. `{\"image\": \"registry/team:1.2\"}` "
        "for a Docker or Kubernetes pool.",
    )
    pull_steps: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Prefect pull steps of every trigger deployment, as JSON (e.g. a `git_clone`). None by default: "
        "the flow is imported from the installed package, so any worker with the package runs any trigger.",
    )
    namespace: str = Field("default", description="Namespace of triggers made from the CLI and prefect.yaml.")
    api_port: int = Field(8080, ge=1, le=65535, description="Port of the REST API `make run` starts.")
    max_active_triggers: int = Field(50, ge=1, description="Most active triggers a namespace may have.")
    prefect_port: int = Field(4200, ge=1, le=65535, description="Port of the local Prefect server `make run` starts.")
    evaluator_sweep_seconds: float = Field(
        10.0, gt=0, description="How often the evaluator re-reads every event and conditional trigger from Prefect "
        "(wake-ups by automations are immediate; the sweep catches anything they missed)."
    )
    wake_url: str | None = Field(
        None, description="Address the Prefect server calls to wake the evaluator; "
        "`http://127.0.0.1:<api_port>` when empty."
    )
    hold_until_ready: bool = Field(
        False, description="Set by `make run` for its REST API: requests wait until the stack's setup has finished."
    )
    storage_uri: str | None = Field(
        None, description="Where new collections and results go: a directory, or `s3://bucket/prefix` on S3 or an "
        "S3-compatible server (endpoint below, credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY); "
        "the data directory when empty.",
    )
    s3_endpoint_url: str | None = Field(None, description="Endpoint of an S3-compatible server; AWS when empty.")
    s3_region: str = Field("us-east-1", description="Region of the storage bucket.")
    dask_address: str | None = Field(
        None, description="Scheduler of a Dask cluster (`tcp://host:8786`) on which runs assign their documents, one "
        "task per part of a collection; unset, a run does that work in its own process."
    )
    data_dir: Path = Field(
        Path.home() / ".cluster-triggers",
        description="Where local collections and clustering results live by default.",
    )


def storage_root(settings: Settings) -> str:
    """Where new collections and results go, absolute: every process that reads the saved location agrees."""
    return (settings.storage_uri or str(settings.data_dir.resolve())).rstrip("/")


def get_settings() -> Settings:
    """Read the settings now, so a changed environment applies without a restart."""
    return Settings()
