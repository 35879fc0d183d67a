"""Numerical faults: divergence, extreme learning rates and feature
scales, contaminated and duplicated training data. A detector either raises
a clear error or gives finite scores, never NaN."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skad import TrainingDivergedError
from skad.metrics import roc_auc
from tests._helpers import data, fast_instances, fitted, make_planted, name

INSTANCES = fast_instances()


#: Detectors whose training loss is bounded, so no learning rate makes it
#: non-finite: for them the test checks that the scores stay finite.
BOUNDED_LOSS: set[str] = set()

#: A learning rate that overflows the float32 weights of every detector.
HUGE_LR = 1e30


def _standardised_planted():
    X, _ = make_planted(n_normal=200, n_anomaly=10)
    return StandardScaler().fit_transform(X)


@pytest.mark.parametrize("estimator", INSTANCES, ids=name)
def test_huge_learning_rate_raises_naming_the_epoch(estimator):
    X = _standardised_planted()
    est = clone(estimator).set_params(learning_rate_init=HUGE_LR, max_iter=5)
    if name(estimator) in BOUNDED_LOSS:
        est.fit(X)
        assert np.all(np.isfinite(est.score_samples(X)))
        assert np.all(np.isfinite(est.score_samples(data(20, X.shape[1]) * 10)))
        return
    with pytest.raises(TrainingDivergedError, match=r"epoch \d+") as info:
        est.fit(X)
    assert "learning_rate_init" in str(info.value)
    # no half-trained model is left usable, not even after an earlier good fit
    with pytest.raises(NotFittedError):
        est.score_samples(X)
    est.set_params(learning_rate_init=estimator.learning_rate_init).fit(X)
    est.set_params(learning_rate_init=HUGE_LR)
    with pytest.raises(TrainingDivergedError):
        est.fit(X)
    with pytest.raises(NotFittedError):
        est.predict(X)


@pytest.mark.parametrize("lr", [1e4, 1e12], ids=["lr1e4", "lr1e12"])
@pytest.mark.parametrize("estimator", INSTANCES, ids=name)
def test_large_learning_rate_never_gives_nan_scores(estimator, lr):
    """Between "trains" and "diverges": either a TrainingDivergedError naming
    the epoch, or a model whose scores are finite, never NaN scores."""
    X = _standardised_planted()
    est = clone(estimator).set_params(learning_rate_init=lr, max_iter=3)
    try:
        est.fit(X)
    except TrainingDivergedError as exc:
        assert re.search(r"epoch \d+", str(exc)), str(exc)
        return
    for Xs in (X, data(20, X.shape[1], seed=11) * 10):
        assert np.all(np.isfinite(est.score_samples(Xs)))


@pytest.mark.parametrize("estimator", INSTANCES, ids=name)
def test_extreme_feature_scale_trains_after_standard_scaler(estimator):
    X, _ = make_planted(n_normal=200, n_anomaly=10)
    Xt, yt = make_planted(n_normal=200, n_anomaly=10, seed=1)
    ref = make_pipeline(StandardScaler(), clone(estimator)).fit(X)
    auc_ref = roc_auc(yt, ref.score_samples(Xt))
    for scale in (1e6, 1e-6):
        pipe = make_pipeline(StandardScaler(), clone(estimator)).fit(X * scale)
        s = pipe.score_samples(Xt * scale)
        assert np.all(np.isfinite(s))
        # as good as on unit-scale features (the absolute AUC after 3 epochs
        # varies by method; tests/test_<method>.py check the learning itself)
        auc = roc_auc(yt, s)
        assert abs(auc - auc_ref) < 0.05, (scale, auc, auc_ref)


@pytest.mark.parametrize("scale", [1e6, 1e-6], ids=["x1e6", "x1e-6"])
@pytest.mark.parametrize("estimator", INSTANCES, ids=name)
def test_extreme_feature_scale_without_scaler_never_gives_nan(estimator, scale):
    """Unscaled, such features may diverge (a clear error) but never give a
    model with non-finite scores."""
    X, _ = make_planted(n_normal=200, n_anomaly=10)
    est = clone(estimator)
    try:
        est.fit(X * scale)
    except TrainingDivergedError as exc:
        assert re.search(r"epoch \d+", str(exc)), str(exc)
        return
    assert np.all(np.isfinite(est.score_samples(X * scale)))


@pytest.mark.parametrize("estimator", INSTANCES, ids=name)
def test_duplicated_training_set(estimator):
    X, y = make_planted(n_normal=150, n_anomaly=8)
    est = clone(estimator).fit(np.vstack([X, X, X]))
    s = est.score_samples(X)
    assert np.all(np.isfinite(s)) and roc_auc(y, s) > 0.5


@pytest.mark.parametrize("estimator", INSTANCES, ids=name)
def test_thirty_percent_contaminated_trainingdata(estimator):
    X, y = make_planted(n_normal=210, n_anomaly=90)
    est = clone(estimator).set_params(contamination=0.3).fit(X)
    s = est.score_samples(X)
    assert np.all(np.isfinite(s))
    assert abs(np.mean(est.predict(X) == -1) - 0.3) <= 0.02
    assert roc_auc(y, s) > 0.5




# ---------------------------------------------------------------------------
# Extreme but finite input (issue #20): finite scores, flagged as outliers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [1e30, 1e155], ids=["x1e30", "x1e155"])
@pytest.mark.parametrize("estimator", INSTANCES, ids=name)
def test_huge_finite_rows_score_finite_and_are_outliers(estimator, factor):
    """A finite row beyond float32's range (1e155) or whose squares overflow
    float32 (1e30) gets a finite score, never NaN. (Whether it is an outlier
    is the method's call: scale-free methods such as SLA2P's sphere
    normalisation may find its direction normal.)"""
    model = fitted(estimator)
    X = data(10, 4, seed=12)
    rows = X[3:5] * factor
    s = model.score_samples(rows)
    assert s.dtype == np.float64 and np.all(np.isfinite(s)), s
    assert np.all(np.isfinite(model.decision_function(rows)))
    assert np.all(np.isfinite(model.predict_proba(rows)))
    # the ordinary rows of the same call are unaffected
    mixed = np.vstack([X[:3], rows])
    expected = model.score_samples(X[:3])
    np.testing.assert_array_equal(model.score_samples(mixed)[:3], expected)


@pytest.mark.parametrize("estimator", INSTANCES, ids=name)
def test_training_data_beyond_float32_is_a_scale_error(estimator):
    """fit(X * 1e300) raises a ValueError naming the scale before training,
    not a divergence blamed on the learning rate."""
    with pytest.raises(ValueError, match="beyond what float32.*StandardScaler"):
        clone(estimator).fit(data() * 1e300)


@pytest.mark.parametrize("estimator", INSTANCES, ids=name)
def test_divergence_on_large_data_names_the_scale(estimator):
    """Data that float32 holds but that makes training diverge gets the
    scale hint, not only the learning-rate one."""
    est = clone(estimator).set_params(learning_rate_init=1e30, max_iter=3)
    try:
        est.fit(data() * 1e20)
    except TrainingDivergedError as exc:
        assert "StandardScaler" in str(exc) and "e+20 in magnitude" in str(exc)
    except ValueError as exc:  # beyond float32 after the network's first layer
        assert "float32" in str(exc)
    else:
        assert np.all(np.isfinite(est.score_samples(data() * 1e20)))


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_non_finite_anomaly_scores_are_outliers_never_inliers(bad, monkeypatch):
    """Whatever a network returns, a non-finite anomaly score becomes the most
    anomalous finite score: predict says -1."""
    import torch

    model = fitted(INSTANCES[0])
    score = model._score

    def broken(X):
        out = score(X).clone()
        out[0] = bad
        return out

    monkeypatch.setitem(vars(model), "_score", broken)
    X = data(3, 4, seed=13)
    s = model.score_samples(X)
    assert np.all(np.isfinite(s))
    assert model.predict(X)[0] == -1
    assert torch.is_tensor(score(torch.zeros(2, 4)))
