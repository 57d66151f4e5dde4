"""Names: namespace ids, and the Prefect names (blocks, artifact keys) of contract identifiers and namespaced data."""

from __future__ import annotations

import hashlib
import re

from prefect_cluster_triggers.core.settings import get_settings


def prefect_name(identifier: str) -> str:
    """A Prefect block name or artifact key (lowercase letters, digits, dashes) that is unique per identifier.

    `col_abc123` becomes `col-abc123-<hash>`: the hash keeps `col_a` and `col-a` apart.
    """
    name = re.sub(r"[^a-z0-9-]+", "-", identifier.lower()).strip("-")
    if name != identifier:
        name = f"{name}-{hashlib.sha1(identifier.encode()).hexdigest()[:6]}"
    return name


def owned_name(namespace_id: str, identifier: str) -> str:
    """The block name of a namespace's collection or cluster definition: `ns-<16 hex>--<prefect_name>`.

    Namespace ids have one fixed shape (`access.namespace_id_of`), so the prefix alone says whose
    a block is: two namespaces' `col_a` are two blocks (and two Lance tables), and a namespace can
    only ever name its own.
    """
    return f"{namespace_id.replace('_', '-')}--{prefect_name(identifier)}"


def is_owned(name: str) -> bool:
    """Whether a block name carries a namespace (blocks saved before namespaces do not)."""
    return re.fullmatch(r"ns-[0-9a-f]{16}--.+", name) is not None


NAMESPACE_ID_PATTERN = r"^ns_[0-9a-f]{16}$"


def namespace_id_of(name_or_id: str | None) -> str:
    """The id of a namespace given by name or id (`ns_` + 16 hex digits); the settings' namespace when None.

    Anything that is not exactly an id is a name and is hashed, so an id always has one shape:
    the names of the blocks a namespace owns are built from it (`core.names.owned_name`).
    """
    if name_or_id is None:
        name_or_id = get_settings().rules.namespace
    if re.fullmatch(NAMESPACE_ID_PATTERN, name_or_id):
        return name_or_id
    return "ns_" + hashlib.sha256(name_or_id.encode()).hexdigest()[:16]
