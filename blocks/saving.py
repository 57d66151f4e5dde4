"""What every block of this package shares: its docs URL, and saving a block exactly once."""

from __future__ import annotations

from typing import Callable, TypeVar

from prefect.blocks.core import Block

DOCS_URL = "https://github.com/prefect-cluster-triggers/prefect-cluster-triggers#blocks"
B = TypeVar("B", bound=Block)


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
