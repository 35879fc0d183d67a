"""Sign-aware metrics and scorers for anomaly detectors.

scikit-learn's ``score_samples`` is higher for more *normal* rows, while
ROC AUC and average precision are computed with the anomaly as the positive
class. These helpers flip the sign in one place, so the scorers below can be
passed straight to ``GridSearchCV(scoring=...)`` or ``cross_val_score``.

Accepted truth encodings for ``y``:

* ``{0, 1}``: ADBench's convention, 1 = anomaly;
* ``{+1, -1}``: scikit-learn's ``predict`` convention, -1 = outlier;
* ``{+1, 0, -1}``: the semi-supervised label convention; rows labelled 0 are
  unlabelled and ignored.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

__all__ = [
    "anomaly_truth",
    "roc_auc",
    "average_precision",
    "precision_at_n",
    "roc_auc_scorer",
    "average_precision_scorer",
    "precision_at_n_scorer",
    "SCORERS",
]


def anomaly_truth(y):
    """Decode ``y`` into (is_anomaly, keep) boolean arrays.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Truth in {0, 1} (1 = anomaly), {+1, -1} (-1 = outlier) or
        {+1, 0, -1} (0 = unlabelled, ignored).

    Returns
    -------
    is_anomaly : ndarray of bool
    keep : ndarray of bool
        Rows that carry a label.

    Examples
    --------
    >>> from skad.metrics import anomaly_truth
    >>> anomaly_truth([0, 1, 1])[0]
    array([False,  True,  True])
    >>> anomaly_truth([1, -1, 0])
    (array([False,  True, False]), array([ True,  True, False]))
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D, got shape {y.shape}.")
    values = set(np.unique(y).tolist())
    if values <= {0, 1}:
        return y == 1, np.ones(y.shape[0], dtype=bool)
    if values <= {-1, 0, 1}:
        return y == -1, y != 0
    raise ValueError(
        "y must be in {0, 1} (1 = anomaly), {+1, -1} (-1 = outlier) or "
        f"{{+1, 0, -1}} (0 = unlabelled); found {sorted(values)[:5]}."
    )


def _prepare(y_true, scores):
    is_anomaly, keep = anomaly_truth(y_true)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != is_anomaly.shape:
        raise ValueError(
            f"y has {is_anomaly.shape[0]} rows but scores has {scores.shape}."
        )
    is_anomaly, anomaly_score = is_anomaly[keep], -scores[keep]
    if is_anomaly.all() or not is_anomaly.any():
        raise ValueError(
            "ROC AUC and average precision need both normal and anomalous rows in y."
        )
    return is_anomaly.astype(int), anomaly_score


def roc_auc(y_true, score_samples):
    """ROC AUC with anomaly as the positive class.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        See :func:`anomaly_truth`.
    score_samples : array-like of shape (n_samples,)
        Output of ``score_samples`` (higher = more normal).

    Returns
    -------
    float

    Examples
    --------
    >>> from skad.metrics import roc_auc
    >>> roc_auc([0, 0, 1], [0.9, 0.8, -3.0])
    1.0
    """
    return float(roc_auc_score(*_prepare(y_true, score_samples)))


def average_precision(y_true, score_samples):
    """Average precision with anomaly as the positive class.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        See :func:`anomaly_truth`.
    score_samples : array-like of shape (n_samples,)
        Output of ``score_samples`` (higher = more normal).

    Returns
    -------
    float

    Examples
    --------
    >>> from skad.metrics import average_precision
    >>> average_precision([0, 0, 1], [0.9, 0.8, -3.0])
    1.0
    """
    return float(average_precision_score(*_prepare(y_true, score_samples)))


def precision_at_n(y_true, score_samples, n=None):
    """Share of anomalies among the ``n`` most anomalous rows.

    ``n`` defaults to the number of anomalies in ``y_true`` (R-precision).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        See :func:`anomaly_truth`.
    score_samples : array-like of shape (n_samples,)
        Output of ``score_samples`` (higher = more normal).
    n : int, default=None
        Number of top-ranked rows; None means the number of anomalies.

    Returns
    -------
    float

    Examples
    --------
    >>> from skad.metrics import precision_at_n
    >>> precision_at_n([0, 1, 0, 1], [0.0, -1.0, 0.5, 0.2])
    0.5
    """
    is_anomaly, anomaly_score = _prepare(y_true, score_samples)
    n = int(is_anomaly.sum()) if n is None else int(n)
    top = np.argsort(-anomaly_score, kind="stable")[:n]
    return float(is_anomaly[top].mean())


class _AnomalyScorer:
    """Scorer ``(estimator, X, y) -> float`` built on ``score_samples``."""

    def __init__(self, metric, name):
        self._metric = metric
        self._name = name

    def __call__(self, estimator, X, y):
        if y is None:
            raise ValueError(f"The {self._name} scorer needs the truth y.")
        return self._metric(y, estimator.score_samples(X))

    def __repr__(self):
        return f"skad.metrics.{self._name}_scorer"


#: ``GridSearchCV(scoring=roc_auc_scorer)``: ROC AUC from ``score_samples``.
roc_auc_scorer = _AnomalyScorer(roc_auc, "roc_auc")
#: Average precision from ``score_samples``, anomaly as positive class.
average_precision_scorer = _AnomalyScorer(average_precision, "average_precision")
#: Precision at n (n = number of anomalies in the fold).
precision_at_n_scorer = _AnomalyScorer(precision_at_n, "precision_at_n")

#: Scorers by name, usable as ``scoring=SCORERS`` for multi-metric search.
SCORERS = {
    "roc_auc": roc_auc_scorer,
    "average_precision": average_precision_scorer,
    "precision_at_n": precision_at_n_scorer,
}
