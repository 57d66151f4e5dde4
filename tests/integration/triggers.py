"""Helpers of the end-to-end trigger tests: create, read and wait through the lifecycle API."""

from __future__ import annotations

import time
from typing import Callable

import pytest

from prefect_cluster_triggers.deployments import lifecycle
from prefect_cluster_triggers.deployments.contract import ClusterTrigger, validate_request


def create(body: dict, trigger_id: str) -> ClusterTrigger:
    return lifecycle.run_sync(lifecycle.create_trigger(validate_request(body), trigger_id=trigger_id))


def get(trigger_id: str) -> ClusterTrigger:
    return lifecycle.run_sync(lifecycle.get_trigger(trigger_id))


def wait_for(trigger_id: str, done: Callable[[ClusterTrigger], bool], timeout: float = 120) -> ClusterTrigger:
    deadline = time.monotonic() + timeout
    while True:
        trigger = get(trigger_id)
        if done(trigger):
            return trigger
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting on {trigger_id}: {trigger.model_dump_json()}")
        time.sleep(1)
