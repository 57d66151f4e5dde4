"""How condition checks split a Lance table version into pieces, and tell what changed in a piece.

The condition metrics add up over any split of a collection (`flows.conditions.Pass`), so a
piece's pass can be kept and only what changed in it read again. Lance makes that exact:
it never changes a data file, a delete (or an update, which deletes the old row and writes
the new one elsewhere) writes a new deletion file, and a fragment deleted from entirely
leaves the manifest. A fragment is named by its id, its data files and its deletion file.

A piece is one large fragment, or the small fragments of a range of fragment ids (ids only
grow, so new fragments land in the newest range). Grouping small fragments bounds what is
kept: a pass with member sums is k x d floats (123 kB at 20 x 768) whatever the rows, and
a collection filled by many small adds has thousands of fragments. Nothing here imports
Prefect.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

import numpy as np

ALONE_ROWS = 65_536
"""A fragment of at least this many rows is a piece of its own (a kept pass then costs at
most 2 bytes per row of the piece at 20 x 768)."""
SMALL_FRAGMENTS_PER_PIECE = 64
"""Smaller fragments are grouped by fragment id: ids [64 n, 64 n + 64) make one piece."""


@dataclass(frozen=True)
class FragmentState:
    """One fragment as a table version holds it."""

    fragment_id: int
    files: tuple[str, ...]
    deletion: tuple[int, int] | None  # the deletion file's id and read version; None: nothing deleted

    @classmethod
    def of(cls, fragment: Any) -> FragmentState:
        deleted = fragment.metadata.deletion_file
        return cls(fragment.fragment_id, tuple(f.path for f in fragment.metadata.files),
                   None if deleted is None else (deleted.id, deleted.read_version))


@dataclass(frozen=True)
class PieceState:
    """Which rows a piece holds at one table version.

    `place` (table and fragment id range) stays the same as versions go by; `key` names the
    rows exactly, in any process at any time; `version` is a table version at which the
    piece was in this state, from which rows deleted since can still be read.
    """

    place: str
    version: int
    fragments: tuple[FragmentState, ...]

    @cached_property
    def key(self) -> str:  # computed once: a check looks a piece up and stores it by its key
        return hashlib.blake2b(f"{self.place}\n{self.fragments_json()}".encode(), digest_size=16).hexdigest()

    def fragments_json(self) -> str:
        """The fragments as stored with a run's passes (`from_stored` reads them back)."""
        return json.dumps([[f.fragment_id, list(f.files), f.deletion] for f in self.fragments])

    @classmethod
    def from_stored(cls, place: str, version: int, fragments_json: str) -> PieceState:
        return cls(place, version, tuple(FragmentState(i, tuple(files), None if d is None else (d[0], d[1]))
                                         for i, files, d in json.loads(fragments_json)))


def pieces_of(uri: str, table: str, version: int, fragments: list[Any]) -> list[tuple[PieceState, list[Any]]]:
    """The table version's fragments (with rows) grouped into pieces, in fragment order."""
    grouped: dict[str, list[Any]] = {}
    for fragment in fragments:
        alone = fragment.metadata.physical_rows >= ALONE_ROWS
        where = ["fragment", fragment.fragment_id] if alone else ["small", fragment.fragment_id // SMALL_FRAGMENTS_PER_PIECE]
        grouped.setdefault(json.dumps([uri, table, *where]), []).append(fragment)
    return [(PieceState(place, version, tuple(FragmentState.of(f) for f in members)), members)
            for place, members in grouped.items()]


def removed_since(earlier: PieceState, now: PieceState, live_now: dict[int, Any],
                  open_earlier: Callable[[], Any]) -> list[tuple[Any, np.ndarray]] | None:
    """The rows the piece lost since `earlier`: (fragment at the earlier version, row offsets to `take`) pairs.

    Args:
        live_now: the piece's fragments now (lance fragments), by id.
        open_earlier: opens the table at `earlier.version` (called only when a fragment lost rows).

    Returns None when the rows cannot be told: the earlier version was cleaned up since, or
    the two states are not an earlier and a later one of the same piece (a fragment's data
    files differ, a row came back).
    """
    current = {f.fragment_id: f for f in now.fragments}
    changed = [f for f in earlier.fragments if current.get(f.fragment_id) != f]
    if not changed:
        return []
    try:
        then = open_earlier()
    except OSError:  # the version is gone (cleanup_old_versions): "...manifest was not found"
        return None
    removed = []
    for before in changed:
        old = then.get_fragment(before.fragment_id)
        if old is None or FragmentState.of(old) != before:
            return None
        addresses = _row_addresses(old)
        if before.fragment_id not in live_now:  # every row deleted: the fragment left the manifest
            removed.append((old, np.arange(len(addresses))))
            continue
        if current[before.fragment_id].files != before.files:
            return None
        still = _row_addresses(live_now[before.fragment_id])
        gone = np.setdiff1d(addresses, still, assume_unique=True)
        if len(addresses) - len(gone) != len(still):
            return None
        removed.append((old, np.searchsorted(addresses, gone)))  # `take` counts the rows live at that version
    return removed


def _row_addresses(fragment: Any) -> np.ndarray:
    """The addresses of a fragment's live rows, ascending (no column is read: a few ms for 131,072 rows)."""
    return np.concatenate([np.zeros(0, np.uint64)] + [
        batch.column("_rowaddr").to_numpy() for batch in fragment.to_batches(columns=[], with_row_address=True,
                                                                             batch_size=1 << 20)])
