"""Tests specific to skad.ESAD (the common checks live in test_common.py)."""

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV, KFold

from skad import ESAD
from skad.esad import _auto_sizes, anomaly_norm_loss
from skad.metrics import roc_auc, roc_auc_scorer
from skad.utils import semi_supervised_labels
from tests.conftest import make_planted

FAST = dict(device="cpu", random_state=0)


def clustered_task(seed=0):
    """make_planted's normal manifold plus a tight cluster of anomalies.

    A cluster of 40 training anomalies (6 %) is dense enough for an
    unsupervised model to learn it as normal; a few labels say otherwise.
    Returns training rows, their truth, test rows and their truth.
    """
    X, _ = make_planted(n_normal=900, n_anomaly=0, n_features=8, seed=seed)
    rng = np.random.default_rng(seed + 100)
    cluster = rng.uniform(-3, 3, size=8) + 0.3 * rng.normal(size=(90, 8))
    X_train = np.vstack([X[:600], cluster[:40]])
    y_train = np.r_[np.zeros(600, int), np.ones(40, int)]
    X_test = np.vstack([X[600:], cluster[40:]])
    y_test = np.r_[np.zeros(300, int), np.ones(50, int)]
    return X_train, y_train, X_test, y_test


def test_five_labelled_anomalies_beat_the_unlabelled_fit():
    X, y, X_test, y_test = clustered_task()
    labels = np.zeros(len(y), int)
    labels[np.flatnonzero(y == 1)[:5]] = -1
    plain = ESAD(max_iter=30, **FAST).fit(X)
    semi = ESAD(max_iter=30, **FAST).fit(X, labels=labels)
    auc_plain = roc_auc(y_test, plain.score_samples(X_test))
    auc_semi = roc_auc(y_test, semi.score_samples(X_test))
    assert semi.n_labeled_anomalies_ == 5
    assert auc_semi > auc_plain + 0.03, (auc_plain, auc_semi)


def test_unsupervised_fit_without_labels(planted):
    X, y = planted
    est = ESAD(max_iter=20, **FAST).fit(X)
    assert est.n_labeled_anomalies_ == 0
    assert roc_auc(y, est.score_samples(X)) > 0.8


@pytest.mark.parametrize(
    "labels, match",
    [
        (np.zeros(5, int), "entries but X has"),
        (np.r_[2, np.zeros(39, int)], "found \\[2\\]"),
        (-np.ones(40, int), "every row"),
        (np.r_[0.5, np.zeros(39)], "found \\[0.5\\]"),
    ],
)
def test_label_validation_errors(labels, match):
    X = np.random.default_rng(0).normal(size=(40, 3))
    with pytest.raises(ValueError, match=match):
        ESAD(max_iter=1, **FAST).fit(X, labels=labels)


def test_inverse_norm_term_is_bounded_with_finite_gradient():
    z = torch.zeros(4, 3, requires_grad=True)
    for kind in ("inverse", "hinge"):
        sq = (z**2).sum(dim=1)
        loss = anomaly_norm_loss(sq, kind, margin=torch.tensor(1.0)).sum()
        (grad,) = torch.autograd.grad(loss, z)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()
    inv = anomaly_norm_loss(torch.tensor([0.0, 1e-30, 1e30, float("inf")]), "inverse")
    assert torch.isfinite(inv).all() and inv.max() <= 1e3


def test_extreme_inverse_norm_case_gives_no_nan():
    # labelled anomalies are exact copies of normal rows: the network cannot
    # separate them, so the inverse-norm term is pushed to its limit
    X = np.random.default_rng(0).normal(size=(120, 4))
    X = np.vstack([X, X[:20]])
    labels = np.r_[np.zeros(120, int), -np.ones(20, int)]
    est = ESAD(
        max_iter=15,
        entropy_weight=100.0,
        eta=100.0,
        anomaly_target="identity",
        learning_rate_init=1e-2,
        **FAST,
    ).fit(X, labels=labels)
    assert np.all(np.isfinite(est.loss_curve_))
    assert np.all(np.isfinite(est.score_samples(X)))


