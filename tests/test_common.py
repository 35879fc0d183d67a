"""scikit-learn's estimator checks on every public skad detector.

No expected failures: every check must pass as it is.
"""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from skad import all_estimators
from skad.metrics import roc_auc
from tests._helpers import fast_instances


def test_all_estimators_lists_detectors():
    names = [name for name, _ in all_estimators()]
    assert "DeepSVDD" in names
    assert names == sorted(names)


@parametrize_with_checks(fast_instances())
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", fast_instances(), ids=lambda e: type(e).__name__)
def test_fit_leaves_global_rng_untouched(estimator):
    X = np.random.default_rng(0).normal(size=(60, 5))
    torch_state = torch.random.get_rng_state().clone()
    np_state = np.random.get_state()
    clone(estimator).fit(X)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1])
    assert after[2:] == np_state[2:]


@pytest.mark.parametrize("estimator", fast_instances(), ids=lambda e: type(e).__name__)
def test_same_random_state_same_scores(estimator):
    X = np.random.default_rng(1).normal(size=(80, 6))
    a = clone(estimator).fit(X).score_samples(X)
    b = clone(estimator).fit(X).score_samples(X)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("estimator", fast_instances(), ids=lambda e: type(e).__name__)
def test_contract_signs(estimator, planted):
    X, y = planted
    est = clone(estimator).fit(X)
    s = est.score_samples(X)
    d = est.decision_function(X)
    p = est.predict(X)
    assert s.dtype == np.float64 and d.dtype == np.float64
    np.testing.assert_allclose(d, s - est.offset_)
    np.testing.assert_array_equal(p, np.where(d < 0, -1, 1))
    assert set(np.unique(p)) <= {-1, 1}
    assert np.all(np.isfinite(s))
    # higher score_samples = more normal: anomalies must not rank above normals
    assert roc_auc(y, s) > 0.5


#: Shared parameters every detector has (docs/contributing.rst).
SHARED = {
    "contamination",
    "train_contamination",
    "max_iter",
    "batch_size",
    "learning_rate_init",
    "weight_decay",
    "early_stopping",
    "validation_fraction",
    "n_iter_no_change",
    "tol",
    "device",
    "random_state",
    "verbose",
}

#: Synonyms the vocabulary replaced (docs/contributing.rst).
RETIRED = {
    "hidden_dim",
    "hidden_dims",
    "conv_channels",
    "bottleneck_dim",
    "rep_dim",
    "score",
    "score_aggregation",
    "detector",
    "combine_detectors",
    "n_projections",
    "anomalies_per_batch",
    "min_updates",
    "mode",
    "epochs",
    "lr",
    "seed",
}


@pytest.mark.parametrize("estimator", fast_instances(), ids=lambda e: type(e).__name__)
def test_parameters_use_the_vocabulary(estimator):
    params = set(estimator.get_params(deep=False))
    assert SHARED <= params, SHARED - params
    assert not params & RETIRED, params & RETIRED
    # the shared parameters are documented once, from the signature
    doc = type(estimator).__doc__
    for name in SHARED:
        assert f"\n    {name} : " in doc, name
    assert "{" + "max_iter}" not in doc  # every placeholder was filled
