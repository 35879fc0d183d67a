"""The outlier contract of BaseDeepDetector, through DeepSVDD."""

import pickle

import joblib
import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import skad
from skad import DeepSVDD, TrainingDivergedError
from skad._validation import validate_labels
from skad.base import BaseSemiSupervisedDetector
from skad.metrics import roc_auc, roc_auc_scorer
from tests._helpers import make_planted


def test_learning_planted_anomalies(planted):
    """One-class setting: fit on normal rows, rank held-out planted anomalies."""
    X, y = planted
    scaler = StandardScaler().fit(X[y == 0])
    det = DeepSVDD(device="cpu", random_state=0).fit(scaler.transform(X[y == 0]))
    Xt, yt = make_planted(seed=1)  # held-out rows from the same generator
    auc = roc_auc(yt, det.score_samples(scaler.transform(Xt)))
    assert auc >= 0.95, auc


def test_offset_matches_contamination(planted):
    X, _ = planted
    det = DeepSVDD(device="cpu", max_iter=5, contamination=0.2, random_state=0).fit(X)
    share = np.mean(det.predict(X) == -1)
    assert abs(share - 0.2) < 0.01
    np.testing.assert_allclose(det.offset_, np.percentile(det.score_samples(X), 20.0))


def test_training_record(planted):
    X, _ = planted
    det = DeepSVDD(device="cpu", max_iter=7, random_state=0).fit(X)
    assert len(det.loss_curve_) == det.n_iter_ == 7
    assert det.best_loss_ == pytest.approx(min(det.loss_curve_))
    assert det.loss_curve_[-1] < det.loss_curve_[0]
    assert not hasattr(det, "validation_scores_")
    assert det.device_ == torch.device("cpu")


def test_early_stopping_stops_and_records_validation(planted):
    X, _ = planted
    det = DeepSVDD(
        device="cpu",
        max_iter=200,
        early_stopping=True,
        n_iter_no_change=3,
        tol=1e-2,
        random_state=0,
    ).fit(X)
    assert det.n_iter_ < 200
    assert len(det.validation_scores_) == det.n_iter_
    assert det.best_loss_ == pytest.approx(min(det.validation_scores_))


def test_training_loss_convergence_stops_without_validation():
    X = np.random.default_rng(0).normal(size=(100, 3))
    det = DeepSVDD(
        device="cpu", max_iter=500, n_iter_no_change=2, tol=10.0, random_state=0
    ).fit(X)
    assert det.n_iter_ == 3  # epoch 1 sets the best, 2 and 3 fail to beat it by tol


def test_nan_loss_raises_naming_epoch(planted):
    X, _ = planted
    det = DeepSVDD(device="cpu", learning_rate_init=1e30, max_iter=20, random_state=0)
    with pytest.raises(TrainingDivergedError, match=r"epoch \d+.*learning_rate_init"):
        det.fit(X * 1e6)


def test_pickle_and_joblib_round_trip(planted, tmp_path):
    X, _ = planted
    det = DeepSVDD(device="cpu", max_iter=3, random_state=0).fit(X)
    expected = det.score_samples(X)
    again = pickle.loads(pickle.dumps(det))
    np.testing.assert_array_equal(again.score_samples(X), expected)
    joblib.dump(det, tmp_path / "det.joblib")
    np.testing.assert_array_equal(
        joblib.load(tmp_path / "det.joblib").score_samples(X), expected
    )


def test_pickle_from_gpu_device_falls_back_to_cpu(planted):
    X, _ = planted
    det = DeepSVDD(device="cpu", max_iter=2, random_state=0).fit(X)
    state = det.__getstate__()
    assert all(t.device.type == "cpu" for t in det.network_.state_dict().values())
    state["device_"] = "cuda:7"  # as if trained on a GPU this machine lacks
    clone = DeepSVDD.__new__(DeepSVDD)
    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has the device")
    with pytest.warns(UserWarning, match="loaded on the CPU"):
        clone.__setstate__(state)
    assert clone.device_ == torch.device("cpu")
    np.testing.assert_array_equal(clone.score_samples(X), det.score_samples(X))


def test_pickle_version_mismatch_warns(planted):
    X, _ = planted
    det = DeepSVDD(device="cpu", max_iter=1, random_state=0).fit(X)
    state = det.__getstate__()
    state["_skad_version"] = "0.0.0-old"
    with pytest.warns(UserWarning, match="skad 0.0.0-old"):
        DeepSVDD.__new__(DeepSVDD).__setstate__(state)


def test_unknown_or_missing_device_errors():
    X = np.zeros((10, 2)) + np.arange(10)[:, None]
    with pytest.raises(ValueError, match="not a valid torch device"):
        DeepSVDD(device="tpu-please").fit(X)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            DeepSVDD(device="cuda").fit(X)
        det = DeepSVDD(device="auto", max_iter=1).fit(X)
        assert det.device_.type == "cpu"


