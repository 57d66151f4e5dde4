"""API keys and namespaces: who may call the REST API, and on which namespaces.

Keys are `sk_` + 43 random URL-safe characters, shown once at creation; only their SHA-256
hash is stored (`<data dir>/api_keys.json`, written atomically). A namespace is named
freely; its id is `ns_` + a hash of the name, so the CLI and the API agree on it without a
lookup, and `X-Namespace` may carry either.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from pydantic import BaseModel, Field

from prefect_cluster_triggers.core.models import UtcDateTime
from prefect_cluster_triggers.core.names import namespace_id_of
from prefect_cluster_triggers.core.settings import get_settings

_PREFIX = "sk_"


class ApiKey(BaseModel):
    """A stored key: its hash and what it may do, never the key itself."""

    key_id: str
    key_hash: str
    namespace_ids: list[str] = Field(description="Namespaces the key may use.")
    created_by: str = Field(description="Recorded as `created_by` on the triggers the key creates.")
    created_at: UtcDateTime


class KeyStore:
    """The key file; safe for concurrent writers (flock) and readers (atomic replace)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or get_settings().storage.data_dir / "api_keys.json"

    def create(self, namespaces: list[str], created_by: str) -> tuple[str, ApiKey]:
        """A new key for `namespaces` (names or ids): the key, to show once, and its record."""
        key = _PREFIX + secrets.token_urlsafe(32)
        record = ApiKey(
            key_id=f"key_{secrets.token_hex(6)}",
            key_hash=_hash(key),
            namespace_ids=[namespace_id_of(n) for n in namespaces],
            created_by=created_by,
            created_at=datetime.now(timezone.utc),
        )
        with self._locked():
            keys = self._read()
            keys.append(record)
            self._write(keys)
        return key, record

    def authenticate(self, key: str) -> ApiKey | None:
        if not key.startswith(_PREFIX):
            return None
        wanted = _hash(key)
        return next((k for k in self._read() if secrets.compare_digest(k.key_hash, wanted)), None)

    def _read(self) -> list[ApiKey]:
        try:
            return [ApiKey.model_validate(k) for k in json.loads(self.path.read_text())]
        except FileNotFoundError:
            return []

    def _write(self, keys: list[ApiKey]) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps([k.model_dump(mode="json") for k in keys], indent=2))
        os.chmod(temporary, 0o600)
        os.replace(temporary, self.path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
