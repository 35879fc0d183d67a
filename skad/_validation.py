"""Input and parameter validation shared by every detector.

scikit-learn's parameter-validation machinery is private API
(``sklearn.utils._param_validation``, ``sklearn.base._fit_context``); this
module is the only place skad imports it from, and ``pyproject.toml`` bounds
scikit-learn to the versions it was tested with.
"""

from __future__ import annotations

import contextlib
from numbers import Integral, Real

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    InvalidParameterError,
    StrOptions,
    _Constraint,
)
from sklearn.utils.validation import validate_data

__all__ = [
    "FloatTuple",
    "IntTuple",
    "Interval",
    "InvalidParameterError",
    "StrOptions",
    "_fit_context",
    "check_batch_norm",
    "check_input_array",
    "explain_non_numeric",
    "validate_input",
    "validate_labels",
]


# ---------------------------------------------------------------------------
# Element-wise constraints for tuple-valued parameters
# ---------------------------------------------------------------------------


class _ElementwiseConstraint(HasMethods):
    """Base of skad's element-wise constraints.

    scikit-learn's validation only accepts its own constraint classes;
    deriving from ``HasMethods`` (with no required method) lets these
    override ``is_satisfied_by`` and still be accepted, and makes
    scikit-learn's ``check_param_validation`` probe them with a value of the
    wrong type.
    """

    def __init__(self):
        _Constraint.__init__(self)
        self.methods = []


class IntTuple(_ElementwiseConstraint):
    """A tuple or list of ints in ``[low, high]`` with a length in
    ``[min_len, max_len]`` (``hidden_layer_sizes``, ``n_prototypes``...)."""

    def __init__(self, low=1, high=2**20, min_len=1, max_len=None):
        super().__init__()
        self.low, self.high = low, high
        self.min_len, self.max_len = min_len, max_len

    def is_satisfied_by(self, val):
        if not isinstance(val, tuple | list):
            return False
        if len(val) < self.min_len or (
            self.max_len is not None and len(val) > self.max_len
        ):
            return False
        return all(
            isinstance(v, Integral)
            and not isinstance(v, bool)
            and self.low <= v <= self.high
            for v in val
        )

    def __str__(self):
        if self.max_len is None:
            length = f" (at least {self.min_len})" if self.min_len > 1 else ""
            if self.min_len == 1:
                length = " (at least one)"
        elif self.min_len == self.max_len:
            length = f" ({self.min_len} of them)"
        else:
            length = f" ({self.min_len} to {self.max_len} of them)"
        return f"a tuple of ints in [{self.low}, {self.high}]{length}"


class FloatTuple(_ElementwiseConstraint):
    """A tuple or list of finite reals in ``[low, high]`` with a length in
    ``[min_len, max_len]``; ``positive_sum`` requires a sum above zero."""

    def __init__(
        self, low=0.0, high=None, min_len=1, max_len=None, positive_sum=False
    ):
        super().__init__()
        self.low, self.high = low, high
        self.min_len, self.max_len = min_len, max_len
        self.positive_sum = positive_sum

    def is_satisfied_by(self, val):
        if not isinstance(val, tuple | list):
            return False
        if len(val) < self.min_len or (
            self.max_len is not None and len(val) > self.max_len
        ):
            return False
        for v in val:
            if not isinstance(v, Real) or isinstance(v, bool) or not np.isfinite(v):
                return False
            if v < self.low or (self.high is not None and v > self.high):
                return False
        return not self.positive_sum or sum(val) > 0

    def __str__(self):
        high = "inf" if self.high is None else self.high
        extra = " with a positive sum" if self.positive_sum else ""
        return f"a tuple of finite reals in [{self.low}, {high}]{extra}"


# ---------------------------------------------------------------------------
# Input arrays
# ---------------------------------------------------------------------------

_NON_NUMERIC_HINT = (
    "skad detectors need numeric features: encode categorical or text columns "
    "first (for example with sklearn.preprocessing.OneHotEncoder or an "
    "embedding model)."
)


def check_input_array(X):
    """Return ``X`` after rejecting what scikit-learn would convert silently.

    String arrays (even of numbers), non-numeric DataFrame columns and
    3-D arrays raise a ``ValueError`` naming the fix. A torch tensor is
    accepted: it is detached and copied to a numpy array on the host (skad
    moves the data to its device itself).
    """
    if type(X).__module__.split(".")[0] == "torch" and hasattr(X, "detach"):
        X = X.detach().cpu().numpy()
    kind = getattr(getattr(X, "dtype", None), "kind", None)
    if kind in ("U", "S"):
        raise ValueError(f"X has the string dtype {X.dtype}; {_NON_NUMERIC_HINT}")
    dtypes = getattr(X, "dtypes", None)
    if dtypes is not None and hasattr(X, "columns") and hasattr(dtypes, "items"):
        # pandas DataFrame: name the non-numeric columns (string columns of
        # numbers would otherwise be parsed silently)
        bad = [
            f"{col!r} ({dt})"
            for col, dt in dtypes.items()
            if getattr(dt, "kind", "O") not in "biuf"
        ]
        if bad:
            raise ValueError(
                f"X has non-numeric columns: {', '.join(bad[:10])}"
                f"{' ...' if len(bad) > 10 else ''}; {_NON_NUMERIC_HINT}"
            )
    shape = getattr(X, "shape", None)
    if getattr(X, "ndim", None) == 3 and shape is not None:
        raise ValueError(
            f"X has 3 dimensions (shape {tuple(shape)}); skad detectors take 2-D "
            "arrays (n_samples, n_features), or 4-D images (n_samples, C, H, W) "
            "in detectors with an image mode. Reshape with X.reshape(len(X), -1) "
            "to use flattened features."
        )
    return X


