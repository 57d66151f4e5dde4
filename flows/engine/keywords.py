"""Cluster keywords from text payload fields, by class-based TF-IDF.

All documents of a cluster are treated as one document; a term scores
tf(t, cluster) * log(1 + A / f(t)), with tf the term's share of the cluster's words, A the
average number of words per cluster and f(t) the term's count over all clusters. Terms
frequent in one cluster and rare elsewhere rank first.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer

TOP_TERMS = 5


def payload_text(payload: dict[str, Any] | None) -> str:
    """The text of a payload: its top-level string fields, joined."""
    if not payload:
        return ""
    return " ".join(value for value in payload.values() if isinstance(value, str))


def cluster_keywords(texts: Iterable[str], labels: np.ndarray, n_clusters: int, *, top: int = TOP_TERMS) -> list[list[str]]:
    """Top terms per cluster 0..n_clusters-1; empty lists when there is no text."""
    texts = list(texts)
    members = [i for i, label in enumerate(labels) if label >= 0 and texts[i]] if texts else []
    if not members or n_clusters == 0:
        return [[] for _ in range(n_clusters)]
    vectorizer = CountVectorizer(stop_words="english", max_features=20_000)
    try:
        counts = vectorizer.fit_transform(texts[i] for i in members)
    except ValueError:  # only stop words
        return [[] for _ in range(n_clusters)]
    indicator = sparse.csr_matrix(
        (np.ones(len(members)), (labels[members], np.arange(len(members)))), shape=(n_clusters, len(members))
    )
    per_cluster = (indicator @ counts).toarray().astype(np.float64)
    words_per_cluster = per_cluster.sum(axis=1, keepdims=True)
    tf = per_cluster / np.maximum(words_per_cluster, 1)
    idf = np.log1p(words_per_cluster[words_per_cluster > 0].mean() / np.maximum(per_cluster.sum(axis=0), 1))
    scores = tf * idf
    terms = vectorizer.get_feature_names_out()
    return [
        [str(terms[j]) for j in np.argsort(-row)[:top] if row[j] > 0]
        for row in scores
    ]
