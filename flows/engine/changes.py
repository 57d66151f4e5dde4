"""What changed between two clustering runs of one trigger: documents that moved, and clusters born,
vanished, split, merged or continued.

A team that re-clusters every night asks "what changed since yesterday?". Cluster ids are
already stable across runs (`cluster_ids.stable_cluster_ids` gives a new cluster the id of
the previous cluster whose centroid it matches), so this module takes each run's ids as
given and compares memberships.

Implementation notes (n documents, k clusters):

* Documents are joined by id with sorts and `np.searchsorted`, never a Python dict per
  document: O(n log n) time. An id that occurs more than once in a run (two collections
  sharing an id) is compared by its first occurrence; the others are counted in
  `duplicates_ignored`.
* Memory is bounded by the caller's parts: `compare_parts` folds any number of parts that
  split the ids between them (the storage layer partitions both runs' members by a hash of
  the id), keeping only counts per cluster pair and the first moves by id. `compare_runs`
  is the one-part case, for runs already in memory.
* The overlap of clusters is a sparse matrix (the counts of the (previous, current) label
  pairs of the documents in both runs), so thousands of clusters cost no k x k array.
* A **link** P → C is substantial when C received at least `threshold` (default 0.2) of the
  members of previous cluster P that are still present in the current run (in a cluster or
  in noise). Shares are measured on P's side only, so a large cluster absorbing a small one
  is a merge, and a small piece breaking off a large cluster is not a split until it holds a
  fifth of it.
* From the links: P **vanished** when it has none (its members were removed, went to noise,
  or scattered); P **split** when it has two or more; C was **born** when no link reaches it;
  C **merged** when links from two or more reach it; P **continued** as C when P's only link
  is to C and C's only link is from P (usually C == P, as ids are stable).
* Noise (-1) is not a cluster: it is never born, vanished, split or merged, and a document
  going into or out of noise is a move from or to `NOISE`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np

NOISE = -1
DEFAULT_THRESHOLD = 0.2
DEFAULT_MOVED_LIMIT = 100  # moves listed by `to_dict`; the total is always given
_EVENTS_IN_SUMMARY = 3  # clusters named per event kind in `summary()`


@dataclass(frozen=True)
class Split:
    """A previous cluster whose members went substantially to two or more current clusters."""

    cluster: int
    into: tuple[int, ...]
    shares: tuple[float, ...]  # of `cluster`'s members still present, per cluster of `into`


@dataclass(frozen=True)
class Merge:
    """A current cluster that took substantial members from two or more previous clusters."""

    cluster: int
    sources: tuple[int, ...]
    shares: tuple[float, ...]  # of each source's members still present, that went to `cluster`


@dataclass(frozen=True)
class ChangeReport:
    """Differences between a previous and a current run of one trigger (see the module's notes).

    `moved` counts every document that changed cluster; the arrays hold the first of them by id
    (all of them unless the comparison kept fewer): `moves()` iterates them, `to_dict()` lists
    the first few with the total.
    """

    threshold: float
    num_previous: int
    num_current: int
    num_common: int
    added: int
    removed: int
    duplicates_ignored: int
    moved: int  # documents present in both runs that changed cluster (noise included)
    moved_ids: np.ndarray = field(repr=False, compare=False)
    moved_from: np.ndarray = field(repr=False, compare=False)
    moved_to: np.ndarray = field(repr=False, compare=False)
    move_counts: tuple[tuple[int, int, int], ...]  # (from, to, documents), most documents first
    born: tuple[int, ...]
    vanished: tuple[int, ...]
    splits: tuple[Split, ...]
    merges: tuple[Merge, ...]
    continued: tuple[tuple[int, int], ...]  # (previous id, current id)

    @property
    def relabelled(self) -> tuple[tuple[int, int], ...]:
        """Continuations whose id changed: with stable ids, rare enough to be worth a look."""
        return tuple(pair for pair in self.continued if pair[0] != pair[1])

    def moves(self, limit: int | None = None) -> Iterator[tuple[str, int, int]]:
        """(id, from cluster, to cluster) per moved document kept, in id order; `NOISE` for noise."""
        count = len(self.moved_ids) if limit is None else min(limit, len(self.moved_ids))
        for i in range(count):
            yield _plain(self.moved_ids[i]), int(self.moved_from[i]), int(self.moved_to[i])

    def summary(self) -> str:
        """One line, e.g. `12 moved, 40 added, 3 removed, 1 born (9), 1 split (3 → 3, 7), 0 merged, 0 vanished`."""
        parts = [f"{self.moved} moved", f"{self.added} added", f"{self.removed} removed",
                 _listed("born", [str(c) for c in self.born]),
                 _listed("split", [f"{s.cluster} → {', '.join(map(str, s.into))}" for s in self.splits]),
                 _listed("merged", [f"{', '.join(map(str, m.sources))} → {m.cluster}" for m in self.merges]),
                 _listed("vanished", [str(c) for c in self.vanished]),
                 f"{len(self.continued)} continued"]
        if self.relabelled:
            parts.append(_listed("relabelled", [f"{a} → {b}" for a, b in self.relabelled]))
        return ", ".join(parts)

    def to_dict(self, *, moved_limit: int = DEFAULT_MOVED_LIMIT, pairs_limit: int = 1000) -> dict[str, Any]:
        """JSON-friendly and bounded: at most `moved_limit` moves and `pairs_limit` (from, to) counts
        are listed, with their totals; cluster ids are ints, noise is -1."""
        return {
            "summary": self.summary(),
            "threshold": self.threshold,
            "documents": {"previous": self.num_previous, "current": self.num_current, "common": self.num_common,
                          "added": self.added, "removed": self.removed, "moved": self.moved,
                          "duplicates_ignored": self.duplicates_ignored},
            "moved": [{"id": i, "from": a, "to": b} for i, a, b in self.moves(moved_limit)],
            "moved_total": self.moved,
            "moved_truncated": self.moved > moved_limit,
            "move_counts": [{"from": a, "to": b, "documents": n} for a, b, n in self.move_counts[:pairs_limit]],
            "move_counts_truncated": len(self.move_counts) > pairs_limit,
            "born": list(self.born),
            "vanished": list(self.vanished),
            "split": [{"cluster": s.cluster, "into": list(s.into), "shares": [round(x, 4) for x in s.shares]}
                      for s in self.splits],
            "merged": [{"cluster": m.cluster, "sources": list(m.sources), "shares": [round(x, 4) for x in m.shares]}
                       for m in self.merges],
            "continued": [{"previous": a, "current": b} for a, b in self.continued],
        }


def compare_runs(previous_ids: Any, previous_clusters: Any, current_ids: Any, current_clusters: Any, *,
                 threshold: float = DEFAULT_THRESHOLD, moves_kept: int | None = None) -> ChangeReport:
    """The changes from the previous run to the current one; each run is its members' ids and cluster ids
    (-1 noise), as a run's members file holds them. `threshold` in (0, 1] defines a substantial link;
    `moves_kept` bounds the moves the report lists (None: all)."""
    return compare_parts([(previous_ids, previous_clusters, current_ids, current_clusters)], threshold=threshold,
                         moves_kept=moves_kept)


def compare_parts(parts: Iterable[tuple[Any, Any, Any, Any]], *, threshold: float = DEFAULT_THRESHOLD,
                  moves_kept: int | None = None) -> ChangeReport:
    """`compare_runs` over parts (previous ids, previous clusters, current ids, current clusters) that
    split the ids between them: an id's rows of both runs are all in one part. Memory is one part's
    plus the counts per cluster pair and `moves_kept` moves."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    totals = Counter()  # num_previous, num_current, num_common, duplicates_ignored, moved
    pair_codes: list[np.ndarray] = []
    pair_counts: list[np.ndarray] = []
    previous_set, current_set = np.empty(0, np.int64), np.empty(0, np.int64)
    kept = (np.empty(0, dtype=object), np.empty(0, np.int64), np.empty(0, np.int64))
    for previous_ids, previous_clusters, current_ids, current_clusters in parts:
        p_ids, c_ids = _keys(previous_ids, current_ids)
        p_clusters = _labels(previous_clusters, len(p_ids), "previous")
        c_clusters = _labels(current_clusters, len(c_ids), "current")
        p_first, p_dups = _first_occurrences(p_ids)
        c_first, c_dups = _first_occurrences(c_ids)
        p_at, c_at = _join(p_ids[p_first], c_ids[c_first])  # positions in p_first / c_first, in id order
        p_rows = p_first[p_at]
        before, after = p_clusters[p_rows], c_clusters[c_first[c_at]]
        changed = np.flatnonzero(before != after)
        totals.update(num_previous=len(p_first), num_current=len(c_first), num_common=len(p_rows),
                      duplicates_ignored=p_dups + c_dups, moved=len(changed))
        codes, counts = np.unique(_pair_code(before, after), return_counts=True)
        pair_codes.append(codes)
        pair_counts.append(counts)
        previous_set = np.union1d(previous_set, p_clusters[p_clusters != NOISE])
        current_set = np.union1d(current_set, c_clusters[c_clusters != NOISE])
        kept = _first_moves(kept, (p_ids[p_rows[changed]], before[changed], after[changed]), moves_kept)
    codes, counts = _summed(pair_codes, pair_counts)
    sources, targets = codes // _SPAN - 1, codes % _SPAN - 1
    for array in kept:
        array.setflags(write=False)
    born, vanished, splits, merges, continued = _events(*_links(sources, targets, counts, threshold),
                                                        previous_set, current_set)
    return ChangeReport(
        threshold=threshold, num_previous=totals["num_previous"], num_current=totals["num_current"],
        num_common=totals["num_common"], added=totals["num_current"] - totals["num_common"],
        removed=totals["num_previous"] - totals["num_common"], duplicates_ignored=totals["duplicates_ignored"],
        moved=totals["moved"], moved_ids=kept[0], moved_from=kept[1], moved_to=kept[2],
        move_counts=_move_counts(sources, targets, counts), born=born, vanished=vanished, splits=splits,
        merges=merges, continued=continued)


_SPAN = 1 << 32  # cluster ids are int32 in a members file: (previous + 1, current + 1) packed in one int64


def _pair_code(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return (before + 1) * _SPAN + (after + 1)


def _summed(codes: list[np.ndarray], counts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The parts' (pair, count) lists as one: the counts of a pair present in several parts added up."""
    if not codes:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    unique, inverse = np.unique(np.concatenate(codes), return_inverse=True)
    return unique, np.bincount(inverse, weights=np.concatenate(counts), minlength=len(unique)).astype(np.int64)


def _first_moves(kept: tuple[np.ndarray, ...], found: tuple[np.ndarray, ...],
                 limit: int | None) -> tuple[np.ndarray, ...]:
    """The moves kept so far and a part's, as the first `limit` by id (all when None)."""
    if not len(kept[0]):
        merged = found
    else:
        ids = np.concatenate([kept[0], found[0]])
        if ids.dtype == object or kept[0].dtype.kind != found[0].dtype.kind:
            ids = ids.astype(str)
        order = np.argsort(ids, kind="stable")
        merged = (ids[order], np.concatenate([kept[1], found[1]])[order], np.concatenate([kept[2], found[2]])[order])
    return merged if limit is None else tuple(array[:limit] for array in merged)


def _keys(previous_ids: Any, current_ids: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both runs' ids as arrays numpy sorts natively: object arrays (pyarrow's strings) become
    fixed-width strings, which sort several times faster; mixed kinds are compared as text."""
    p, c = np.asarray(previous_ids), np.asarray(current_ids)
    if p.ndim != 1 or c.ndim != 1:
        raise ValueError("ids must be one-dimensional")
    if p.dtype == object or c.dtype == object or p.dtype.kind != c.dtype.kind:
        p, c = p.astype(str), c.astype(str)
    return p, c


def _labels(clusters: Any, n: int, run: str) -> np.ndarray:
    labels = np.asarray(clusters)
    if labels.shape != (n,):
        raise ValueError(f"{run} run: {labels.shape[0] if labels.ndim else 0} cluster labels for {n} ids")
    if n and labels.dtype.kind not in "iu":
        raise ValueError(f"{run} run: cluster labels must be integers, got {labels.dtype}")
    labels = labels.astype(np.int64, copy=False)
    if n and labels.min() < NOISE:
        raise ValueError(f"{run} run: cluster labels must be >= -1 (noise), got {labels.min()}")
    return labels


def _first_occurrences(ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Row numbers of each distinct id's first occurrence, in id order, and how many rows repeat an id."""
    order = np.argsort(ids, kind="stable")
    ordered = ids[order]
    repeat = np.zeros(len(ids), dtype=bool)
    repeat[1:] = ordered[1:] == ordered[:-1]
    return order[~repeat], int(repeat.sum())


def _join(previous: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the ids common to two sorted arrays of distinct ids (sorted needles keep
    `searchsorted` cache-friendly)."""
    at = np.searchsorted(previous, current)
    inside = at < len(previous)
    found = np.zeros(len(current), dtype=bool)
    found[inside] = previous[at[inside]] == current[inside]
    return at[found], np.flatnonzero(found)


def _links(sources: np.ndarray, targets: np.ndarray, counts: np.ndarray,
           threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Substantial links from the counts per (previous, current) cluster pair of the common documents:
    (previous cluster, current cluster, share of the previous cluster's present members), one entry per
    link, ordered by previous then current id."""
    clustered = sources != NOISE
    sources, targets, counts = sources[clustered], targets[clustered], counts[clustered]
    if not len(sources):
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0)
    _, group = np.unique(sources, return_inverse=True)
    share = counts / np.bincount(group, weights=counts)[group]
    substantial = (targets != NOISE) & (share >= threshold)
    return sources[substantial], targets[substantial], share[substantial]


def _events(sources: np.ndarray, targets: np.ndarray, shares: np.ndarray, previous_set: np.ndarray,
            current_set: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...], tuple[Split, ...], tuple[Merge, ...],
                                              tuple[tuple[int, int], ...]]:
    """Born, vanished, splits, merges and continuations from the substantial links (at most one link
    per cluster pair, so this is O(k) Python work, not O(n))."""
    out_degree = dict(zip(*(x.tolist() for x in np.unique(sources, return_counts=True))))
    in_degree = dict(zip(*(x.tolist() for x in np.unique(targets, return_counts=True))))
    born = tuple(int(c) for c in current_set if int(c) not in in_degree)
    vanished = tuple(int(p) for p in previous_set if int(p) not in out_degree)
    splits = tuple(Split(p, tuple(targets[sources == p].tolist()), tuple(shares[sources == p].tolist()))
                   for p in sorted(p for p, n in out_degree.items() if n >= 2))
    merges = tuple(Merge(c, tuple(sources[targets == c].tolist()), tuple(shares[targets == c].tolist()))
                   for c in sorted(c for c, n in in_degree.items() if n >= 2))
    continued = tuple((p, c) for p, c in zip(sources.tolist(), targets.tolist())
                      if out_degree[p] == 1 and in_degree[c] == 1)
    return born, vanished, splits, merges, continued


def _move_counts(sources: np.ndarray, targets: np.ndarray, counts: np.ndarray) -> tuple[tuple[int, int, int], ...]:
    """(from, to, documents) of the pairs that are moves, most documents first."""
    moved = sources != targets
    sources, targets, counts = sources[moved], targets[moved], counts[moved]
    order = np.lexsort((targets, sources, -counts))
    return tuple(zip(sources[order].tolist(), targets[order].tolist(), counts[order].tolist()))


def _listed(kind: str, names: list[str]) -> str:
    if not names:
        return f"0 {kind}"
    shown = "; ".join(names[:_EVENTS_IN_SUMMARY]) + ("; …" if len(names) > _EVENTS_IN_SUMMARY else "")
    return f"{len(names)} {kind} ({shown})"


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value JSON takes."""
    return value.item() if isinstance(value, np.generic) else value
