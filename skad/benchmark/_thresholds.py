"""Thresholds of a fitted detector: F1 of ``predict`` without refitting.

Every job records, from the one fitted model whose ROC AUC it reports:

``f1_auto``
    F1 on the test rows (outlier = positive class) when the threshold is
    the label-free ``contamination="auto"`` one: Tukey's upper fence of the
    training anomaly scores, third quartile + 1.5 interquartile ranges,
    computed by :func:`skad.base._auto_threshold`, the very function skad's
    detectors use to set ``offset_`` (imported here and nowhere else in the
    benchmark). The same rule applies to every detector, baselines and peers
    included, on their own training scores.
``f1_true``
    F1 when the threshold is set from the true contamination of the training
    rows, as a float ``contamination`` would set it: the ``100 * rate``-th
    percentile of the training scores, with ``rate = n_train_anomalies /
    n_train`` (0 in the one-class setting: the threshold is then the lowest
    training score, i.e. a test row is flagged when it is more anomalous than
    every training row).
``auto_flagged``
    Share of the test rows flagged by the auto threshold.

Flagging follows scikit-learn's ``predict``: a row is an outlier when
``score_samples - offset < 0`` is not false, ``offset`` being the threshold
on ``score_samples`` (higher = more normal).

The training scores are those the detector's own threshold is computed from
(:func:`training_scores`): ``negative_outlier_factor_`` for
``LocalOutlierFactor`` (its leave-one-out training scores), the peer's own
training scores for the PyOD / DeepOD adapters, otherwise ``score_samples``
of the training rows (what skad's base, ``IsolationForest`` and the KNN
baseline use).
"""

from __future__ import annotations

import numpy as np

from skad.base import _auto_threshold

__all__ = ["threshold_metrics", "training_scores"]


def training_scores(pipe, X_train) -> np.ndarray:
    """Scores (higher = more normal) of the training rows of a fitted pipeline,
    as the final detector's own threshold sees them."""
    final = pipe[-1] if hasattr(pipe, "steps") else pipe
    for attr in ("negative_outlier_factor_", "training_scores_"):
        kept = getattr(final, attr, None)
        if kept is not None and np.shape(kept) == (len(X_train),):
            return np.asarray(kept, dtype=np.float64)
    return np.asarray(pipe.score_samples(X_train), dtype=np.float64)


def _flagged(scores, offset) -> np.ndarray:
    # as in predict: is_inlier[~(decision >= 0)] = -1
    return ~(scores - offset >= 0)


def threshold_metrics(y_test, test_scores, train_scores, train_rate) -> dict:
    """``f1_auto``, ``f1_true`` and ``auto_flagged`` of one fitted detector.

    Parameters
    ----------
    y_test : array of shape (n_test,)
        1 = anomaly (the positive class).
    test_scores, train_scores : arrays
        ``score_samples`` (higher = more normal) of the test rows and the
        training scores of :func:`training_scores`.
    train_rate : float
        True share of anomalies among the training rows.

    Examples
    --------
    >>> import numpy as np
    >>> train = -np.r_[np.arange(10.0), 100.0]  # anomaly scores 0..9 and 100
    >>> test = -np.array([1.0, 16.0, 50.0, 200.0])  # the last three: anomalies
    >>> m = threshold_metrics(np.array([0, 1, 1, 1]), test, train, 1 / 11)
    >>> m["auto_flagged"], m["f1_auto"], m["f1_true"]  # fence 15, quantile 17.3
    (0.75, 1.0, 0.8)
    """
    from sklearn.metrics import f1_score

    y_test = np.asarray(y_test).astype(np.int64)
    test_scores = np.asarray(test_scores, dtype=np.float64)
    train_scores = np.asarray(train_scores, dtype=np.float64)
    if not np.isfinite(train_scores).all():
        raise ValueError("non-finite training scores")
    auto = _flagged(test_scores, -_auto_threshold(-train_scores))
    true = _flagged(test_scores, float(np.percentile(train_scores, 100.0 * train_rate)))
    return {
        "f1_auto": float(f1_score(y_test, auto.astype(np.int64), zero_division=0.0)),
        "f1_true": float(f1_score(y_test, true.astype(np.int64), zero_division=0.0)),
        "auto_flagged": float(auto.mean()),
    }
