"""HttpCollection against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr

from prefect_cluster_triggers.blocks.collections import HttpCollection
from prefect_cluster_triggers.core.errors import DataError, SourceUnavailable
from tests.integration._documents import read_documents
from tests.integration.http_server import serve_pages


def _page(start: int, count: int, next_cursor: str | None) -> dict:
    documents = [{"id": f"d{i}", "vector": [float(i), 1.0, 0.5], "payload": {"title": f"doc {i}"}} for i in range(start, start + count)]
    return {"documents": documents, "next_cursor": next_cursor}


def _collection(url: str, **fields) -> HttpCollection:
    return HttpCollection(collection_id="col_http", url=url, backoff_seconds=0.01, **fields)


def test_reads_every_page_with_bearer_auth() -> None:
    requests: list = []
    pages = [_page(0, 3, "1"), _page(3, 3, "2"), _page(6, 1, None)]
    with serve_pages(pages, token="s3cret", requests=requests) as url:
        documents = read_documents(_collection(url, token=SecretStr("s3cret"), page_size=3))
    assert list(documents.ids) == [f"d{i}" for i in range(7)]
    assert documents.vectors.shape == (7, 3) and documents.vectors.dtype.name == "float32"
    assert documents.texts[6] == "doc 6"
    assert [r["query"].get("cursor") for r in requests] == [None, ["1"], ["2"]]
    assert all(r["query"]["limit"] == ["3"] for r in requests)


def test_custom_auth_header_carries_the_bare_token() -> None:
    requests: list = []
    with serve_pages([_page(0, 1, None)], requests=requests) as url:
        read_documents(_collection(url, token=SecretStr("k1"), auth_header="X-Api-Key"))
    assert requests[0]["headers"]["X-Api-Key"] == "k1"


def test_retries_429_and_5xx_with_backoff_then_succeeds() -> None:
    requests: list = []
    failures = [(429, {"Retry-After": "0"}), (503, {}), (500, {})]
    with serve_pages([_page(0, 2, None)], failures=failures, requests=requests) as url:
        started = time.monotonic()
        documents = read_documents(_collection(url))
    assert len(documents.ids) == 2 and len(requests) == 4
    assert time.monotonic() - started >= 0.01 + 0.02 + 0.04


def test_gives_up_after_max_retries_naming_the_page() -> None:
    with serve_pages([_page(0, 1, None)]) as url:
        pass  # the server is gone now: every attempt is refused
    with pytest.raises(SourceUnavailable, match=r"page 1 of http://127.0.0.1:\d+/documents failed after 3 attempts \(ConnectError"):
        read_documents(_collection(url, max_retries=2, timeout_seconds=2))
    with serve_pages([_page(0, 1, "1"), _page(1, 1, None)], failures=[(503, {})] * 5) as url:
        with pytest.raises(SourceUnavailable, match="page 1 of .* failed after 3 attempts \\(HTTP 503\\)"):
            read_documents(_collection(url, max_retries=2))


def test_wrong_token_is_not_retried() -> None:
    requests: list = []
    with serve_pages([_page(0, 1, None)], token="right", requests=requests) as url:
        with pytest.raises(SourceUnavailable, match="HTTP 401, check the block's token"):
            read_documents(_collection(url, token=SecretStr("wrong")))
    assert len(requests) == 1


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ("<html>oops</html>", "page 1 of .*: not JSON"),
        ({"items": []}, "expected an object with a 'documents' list"),
        ({"documents": [{"id": "a"}]}, "page 1, document 0: expected an object with 'id' and a 'vector' list"),
        ({"documents": [{"id": "a", "vector": [1, 2]}, {"id": "b", "vector": [1]}]}, "not lists of numbers of one length"),
        ({"documents": [{"id": "a", "vector": ["x"]}]}, "not lists of numbers of one length"),
    ],
)
def test_malformed_page_is_a_clear_error(page, message: str) -> None:
    with serve_pages([page]) as url:
        with pytest.raises(DataError, match=message):
            read_documents(_collection(url))


def test_secret_token_is_not_shown() -> None:
    block = _collection("http://127.0.0.1:1/x", token=SecretStr("hidden-value"))
    assert "hidden-value" not in repr(block) and "hidden-value" not in block.model_dump_json()
