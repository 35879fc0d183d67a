"""skad.benchmark: protocol splits, registry, runner, resumption, report."""

import csv

import numpy as np
import pytest
from sklearn.base import BaseEstimator, OutlierMixin

from skad.benchmark import (
    DeepODAdapter,
    DetectorSpec,
    PyODAdapter,
    _registry,
    get_registry,
    prepare_split,
    run,
    select,
)
from skad.datasets import make_blobs_task
from skad.metrics import roc_auc


def _data(n=400, anomalies=40, seed=0):
    rng = np.random.default_rng(seed)
    X = np.clip(rng.normal(size=(n, 4)), -3, 3)
    y = np.zeros(n, np.int64)
    y[:anomalies] = 1
    X[:anomalies, 0] = 10 + rng.uniform(size=anomalies)  # feature 0 separates them
    perm = rng.permutation(n)
    return X[perm], y[perm]


# ------------------------------------------------------------------ splits
def test_split_unsupervised_keeps_anomalies_and_stratifies():
    X, y = _data()
    s = prepare_split(X, y, seed=0)
    assert s["n_train"] == 280 and s["n_test"] == 120
    assert s["n_train_anomalies"] == 28 and s["n_test_anomalies"] == 12
    assert s["labels"] is None and s["y_train"].sum() == 28


def test_split_one_class_has_no_training_anomaly():
    X, y = _data()
    s = prepare_split(X, y, seed=1, setting="one-class")
    assert s["y_train"].sum() == 0 and s["n_train"] == 252
    assert np.all(s["X_train"][:, 0] < 5)
    # the test rows are the same as in the unsupervised setting
    u = prepare_split(X, y, seed=1)
    np.testing.assert_array_equal(s["X_test"], u["X_test"])


@pytest.mark.parametrize("fraction, expected", [(0.1, 3), (0.0, 1), (0.5, 14)])
def test_split_semi_supervised_labels_only_training_anomalies(fraction, expected):
    X, y = _data()
    s = prepare_split(X, y, seed=2, setting="semi-supervised", label_fraction=fraction)
    labels, y_train = s["labels"], s["y_train"]
    assert labels.shape == y_train.shape
    assert set(np.unique(labels)) <= {0, -1}
    assert np.all(y_train[labels == -1] == 1)  # only anomalies are labelled
    assert (labels == -1).sum() == expected == s["n_labeled"]  # at least one


def test_split_subsamples_stratified_and_seeded():
    X, y = _data(n=1000, anomalies=100)
    s = prepare_split(X, y, seed=0, max_samples=500)
    assert s["n_samples"] == 500 and s["n_samples_original"] == 1000
    assert s["n_train_anomalies"] + s["n_test_anomalies"] == 50
    s2 = prepare_split(X, y, seed=0, max_samples=500)
    np.testing.assert_array_equal(s["X_train"], s2["X_train"])
    s3 = prepare_split(X, y, seed=1, max_samples=500)
    assert not np.array_equal(s["X_train"], s3["X_train"])


# ---------------------------------------------------------------- registry
def test_registry_has_skad_and_baselines():
    from skad import all_estimators

    reg = get_registry()
    for name, _ in all_estimators():
        assert reg[name].kind == "skad"
    for name in ("IsolationForest", "LOF", "OCSVM", "KNN"):
        assert reg[name].kind == "baseline"
    assert reg["LOF"](0).novelty is True
    assert reg["DeepSVDD"](7).random_state == 7
    assert reg["KNN"](0).n_neighbors == 5


def test_variants_resolve_lazily(monkeypatch):
    monkeypatch.setitem(
        _registry.VARIANTS, "DeepSVDD-tiny", ("skad.DeepSVDD", {"max_iter": 2})
    )
    monkeypatch.setitem(_registry.VARIANTS, "Ghost", ("skad.NoSuchDetector", {}))
    reg = get_registry()
    assert "Ghost" not in reg
    est = reg["DeepSVDD-tiny"](3)
    assert est.max_iter == 2 and est.random_state == 3
    assert [s.name for s in select(["DeepSVDD-tiny"])] == ["DeepSVDD-tiny"]
    assert "DeepSVDD-tiny" not in [s.name for s in select(["default"])]
    with pytest.raises(ImportError):
        select(["Ghost"])
    with pytest.raises(ValueError, match="Unknown detector"):
        select(["NoSuchName"])


# ------------------------------------------------------------ stub detectors
class _Perfect(OutlierMixin, BaseEstimator):
    """Scores feature 0 (the anomaly indicator of `_data`)."""

    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def score_samples(self, X):
        return -np.asarray(X)[:, 0]


class _Raises(_Perfect):
    def fit(self, X, y=None):
        raise RuntimeError("boom")


class _WantsLabels(_Perfect):
    _supports_labels = True
    seen = []

    def fit(self, X, y=None, labels=None):
        _WantsLabels.seen.append(labels)
        return super().fit(X)


class _FakePyOD:
    """PyOD/DeepOD-like: decision_function is an *anomaly* score."""

    def __init__(self, random_state=None, verbose=1, device=None):
        self.random_state = random_state

    def fit(self, X, y=None):
        self.y_ = y
        return self

    def decision_function(self, X):
        return np.asarray(X)[:, 0]


def _suite():
    return {"planted": _data(), "planted2": _data(seed=1)}


