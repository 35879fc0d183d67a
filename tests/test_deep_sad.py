"""Tests specific to skad.DeepSAD (the common checks live in test_common.py)."""

import numpy as np
import pytest
import torch

import skad.deep_sad
import skad.deep_svdd
from skad import DeepSAD, DeepSVDD
from skad.deep_sad import deep_sad_loss
from skad.metrics import roc_auc
from skad.utils import semi_supervised_labels
from tests._helpers import clustered_task, make_planted

FAST = dict(device="cpu", random_state=0)


def test_reuses_the_shared_hypersphere_code():
    """DeepSAD is DeepSVDD with Deep SAD's loss: network, centre and score
    are inherited, not copied."""
    from skad import _hypersphere

    assert issubclass(DeepSAD, DeepSVDD)
    assert skad.deep_svdd.SVDDNet is _hypersphere.SVDDNet
    assert skad.deep_svdd.init_center is _hypersphere.init_center
    for hook in ("_build_networks", "_score"):
        assert getattr(DeepSAD, hook) is getattr(DeepSVDD, hook)


def test_without_labels_it_is_deep_svdd():
    X, _ = make_planted(n_normal=100, n_anomaly=10)
    a = DeepSAD(max_iter=3, **FAST).fit(X).score_samples(X)
    b = DeepSVDD(max_iter=3, **FAST).fit(X).score_samples(X)
    np.testing.assert_allclose(a, b)


def test_five_labelled_anomalies_beat_the_unlabelled_fit():
    X, y, X_test, y_test = clustered_task()
    labels = np.zeros(len(y), int)
    labels[np.flatnonzero(y == 1)[:5]] = -1
    plain = DeepSAD(max_iter=30, **FAST).fit(X)
    semi = DeepSAD(max_iter=30, **FAST).fit(X, labels=labels)
    auc_plain = roc_auc(y_test, plain.score_samples(X_test))
    auc_semi = roc_auc(y_test, semi.score_samples(X_test))
    assert semi.n_labeled_anomalies_ == 5
    assert auc_semi > auc_plain + 0.1, (auc_plain, auc_semi)


def test_loss_terms():
    dist = torch.tensor([0.0, 4.0, 4.0, 0.0])
    labels = torch.tensor([0, 1, -1, -1])
    loss = deep_sad_loss(dist, labels, eta=2.0)
    assert torch.isfinite(loss).all()
    np.testing.assert_allclose(
        loss.numpy(), [0.0, 2.0 * (4 + 1e-6), 2.0 / (4 + 1e-6), 2.0 / 1e-6], rtol=1e-6
    )
    assert torch.equal(deep_sad_loss(dist, None, eta=2.0), dist)


def test_centre_ignores_labelled_anomalies():
    # same seed = same initial network, so the centre only depends on the
    # rows (all of them: no row left out by robust training)
    FAST = dict(device="cpu", random_state=0, train_contamination=0.0)
    X, y = make_planted(n_normal=100, n_anomaly=10)
    labels = np.where(y == 1, -1, 0)
    with_labels = DeepSAD(max_iter=1, **FAST).fit(X, labels=labels).center_
    normal_only = DeepSAD(max_iter=1, **FAST).fit(X[y == 0]).center_
    all_rows = DeepSAD(max_iter=1, **FAST).fit(X).center_
    np.testing.assert_allclose(with_labels, normal_only, rtol=1e-5, atol=1e-7)
    assert not np.allclose(with_labels, all_rows)


def test_extreme_inverse_term_gives_no_nan():
    # labelled anomalies are copies of normal rows and weigh 1000 times more
    X = np.random.default_rng(0).normal(size=(120, 4))
    X = np.vstack([X, X[:20]])
    labels = np.r_[np.zeros(120, int), -np.ones(20, int)]
    est = DeepSAD(max_iter=10, eta=1e3, learning_rate_init=1e-2, **FAST)
    est.fit(X, labels=labels)
    assert np.all(np.isfinite(est.loss_curve_))
    assert np.all(np.isfinite(est.score_samples(X)))


@pytest.mark.parametrize(
    "labels, match",
    [
        (np.zeros(5, int), "entries but X has"),
        (np.r_[2, np.zeros(39, int)], "found \\[2\\]"),
        (-np.ones(40, int), "every row"),
    ],
)
def test_label_validation_errors(labels, match):
    X = np.random.default_rng(0).normal(size=(40, 3))
    with pytest.raises(ValueError, match=match):
        DeepSAD(max_iter=1, **FAST).fit(X, labels=labels)


def test_same_random_state_same_scores_with_labels():
    X, y = make_planted(n_normal=150, n_anomaly=15)
    labels = semi_supervised_labels(y, 0.3, random_state=0)
    a = DeepSAD(max_iter=3, **FAST).fit(X, labels=labels).score_samples(X)
    b = DeepSAD(max_iter=3, **FAST).fit(X, labels=labels).score_samples(X)
    np.testing.assert_array_equal(a, b)


def test_early_stopping_splits_labels():
    X, y = make_planted(n_normal=150, n_anomaly=15)
    labels = semi_supervised_labels(y, 0.5, random_state=0)
    est = DeepSAD(max_iter=4, early_stopping=True, **FAST).fit(X, labels=labels)
    assert len(est.validation_scores_) == est.n_iter_
    assert np.all(np.isfinite(est.validation_scores_))


