"""Reliability of every public detector: bad input, numerical faults,
determinism and device faults.

Every test is parametrised over :func:`tests._instances.fast_instances`, so a
detector added to ``skad.__all__`` is covered without editing this file. The
bad-input table below is the one documented in ``docs/reliability.rst``
(``test_docs_table_lists_every_case`` keeps the two in sync).
"""

from __future__ import annotations

import inspect
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skad import TrainingDivergedError, _engine
from skad.metrics import roc_auc
from tests._instances import fast_instances
from tests.conftest import make_planted

INSTANCES = fast_instances()
LABELLED = [e for e in INSTANCES if getattr(e, "_supports_labels", False)]
DOCS = Path(__file__).resolve().parents[1] / "docs" / "reliability.rst"


def _name(est) -> str:
    return type(est).__name__


def _data(n=40, d=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


_FITTED: dict[str, object] = {}


def _fitted(est):
    """A detector fitted on ``_data()``, one per class, shared by the tests
    that only score (they must not modify it)."""
    name = _name(est)
    if name not in _FITTED:
        _FITTED[name] = clone(est).fit(_data())
    return _FITTED[name]


@pytest.fixture
def no_training(monkeypatch):
    """Make any attempt to build or train networks fail loudly.

    A bad-input error must come from validation, before ``_build_networks``
    and ``_fit_networks`` run.
    """

    def install(est):
        def spy(*args, **kwargs):
            raise AssertionError(f"{_name(est)} started training on bad input")

        monkeypatch.setattr(type(est), "_build_networks", spy)
        monkeypatch.setattr(type(est), "_fit_networks", spy)

    return install


# ---------------------------------------------------------------------------
# The bad-input table (docs/reliability.rst)
# ---------------------------------------------------------------------------


def _with(X, i, j, value):
    X = X.astype(object) if isinstance(value, str | dict) else X.copy()
    X[i, j] = value
    return X


def _object_strings():
    X = _data().astype(object)
    X[:, 1] = "blue"
    return X


def _dataframe_with_text():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(_data(), columns=list("abcd"))
    df["colour"] = "blue"
    return df


@dataclass
class Case:
    """One row of the bad-input table: what is passed, and the error."""

    id: str
    exc: type
    match: str
    X: object = None  # callable -> X for fit (or for predict when at="predict")
    params: dict = field(default_factory=dict)
    at: str = "fit"  # "fit" or "predict"
    labels: object = None  # callable(n) -> labels (semi-supervised rows)
    skip_if_cuda: bool = False


NOT_NUMERIC = "non-numeric|string dtype"

#: Inputs rejected with a clear error before any training starts.
BAD_INPUT = [
    Case("nan", ValueError, "contains NaN", lambda: _with(_data(), 3, 1, np.nan)),
    Case("pos_inf", ValueError, "infinity", lambda: _with(_data(), 3, 1, np.inf)),
    Case("neg_inf", ValueError, "infinity", lambda: _with(_data(), 3, 1, -np.inf)),
    Case("empty", ValueError, r"0 sample\(s\)", lambda: np.empty((0, 4))),
    Case("no_features", ValueError, r"0 feature\(s\)", lambda: np.empty((40, 0))),
    Case("one_sample", ValueError, r"1 sample\(s\).*minimum of 2", lambda: _data()[:1]),
    Case("1d", ValueError, "Expected 2D array", lambda: _data()[:, 0]),
    Case("3d", ValueError, "3 dimensions", lambda: _data(40, 8).reshape(40, 2, 4)),
    Case("strings", ValueError, NOT_NUMERIC, lambda: np.array([["a", "b"]] * 5)),
    Case("numeric_strings", ValueError, NOT_NUMERIC, lambda: _data().astype(str)),
    Case("list_of_strings", ValueError, NOT_NUMERIC, lambda: [["a", "b"]] * 5),
    Case("object_strings", ValueError, NOT_NUMERIC, _object_strings),
    Case(
        "object_dict", TypeError, "argument must be", lambda: _with(_data(), 0, 0, {})
    ),
    Case("dataframe_text", ValueError, NOT_NUMERIC, _dataframe_with_text),
    Case("complex", ValueError, "Complex data not supported", lambda: _data() + 1j),
    Case("sparse_csr", TypeError, "Sparse data", lambda: sp.csr_matrix(_data())),
    Case("sparse_coo", TypeError, "Sparse data", lambda: sp.coo_matrix(_data())),
    Case("sparse_array", TypeError, "Sparse data", lambda: sp.csr_array(_data())),
    # parameters (validated by _parameter_constraints before fit runs)
    Case("contamination_0", ValueError, "contamination", params={"contamination": 0}),
    Case(
        "contamination_neg", ValueError, "contamination", params={"contamination": -0.1}
    ),
    Case(
        "contamination_0.6", ValueError, "contamination", params={"contamination": 0.6}
    ),
    Case(
        "contamination_str",
        ValueError,
        "contamination",
        params={"contamination": "half"},
    ),
    Case(
        "train_contamination_0.5",
        ValueError,
        "train_contamination",
        params={"train_contamination": 0.5},
    ),
    Case("batch_size_0", ValueError, "batch_size", params={"batch_size": 0}),
    Case("batch_size_neg", ValueError, "batch_size", params={"batch_size": -8}),
    Case("batch_size_float", ValueError, "batch_size", params={"batch_size": 2.5}),
    Case("max_iter_0", ValueError, "max_iter", params={"max_iter": 0}),
    Case("lr_0", ValueError, "learning_rate_init", params={"learning_rate_init": 0.0}),
    Case(
        "lr_neg", ValueError, "learning_rate_init", params={"learning_rate_init": -1e-3}
    ),
    Case(
        "device_unknown",
        ValueError,
        "not a valid torch device",
        params={"device": "tpu-please"},
    ),
    Case("device_not_str", ValueError, "'device' parameter", params={"device": 3}),
    Case(
        "device_cuda_missing",
        ValueError,
        "CUDA is not available",
        params={"device": "cuda"},
        skip_if_cuda=True,
    ),
    Case(
        "device_cuda_index",
        ValueError,
        "CUDA|CUDA device",
        params={"device": "cuda:99"},
    ),
    Case(
        "device_mps_missing",
        ValueError,
        "MPS is not available",
        params={"device": "mps"},
    ),
    # predict time (on a fitted detector; n_features_in_ = 4)
    Case(
        "predict_wrong_n_features",
        ValueError,
        "X has 3 features, but .* expecting 4",
        lambda: _data()[:, :3],
        at="predict",
    ),
    Case(
        "predict_transposed",
        ValueError,
        "features, but .* expecting 4",
        lambda: _data().T,
        at="predict",
    ),
    Case(
        "predict_nan",
        ValueError,
        "contains NaN",
        lambda: _with(_data(), 0, 0, np.nan),
        at="predict",
    ),
    Case(
        "predict_inf",
        ValueError,
        "infinity",
        lambda: _with(_data(), 0, 0, np.inf),
        at="predict",
    ),
    Case(
        "predict_empty",
        ValueError,
        r"0 sample\(s\)",
        lambda: np.empty((0, 4)),
        at="predict",
    ),
    Case(
        "predict_strings",
        ValueError,
        NOT_NUMERIC,
        lambda: _data().astype(str),
        at="predict",
    ),
    Case(
        "predict_sparse",
        TypeError,
        "Sparse data",
        lambda: sp.csr_matrix(_data()),
        at="predict",
    ),
    Case(
        "predict_3d",
        ValueError,
        "3 dimensions",
        lambda: _data(40, 8).reshape(40, 2, 4),
        at="predict",
    ),
]

#: Semi-supervised ``labels`` (only detectors with ``_supports_labels``).
BAD_LABELS = [
    Case(
        "labels_wrong_length",
        ValueError,
        "entries but X has",
        labels=lambda n: np.zeros(n - 1),
    ),
    Case("labels_2d", ValueError, "1-D", labels=lambda n: np.zeros((n, 1))),
    Case(
        "labels_value_2",
        ValueError,
        r"found \[2(\.0)?\]",
        labels=lambda n: np.r_[2, np.zeros(n - 1)],
    ),
    Case(
        "labels_01_truth",
        ValueError,
        "semi_supervised_labels",
        labels=lambda n: np.r_[np.ones(3), 0.5, np.zeros(n - 4)],
    ),
    Case(
        "labels_nan", ValueError, "NaN", labels=lambda n: np.r_[np.nan, np.zeros(n - 1)]
    ),
    Case("labels_strings", ValueError, "numeric", labels=lambda n: np.array(["a"] * n)),
    Case("labels_all_anomalous", ValueError, "every row", labels=lambda n: -np.ones(n)),
]


def _run_case(est, case: Case, no_training):
    if case.skip_if_cuda and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    if case.at == "predict":
        fitted = _fitted(est)
        X = case.X()
        no_training(fitted)
        for method in ("score_samples", "decision_function", "predict"):
            with pytest.raises(case.exc, match=case.match):
                getattr(fitted, method)(X)
        return
    est = clone(est).set_params(**case.params)
    X = case.X() if case.X is not None else _data()
    no_training(est)
    kwargs = {}
    if case.labels is not None:
        kwargs["labels"] = case.labels(len(X))
    with pytest.raises(case.exc, match=case.match):
        est.fit(X, **kwargs)


@pytest.mark.parametrize("case", BAD_INPUT, ids=lambda c: c.id)
@pytest.mark.parametrize("estimator", INSTANCES, ids=_name)
def test_bad_input_raises_before_training(estimator, case, no_training):
    _run_case(estimator, case, no_training)


@pytest.mark.parametrize("case", BAD_LABELS, ids=lambda c: c.id)
@pytest.mark.parametrize("estimator", LABELLED, ids=_name)
def test_bad_labels_raise_before_training(estimator, case, no_training):
    _run_case(estimator, case, no_training)


#: Inputs that are accepted (documented handling): name -> (fit X, score X).
HANDLED = {
    "one_feature": lambda: (_data(40, 1), _data(10, 1, seed=1)),
    "constant_feature": lambda: (_with(_data(), slice(None), 2, 5.0), _data(10)),
    "all_rows_identical": lambda: (np.full((40, 4), 3.0), _data(10)),
    "all_zeros": lambda: (np.zeros((40, 4)), _data(10)),
    "two_samples": lambda: (_data(2), _data(10)),
    "object_numbers": lambda: (_data().astype(object), _data(10).astype(object)),
    "integers": lambda: (np.arange(160).reshape(40, 4) % 7, _data(10)),
    "booleans": lambda: (_data() > 0, _data(10) > 0),
    "float32": lambda: (_data().astype(np.float32), _data(10).astype(np.float32)),
    "fortran_order": lambda: (np.asfortranarray(_data()), _data(10)),
    "read_only": lambda: (_read_only(_data()), _read_only(_data(10))),
    "predict_one_sample": lambda: (_data(), _data(1)),
    "duplicate_rows": lambda: (np.repeat(_data(8), 6, axis=0), _data(10)),
}


def _read_only(X):
    X.setflags(write=False)
    return X


@pytest.mark.parametrize("case", list(HANDLED), ids=str)
@pytest.mark.parametrize("estimator", INSTANCES, ids=_name)
def test_handled_input_gives_finite_scores(estimator, case):
    X_fit, X_score = HANDLED[case]()
    est = clone(estimator).fit(X_fit)
    assert est.n_features_in_ == np.asarray(X_fit).shape[1]
    for Xs in (X_fit, X_score):
        s = est.score_samples(Xs)
        d = est.decision_function(Xs)
        p = est.predict(Xs)
        n = np.asarray(Xs).shape[0]
        assert s.shape == d.shape == p.shape == (n,)
        assert s.dtype == np.float64 and np.all(np.isfinite(s)), case
        assert np.all(np.isfinite(d)) and set(np.unique(p)) <= {-1, 1}


@pytest.mark.parametrize("estimator", INSTANCES, ids=_name)
def test_auto_device_falls_back_to_cpu(estimator):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    est = clone(estimator).set_params(device="auto").fit(_data())
    assert est.device_ == torch.device("cpu")
    assert np.all(np.isfinite(est.score_samples(_data())))


def test_docs_table_lists_every_case():
    if not DOCS.exists():
        pytest.skip("docs/reliability.rst not present")
    text = DOCS.read_text()
    ids = [c.id for c in BAD_INPUT + BAD_LABELS] + list(HANDLED)
    missing = [i for i in ids if f"``{i}``" not in text]
    assert not missing, f"cases missing from docs/reliability.rst: {missing}"


# ---------------------------------------------------------------------------
# Numerical faults
# ---------------------------------------------------------------------------

#: Detectors whose training loss is bounded, so no learning rate makes it
#: non-finite: for them the test checks that the scores stay finite.
BOUNDED_LOSS: set[str] = set()

#: A learning rate that overflows the float32 weights of every detector.
HUGE_LR = 1e30


def _standardised_planted():
    X, _ = make_planted(n_normal=200, n_anomaly=10)
    return StandardScaler().fit_transform(X)


@pytest.mark.parametrize("estimator", INSTANCES, ids=_name)
def test_huge_learning_rate_raises_naming_the_epoch(estimator):
    X = _standardised_planted()
    est = clone(estimator).set_params(learning_rate_init=HUGE_LR, max_iter=5)
    if _name(estimator) in BOUNDED_LOSS:
        est.fit(X)
        assert np.all(np.isfinite(est.score_samples(X)))
        assert np.all(np.isfinite(est.score_samples(_data(20, X.shape[1]) * 10)))
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
@pytest.mark.parametrize("estimator", INSTANCES, ids=_name)
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
    for Xs in (X, _data(20, X.shape[1], seed=11) * 10):
        assert np.all(np.isfinite(est.score_samples(Xs)))


@pytest.mark.parametrize("estimator", INSTANCES, ids=_name)
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
@pytest.mark.parametrize("estimator", INSTANCES, ids=_name)
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


@pytest.mark.parametrize("estimator", INSTANCES, ids=_name)
def test_duplicated_training_set(estimator):
    X, y = make_planted(n_normal=150, n_anomaly=8)
    est = clone(estimator).fit(np.vstack([X, X, X]))
    s = est.score_samples(X)
    assert np.all(np.isfinite(s)) and roc_auc(y, s) > 0.5


@pytest.mark.parametrize("estimator", INSTANCES, ids=_name)
def test_thirty_percent_contaminated_training_data(estimator):
    X, y = make_planted(n_normal=210, n_anomaly=90)
    est = clone(estimator).set_params(contamination=0.3).fit(X)
    s = est.score_samples(X)
    assert np.all(np.isfinite(s))
    assert abs(np.mean(est.predict(X) == -1) - 0.3) <= 0.02
    assert roc_auc(y, s) > 0.5


# ---------------------------------------------------------------------------
# Determinism (tests/test_common.py covers: same random_state -> same scores,
# fit leaves the global RNG untouched)
# ---------------------------------------------------------------------------


def _global_rng_state():
    return torch.random.get_rng_state().clone(), np.random.get_state()


def _assert_same_global_rng(before):
    torch_state, np_state = before
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1])
    assert after[2:] == np_state[2:]


