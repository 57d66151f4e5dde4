"""What makes two requests the same request for an Idempotency-Key, and which keys are refused."""

from __future__ import annotations

import pytest

from prefect_cluster_triggers.core.errors import ContractError
from prefect_cluster_triggers.deployments.service.idempotency import MAX_KEY_LENGTH, check_key, fingerprint


def test_the_same_request_is_the_same_whatever_its_key_order() -> None:
    body = {"trigger_type": "cron", "schedule_config": {"cron_expression": "0 2 * * *", "timezone": "UTC"}}
    reordered = {"schedule_config": {"timezone": "UTC", "cron_expression": "0 2 * * *"}, "trigger_type": "cron"}
    assert fingerprint("POST", "/v1/clusters/triggers", body) == fingerprint("POST", "/v1/clusters/triggers", reordered)
    changed = {**body, "description": "another"}
    assert fingerprint("POST", "/v1/clusters/triggers", body) != fingerprint("POST", "/v1/clusters/triggers", changed)
    assert fingerprint("POST", "/t/a/execute", None) != fingerprint("POST", "/t/b/execute", None)


@pytest.mark.parametrize("key", ["", "x" * (MAX_KEY_LENGTH + 1), "line\nbreak"])
def test_a_key_no_client_would_mean_is_refused_naming_the_header(key: str) -> None:
    with pytest.raises(ContractError) as refused:
        check_key(key)
    assert str(refused.value.problems[0]).startswith("Idempotency-Key: 1 to 255 printable characters")


def test_an_ordinary_key_passes() -> None:
    check_key("order-7f3a9c2e-retry")