@pytest.mark.parametrize("adversarial", [False, True])
def test_same_random_state_same_scores_with_labels(adversarial):
    X, y = make_planted(n_normal=150, n_anomaly=15)
    labels = semi_supervised_labels(y, 0.3, random_state=0)
    kw = dict(max_iter=4, adversarial=adversarial, **FAST)
    a = ESAD(**kw).fit(X, labels=labels).score_samples(X)
    b = ESAD(**kw).fit(X, labels=labels).score_samples(X)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "params",
    [
        dict(anomaly_target="gauss", anomaly_norm_loss="inverse"),
        dict(anomaly_target="identity", anomaly_norm_loss="hinge"),
        dict(anomaly_target="invert", share_encoders=True),
        dict(anomaly_score="reconstruction", norm="batch"),
        dict(anomaly_score="robust_sum"),
        dict(anomaly_score="norm", hidden_layer_sizes=(16,), latent_dim=3),
        dict(adversarial=True, adversarial_weight=0.5),
        dict(early_stopping=True),
    ],
)
def test_options_fit_and_score(params):
    X, y = make_planted(n_normal=150, n_anomaly=15)
    labels = semi_supervised_labels(y, 0.3, random_state=0)
    est = ESAD(max_iter=3, **FAST, **params).fit(X, labels=labels)
    s = est.score_samples(X)
    assert s.shape == (len(X),) and np.all(np.isfinite(s))
    assert (est.network_.encoder2 is None) == params.get("share_encoders", False)
    assert hasattr(est, "discriminator_") == params.get("adversarial", False)
    assert hasattr(est, "validation_scores_") == params.get("early_stopping", False)
    assert isinstance(est.reconstruction_scale_, float)
    assert isinstance(est.norm_scale_, float)


def test_score_is_sum_of_scaled_terms():
    X, y = make_planted(n_normal=150, n_anomaly=15)
    est = ESAD(max_iter=3, **FAST).fit(X)
    with torch.no_grad():
        rec, norm = est._score_terms(torch.as_tensor(X, dtype=torch.float32))
    rec, norm = rec.double(), norm.double()
    expected = rec / est.reconstruction_scale_ + norm / est.norm_scale_
    # one batch of 165 rows against padded chunks: float32 rounding apart
    np.testing.assert_allclose(-est.score_samples(X), expected.numpy(), rtol=1e-5)
    # the scales are the medians over the training rows
    assert np.median(rec.numpy() / est.reconstruction_scale_) == pytest.approx(1.0)
    robust = est.set_params(anomaly_score="robust_sum").score_samples(X)
    expected = (rec / est.reconstruction_scale_ - 1) / est.reconstruction_spread_ + (
        norm / est.norm_scale_ - 1
    ) / est.norm_spread_
    np.testing.assert_allclose(-robust, expected.numpy(), rtol=1e-5, atol=1e-5)


def test_oversampling_weights_reach_the_batch_share():
    labels = torch.zeros(640, dtype=torch.int64)
    labels[:5] = -1
    est = ESAD(anomaly_batch_fraction=0.05, batch_size=128)
    w = est._sample_weights(labels)
    assert float(w[:5].sum() / w.sum()) == pytest.approx(0.05)
    assert est._sample_weights(torch.zeros(10, dtype=torch.int64)) is None
    # already frequent enough: natural sampling
    labels[:100] = -1
    assert est._sample_weights(labels) is None


def test_auto_sizes():
    assert _auto_sizes(6) == ((32, 16), 4)
    assert _auto_sizes(21) == ((32, 16), 8)
    assert _auto_sizes(512) == ((256, 128), 64)


class _Recorder(ESAD):
    """ESAD that records the labels it was fitted with (test only)."""

    seen = []

    def _fit_networks(self, X, labels, rng):
        type(self).seen.append(None if labels is None else labels.cpu().numpy())
        super()._fit_networks(X, labels, rng)


def test_grid_search_splits_labels_with_folds():
    X, y = make_planted(n_normal=90, n_anomaly=30)
    labels = semi_supervised_labels(y, 0.5, random_state=0)
    _Recorder.seen = []
    cv = KFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(
        _Recorder(max_iter=2, **FAST),
        {"entropy_weight": [0.5, 1.0]},
        scoring=roc_auc_scorer,
        cv=cv,
    ).fit(X, y, labels=labels)
    folds = [labels[train] for train, _ in cv.split(X)]
    assert len(_Recorder.seen) == 7  # 2 candidates x 3 folds + refit
    for seen, expected in zip(_Recorder.seen[:6], folds + folds):
        np.testing.assert_array_equal(seen, expected)
    np.testing.assert_array_equal(_Recorder.seen[6], labels)
    assert search.best_params_["entropy_weight"] in (0.5, 1.0)
