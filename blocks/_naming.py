"""Prefect names (blocks, artifact keys) for contract identifiers."""

from __future__ import annotations

import hashlib
import re


def prefect_name(identifier: str) -> str:
    """A Prefect block name or artifact key (lowercase letters, digits, dashes) that is unique per identifier.

    `col_abc123` becomes `col-abc123-<hash>`: the hash keeps `col_a` and `col-a` apart.
    """
    name = re.sub(r"[^a-z0-9-]+", "-", identifier.lower()).strip("-")
    if name != identifier:
        name = f"{name}-{hashlib.sha1(identifier.encode()).hexdigest()[:6]}"
    return name