@pytest.mark.parametrize("estimator", INSTANCES, ids=_name)
def test_scores_do_not_depend_on_global_seeds(estimator):
    X = _data(60, 5, seed=3)
    runs = []
    np_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            for seed in (1, 2):
                torch.manual_seed(seed)
                np.random.seed(seed)
                runs.append(clone(estimator).fit(X).score_samples(X))
    finally:
        np.random.set_state(np_state)
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.parametrize("estimator", INSTANCES, ids=_name)
def test_refit_and_clone_of_fitted_reproduce(estimator):
    X = _data(60, 5, seed=4)
    est = clone(estimator).fit(X)
    first = est.score_samples(X)
    np.testing.assert_array_equal(est.fit(X).score_samples(X), first)  # refit
    np.testing.assert_array_equal(clone(est).fit(X).score_samples(X), first)


@pytest.mark.parametrize("estimator", INSTANCES, ids=_name)
def test_random_state_instance_is_cloned_not_shared(estimator):
    X = _data(60, 5, seed=5)
    est = clone(estimator).set_params(random_state=np.random.RandomState(7))
    a = clone(est).fit(X).score_samples(X)
    b = clone(est).fit(X).score_samples(X)
    np.testing.assert_array_equal(a, b)
    other = clone(estimator).set_params(random_state=8).fit(X).score_samples(X)
    assert not np.array_equal(a, other), "random_state has no effect"


