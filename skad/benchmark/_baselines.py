"""Baselines that scikit-learn does not ship as outlier detectors."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context
from sklearn.neighbors import NearestNeighbors
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["KNN"]


class KNN(OutlierMixin, BaseEstimator):
    """k-nearest-neighbour distance detector (Ramaswamy et al., 2000).

    The anomaly score of a row is its distance to the ``n_neighbors``-th
    nearest training row; ``score_samples`` returns its negative (higher =
    more normal), like :class:`sklearn.ensemble.IsolationForest`. On
    embedding data (image or text features) it is the baseline to beat.

    Parameters
    ----------
    n_neighbors : int, default=5
        Which neighbour's distance is the score (k).
    contamination : float, default=0.1
        Share of training rows flagged by ``predict``; ``offset_`` is that
        quantile of ``score_samples`` of the training rows.
    n_jobs : int, default=None
        Passed to :class:`sklearn.neighbors.NearestNeighbors`.

    Attributes
    ----------
    nn_ : NearestNeighbors
        The fitted index.
    offset_ : float
        Threshold of ``decision_function``.
    n_features_in_ : int

    See Also
    --------
    sklearn.neighbors.LocalOutlierFactor : Density-ratio version of the idea.

    Examples
    --------
    >>> import numpy as np
    >>> from skad.benchmark import KNN
    >>> X = np.r_[np.random.RandomState(0).normal(size=(50, 2)), [[8.0, 8.0]]]
    >>> KNN().fit(X[:50]).predict(X[-2:])
    array([ 1, -1])
    """

    _parameter_constraints: dict = {
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "contamination": [Interval(Real, 0, 0.5, closed="right")],
        "n_jobs": [Integral, None],
    }

    def __init__(self, *, n_neighbors=5, contamination=0.1, n_jobs=None):
        self.n_neighbors = n_neighbors
        self.contamination = contamination
        self.n_jobs = n_jobs

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=np.float64)
        k = min(self.n_neighbors, X.shape[0])
        self.n_neighbors_ = k
        self.nn_ = NearestNeighbors(n_neighbors=k, n_jobs=self.n_jobs).fit(X)
        # as predict(X_train) sees them (each row is its own nearest neighbour)
        train_scores = self.score_samples(X)
        self.offset_ = float(np.percentile(train_scores, 100.0 * self.contamination))
        return self

    def score_samples(self, X):
        """Negative distance to the k-th nearest training row."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        dist, _ = self.nn_.kneighbors(X, n_neighbors=self.n_neighbors_)
        return -dist[:, -1]

    def decision_function(self, X):
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        return np.where(self.decision_function(X) < 0, -1, 1)
