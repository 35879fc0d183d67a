"""Contamination-robust training: which training rows to leave out.

Unlabelled training data usually contains the anomalies it should reveal,
and every skad loss pulls the training rows in (DeepSVDD's centre, AnoMem's
memory, the RD student, the GAN's generator), so anomalies present in the
training rows are learned as normal. Before training, the base class ranks
the unlabelled training rows by how suspect they are and leaves the most
suspect share ``train_contamination`` out of training (the refinement step
of Yoon et al., "Self-supervise, Refine, Repeat", TMLR 2022, with a cheap
external ranker instead of the model itself). Labelled rows are never left
out. The detector still scores every row, the left-out ones included.

The ranker averages the ranks of two label-free detectors with opposite
biases: an isolation forest (global, axis-aligned outliers) and the distance
to the 5th nearest training row (local density, the strongest simple
detector on embeddings). Both cost seconds on tens of thousands of rows;
the nearest-neighbour search uses a reference sample of at most 10,000 rows,
so the cost grows linearly with the number of rows.
"""

from __future__ import annotations

import numpy as np

__all__ = ["suspect_scores", "training_rows"]

#: Neighbours of the distance ranker.
N_NEIGHBORS = 5
#: Largest reference sample of the nearest-neighbour ranker.
MAX_REFERENCE = 10_000


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks in [0, 1] (ties share the mean rank)."""
    from scipy.stats import rankdata

    return (rankdata(values) - 1.0) / max(1, values.shape[0] - 1)


def _knn_distance(X: np.ndarray, seed: int) -> np.ndarray:
    """Distance of each row to its ``N_NEIGHBORS``-th nearest other row of a
    reference sample (all rows up to ``MAX_REFERENCE``)."""
    from sklearn.neighbors import NearestNeighbors

    n = X.shape[0]
    if n <= MAX_REFERENCE:
        ref_idx = np.arange(n)
    else:
        ref_idx = np.sort(
            np.random.default_rng(seed).choice(n, MAX_REFERENCE, replace=False)
        )
    k = min(N_NEIGHBORS, len(ref_idx) - 1)
    if k < 1:
        return np.zeros(n)
    nn = NearestNeighbors(n_neighbors=k + 1).fit(X[ref_idx])
    dist, idx = nn.kneighbors(X)
    # a row of the reference finds itself first: skip that match
    in_ref = np.zeros(n, dtype=bool)
    in_ref[ref_idx] = True
    own = ref_idx[idx[:, 0]] == np.arange(n)
    return np.where(in_ref & own, dist[:, k], dist[:, k - 1])


def suspect_scores(X: np.ndarray, seed: int) -> np.ndarray:
    """How suspect each row is (higher = more likely an anomaly), in [0, 1].

    The mean of the ranks given by an isolation forest and by the distance to
    the ``N_NEIGHBORS``-th nearest row. ``X`` is 2-D (images are flattened).
    """
    from sklearn.ensemble import IsolationForest

    X = np.asarray(X, dtype=np.float64).reshape(X.shape[0], -1)
    forest = IsolationForest(random_state=seed).fit(X)
    isolation = -forest.score_samples(X)
    return 0.5 * (_ranks(isolation) + _ranks(_knn_distance(X, seed)))


def training_rows(X, labels, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the training rows to train on.

    The ``fraction`` of the unlabelled rows (``labels`` 0, or every row when
    ``labels`` is None) with the highest :func:`suspect_scores` is left out;
    labelled rows are always kept. At least two rows stay.
    """
    n = X.shape[0]
    keep = np.ones(n, dtype=bool)
    unlabelled = np.ones(n, dtype=bool) if labels is None else labels == 0
    n_out = int(np.floor(fraction * unlabelled.sum()))
    n_out = min(n_out, max(0, unlabelled.sum() - 2))
    if n_out <= 0:
        return keep
    scores = suspect_scores(X, seed)
    candidates = np.flatnonzero(unlabelled)
    order = np.argsort(-scores[candidates], kind="stable")
    keep[candidates[order[:n_out]]] = False
    return keep