@pytest.mark.parametrize("estimator", INSTANCES, ids=_name)
def test_scoring_leaves_global_rng_untouched(estimator):
    X = _data(60, 4, seed=6)
    est = _fitted(estimator)
    before = _global_rng_state()
    est.score_samples(X)
    est.decision_function(X)
    est.predict(X)
    _assert_same_global_rng(before)


# ---------------------------------------------------------------------------
# Chunked scoring and device faults
# ---------------------------------------------------------------------------


def _oom():
    return _engine._OOM_ERRORS[0]("CUDA out of memory (fake)")


def _use_chunks(monkeypatch, est, size):
    """Score in chunks of ``size`` rows (instead of SCORE_CHUNK_SIZE) so the
    chunking is exercised on small data by every detector."""
    monkeypatch.setattr(est, "_score_chunk_size", size, raising=False)


def test_default_scoring_chunk_is_bounded():
    default = inspect.signature(_engine.predict_in_chunks).parameters["chunk_size"]
    assert default.default == _engine.SCORE_CHUNK_SIZE <= 2**16


@pytest.mark.parametrize("estimator", INSTANCES, ids=_name)
def test_scoring_is_chunked_in_one_fixed_shape(estimator, monkeypatch):
    est = _fitted(estimator)
    X = _data(2 * 32 + 5, 4, seed=7)
    _use_chunks(monkeypatch, est, 32)
    expected = est.score_samples(X)
    seen = []
    score = est._score

    def spy(Xb):
        seen.append((tuple(Xb.shape), Xb.dtype))
        return score(Xb)

    monkeypatch.setitem(vars(est), "_score", spy)
    s = est.score_samples(X)
    # every forward pass has the same shape: the last chunk is zero-padded
    assert seen == [((32, 4), torch.float32)] * 3
    np.testing.assert_array_equal(s, expected)


