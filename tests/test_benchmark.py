"""skad.benchmark: protocol splits, registry, runner, resumption, report."""

import csv

import numpy as np
import pytest
from sklearn.base import BaseEstimator, OutlierMixin

from skad.benchmark import (
    FIELDS,
    DeepODAdapter,
    DeepODSemiSupervisedAdapter,
    DetectorSpec,
    EvalRecord,
    PyODAdapter,
    _registry,
    get_registry,
    prepare_split,
    read_csv,
    run,
    select,
)
from skad.benchmark._protocol import EvalJob, SplitCache
from skad.benchmark._suites import Task
from skad.datasets import make_blobs_task
from skad.metrics import roc_auc
from skad.utils import accepts_labels


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
    seen = []

    def fit(self, X, y=None, labels=None):
        _WantsLabels.seen.append(labels)
        return super().fit(X)


class _PrivateFlagOnly(_Perfect):
    """Claims label support through a private flag only: gets no labels."""

    _supports_labels = True

    def fit(self, X, y=None, **kwargs):
        assert "labels" not in kwargs
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
    specs = [
        DetectorSpec("Wants", _WantsLabels),
        DetectorSpec("Perfect", _Perfect),
        DetectorSpec("Private", _PrivateFlagOnly),
    ]
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
    assert n_labeled == {"Wants": 6, "Perfect": 0, "Private": 0}


@pytest.mark.parametrize("adapter", [PyODAdapter, DeepODAdapter])
def test_adapters_flip_the_sign(adapter):
    X, y = _data()
    est = adapter(_FakePyOD, random_state=0).fit(X)
    assert roc_auc(y, est.score_samples(X)) == 1.0
    assert est.estimator_.random_state == 0
    assert not accepts_labels(est)
    assert (est.predict(X) == -1).mean() == pytest.approx(0.1)


def test_semi_supervised_adapter_takes_labels():
    X, y = _data()
    labels = np.where(y == 1, -1, 0)
    semi = DeepODSemiSupervisedAdapter(_FakePyOD).fit(X, labels=labels)
    np.testing.assert_array_equal(semi.estimator_.y_, y)  # -1 -> DeepOD's y = 1
    assert accepts_labels(semi)
    with pytest.raises(ValueError, match="needs labels"):
        DeepODSemiSupervisedAdapter(_FakePyOD).fit(X)
    # the registry's semi-supervised peers join only the semi-supervised setting
    reg = get_registry()
    if "DeepOD-DevNet" in reg:
        assert accepts_labels(reg["DeepOD-DevNet"](0))
        assert not accepts_labels(reg["DeepOD-DeepSVDD"](0))
        assert "DeepOD-DevNet" not in [s.name for s in select(["deepod"])]
        semi_names = [s.name for s in select(["deepod"], setting="semi-supervised")]
        assert "DeepOD-DevNet" in semi_names


class _FitKwargs(_Perfect):
    def fit(self, X, y=None, **fit_params):
        return super().fit(X)


def test_accepts_labels_reads_the_signature():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skad import DeepSAD, DeepSVDD

    assert accepts_labels(_WantsLabels()) and accepts_labels(_WantsLabels)
    assert not accepts_labels(_Perfect())
    assert not accepts_labels(_PrivateFlagOnly())  # private flags are not read
    assert not accepts_labels(_FitKwargs())  # **kwargs is no promise
    inner = make_pipeline(StandardScaler(), DeepSAD())
    assert accepts_labels(make_pipeline(StandardScaler(), inner))
    assert not accepts_labels(make_pipeline(StandardScaler(), DeepSVDD()))
    assert not accepts_labels(object())


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


class _FakePyODWithTrainingScores(_FakePyOD):
    """PyOD keeps the training rows' anomaly scores as decision_scores_."""

    calls = 0

    def fit(self, X, y=None):
        self.decision_scores_ = np.asarray(X)[:, 0]
        return self

    def decision_function(self, X):
        type(self).calls += 1
        return super().decision_function(X)


def test_adapter_offset_from_the_peers_training_scores():
    X, _ = _data()
    _FakePyODWithTrainingScores.calls = 0
    est = PyODAdapter(_FakePyODWithTrainingScores).fit(X)
    assert _FakePyODWithTrainingScores.calls == 0  # no second pass over X
    assert est.offset_ == pytest.approx(np.percentile(-X[:, 0], 10))


