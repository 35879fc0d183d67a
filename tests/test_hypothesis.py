"""Property-based tests of the outlier contract for every public detector.

Random finite matrices (hypothesis) go through ``fit`` and the scoring
methods; whatever the data, ``decision_function == score_samples - offset_``,
``predict`` is the sign of ``decision_function``, scores are finite float64
and shapes are right. Runs are derandomised (the same examples every run) and
keep no example database, so the suite stays fast and reproducible; run with
``--hypothesis-show-statistics`` to see how many examples ran.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.base import clone

from tests._helpers import fast_instances

INSTANCES = fast_instances()

#: Examples per detector: each fit example trains a model (max_iter=3).
FIT_EXAMPLES = 6
SCORE_EXAMPLES = 20

_SETTINGS = dict(
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _name(est) -> str:
    return type(est).__name__


def _finite(bound):
    return st.floats(
        -bound, bound, allow_nan=False, allow_infinity=False, allow_subnormal=False
    )


@st.composite
def matrices(draw, n_features=None, min_rows=2, max_rows=24, bound=1e3):
    """Small float64 matrices of finite values (any scale up to ``bound``)."""
    d = n_features if n_features is not None else draw(st.integers(1, 5))
    n = draw(st.integers(min_rows, max_rows))
    return draw(hnp.arrays(np.float64, (n, d), elements=_finite(bound)))


def _check_contract(est, X):
    n = X.shape[0]
    s = est.score_samples(X)
    d = est.decision_function(X)
    p = est.predict(X)
    assert s.shape == d.shape == p.shape == (n,)
    assert s.dtype == np.float64 and d.dtype == np.float64
    assert np.issubdtype(p.dtype, np.integer)
    assert np.all(np.isfinite(s)) and np.all(np.isfinite(d))
    np.testing.assert_allclose(d, s - est.offset_, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(p, np.where(d < 0, -1, 1))
    return s


@pytest.mark.parametrize("estimator", INSTANCES, ids=_name)
@settings(max_examples=FIT_EXAMPLES, **_SETTINGS)
@given(X=matrices())
def test_fit_on_random_finite_data_keeps_the_contract(estimator, X):
    est = clone(estimator).fit(X)
    assert est.n_features_in_ == X.shape[1]
    assert np.isfinite(est.offset_)
    _check_contract(est, X)


_FITTED: dict[str, object] = {}


def _fitted(estimator):
    """One fitted detector per class, shared by the scoring properties."""
    name = _name(estimator)
    if name not in _FITTED:
        X = np.random.default_rng(0).normal(size=(60, 4))
        _FITTED[name] = clone(estimator).fit(X)
    return _FITTED[name]


@pytest.mark.parametrize("estimator", INSTANCES, ids=_name)
@settings(max_examples=SCORE_EXAMPLES, **_SETTINGS)
@given(X=matrices(n_features=4, min_rows=1, max_rows=40, bound=1e4))
def test_scoring_random_finite_rows_keeps_the_contract(estimator, X):
    est = _fitted(estimator)
    s = _check_contract(est, X)
    # a row's score does not depend on the rows scored with it
    for i in {0, X.shape[0] - 1}:
        np.testing.assert_allclose(
            est.score_samples(X[i : i + 1]), s[i : i + 1], rtol=1e-9, atol=1e-7
        )
