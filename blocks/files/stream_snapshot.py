"""A collection that can only be read as a stream (HTTP pages, a PostgreSQL cursor), as a run reads it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from prefect_cluster_triggers.flows.engine.preprocess import reservoir


@dataclass(frozen=True)
class StreamSnapshot:
    """The whole stream is one part, and the sample is drawn in one pass over it.

    Such a source cannot be pinned to a version: the sample and the assignment read it twice,
    so a document added between the two reads is assigned to a cluster but was not a
    candidate for the fit sample.
    """

    source: Any  # a DocumentSource

    @property
    def dimension(self) -> int | None:
        """Read off the first batch (one page or cursor fetch)."""
        stream = self.source.batches(ids=False)
        try:
            first = next(stream, None)
        finally:
            stream.close()  # ends the HTTP session or the database cursor now
        return None if first is None else int(first.vectors.shape[1])

    def parts(self) -> list[Any]:
        return [self.source]

    def pieces(self) -> list[StreamPiece]:
        return [StreamPiece(self.source)]

    def sample(self, size: int, *, random_state: int = 42) -> tuple[list[str], np.ndarray, list[str | None], int]:
        """A uniform sample of at most `size` documents (ids, vectors, payloads), and how many the stream had."""
        stream = ((b.ids, b.vectors, b.payloads) for b in self.source.batches(with_payloads=True))
        return reservoir(stream, size, random_state=random_state)


@dataclass(frozen=True)
class StreamPiece:
    """The whole stream as one piece. Nothing tells whether it changed since it was last read,
    so it has no state and a condition check reads it every time."""

    source: Any  # a DocumentSource
    state: None = None

    def vectors(self) -> Iterator[np.ndarray]:
        for batch in self.source.batches(ids=False):
            yield batch.vectors
