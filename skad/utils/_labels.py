"""Conversion of ADBench-style {0, 1} truth into semi-supervised labels."""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params


@validate_params(
    {
        "y_anomaly": ["array-like"],
        "labeled_fraction": [Interval(Real, 0, 1, closed="both")],
        "random_state": ["random_state"],
        "label_normals": [Interval(Real, 0, 1, closed="both")],
        "min_labeled": [Interval(Integral, 0, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def semi_supervised_labels(
    y_anomaly,
    labeled_fraction=0.1,
    random_state=None,
    *,
    label_normals=0.0,
    min_labeled=1,
):
    """Turn {0, 1} anomaly truth into {+1, 0, -1} training labels.

    A random ``labeled_fraction`` of the anomalies (``y_anomaly == 1``), at
    least ``min_labeled`` of them when there are any, is labelled ``-1``; a
    ``label_normals`` fraction of the normal rows is labelled ``+1``; every
    other row is ``0`` (unlabelled). This is the convention of Deep SAD and of
    every semi-supervised skad detector's ``fit(X, labels=...)``.

    Parameters
    ----------
    y_anomaly : array-like of shape (n_samples,)
        Truth with 1 = anomaly and 0 = normal (ADBench's convention).
    labeled_fraction : float, default=0.1
        Share of the anomalies that get a label.
    random_state : int, RandomState instance or None, default=None
        Which anomalies are labelled.
    label_normals : float, default=0.0
        Share of the normal rows labelled ``+1``.
    min_labeled : int, default=1
        Minimum number of labelled anomalies (when there are that many).

    Returns
    -------
    labels : ndarray of shape (n_samples,), dtype int64
        +1 labelled normal, 0 unlabelled, -1 labelled anomaly.

    Examples
    --------
    >>> from skad.utils import semi_supervised_labels
    >>> semi_supervised_labels([0, 0, 1, 1, 0, 1], 0.5, random_state=0)
    array([ 0,  0,  0, -1,  0, -1])
    """
    y = np.asarray(y_anomaly)
    if y.ndim != 1:
        raise ValueError(f"y_anomaly must be 1-D, got shape {y.shape}.")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(
            "y_anomaly must contain only 0 (normal) and 1 (anomaly); found "
            f"{np.unique(y)[:5].tolist()}."
        )
    rng = check_random_state(random_state)
    labels = np.zeros(y.shape[0], dtype=np.int64)
    anomalies = np.flatnonzero(y == 1)
    if anomalies.size:
        k = max(
            int(math.ceil(labeled_fraction * anomalies.size)),
            min(min_labeled, anomalies.size),
        )
        k = min(k, anomalies.size)
        labels[rng.choice(anomalies, size=k, replace=False)] = -1
    normals = np.flatnonzero(y == 0)
    if label_normals > 0 and normals.size:
        k = int(math.ceil(label_normals * normals.size))
        labels[rng.choice(normals, size=k, replace=False)] = 1
    return labels
