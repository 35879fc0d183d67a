"""Hyper-parameter search with skad scorers: Pipelines, refit, n_jobs, Dask."""

import os

import joblib
import numpy as np
import pytest
import torch
from scipy.stats import loguniform
from sklearn.model_selection import (
    GridSearchCV,
    RandomizedSearchCV,
    StratifiedKFold,
    cross_val_score,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skad
from skad.metrics import SCORERS, average_precision_scorer, roc_auc_scorer
from skad.utils import torch_threads
from tests._helpers import labelled_instances, make_planted, name

CV = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)


def _data():
    return make_planted(n_normal=240, n_anomaly=24, n_features=6, seed=1)


def _pipe(**params):
    det = skad.DeepSVDD(max_iter=3, device="cpu", random_state=0, **params)
    return make_pipeline(StandardScaler(), det)


GRID = {"deepsvdd__latent_dim": [4, 8], "deepsvdd__hidden_layer_sizes": [(16,)]}


def test_grid_search_pipeline_refit():
    X, y = _data()
    search = GridSearchCV(_pipe(), GRID, scoring=roc_auc_scorer, cv=CV, refit=True)
    search.fit(X, y)
    assert set(search.best_params_) == set(GRID)
    assert 0.0 <= search.best_score_ <= 1.0
    best = search.best_estimator_
    assert best[-1].latent_dim == search.best_params_["deepsvdd__latent_dim"]
    # refit on all rows: the search scores and predicts like its best pipeline
    np.testing.assert_array_equal(search.score_samples(X), best.score_samples(X))
    assert search.score(X, y) == roc_auc_scorer(best, X, y)
    assert set(np.unique(search.predict(X))) <= {-1, 1}


def test_multi_metric_search_refits_on_named_scorer():
    X, y = _data()
    search = GridSearchCV(_pipe(), GRID, scoring=SCORERS, cv=CV, refit="roc_auc")
    search.fit(X, y)
    for scorer in SCORERS:
        assert f"mean_test_{scorer}" in search.cv_results_
    best = np.argmax(search.cv_results_["mean_test_roc_auc"])
    assert search.best_index_ == best


def test_randomized_search():
    X, y = _data()
    search = RandomizedSearchCV(
        _pipe(),
        {
            "deepsvdd__learning_rate_init": loguniform(1e-4, 1e-2),
            "deepsvdd__latent_dim": [4, 8, 16],
        },
        n_iter=3,
        scoring=average_precision_scorer,
        cv=CV,
        random_state=0,
    ).fit(X, y)
    assert len(search.cv_results_["params"]) == 3
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_cross_val_score_with_scorer():
    X, y = _data()
    scores = cross_val_score(_pipe(), X, y, scoring=roc_auc_scorer, cv=CV)
    assert scores.shape == (3,)
    assert np.all(scores > 0.5)


def _torch_thread_scorer(estimator, X, y):
    import torch

    return float(torch.get_num_threads())


def test_grid_search_n_jobs_2_matches_sequential_without_oversubscription():
    """Two loky worker processes: same results as sequential, and torch in
    each worker uses at most cpu_count() // 2 threads (joblib sets the
    workers' OMP_NUM_THREADS, which torch follows)."""
    X, y = _data()
    scoring = {"roc_auc": roc_auc_scorer, "threads": _torch_thread_scorer}
    kw = dict(scoring=scoring, cv=CV, refit="roc_auc")
    seq = GridSearchCV(_pipe(), GRID, n_jobs=1, **kw).fit(X, y)
    par = GridSearchCV(_pipe(), GRID, n_jobs=2, **kw).fit(X, y)
    np.testing.assert_array_equal(
        seq.cv_results_["mean_test_roc_auc"], par.cv_results_["mean_test_roc_auc"]
    )
    expected = int(os.environ.get("OMP_NUM_THREADS", max(joblib.cpu_count() // 2, 1)))
    worker_threads = par.cv_results_["mean_test_threads"]
    assert np.all(worker_threads <= expected), worker_threads


def test_torch_threads_context():
    before = torch.get_num_threads()
    with torch_threads(1) as previous:
        assert torch.get_num_threads() == 1
        assert previous == before
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError):
        with torch_threads(0):
            pass


def _recording(estimator):
    """A clone of ``estimator`` whose class records the labels of every fit."""
    cls = type(estimator)
    seen = []

    def _fit(self, X, labels=None):
        seen.append(None if labels is None else np.asarray(labels).copy())
        return cls._fit(self, X, labels=labels)

    recorder = type(f"Recording{cls.__name__}", (cls,), {"_fit": _fit})
    return recorder(**estimator.get_params()), seen


@pytest.mark.parametrize("estimator", labelled_instances(), ids=name)
def test_search_splits_labels_with_the_folds(estimator):
    """GridSearchCV(...).fit(X, y, labels=...) gives every fit the labels of
    its training fold (and the refit all of them), for every detector that
    takes labels; the scorer sees the truth y."""
    X, y = make_planted(n_normal=90, n_anomaly=30)
    labels = skad.utils.semi_supervised_labels(y, 0.5, random_state=0)
    est, seen = _recording(estimator)
    search = GridSearchCV(
        est,
        {"contamination": [0.05, 0.1]},
        scoring=roc_auc_scorer,
        cv=CV,
    ).fit(X, y, labels=labels)
    folds = [labels[train] for train, _ in CV.split(X, y)]
    assert len(seen) == 7  # 2 candidates x 3 folds + refit
    for got, expected in zip(seen[:6], folds + folds):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(seen[6], labels)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_dask_backend_grid_search():
    """The same search on a Dask cluster through joblib's dask backend."""
    distributed = pytest.importorskip("distributed")
    X, y = _data()
    seq = GridSearchCV(_pipe(), GRID, scoring=roc_auc_scorer, cv=CV).fit(X, y)
    search = GridSearchCV(_pipe(), GRID, scoring=roc_auc_scorer, cv=CV)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
        torch_threads(1),  # in-process workers share torch's thread pool
        joblib.parallel_backend("dask"),
    ):
        search.fit(X, y)
    np.testing.assert_array_equal(
        seq.cv_results_["mean_test_score"], search.cv_results_["mean_test_score"]
    )
    assert search.best_params_ == seq.best_params_
