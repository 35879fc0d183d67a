"""Bad input gets a clear error before any network is built; accepted
odd input gives finite scores.

Every test runs over every public detector (:func:`tests._helpers.
fast_instances`), so a new detector is covered without editing this file.
The bad-input table is the one documented in ``docs/reliability.rst``
(``test_docs_table_lists_every_case`` keeps the two in sync).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone

from tests._helpers import data, fast_instances, fitted, labelled_instances, name

INSTANCES = fast_instances()
LABELLED = labelled_instances()
DOCS = Path(__file__).resolve().parents[1] / "docs" / "reliability.rst"


@pytest.fixture
def no_training(monkeypatch):
    """Make any attempt to build or train networks fail loudly.

    A bad-input error must come from validation, before ``_build_networks``
    and ``_fit_networks`` run.
    """

    def install(est):
        def spy(*args, **kwargs):
            raise AssertionError(f"{name(est)} started training on bad input")

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
    X = data().astype(object)
    X[:, 1] = "blue"
    return X


def _dataframe_with_text():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(data(), columns=list("abcd"))
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
    Case("nan", ValueError, "contains NaN", lambda: _with(data(), 3, 1, np.nan)),
    Case("pos_inf", ValueError, "infinity", lambda: _with(data(), 3, 1, np.inf)),
    Case("neg_inf", ValueError, "infinity", lambda: _with(data(), 3, 1, -np.inf)),
    Case("empty", ValueError, r"0 sample\(s\)", lambda: np.empty((0, 4))),
    Case("no_features", ValueError, r"0 feature\(s\)", lambda: np.empty((40, 0))),
    Case("one_sample", ValueError, r"1 sample\(s\).*minimum of 2", lambda: data()[:1]),
    Case("1d", ValueError, "Expected 2D array", lambda: data()[:, 0]),
    Case("3d", ValueError, "3 dimensions", lambda: data(40, 8).reshape(40, 2, 4)),
    Case("strings", ValueError, NOT_NUMERIC, lambda: np.array([["a", "b"]] * 5)),
    Case("numeric_strings", ValueError, NOT_NUMERIC, lambda: data().astype(str)),
    Case("list_of_strings", ValueError, NOT_NUMERIC, lambda: [["a", "b"]] * 5),
    Case("object_strings", ValueError, NOT_NUMERIC, _object_strings),
    Case(
        "object_dict", TypeError, "argument must be", lambda: _with(data(), 0, 0, {})
    ),
    Case("dataframe_text", ValueError, NOT_NUMERIC, _dataframe_with_text),
    Case("complex", ValueError, "Complex data not supported", lambda: data() + 1j),
    Case("sparse_csr", TypeError, "Sparse data", lambda: sp.csr_matrix(data())),
    Case("sparse_coo", TypeError, "Sparse data", lambda: sp.coo_matrix(data())),
    Case("sparse_array", TypeError, "Sparse data", lambda: sp.csr_array(data())),
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
    Case(
        "hidden_sizes_negative",
        ValueError,
        "hidden_layer_sizes",
        params={"hidden_layer_sizes": (-4,)},
    ),
    Case(
        "hidden_sizes_zero",
        ValueError,
        "hidden_layer_sizes",
        params={"hidden_layer_sizes": (16, 0)},
    ),
    Case(
        "hidden_sizes_float",
        ValueError,
        "hidden_layer_sizes",
        params={"hidden_layer_sizes": (2.5,)},
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
        lambda: data()[:, :3],
        at="predict",
    ),
    Case(
        "predict_transposed",
        ValueError,
        "features, but .* expecting 4",
        lambda: data().T,
        at="predict",
    ),
    Case(
        "predict_nan",
        ValueError,
        "contains NaN",
        lambda: _with(data(), 0, 0, np.nan),
        at="predict",
    ),
    Case(
        "predict_inf",
        ValueError,
        "infinity",
        lambda: _with(data(), 0, 0, np.inf),
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
        lambda: data().astype(str),
        at="predict",
    ),
    Case(
        "predict_sparse",
        TypeError,
        "Sparse data",
        lambda: sp.csr_matrix(data()),
        at="predict",
    ),
    Case(
        "predict_3d",
        ValueError,
        "3 dimensions",
        lambda: data(40, 8).reshape(40, 2, 4),
        at="predict",
    ),
]

#: Semi-supervised ``labels`` (only detectors whose ``fit`` takes them).
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
    Case(
        "labels_boolean",
        ValueError,
        "boolean",
        labels=lambda n: np.r_[True, np.zeros(n - 1, bool)],
    ),
]


def _run_case(est, case: Case, no_training):
    if case.skip_if_cuda and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    if case.at == "predict":
        model = fitted(est)
        X = case.X()
        no_training(model)
        for method in ("score_samples", "decision_function", "predict"):
            with pytest.raises(case.exc, match=case.match):
                getattr(model, method)(X)
        return
    est = clone(est).set_params(**case.params)
    X = case.X() if case.X is not None else data()
    no_training(est)
    kwargs = {}
    if case.labels is not None:
        kwargs["labels"] = case.labels(len(X))
    with pytest.raises(case.exc, match=case.match):
        est.fit(X, **kwargs)


@pytest.mark.parametrize("case", BAD_INPUT, ids=lambda c: c.id)
@pytest.mark.parametrize("estimator", INSTANCES, ids=name)
def test_bad_input_raises_before_training(estimator, case, no_training):
    _run_case(estimator, case, no_training)


@pytest.mark.parametrize("case", BAD_LABELS, ids=lambda c: c.id)
@pytest.mark.parametrize("estimator", LABELLED, ids=name)
def test_bad_labels_raise_before_training(estimator, case, no_training):
    _run_case(estimator, case, no_training)


#: Inputs that are accepted (documented handling): name -> (fit X, score X).
HANDLED = {
    "one_feature": lambda: (data(40, 1), data(10, 1, seed=1)),
    "constant_feature": lambda: (_with(data(), slice(None), 2, 5.0), data(10)),
    "all_rows_identical": lambda: (np.full((40, 4), 3.0), data(10)),
    "all_zeros": lambda: (np.zeros((40, 4)), data(10)),
    "two_samples": lambda: (data(2), data(10)),
    "object_numbers": lambda: (data().astype(object), data(10).astype(object)),
    "integers": lambda: (np.arange(160).reshape(40, 4) % 7, data(10)),
    "booleans": lambda: (data() > 0, data(10) > 0),
    "float32": lambda: (data().astype(np.float32), data(10).astype(np.float32)),
    "fortran_order": lambda: (np.asfortranarray(data()), data(10)),
    "read_only": lambda: (_read_only(data()), _read_only(data(10))),
    "predict_one_sample": lambda: (data(), data(1)),
    "duplicate_rows": lambda: (np.repeat(data(8), 6, axis=0), data(10)),
}


def _read_only(X):
    X.setflags(write=False)
    return X


@pytest.mark.parametrize("case", list(HANDLED), ids=str)
@pytest.mark.parametrize("estimator", INSTANCES, ids=name)
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


@pytest.mark.parametrize("estimator", INSTANCES, ids=name)
def test_auto_device_falls_back_to_cpu(estimator):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    est = clone(estimator).set_params(device="auto").fit(data())
    assert est.device_ == torch.device("cpu")
    assert np.all(np.isfinite(est.score_samples(data())))


def test_docs_table_lists_every_case():
    if not DOCS.exists():
        pytest.skip("docs/reliability.rst not present")
    text = DOCS.read_text()
    ids = [c.id for c in BAD_INPUT + BAD_LABELS] + list(HANDLED)
    missing = [i for i in ids if f"``{i}``" not in text]
    assert not missing, f"cases missing from docs/reliability.rst: {missing}"


def test_case_ids_are_unique():
    ids = [c.id for c in BAD_INPUT + BAD_LABELS] + list(HANDLED)
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[\w.]+", i) for i in ids)
