"""What changed between two runs (flows/engine/changes.py): known moves and events, properties, a reference."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prefect_cluster_triggers.flows.engine.changes import NOISE, ChangeReport, Merge, Split, compare_parts, compare_runs


def _run(groups: dict[int, list[str]], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A run's members (ids, clusters) from {cluster: ids}, rows shuffled as a members file may hold them."""
    ids = np.array([i for members in groups.values() for i in members], dtype=object)
    clusters = np.array([c for c, members in groups.items() for _ in members], dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(ids))
    return ids[order], clusters[order]


def _docs(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:03d}" for i in range(n)]


# Previous run: clusters 1..6 and noise.
C1, C2, C3, C4, C5, C6, NOISE_DOCS = (_docs(f"c{k}", n) for k, n in
                                      ((1, 100), (2, 100), (3, 100), (4, 50), (5, 50), (6, 40), (0, 10)))
NEW_IN_1, BORN_8 = _docs("new1", 5), _docs("new8", 30)
PREVIOUS = {1: C1, 2: C2, 3: C3, 4: C4, 5: C5, 6: C6, NOISE: NOISE_DOCS}
# Current run: 10 of cluster 1 moved to 2 (10%: a move, not a split); 2 of cluster 2 removed; cluster 3
# split 60/40 into 3 and the new 7; 4 and 5 merged into 4; 30 of cluster 6 removed, its other 10 in
# noise (6 vanished); 3 noise documents joined cluster 2; 30 new documents form cluster 8 (born).
CURRENT = {
    1: C1[10:] + NEW_IN_1,
    2: C2[2:] + C1[:10] + NOISE_DOCS[:3],
    3: C3[:60],
    7: C3[60:],
    4: C4 + C5,
    8: BORN_8,
    NOISE: NOISE_DOCS[3:] + C6[30:],
}


def _known() -> ChangeReport:
    return compare_runs(*_run(PREVIOUS, 1), *_run(CURRENT, 2))


def test_known_changes_are_named_exactly():
    report = _known()
    assert report.born == (8,)
    assert report.vanished == (6,)
    assert report.splits == (Split(3, (3, 7), (0.6, 0.4)),)
    assert report.merges == (Merge(4, (4, 5), (1.0, 1.0)),)
    assert report.continued == ((1, 1), (2, 2))
    assert report.relabelled == ()
    assert (report.added, report.removed) == (35, 32)
    assert (report.num_previous, report.num_current, report.num_common) == (450, 453, 418)
    assert report.duplicates_ignored == 0


def test_known_moves_are_exactly_those_documents():
    report = _known()
    expected = ({(d, 1, 2) for d in C1[:10]} | {(d, 3, 7) for d in C3[60:]} | {(d, 5, 4) for d in C5}
                | {(d, 6, NOISE) for d in C6[30:]} | {(d, NOISE, 2) for d in NOISE_DOCS[:3]})
    moves = list(report.moves())
    assert set(moves) == expected and len(moves) == report.moved == 113
    assert [m[0] for m in moves] == sorted(m[0] for m in moves)  # id order
    assert report.move_counts == ((5, 4, 50), (3, 7, 40), (1, 2, 10), (6, NOISE, 10), (NOISE, 2, 3))


def test_summary_and_bounded_json():
    report = _known()
    assert report.summary() == ("113 moved, 35 added, 32 removed, 1 born (8), 1 split (3 → 3, 7), "
                                "1 merged (4, 5 → 4), 1 vanished (6), 2 continued")
    payload = report.to_dict(moved_limit=5)
    assert json.loads(json.dumps(payload)) == payload
    assert len(payload["moved"]) == 5 and payload["moved_total"] == 113 and payload["moved_truncated"]
    assert payload["moved"][0] == {"id": "c0-000", "from": NOISE, "to": 2}  # noise documents are "c0-…"
    assert payload["split"] == [{"cluster": 3, "into": [3, 7], "shares": [0.6, 0.4]}]
    assert payload["documents"]["added"] == 35


def test_threshold_decides_what_is_substantial():
    # 10% of cluster 1 went to 2: a split of 1 at a threshold of 0.1, and 2 then merges 1 and 2.
    report = compare_runs(*_run(PREVIOUS, 1), *_run(CURRENT, 2), threshold=0.1)
    assert Split(1, (1, 2), (90 / 100, 10 / 100)) in report.splits
    assert report.merges[-1].cluster == 4 and any(m.cluster == 2 and m.sources == (1, 2) for m in report.merges)
    with pytest.raises(ValueError, match="threshold"):
        compare_runs(["a"], [0], ["a"], [0], threshold=0)


def test_everything_removed_or_everything_new():
    gone = compare_runs(["a", "b"], [0, 1], ["x"], [5])
    assert (gone.vanished, gone.born, gone.moved, gone.added, gone.removed) == ((0, 1), (5,), 0, 1, 2)
    empty = compare_runs([], np.array([], dtype=np.int64), [], np.array([], dtype=np.int64))
    assert empty.summary().startswith("0 moved, 0 added, 0 removed, 0 born")


def test_repeated_ids_use_their_first_occurrence():
    report = compare_runs(["a", "a", "b"], [0, 1, 1], ["a", "b", "b"], [2, 1, 0])
    assert list(report.moves()) == [("a", 0, 2)]
    assert report.duplicates_ignored == 2


def test_ids_of_any_array_kind_and_bad_labels():
    assert compare_runs(np.array([1, 2]), [0, 0], ["1", "2"], [0, 1]).moved == 1  # int ids meet text ids as text
    with pytest.raises(ValueError, match="labels"):
        compare_runs(["a"], [0, 1], ["a"], [0])
    with pytest.raises(ValueError, match=">= -1"):
        compare_runs(["a"], [-2], ["a"], [0])


