"""Tests of DiscriminatorGuidedGAN (vector and image modes)."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

from skad.discriminator_guided_gan import DiscriminatorGuidedGAN
from tests.conftest import make_planted

FAST = dict(device="cpu", max_iter=40, random_state=0)
SCORES = ("combined", "classification", "features", "discriminator")


@pytest.fixture(scope="module")
def planted_data():
    return make_planted()


@pytest.fixture(scope="module")
def fitted_guided(planted_data):
    X, _ = planted_data
    return DiscriminatorGuidedGAN(**FAST).fit(X)


def test_learns_planted_anomalies(fitted_guided, planted_data):
    X, y = planted_data
    auc = roc_auc_score(y, -fitted_guided.score_samples(X))
    assert auc >= 0.9, auc


@pytest.mark.parametrize("score", SCORES)
def test_each_score_option(fitted_guided, planted_data, score):
    X, y = planted_data
    det = pickle.loads(pickle.dumps(fitted_guided))
    det.set_params(anomaly_score=score)
    s = det.score_samples(X)
    assert s.dtype == np.float64 and np.all(np.isfinite(s))
    assert roc_auc_score(y, -s) >= 0.85, score


def test_reconstruction_generator_loss(planted_data):
    X, y = planted_data
    det = DiscriminatorGuidedGAN(generator_loss="reconstruction", **FAST).fit(X)
    assert roc_auc_score(y, -det.score_samples(X)) >= 0.9
    comp = det.loss_components_
    # the reconstruction error is what this generator minimises
    assert comp["g_reconstruction"][-1] < comp["g_reconstruction"][0]


@pytest.mark.parametrize(
    "params",
    [
        dict(mode="restore"),
        dict(transforms="orthogonal", n_transforms=4),
        dict(feature_layers="all"),
    ],
)
def test_variants_fit(planted_data, params):
    X, y = planted_data
    det = DiscriminatorGuidedGAN(**{**FAST, "max_iter": 15}, **params).fit(X)
    assert roc_auc_score(y, -det.score_samples(X)) > 0.7


def test_training_record(fitted_guided):
    det = fitted_guided
    assert len(det.loss_curve_) == det.n_iter_
    keys = {"d_loss", "g_loss", "d_pretext", "g_pretext", "g_features"}
    assert keys <= set(det.loss_components_)
    for values in det.loss_components_.values():
        assert len(values) == det.n_iter_ and np.all(np.isfinite(values))
    assert isinstance(det.mode_collapse_, bool) and not det.mode_collapse_
    assert det.generator_variance_ > 0.05
    # the discriminator learns the pretext task (chance is log K = 2.08)
    assert det.loss_components_["d_pretext"][-1] < 1.9


def test_transforms_are_norm_preserving_buffers(fitted_guided):
    T = fitted_guided.transforms_
    x = torch.randn(5, fitted_guided.n_features_in_, dtype=torch.float64)
    for k in range(fitted_guided.n_transforms_):
        np.testing.assert_allclose(T.one(x, k).norm(dim=1), x.norm(dim=1))
    assert "perm" in dict(T.named_buffers())
    assert torch.equal(T.perm[0], torch.arange(fitted_guided.n_features_in_))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_nan_over_seeds(planted_data, seed):
    X, _ = planted_data
    det = DiscriminatorGuidedGAN(device="cpu", max_iter=10, random_state=seed).fit(
        X * 100.0
    )
    assert np.all(np.isfinite(det.loss_curve_))
    assert np.all(np.isfinite(det.score_samples(X * 100.0)))


def test_early_stopping_records_validation(planted_data):
    X, _ = planted_data
    det = DiscriminatorGuidedGAN(
        device="cpu", max_iter=8, early_stopping=True, random_state=0
    ).fit(X)
    assert len(det.validation_scores_) == det.n_iter_


def test_rejects_wrong_dimensions(fitted_guided):
    with pytest.raises(ValueError):
        fitted_guided.score_samples(np.zeros((3, 2, 2)))
    with pytest.raises(ValueError):
        DiscriminatorGuidedGAN(device="cpu", max_iter=1).fit(np.zeros((5, 2, 2)))


# ---------------------------------------------------------------- image mode
@pytest.fixture(scope="module")
def digits_task():
    """Digit 0 is normal: train on 2/3 of the zeros, test on the other zeros
    and on 30 images of every other digit."""
    X, y = load_digits(return_X_y=True)
    X = X.reshape(-1, 1, 8, 8) / 16.0
    rng = np.random.default_rng(0)
    zeros = rng.permutation(np.flatnonzero(y == 0))
    n_train = 2 * len(zeros) // 3
    others = np.concatenate(
        [rng.choice(np.flatnonzero(y == d), 30, replace=False) for d in range(1, 10)]
    )
    test = np.concatenate([zeros[n_train:], others])
    return X[zeros[:n_train]], X[test], (y[test] != 0).astype(int)


@pytest.fixture(scope="module")
def fitted_digits(digits_task):
    X_train, _, _ = digits_task
    return DiscriminatorGuidedGAN(device="cpu", max_iter=30, random_state=0).fit(
        X_train
    )


def test_image_mode_digits(fitted_digits, digits_task):
    _, X_test, y_test = digits_task
    det = fitted_digits
    assert det.image_shape_ == (1, 8, 8) and det.n_transforms_ == 8
    s = det.score_samples(X_test)
    assert s.shape == (len(y_test),) and np.all(np.isfinite(s))
    auc = roc_auc_score(y_test, -s)
    assert auc >= 0.9, auc
    assert set(np.unique(det.predict(X_test))) <= {-1, 1}


def test_image_mode_checks_shape(fitted_digits):
    with pytest.raises(ValueError, match="images"):
        fitted_digits.score_samples(np.zeros((2, 64)))
    with pytest.raises(ValueError, match="images"):
        fitted_digits.score_samples(np.zeros((2, 1, 4, 4)))


def test_image_mode_pickle_and_determinism(fitted_digits, digits_task):
    X_train, X_test, _ = digits_task
    again = pickle.loads(pickle.dumps(fitted_digits))
    np.testing.assert_array_equal(
        again.score_samples(X_test), fitted_digits.score_samples(X_test)
    )
    a = DiscriminatorGuidedGAN(device="cpu", max_iter=2, random_state=3).fit(X_train)
    b = DiscriminatorGuidedGAN(device="cpu", max_iter=2, random_state=3).fit(X_train)
    np.testing.assert_array_equal(a.score_samples(X_test), b.score_samples(X_test))


def test_image_mode_non_square():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2, 6, 4))
    det = DiscriminatorGuidedGAN(
        device="cpu", max_iter=2, padding_mode="circular", random_state=0
    ).fit(X)
    assert det.n_transforms_ == 4
    assert np.all(np.isfinite(det.score_samples(X)))