@pytest.mark.parametrize("estimator", INSTANCES, ids=_name)
def test_out_of_memory_while_scoring_retries_smaller_chunks(
    estimator, monkeypatch, caplog
):
    est = _fitted(estimator)
    X = _data(100, 4, seed=8)
    expected = est.score_samples(X)
    score = est._score

    def flaky(Xb):
        if Xb.shape[0] > 20:
            raise _oom()
        return score(Xb)

    monkeypatch.setitem(vars(est), "_score", flaky)
    _use_chunks(monkeypatch, est, 64)
    with caplog.at_level(logging.WARNING, logger="skad"):
        got = est.score_samples(X)
    # a halved chunk is another shape: equal up to float32 rounding only
    # (documented in predict_in_chunks)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert "retrying with chunks of 16 rows" in caplog.text


def test_predict_in_chunks_retry_keeps_fixed_shapes():
    """Every chunk is padded to the current chunk size, and an out-of-memory
    error halves it until the chunk fits."""
    shapes = []

    def fn(Xb):
        shapes.append(Xb.shape[0])
        if Xb.shape[0] > 100:
            raise _oom()
        return Xb.sum(dim=1)

    X = _data(1000, 3, seed=9)
    out = _engine.predict_in_chunks(fn, X, torch.device("cpu"), chunk_size=1024)
    np.testing.assert_allclose(out, X.sum(axis=1), rtol=1e-5)
    assert shapes[:5] == [1024, 512, 256, 128, 64]
    assert set(shapes[4:]) == {64}  # fixed shape: the last chunk is padded
    assert out.dtype == np.float64 and out.shape == (1000,)


def test_predict_in_chunks_gives_up_at_one_row():
    def fn(Xb):
        raise _oom()

    with pytest.raises(_engine._OOM_ERRORS[0]):
        _engine.predict_in_chunks(
            fn, _data(10, 2), torch.device("cpu"), chunk_size=8
        )


def test_predict_in_chunks_other_errors_are_not_retried():
    calls = []

    def fn(Xb):
        calls.append(Xb.shape[0])
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _engine.predict_in_chunks(fn, _data(10, 2), torch.device("cpu"))
    assert calls == [_engine.SCORE_CHUNK_SIZE]


def test_case_ids_are_unique():
    ids = [c.id for c in BAD_INPUT + BAD_LABELS] + list(HANDLED)
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[\w.]+", i) for i in ids)
