"""Prefect names (blocks, artifact keys) for contract identifiers, and saving a block once."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Callable, TypeVar

if TYPE_CHECKING:
    from prefect.blocks.core import Block

B = TypeVar("B", bound="Block")

DOCS_URL = "https://github.com/prefect-cluster-triggers/prefect-cluster-triggers#blocks"


def load_or_save(kind: type[B], name: str, make: Callable[[], B]) -> B:
    """The block of `kind` saved as `name`, saved now from `make()` if there is none.

    Whoever saves first wins, and every later caller, in any process, gets that block: two
    processes creating it at once agree on one.
    """
    try:
        return kind.load(name)
    except ValueError:
        pass
    block = make()
    try:
        block.save(name)
    except ValueError:  # saved meanwhile by another process
        return kind.load(name)
    return block


def prefect_name(identifier: str) -> str:
    """A Prefect block name or artifact key (lowercase letters, digits, dashes) that is unique per identifier.

    `col_abc123` becomes `col-abc123-<hash>`: the hash keeps `col_a` and `col-a` apart.
    """
    name = re.sub(r"[^a-z0-9-]+", "-", identifier.lower()).strip("-")
    if name != identifier:
        name = f"{name}-{hashlib.sha1(identifier.encode()).hexdigest()[:6]}"
    return name