@contextlib.contextmanager
def explain_non_numeric():
    """Re-raise numpy's string-to-float failure with skad's hint."""
    try:
        yield
    except ValueError as exc:
        if "could not convert string to float" in str(exc):
            raise ValueError(
                f"X contains non-numeric values ({exc}); {_NON_NUMERIC_HINT}"
            ) from exc
        raise


def check_batch_norm(norm, batch_size) -> None:
    """BatchNorm needs at least two rows per training batch."""
    if norm == "batch" and batch_size < 2:
        raise ValueError(
            f"norm='batch' needs at least 2 rows per mini-batch, but batch_size="
            f"{batch_size}; use a larger batch_size or norm='layer' / None."
        )


def validate_labels(labels, n_samples: int) -> np.ndarray | None:
    """Check semi-supervised ``labels``: +1 normal, 0 unlabelled, -1 anomaly.

    Returns an int64 array, or None for ``labels=None`` (all unlabelled).

    Raises
    ------
    ValueError
        On a wrong length or shape, a boolean array (its ``True`` would read
        as +1, labelled *normal*), values outside {+1, 0, -1}, non-finite or
        non-integer values, or when every row is labelled anomalous.
    """
    if labels is None:
        return None
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels must be 1-D, got an array of shape {arr.shape}.")
    if arr.shape[0] != n_samples:
        raise ValueError(
            f"labels has {arr.shape[0]} entries but X has {n_samples} rows; "
            "give one label per row (+1 normal, 0 unlabelled, -1 anomaly)."
        )
    if arr.dtype.kind == "b":
        raise ValueError(
            "labels is boolean; give +1 (labelled normal), 0 (unlabelled) or -1 "
            "(labelled anomaly). A boolean anomaly mask converts with "
            "skad.utils.semi_supervised_labels(mask.astype(int), 1.0)."
        )
    if arr.dtype.kind not in "iuf":
        raise ValueError(
            f"labels must be numeric in {{+1, 0, -1}}, got dtype {arr.dtype}."
        )
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError("labels contain NaN or infinite values.")
    bad = ~np.isin(arr, (-1, 0, 1))
    if bad.any():
        values = np.unique(arr[bad])[:5]
        raise ValueError(
            f"labels must be +1 (labelled normal), 0 (unlabelled) or -1 (labelled "
            f"anomaly); found {values.tolist()}. ADBench-style {{0, 1}} truth "
            "converts with skad.utils.semi_supervised_labels."
        )
    arr = arr.astype(np.int64)
    if n_samples and np.all(arr == -1):
        raise ValueError(
            "labels mark every row as an anomaly; at least one row must "
            "be normal or unlabelled."
        )
    return arr


def _ndim(X) -> int:
    """Number of dimensions of an array-like, without converting it."""
    ndim = getattr(X, "ndim", None)
    if isinstance(ndim, int):
        return ndim
    depth = 0
    while isinstance(X, list | tuple) and len(X) > 0:
        depth, X = depth + 1, X[0]
    inner = getattr(X, "ndim", 0)
    return depth + (inner if isinstance(inner, int) else 0) if depth else 2


def validate_input(estimator, X, *, reset: bool):
    """Validate ``X`` for ``fit`` (``reset=True``) or scoring.

    2-D numeric arrays always; 4-D arrays (n, C, H, W) in detectors with an
    image mode (``_supports_images``). Sets ``input_mode_`` and
    ``input_shape_`` at ``fit`` and checks them when scoring. Numeric dtypes
    are kept at scoring time (the scoring path converts chunk by chunk, so
    float16 or int8 input is never copied whole).
    """
    X = check_input_array(X)
    ndim = _ndim(X)
    name = type(estimator).__name__
    if reset:
        image = ndim == 4 and estimator._supports_images
        if image:
            estimator._check_image_mode()
    else:
        image = getattr(estimator, "input_mode_", "vector") == "image"
        if ndim == 4 and not image:
            raise ValueError(
                f"{name} was fitted on rows of {estimator.n_features_in_} features "
                f"(vector mode); got a 4-D array of images."
            )
        if image and ndim != 4:
            raise ValueError(
                f"{name} was fitted on images of shape (n, C, H, W) = "
                f"(n, {', '.join(map(str, estimator.input_shape_))}); got an "
                f"array with {ndim} dimension(s)."
            )
    dtype = [np.float64, np.float32]
    kind = getattr(getattr(X, "dtype", None), "kind", None)
    if not reset and kind in ("b", "i", "u", "f"):
        dtype = None
    with explain_non_numeric():
        X = validate_data(
            estimator,
            X,
            reset=reset,
            dtype=dtype,
            ensure_min_samples=2 if reset else 1,
            ensure_all_finite=True,
            allow_nd=image,
        )
    if image and X.ndim != 4:
        raise ValueError(
            f"{name} expects a 2-D array (n_samples, n_features) or, in image "
            f"mode, a 4-D array (n_samples, C, H, W); got shape {X.shape}."
        )
    if reset:
        estimator.input_mode_ = "image" if image else "vector"
        estimator.input_shape_ = tuple(int(s) for s in X.shape[1:])
    elif tuple(X.shape[1:]) != tuple(estimator.input_shape_):
        raise ValueError(
            f"X has samples of shape {tuple(X.shape[1:])}, but {name} was "
            f"fitted on samples of shape {tuple(estimator.input_shape_)}."
        )
    return X

