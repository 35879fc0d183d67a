"""Tests specific to skad.ESAD (the common checks live in test_common.py)."""

import numpy as np
import pytest
import torch

from skad import ESAD, _hypersphere
from skad._validation import InvalidParameterError
from skad.esad import _loss as esad_loss_module
from skad.esad._loss import anomaly_norm_loss, oversampling_weights
from skad.esad._net import default_sizes
from skad.metrics import roc_auc
from skad.utils import semi_supervised_labels
from tests._helpers import clustered_task, make_planted

FAST = dict(device="cpu", random_state=0)


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
    w = oversampling_weights(labels, 0.05, 128)
    assert float(w[:5].sum() / w.sum()) == pytest.approx(0.05)
    assert oversampling_weights(torch.zeros(10, dtype=torch.int64), 0.05, 128) is None
    # at least 2 rows of a full batch: 2 / 16 > 0.05
    w = oversampling_weights(labels, 0.05, 16)
    assert float(w[:5].sum() / w.sum()) == pytest.approx(2 / 16)
    # already frequent enough: natural sampling
    labels[:100] = -1
    assert oversampling_weights(labels, 0.05, 128) is None


def test_default_sizes():
    assert default_sizes(6) == ((32, 16), 4)
    assert default_sizes(21) == ((32, 16), 8)
    assert default_sizes(512) == ((256, 128), 64)


def test_inverse_norm_term_is_the_shared_inverse_distance():
    sq = torch.tensor([0.0, 1e-4, 0.5, 3.0, 1e6])
    expected = _hypersphere.inverse_distance(sq, eps=1e-3)
    assert torch.equal(anomaly_norm_loss(sq, "inverse"), expected)
    assert esad_loss_module.inverse_distance is _hypersphere.inverse_distance


@pytest.mark.parametrize(
    "params",
    [
        dict(hidden_layer_sizes=(-4,)),
        dict(hidden_layer_sizes=(0,)),
        dict(hidden_layer_sizes=(float("nan"), 1, 1)),
        dict(hidden_layer_sizes=(16.5, 8)),
        dict(hidden_layer_sizes=(True,)),
        dict(hidden_layer_sizes=16),
        dict(latent_dim=0),
        dict(latent_dim=2.5),
    ],
)
def test_invalid_sizes_raise_before_any_network(params):
    X = np.random.default_rng(0).normal(size=(40, 3))
    est = ESAD(max_iter=1, **FAST, **params)
    with pytest.raises(InvalidParameterError, match="hidden_layer_sizes|latent_dim"):
        est.fit(X)
    assert not hasattr(est, "network_")


def test_valid_sizes_are_used():
    X = np.random.default_rng(0).normal(size=(40, 3))
    est = ESAD(max_iter=1, hidden_layer_sizes=[6, 5], latent_dim=2, **FAST).fit(X)
    assert est.hidden_layer_sizes_ == (6, 5) and est.latent_dim_ == 2
    linear = ESAD(max_iter=1, hidden_layer_sizes=(), **FAST).fit(X)
    assert linear.hidden_layer_sizes_ == ()


def test_batch_norm_needs_two_rows_per_batch():
    X = np.random.default_rng(0).normal(size=(40, 3))
    est = ESAD(max_iter=1, norm="batch", batch_size=1, **FAST)
    with pytest.raises(ValueError, match="norm='batch' needs at least 2 rows"):
        est.fit(X)
    assert not hasattr(est, "network_")
    ESAD(max_iter=1, norm="layer", batch_size=1, **FAST).fit(X)


@pytest.mark.parametrize(
    "anomaly_score", ["sum", "robust_sum", "reconstruction", "norm"]
)
def test_huge_row_gets_a_large_finite_score(anomaly_score):
    X, _ = make_planted(n_normal=150, n_anomaly=15)
    est = ESAD(max_iter=3, anomaly_score=anomaly_score, **FAST).fit(X)
    huge = np.vstack([X[:3] * 1e30, X[:3]])  # finite in float32
    # the score itself is finite: no need for the base's non-finite guard
    anomaly = est._map_chunks(est._score, huge)
    assert np.all(np.isfinite(anomaly))
    assert np.all(anomaly[:3] > 1e20)
    assert np.all(np.isfinite(est.score_samples(huge)))
    np.testing.assert_array_equal(est.predict(huge[:3]), [-1, -1, -1])
    # ordinary rows keep their float32 scores
    np.testing.assert_array_equal(est.score_samples(huge[3:]), est.score_samples(X[:3]))
