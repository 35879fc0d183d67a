"""Tests specific to skad.DeepSVDD (the contract is tested in test_base.py
and test_common.py, through every detector)."""

import numpy as np
import pytest
import torch

from skad import DeepSVDD, _hypersphere
from skad.metrics import roc_auc
from tests._helpers import make_planted

FAST = dict(device="cpu", random_state=0)


def test_learns_one_class_planted_anomalies():
    X, y = make_planted()
    train = X[y == 0][:300]
    test_mask = np.ones(len(y), bool)
    test_mask[np.flatnonzero(y == 0)[:300]] = False
    det = DeepSVDD(**FAST).fit(train)
    assert roc_auc(y[test_mask], det.score_samples(X[test_mask])) >= 0.95


def test_network_is_bias_free_with_a_fixed_centre():
    X, _ = make_planted(n_normal=100, n_anomaly=5)
    det = DeepSVDD(max_iter=2, norm="batch", **FAST).fit(X)
    net = det.network_
    assert isinstance(net, _hypersphere.SVDDNet)
    assert all(
        m.bias is None for m in net.modules() if isinstance(m, torch.nn.Linear)
    )
    assert "center" in dict(net.named_buffers())
    assert "center" not in dict(net.named_parameters())
    np.testing.assert_array_equal(det.center_, net.center.double().numpy())


def test_centre_is_the_mean_embedding_kept_away_from_zero():
    X, _ = make_planted(n_normal=100, n_anomaly=5)
    det = DeepSVDD(max_iter=1, **FAST)
    det.fit(X)
    c = det.center_
    assert np.all(np.abs(c) >= 0.1 - 1e-7)  # Ruff et al.'s eps push


def test_score_is_the_squared_distance_to_the_centre():
    X, _ = make_planted(n_normal=100, n_anomaly=5)
    det = DeepSVDD(max_iter=2, **FAST).fit(X)
    with torch.no_grad():
        z = det.network_(torch.as_tensor(X[:5], dtype=torch.float32)).double()
    expected = ((z - torch.as_tensor(det.center_)) ** 2).sum(1).numpy()
    np.testing.assert_allclose(-det.score_samples(X[:5]), expected, rtol=1e-5)


@pytest.mark.parametrize("sizes", [(-4,), (0,), (8, 0), (2.5,), "64"])
def test_invalid_hidden_sizes_rejected_before_building(sizes):
    from sklearn.utils._param_validation import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="hidden_layer_sizes"):
        DeepSVDD(hidden_layer_sizes=sizes, **FAST).fit(np.zeros((10, 3)))


def test_batch_norm_needs_two_rows_per_batch():
    with pytest.raises(ValueError, match="norm='batch' needs at least 2 rows"):
        DeepSVDD(norm="batch", batch_size=1, **FAST).fit(np.zeros((10, 3)))


def test_training_longer_on_contaminated_data_needs_robust_training():
    """The issue's planted task: 300 N(0, 1) rows and 15 N(4, 1) rows,
    unlabelled. Trained on every row, Deep SVDD learns the anomalies as
    normal; leaving the suspects out (train_contamination) separates them."""
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (300, 8)), rng.normal(4, 1, (15, 8))])
    y = np.r_[np.zeros(300), np.ones(15)]
    plain = DeepSVDD(train_contamination=0.0, **FAST).fit(X)
    robust = DeepSVDD(train_contamination=0.1, **FAST).fit(X)
    assert roc_auc(y, plain.score_samples(X)) < 0.8
    assert roc_auc(y, robust.score_samples(X)) >= 0.95
    assert robust.n_excluded_ == 31 and plain.n_excluded_ == 0