def test_half_a_million_documents_in_seconds():
    n = 500_000
    rng = np.random.default_rng(0)
    ids = np.array([f"doc-{i:09d}" for i in rng.permutation(n)], dtype=object)
    before = rng.integers(-1, 200, n)
    after = np.where(rng.random(n) < 0.05, rng.integers(-1, 200, n), before)
    started = time.perf_counter()
    report = compare_runs(ids, before, ids[::-1], after[::-1])
    assert time.perf_counter() - started < 30  # about 2 s on a quiet 2-core machine
    assert report.moved == int((before != after).sum()) and len(report.continued) == 200


# Properties -----------------------------------------------------------------------------------------

labels = st.integers(min_value=-1, max_value=6)
runs = st.lists(st.tuples(st.integers(0, 40), labels), max_size=60, unique_by=lambda row: row[0])


def _arrays(rows: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([f"d{i}" for i, _ in rows], dtype=object), np.array([c for _, c in rows], dtype=np.int64)


@settings(max_examples=200, deadline=None)
@given(runs)
def test_identical_runs_change_nothing(rows):
    ids, clusters = _arrays(rows)
    report = compare_runs(ids, clusters, ids[::-1], clusters[::-1])
    assert (report.moved, report.added, report.removed) == (0, 0, 0)
    assert report.born == report.vanished == report.splits == report.merges == ()
    assert report.continued == tuple((int(c), int(c)) for c in np.unique(clusters[clusters != NOISE]))


@settings(max_examples=200, deadline=None)
@given(runs, st.permutations(range(7)))
def test_relabelled_clusters_only_continue_under_the_mapping(rows, permutation):
    ids, clusters = _arrays(rows)
    mapping = {c: 10 + p for c, p in zip(range(7), permutation)}
    relabelled = np.array([NOISE if c == NOISE else mapping[int(c)] for c in clusters], dtype=np.int64)
    report = compare_runs(ids, clusters, ids, relabelled)
    assert report.born == report.vanished == report.splits == report.merges == ()
    assert report.continued == tuple(sorted((int(c), mapping[int(c)]) for c in set(clusters.tolist()) - {NOISE}))
    assert set(report.moves()) == {(i, int(c), mapping[int(c)]) for i, c in zip(ids, clusters) if c != NOISE}


@settings(max_examples=300, deadline=None)
@given(runs, runs, st.sampled_from([0.2, 0.34, 0.5, 1.0]))
def test_agrees_with_a_per_document_reference(previous, current, threshold):
    report = compare_runs(*_arrays(previous), *_arrays(current), threshold=threshold)
    assert report == _reference(dict(previous), dict(current), threshold)
    assert set(report.moves()) == {(f"d{i}", c, current_of) for i, c in previous
                                   if (current_of := dict(current).get(i, c)) != c}
    assert sum(n for _, _, n in report.move_counts) == report.moved


def _reference(previous: dict[int, int], current: dict[int, int], threshold: float) -> ChangeReport:
    """The module's definitions, written plainly with dicts (fine for a few dozen documents)."""
    common = previous.keys() & current.keys()
    present, overlap = Counter(), Counter()
    for doc in common:
        if previous[doc] != NOISE:
            present[previous[doc]] += 1
            if current[doc] != NOISE:
                overlap[previous[doc], current[doc]] += 1
    links = sorted((p, c, n / present[p]) for (p, c), n in overlap.items() if n / present[p] >= threshold)
    outgoing, incoming = defaultdict(list), defaultdict(list)
    for p, c, share in links:
        outgoing[p].append((c, share))
        incoming[c].append((p, share))
    moves = Counter((previous[d], current[d]) for d in common if previous[d] != current[d])
    before, after = set(previous.values()) - {NOISE}, set(current.values()) - {NOISE}
    return ChangeReport(
        threshold=threshold, num_previous=len(previous), num_current=len(current), num_common=len(common),
        added=len(current.keys() - common), removed=len(previous.keys() - common), duplicates_ignored=0,
        moved=sum(moves.values()), moved_ids=np.array([]), moved_from=np.array([]), moved_to=np.array([]),
        move_counts=tuple(sorted(((a, b, n) for (a, b), n in moves.items()), key=lambda m: (-m[2], m[0], m[1]))),
        born=tuple(sorted(c for c in after if c not in incoming)),
        vanished=tuple(sorted(p for p in before if p not in outgoing)),
        splits=tuple(Split(p, tuple(c for c, _ in out), tuple(s for _, s in out))
                     for p, out in sorted(outgoing.items()) if len(out) >= 2),
        merges=tuple(Merge(c, tuple(p for p, _ in into), tuple(s for _, s in into))
                     for c, into in sorted(incoming.items()) if len(into) >= 2),
        continued=tuple((p, c) for p, c, _ in links if len(outgoing[p]) == 1 and len(incoming[c]) == 1),
    )


@settings(max_examples=200, deadline=None)
@given(runs, runs, st.integers(1, 5), st.integers(0, 2**32 - 1), st.integers(0, 6))
def test_parts_that_split_the_ids_give_the_report_of_the_whole(previous, current, count, seed, kept):
    """What the storage layer does with runs too big for memory: each id's rows in one part, any split."""
    bucket_of = np.random.default_rng(seed).integers(0, count, 41)  # per document number (0..40)

    def part(rows: list[tuple[int, int]], bucket: int) -> tuple[np.ndarray, np.ndarray]:
        return _arrays([(i, c) for i, c in rows if bucket_of[i] == bucket])

    whole = compare_runs(*_arrays(previous), *_arrays(current))
    folded = compare_parts([(*part(previous, b), *part(current, b)) for b in range(count)], moves_kept=kept)
    assert folded == whole
    assert list(folded.moves()) == list(whole.moves())[:kept]