def test_verbose_progress_bar(planted, capsys):
    X, _ = planted
    DeepSVDD(device="cpu", max_iter=2, verbose=1, random_state=0).fit(X)
    err = capsys.readouterr().err
    assert "DeepSVDD" in err and "loss" in err
    DeepSVDD(device="cpu", max_iter=2, verbose=0, random_state=0).fit(X)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_grid_search_in_pipeline_with_01_truth():
    X, y = make_planted(n_normal=300, n_anomaly=30)
    search = GridSearchCV(
        Pipeline(
            [
                ("scale", StandardScaler()),
                ("det", DeepSVDD(max_iter=3, device="cpu", random_state=0)),
            ]
        ),
        {"det__latent_dim": [8, 16]},
        scoring=roc_auc_scorer,
        cv=KFold(3, shuffle=True, random_state=0),
    ).fit(X, y)
    assert search.best_params_["det__latent_dim"] in (8, 16)
    assert 0.5 < search.best_score_ <= 1.0
    assert search.predict(X).shape == (len(X),)


# ---------------------------------------------------------------------------
# semi-supervised labels
# ---------------------------------------------------------------------------


class _LabelRecorder(BaseSemiSupervisedDetector, DeepSVDD):
    """DeepSVDD that records the labels it was fitted with (test only)."""

    seen = []

    def _fit_networks(self, X, labels, rng):
        type(self).seen.append(None if labels is None else labels.cpu().numpy())
        super()._fit_networks(X, labels, rng)


@pytest.mark.parametrize(
    "labels, match",
    [
        ([1, 0], "entries but X has"),
        ([[1, 0, 0]], "1-D"),
        ([1, 2, 0], "found \\[2\\]"),
        ([-1, -1, -1], "every row"),
        ([0.5, 0, 1], "found \\[0.5\\]"),
        (["a", "b", "c"], "numeric"),
        ([np.nan, 0, 1], "NaN"),
    ],
)
def test_label_validation_errors(labels, match):
    with pytest.raises(ValueError, match=match):
        validate_labels(labels, 3)


def test_label_validation_runs_before_training():
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match="entries but X has"):
        _LabelRecorder(max_iter=1, device="cpu").fit(X, labels=[0] * 19)


def test_semi_supervised_labels_helper():
    y = np.r_[np.zeros(90, int), np.ones(10, int)]
    labels = skad.utils.semi_supervised_labels(y, 0.3, random_state=0)
    assert set(np.unique(labels)) == {-1, 0}
    assert np.sum(labels == -1) == 3
    assert np.all(y[labels == -1] == 1)
    one = skad.utils.semi_supervised_labels(y, 0.0, random_state=0)
    assert np.sum(one == -1) == 1  # at least one labelled anomaly
    with_normals = skad.utils.semi_supervised_labels(
        y, 0.1, random_state=0, label_normals=0.5
    )
    assert np.sum(with_normals == 1) == 45 and np.all(y[with_normals == 1] == 0)
    with pytest.raises(ValueError, match="only 0"):
        skad.utils.semi_supervised_labels([0, 2], 0.1)


def test_predict_proba_is_monotone_and_consistent_with_predict(planted):
    X, _ = planted
    det = DeepSVDD(device="cpu", max_iter=3, random_state=0).fit(X)
    proba = det.predict_proba(X)
    assert proba.shape == (len(X), 2) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.all((proba >= 0) & (proba <= 1))
    order = np.argsort(det.score_samples(X))
    # lower score (more anomalous) -> higher outlier probability
    assert np.all(np.diff(proba[order, 1]) <= 0)
    np.testing.assert_array_equal(det.predict(X) == -1, proba[:, 1] > 0.5)
    # one interquartile range of training anomaly scores beyond the threshold
    at = det.offset_ - det.score_scale_
    z = -np.log(9.0) * (at - det.offset_) / det.score_scale_
    assert 1 / (1 + np.exp(-z)) == pytest.approx(0.9)


def test_contamination_auto_uses_tukeys_fence(planted):
    X, _ = planted
    det = DeepSVDD(
        device="cpu", max_iter=3, random_state=0, contamination="auto"
    ).fit(X)
    anomaly = -det.score_samples(X)
    q1, q3 = np.percentile(anomaly, [25, 75])
    assert det.offset_ == pytest.approx(-(q3 + 1.5 * (q3 - q1)))
    assert det.score_scale_ == pytest.approx(q3 - q1)
    flagged = (det.predict(X) == -1).mean()
    assert 0 < flagged < 0.25
