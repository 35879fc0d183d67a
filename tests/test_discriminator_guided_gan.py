"""Tests of DiscriminatorGuidedGAN (vector and image modes)."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

from skad._validation import InvalidParameterError
from skad.discriminator_guided_gan import DiscriminatorGuidedGAN, _estimator
from skad.discriminator_guided_gan._net import default_channels, max_conv_stages
from skad.exceptions import TrainingWarning
from tests._helpers import make_planted

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
        dict(pretext_target="restore"),
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


def test_default_hidden_layer_sizes(fitted_guided):
    # 8 features: h = clip(2 * 8, 64, 128) = 64, then h // 2
    det = fitted_guided
    assert det.hidden_layer_sizes_ == (64, 32) and det.latent_dim_ == 2
    widths = [m.out_features for m in det.generator_.modules() if _is_linear(m)]
    assert widths == [64, 32, 2, 32, 64, 8]
    trunk = [m.out_features for m in det.discriminator_.trunk if _is_linear(m)]
    assert trunk == [64, 32]
    wide = DiscriminatorGuidedGAN(device="cpu", max_iter=1).fit(np.eye(100)[:, :80])
    assert wide.hidden_layer_sizes_ == (128, 64) and wide.latent_dim_ == 20


def _is_linear(module):
    return isinstance(module, torch.nn.Linear)


def test_hidden_layer_sizes_vector(planted_data):
    X, _ = planted_data
    det = DiscriminatorGuidedGAN(
        hidden_layer_sizes=[24, 12, 6], latent_dim=3, device="cpu", max_iter=2
    ).fit(X)
    assert det.hidden_layer_sizes_ == (24, 12, 6)
    gen = [m.out_features for m in det.generator_.modules() if _is_linear(m)]
    # the encoder uses the widths, the decoder mirrors them
    assert gen == [24, 12, 6, 3, 6, 12, 24, 8]
    trunk = [m.out_features for m in det.discriminator_.trunk if _is_linear(m)]
    assert trunk == [24, 12, 6]
    assert det.discriminator_.cls.in_features == 6
    assert np.all(np.isfinite(det.score_samples(X)))


@pytest.mark.parametrize(
    "params",
    [
        dict(hidden_layer_sizes=(-4,)),
        dict(hidden_layer_sizes=(0,)),
        dict(hidden_layer_sizes=(64, 0)),
        dict(hidden_layer_sizes=()),
        dict(hidden_layer_sizes=(32.5,)),
        dict(hidden_layer_sizes=(np.nan, 1, 1)),
        dict(hidden_layer_sizes=64),
        dict(n_transforms=1),
        dict(latent_dim=0),
        dict(latent_dim=-2),
        dict(pretext_target="keep"),
    ],
)
def test_invalid_parameters_raise_before_building(planted_data, params):
    X, _ = planted_data
    det = DiscriminatorGuidedGAN(device="cpu", max_iter=1, **params)
    with pytest.raises(InvalidParameterError):
        det.fit(X)
    assert not hasattr(det, "generator_")


@pytest.mark.parametrize("old", ["mode", "hidden_dim"])
def test_old_parameter_names_are_gone(old):
    # renamed to pretext_target and hidden_layer_sizes
    with pytest.raises(TypeError, match=old):
        DiscriminatorGuidedGAN(**{old: None})


def test_max_iter_auto_rule():
    # the base's rule: the fewest epochs giving 600 updates, in [5, 300]
    det = DiscriminatorGuidedGAN(batch_size=2)
    assert det._epochs(26) == 47  # 13 updates per epoch: ceil(600 / 13)
    assert det._epochs(4) == 300  # 2 per epoch: ceil(600 / 2) = 300
    assert DiscriminatorGuidedGAN()._epochs(10) == 300  # 1 update per epoch
    assert DiscriminatorGuidedGAN()._epochs(100_000) == 5


def test_collapse_warning_is_silent_with_verbose_0(planted_data, monkeypatch, capfd):
    # any generator counts as collapsed below a variance ratio of 10
    X, _ = planted_data
    monkeypatch.setattr(_estimator, "COLLAPSE_RATIO", 10.0)
    det = DiscriminatorGuidedGAN(device="cpu", max_iter=2, random_state=0, verbose=0)
    with pytest.warns(TrainingWarning, match="generator collapsed"):
        det.fit(X)
    assert det.mode_collapse_
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_no_collapse_warning(planted_data):
    X, _ = planted_data
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingWarning)
        det = DiscriminatorGuidedGAN(**FAST).fit(X)
    assert not det.mode_collapse_


def test_huge_row_scores_finite_and_anomalous(fitted_guided, planted_data):
    X, _ = planted_data
    Z = np.vstack([X[:5], X[:1] * 1e30, -X[1:2] * 1e30]).astype(np.float32)
    for score in SCORES:
        det = pickle.loads(pickle.dumps(fitted_guided)).set_params(anomaly_score=score)
        # finite without the base's guard for non-finite scores
        raw = det._score_samples(Z, finite=False)
        assert np.all(np.isfinite(raw)), score
        assert np.all(np.isfinite(det.score_samples(Z)))
    assert fitted_guided.predict(Z)[5:].tolist() == [-1, -1]


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
    assert det.input_shape_ == (1, 8, 8) and det.n_transforms_ == 8
    s = det.score_samples(X_test)
    assert s.shape == (len(y_test),) and np.all(np.isfinite(s))
    auc = roc_auc_score(y_test, -s)
    assert auc >= 0.9, auc
    assert set(np.unique(det.predict(X_test))) <= {-1, 1}


def test_image_mode_default_networks(fitted_digits):
    # today's networks: 32 channels doubling at the one stride-2 stage of 8x8
    det = fitted_digits
    assert det.hidden_layer_sizes_ == (32, 64) and det.latent_dim_ == 16
    convs = [
        (m.in_channels, m.out_channels, m.stride[0])
        for m in det.generator_.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    assert convs == [(1, 32, 1), (32, 64, 2), (64, 32, 1), (32, 1, 1)]
    trunk = det.discriminator_.trunk
    assert [type(m).__name__ for m in trunk].count("Conv2d") == 2
    assert trunk[-2].in_features == 64 * 4 * 4 and trunk[-2].out_features == 64
    # a huge image scores finite (without the base's guard) and anomalous
    huge = np.concatenate([np.full((1, 1, 8, 8), 1e30), np.zeros((1, 1, 8, 8))])
    assert np.all(np.isfinite(det._score_samples(huge, finite=False)))
    assert det.predict(huge)[0] == -1


def test_image_stages():
    assert max_conv_stages(8, 8) == 2 and default_channels(8, 8) == (32, 64)
    assert default_channels(32, 32) == (32, 64, 128, 256)
    assert default_channels(6, 4) == (32,) and max_conv_stages(12, 10) == 2


def test_image_hidden_layer_sizes(digits_task):
    X_train, X_test, _ = digits_task
    det = DiscriminatorGuidedGAN(
        hidden_layer_sizes=(4,), device="cpu", max_iter=1, random_state=0
    ).fit(X_train)
    assert det.hidden_layer_sizes_ == (4,)
    convs = [m for m in det.generator_.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 1]
    assert det.discriminator_.cls.in_features == 8
    assert np.all(np.isfinite(det.score_samples(X_test)))
    too_deep = DiscriminatorGuidedGAN(hidden_layer_sizes=(8, 16, 32), max_iter=1)
    with pytest.raises(ValueError, match="8x8 images allow at most 2"):
        too_deep.fit(X_train)
    assert not hasattr(too_deep, "generator_")


def test_image_mode_checks_shape(fitted_digits):
    with pytest.raises(ValueError, match="images"):
        fitted_digits.score_samples(np.zeros((2, 64)))
    # the base names the fitted sample shape
    with pytest.raises(ValueError, match=r"shape \(1, 8, 8\)"):
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