def test_run_records_failures_and_worst_rank():
    specs = [DetectorSpec("Perfect", _Perfect), DetectorSpec("Broken", _Raises)]
    rows = run(_suite(), detectors=specs, isolate=False, progress=False, as_frame=False)
    by = {(r["dataset"], r["detector"]): r for r in rows}
    assert len(rows) == 4
    assert by[("planted", "Perfect")]["roc_auc"] == 1.0
    assert by[("planted", "Broken")]["status"] == "failed"
    assert "boom" in by[("planted", "Broken")]["error"]
    from skad.benchmark import summarize

    summary = summarize(rows)
    ranks = {o["detector"]: o["rank"] for o in summary["overall"]}
    assert ranks == {"Perfect": 1.0, "Broken": 2.0}


def test_labels_reach_only_label_aware_detectors():
    _WantsLabels.seen.clear()
    specs = [DetectorSpec("Wants", _WantsLabels), DetectorSpec("Perfect", _Perfect)]
    rows = run(
        {"planted": _data()},
        detectors=specs,
        setting="semi-supervised",
        label_fraction=0.2,
        isolate=False,
        progress=False,
        as_frame=False,
    )
    assert all(r["status"] == "ok" for r in rows), rows
    (labels,) = _WantsLabels.seen
    assert (labels == -1).sum() == 6 and set(np.unique(labels)) == {0, -1}
    n_labeled = {r["detector"]: r["n_labeled"] for r in rows}
    assert n_labeled == {"Wants": 6, "Perfect": 0}


@pytest.mark.parametrize("adapter", [PyODAdapter, DeepODAdapter])
def test_adapters_flip_the_sign(adapter):
    X, y = _data()
    est = adapter(_FakePyOD, random_state=0).fit(X)
    assert roc_auc(y, est.score_samples(X)) == 1.0
    assert est.estimator_.random_state == 0
    # semi-supervised: -1 labels become PyOD's y = 1
    labels = np.where(y == 1, -1, 0)
    semi = adapter(_FakePyOD, semi_supervised=True).fit(X, labels=labels)
    np.testing.assert_array_equal(semi.estimator_.y_, y)
    assert semi._supports_labels


def test_adapters_through_the_runner():
    specs = [
        DetectorSpec("FakePyOD", PyODAdapter, {"model": _FakePyOD}),
        DetectorSpec("FakeDeepOD", DeepODAdapter, {"model": _FakePyOD}),
    ]
    rows = run(_suite(), detectors=specs, isolate=False, progress=False, as_frame=False)
    assert [r["roc_auc"] for r in rows] == [1.0] * 4


# --------------------------------------------- end to end, files, resumption
def test_end_to_end_files_and_resume(tmp_path):
    out = tmp_path / "bench"
    kwargs = dict(
        detectors=["IsolationForest", "KNN"],
        output=out,
        isolate=False,
        progress=False,
        as_frame=False,
    )
    rows = run("synthetic", **kwargs)
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    with open(out / "results.csv") as fh:
        first = list(csv.DictReader(fh))
    assert len(first) == 4
    text = (out / "summary.md").read_text()
    assert "## Overall" in text and "IsolationForest" in text and "W/T/L" in text
    pytest.importorskip("matplotlib")
    assert (out / "rank.png").stat().st_size > 0
    assert (out / "heatmap.png").stat().st_size > 0

    # second run: nothing re-runs (a broken detector under the same name would fail)
    broken = [DetectorSpec("IsolationForest", _Raises), DetectorSpec("KNN", _Raises)]
    rows2 = run("synthetic", **{**kwargs, "detectors": broken})
    assert all(r["status"] == "ok" for r in rows2)
    with open(out / "results.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 4
    # a new seed only runs the new jobs
    rows3 = run("synthetic", seeds=[0, 1], **kwargs)
    assert len(rows3) == 8
    with open(out / "results.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 8


def test_dataframe_when_pandas_installed():
    pd = pytest.importorskip("pandas")
    df = run(
        {"blobs": make_blobs_task(n_samples=200)},
        detectors=["KNN"],
        isolate=False,
        progress=False,
    )
    assert isinstance(df, pd.DataFrame) and df.loc[0, "status"] == "ok"


def test_isolated_failure_and_timeout(tmp_path):
    """Jobs in a child process: a failing and a hanging detector are recorded."""
    specs = [
        DetectorSpec(
            "Invalid", "sklearn.ensemble.IsolationForest", {"n_estimators": 0}
        ),
        DetectorSpec(
            "Hangs",
            "skad.DeepSVDD",
            {"max_iter": 10**7, "n_iter_no_change": 10**7, "device": "cpu"},
        ),
    ]
    rows = run(
        {"blobs": make_blobs_task(n_samples=200)},
        detectors=specs,
        timeout=2,
        threads=1,
        n_jobs=2,
        output=tmp_path,
        progress=False,
        as_frame=False,
    )
    status = {r["detector"]: r["status"] for r in rows}
    assert status == {"Invalid": "failed", "Hangs": "timeout"}
    by = {r["detector"]: r for r in rows}
    assert "n_estimators" in by["Invalid"]["error"]
    assert by["Hangs"]["roc_auc"] is None
    text = (tmp_path / "summary.md").read_text()
    assert "Failed jobs" in text and "timeout" in text


def test_knn_baseline_is_a_valid_estimator():
    from sklearn.utils.estimator_checks import check_estimator

    from skad.benchmark import KNN

    check_estimator(KNN())
    X, y = _data()
    assert roc_auc(y, KNN().fit(X[y == 0]).score_samples(X)) == 1.0