# ---------------------------------------------------------- typed records
def test_record_columns_are_the_csv_columns():
    # the columns of results.csv, in order: unchanged by the restructure
    assert FIELDS == EvalRecord.columns() == [
        "suite", "group", "dataset", "detector", "seed", "setting", "status",
        "roc_auc", "average_precision", "fit_seconds", "score_seconds",
        "n_samples", "n_samples_original", "n_features", "n_train",
        "n_train_anomalies", "n_test", "n_test_anomalies", "n_labeled",
        "label_fraction", "threads", "error", "f1_auto", "f1_true", "auto_flagged",
    ]  # fmt: skip
    record = EvalRecord(
        dataset="d", detector="D", seed=3, setting="one-class", status="ok",
        roc_auc=0.123456789, fit_seconds=1.23456789, n_train=7,
    )  # fmt: skip
    row = record.to_row()
    assert list(row) == FIELDS
    assert (row["roc_auc"], row["fit_seconds"], row["error"]) == (
        "0.123457",
        "1.23457",
        "",
    )
    back = EvalRecord.from_row(row)
    assert back.key() == ("d", "D", 3, "one-class") == record.key()
    assert back.n_train == 7 and back.error is None


def test_split_cache_loads_each_dataset_once():
    loads = []

    def loader():
        loads.append(1)
        return _data()

    task = Task("planted", "user", loader)
    cache = SplitCache()
    jobs = [EvalJob("custom", task, DetectorSpec(n, _Perfect), 0) for n in "ab"]
    first, second = (cache.get(j) for j in jobs)
    assert first is second and len(loads) == 1
    cache.get(EvalJob("custom", task, jobs[0].spec, seed=1))
    assert len(loads) == 2


def test_records_come_back_in_job_order():
    specs = [DetectorSpec("B", _Perfect), DetectorSpec("A", _Raises)]
    rows = run(
        _suite(),
        detectors=specs,
        seeds=[1, 0],
        isolate=False,
        progress=False,
        as_frame=False,
    )
    order = [(r["dataset"], r["seed"], r["detector"]) for r in rows]
    assert order == [
        (ds, seed, det)
        for ds in ("planted", "planted2")
        for seed in (1, 0)
        for det in ("B", "A")
    ]
    assert list(rows[0]) == FIELDS


class _FailsOnce(_Perfect):
    """Fails while its marker file is absent (creates it), then works."""

    marker = None

    def fit(self, X, y=None):
        if not _FailsOnce.marker.exists():
            _FailsOnce.marker.touch()
            raise RuntimeError("first attempt")
        return super().fit(X)


def test_retry_failed_reruns_only_failed_jobs(tmp_path):
    _FailsOnce.marker = tmp_path / "attempted"
    kwargs = dict(
        detectors=[DetectorSpec("Flaky", _FailsOnce), DetectorSpec("Ok", _Perfect)],
        output=tmp_path / "out",
        isolate=False,
        progress=False,
        as_frame=False,
    )
    suite = {"planted": _data()}
    first = {r["detector"]: r["status"] for r in run(suite, **kwargs)}
    assert first == {"Flaky": "failed", "Ok": "ok"}
    again = {r["detector"]: r["status"] for r in run(suite, **kwargs)}
    assert again == first  # resumed: nothing re-runs
    retried = run(suite, retry_failed=True, **kwargs)
    assert {r["detector"]: r["status"] for r in retried} == {"Flaky": "ok", "Ok": "ok"}
    rows = read_csv(tmp_path / "out" / "results.csv")
    assert [r["status"] for r in rows] == ["failed", "ok", "ok"]
    assert isinstance(rows[0]["seed"], int) and isinstance(rows[1]["roc_auc"], float)
    # a file with other columns is refused instead of mixed
    other = tmp_path / "other"
    other.mkdir()
    (other / "results.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="other columns"):
        run(suite, **{**kwargs, "output": other})


# ------------------------------------------------- thresholds: F1 columns
def _f1(y, is_inlier):
    from sklearn.metrics import f1_score

    return f1_score(y, (np.asarray(is_inlier) == -1).astype(int), zero_division=0.0)


def _fit(detector, X):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), detector).fit(X)


def _overlapping(seed=0):
    """Anomalies that overlap the normal rows: thresholds matter."""
    rng = np.random.default_rng(seed)
    X = np.r_[rng.normal(size=(270, 4)), rng.normal(1.5, 1.0, size=(30, 4))]
    y = np.r_[np.zeros(270, int), np.ones(30, int)]
    return prepare_split(X, y, seed=seed)


