"""pandas DataFrame input for every detector."""

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.compose import make_column_transformer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skad.utils import accepts_labels
from tests._helpers import fast_instances

pd = pytest.importorskip("pandas")

INSTANCES = fast_instances()
IDS = [type(e).__name__ for e in INSTANCES]


def _frame(n=60, d=5, seed=0):
    X = np.random.default_rng(seed).normal(size=(n, d))
    return pd.DataFrame(X, columns=[f"feat_{i}" for i in range(d)])


def _fit(estimator, X):
    est = clone(estimator)
    if accepts_labels(est):
        labels = pd.Series(np.zeros(len(X), dtype=int))
        labels[:2] = -1
        return est.fit(X, labels=labels)
    return est.fit(X)


@pytest.mark.parametrize("estimator", INSTANCES, ids=IDS)
def test_dataframe_in_same_scores_as_array(estimator):
    df = _frame()
    est_df = _fit(estimator, df)
    np.testing.assert_array_equal(est_df.feature_names_in_, df.columns.to_numpy())
    assert est_df.n_features_in_ == df.shape[1]
    est_np = _fit(estimator, df.to_numpy())
    assert not hasattr(est_np, "feature_names_in_")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same names: no warning
        s_df = est_df.score_samples(df)
        est_df.predict(df)
        est_df.decision_function(df)
    np.testing.assert_array_equal(s_df, est_np.score_samples(df.to_numpy()))


@pytest.mark.parametrize("estimator", INSTANCES, ids=IDS)
def test_feature_name_checks_as_in_sklearn(estimator):
    df = _frame()
    est = _fit(estimator, df)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        est.predict(df.to_numpy())
    with pytest.raises(ValueError, match="feature names should match"):
        est.predict(df.rename(columns={"feat_0": "other"}))
    with pytest.raises(ValueError, match="feature names should match"):
        est.score_samples(df[df.columns[::-1]])


@pytest.mark.parametrize("estimator", INSTANCES, ids=IDS)
def test_non_numeric_columns_clear_error(estimator):
    df = _frame()
    for column in (
        ["a", "b"] * 30,  # object / str
        pd.Categorical(["a", "b"] * 30),
        pd.Series(["1.5", "2"] * 30, dtype="string"),  # numbers as strings
        pd.date_range("2024-01-01", periods=60),
    ):
        bad = df.assign(city=column)
        with pytest.raises(ValueError, match="non-numeric columns: 'city'"):
            _fit(estimator, bad)
    est = _fit(estimator, df)
    bad = df.assign(feat_0=["a", "b"] * 30)
    with pytest.raises(ValueError, match="non-numeric columns: 'feat_0'"):
        est.score_samples(bad)


@pytest.mark.parametrize("estimator", INSTANCES, ids=IDS)
def test_nullable_and_bool_columns_accepted(estimator):
    df = _frame()
    df["flag"] = pd.Series([True, False] * 30, dtype="boolean")
    df["count"] = pd.Series(np.arange(60) % 7, dtype="Int64")
    est = _fit(estimator, df)
    assert list(est.feature_names_in_[-2:]) == ["flag", "count"]
    assert np.isfinite(est.score_samples(df)).all()


@pytest.mark.parametrize("estimator", INSTANCES, ids=IDS)
def test_set_output_pandas_where_transform(estimator):
    """Detectors exposing ``transform`` (an embedding) honour set_output."""
    if not hasattr(estimator, "transform"):
        pytest.skip(f"{type(estimator).__name__} has no transform")
    df = _frame()
    est = clone(estimator).set_output(transform="pandas")
    est = _fit(est, df)
    out = est.transform(df)
    assert isinstance(out, pd.DataFrame)
    assert list(out.index) == list(df.index)


def test_pipeline_with_column_transformer():
    """Categorical columns are encoded in the pipeline, then detected."""
    from skad import DeepSVDD

    df = _frame()
    df["city"] = ["paris", "rome", "oslo"] * 20
    pre = make_column_transformer(
        (OneHotEncoder(sparse_output=False), ["city"]),
        (StandardScaler(), [f"feat_{i}" for i in range(5)]),
    ).set_output(transform="pandas")
    pipe = make_pipeline(pre, DeepSVDD(max_iter=2, device="cpu", random_state=0))
    pipe.fit(df)
    det = pipe[-1]
    assert "onehotencoder__city_paris" in det.feature_names_in_
    assert pipe.predict(df).shape == (60,)
