import numpy as np
import pytest

from skad import metrics


@pytest.mark.parametrize(
    "y",
    [np.array([0, 0, 0, 1, 1]), np.array([1, 1, 1, -1, -1])],
    ids=["01", "sklearn_sign"],
)
def test_perfect_detector_scores_one(y):
    normal_score = np.array([5.0, 4.0, 3.0, -1.0, -2.0])
    assert metrics.roc_auc(y, normal_score) == 1.0
    assert metrics.average_precision(y, normal_score) == 1.0
    assert metrics.precision_at_n(y, normal_score) == 1.0


def test_reversed_detector_scores_zero():
    assert metrics.roc_auc([0, 0, 1], [-1.0, -2.0, 3.0]) == 0.0


def test_unlabelled_rows_ignored():
    y = np.array([1, 1, 0, 0, -1])
    s = np.array([3.0, 2.0, -100.0, 100.0, -1.0])
    assert metrics.roc_auc(y, s) == 1.0


def test_bad_truth():
    with pytest.raises(ValueError, match="y must be in"):
        metrics.roc_auc([0, 2, 1], [0, 1, 2])
    with pytest.raises(ValueError, match="both normal and anomalous"):
        metrics.roc_auc([0, 0, 0], [0, 1, 2])


def test_scorer_uses_score_samples():
    class Stub:
        def score_samples(self, X):
            return -np.asarray(X)[:, 0]

    X = np.array([[0.0], [0.1], [5.0]])
    assert metrics.roc_auc_scorer(Stub(), X, [0, 0, 1]) == 1.0
    assert metrics.SCORERS["average_precision"](Stub(), X, [1, 1, -1]) == 1.0