def test_f1_auto_is_the_skad_auto_threshold_of_the_same_model():
    from skad import DeepSVDD
    from skad.base import _auto_threshold
    from skad.benchmark._thresholds import threshold_metrics, training_scores

    s = _overlapping()
    rate = s["n_train_anomalies"] / s["n_train"]
    params = dict(max_iter=3, device="cpu", random_state=0)
    pipe = _fit(DeepSVDD(**params), s["X_train"])  # contamination=0.1
    train = training_scores(pipe, s["X_train"])
    test = pipe.score_samples(s["X_test"])
    m = threshold_metrics(s["y_test"], test, train, rate)
    # what the same detector sets with contamination="auto" / the true rate
    auto = _fit(DeepSVDD(contamination="auto", **params), s["X_train"])
    assert auto[-1].offset_ == -_auto_threshold(-train)
    np.testing.assert_array_equal(auto.score_samples(s["X_test"]), test)
    assert m["f1_auto"] == _f1(s["y_test"], auto.predict(s["X_test"]))
    assert m["auto_flagged"] == np.mean(auto.predict(s["X_test"]) == -1)
    true = _fit(DeepSVDD(contamination=rate, **params), s["X_train"])
    assert m["f1_true"] == _f1(s["y_test"], true.predict(s["X_test"]))


@pytest.mark.parametrize("name", ["IsolationForest", "LOF", "KNN"])
def test_f1_true_matches_the_baselines_own_contamination(name):
    from skad.benchmark._thresholds import threshold_metrics, training_scores

    s = _overlapping(1)
    rate = s["n_train_anomalies"] / s["n_train"]
    spec = get_registry()[name]
    pipe = _fit(spec(0), s["X_train"])
    m = threshold_metrics(
        s["y_test"],
        pipe.score_samples(s["X_test"]),
        training_scores(pipe, s["X_train"]),
        rate,
    )
    # the baseline fitted with contamination = the true rate predicts the same
    own = _fit(spec(0).set_params(contamination=rate), s["X_train"])
    assert m["f1_true"] == pytest.approx(_f1(s["y_test"], own.predict(s["X_test"])))


def test_adapter_keeps_the_training_scores_its_threshold_uses():
    X, _ = _data()
    est = PyODAdapter(_FakePyODWithTrainingScores).fit(X)
    np.testing.assert_array_equal(est.training_scores_, -X[:, 0].astype(np.float32))


def test_records_carry_f1_columns_and_the_csv_too(tmp_path):
    specs = [DetectorSpec("Perfect", _Perfect), "IsolationForest", "LOF"]
    rows = run(
        {"planted": _data()},
        detectors=specs,
        setting="one-class",
        output=tmp_path,
        isolate=False,
        progress=False,
        as_frame=False,
    )
    for r in rows:
        assert r["status"] == "ok" and r["error"] is None
        assert 0 <= r["f1_auto"] <= 1 and 0 <= r["f1_true"] <= 1
        assert 0 <= r["auto_flagged"] <= 1
    perfect = rows[0]
    # anomalies (feature 0 >= 10) lie far beyond every normal training row
    assert perfect["f1_auto"] == perfect["f1_true"] == 1.0
    assert perfect["auto_flagged"] == pytest.approx(12 / 120)
    back = read_csv(tmp_path / "results.csv")
    assert [r["f1_auto"] for r in back] == [round(r["f1_auto"], 6) for r in rows]


def test_resuming_a_file_without_the_f1_columns(tmp_path):
    kwargs = dict(
        detectors=[DetectorSpec("Perfect", _Perfect)],
        output=tmp_path,
        isolate=False,
        progress=False,
        as_frame=False,
    )
    run({"planted": _data()}, **kwargs)
    path = tmp_path / "results.csv"
    old = FIELDS[: FIELDS.index("error") + 1]  # the columns of earlier versions
    with open(path, newline="") as fh:
        rows = [{k: r[k] for k in old} for r in csv.DictReader(fh)]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, old)
        writer.writeheader()
        writer.writerows(rows)
    assert read_csv(path)[0]["f1_auto"] is None  # loads, new columns empty
    both = run({"planted": _data(), "planted2": _data(seed=1)}, **kwargs)
    assert [r["dataset"] for r in both] == ["planted", "planted2"]
    back = read_csv(path)
    assert back[0]["f1_auto"] is None and back[1]["f1_auto"] == 1.0
    with open(path) as fh:
        assert fh.readline().strip().split(",") == FIELDS
