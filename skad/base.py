"""Base classes that own the scikit-learn outlier-detector contract.

Every skad detector subclasses :class:`BaseDeepDetector` (or
:class:`BaseSemiSupervisedDetector` when it learns from a few labels) and
implements only three hooks:

``_build_networks(rng)``
    Create the torch modules as fitted attributes (names ending in ``_``) from
    the parameters and ``n_features_in_``. Runs on the CPU; the base then
    re-initialises all parameters from the local generator and moves the
    modules to the device. ``skad.load`` calls it too, to rebuild a model
    before loading its weights, so it may only depend on parameters and on
    fitted attributes that are plain numbers, strings or arrays.
``_fit_networks(X, labels, rng)``
    Train them: ``X`` is the float32 training tensor on ``device_``,
    ``labels`` an int64 tensor in {+1, 0, -1} or None. Use
    :func:`skad._engine.train_epochs` for the loop and :meth:`_record` to
    store the training record.
``_score(X)``
    Anomaly score (higher = more anomalous) of one chunk ``X`` as a 1-D
    tensor. ``X`` is a float32 tensor on ``device_`` of a fixed number of rows
    (``_score_chunk_size``; the last chunk is zero-padded), and the modules
    stay in float32 in eval mode, so a row's score never depends on the other
    rows of the chunk. Rows must be scored independently.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

from skad import _engine, _nn
from skad._version import __version__

__all__ = ["BaseDeepDetector", "BaseSemiSupervisedDetector"]


def _map_tensors(obj, fn):
    """Apply ``fn`` to every module / tensor inside ``obj`` (recursively)."""
    if isinstance(obj, torch.nn.Module | torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    return obj


def _has_tensors(obj) -> bool:
    if isinstance(obj, torch.nn.Module | torch.Tensor):
        return True
    if isinstance(obj, dict):
        return any(_has_tensors(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return any(_has_tensors(v) for v in obj)
    return False


_NON_NUMERIC_HINT = (
    "skad detectors need numeric features: encode categorical or text columns "
    "first (for example with sklearn.preprocessing.OneHotEncoder or an "
    "embedding model)."
)


def _check_not_strings(X) -> None:
    """Reject string arrays with a clear message, before any conversion.

    Without this, scikit-learn would silently parse arrays of numeric strings.
    """
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


def _check_not_3d(X) -> None:
    """Reject 3-D arrays clearly: rows are 2-D, images (in image modes) 4-D."""
    shape = getattr(X, "shape", None)
    if getattr(X, "ndim", None) == 3 and shape is not None:
        raise ValueError(
            f"X has 3 dimensions (shape {tuple(shape)}); skad detectors take 2-D "
            "arrays (n_samples, n_features), or 4-D images (n_samples, C, H, W) "
            "in detectors with an image mode. Reshape with X.reshape(len(X), -1) "
            "to use flattened features."
        )


@contextlib.contextmanager
def _explain_non_numeric():
    """Re-raise numpy's string-to-float failure with skad's hint."""
    try:
        yield
    except ValueError as exc:
        if "could not convert string to float" in str(exc):
            raise ValueError(
                f"X contains non-numeric values ({exc}); {_NON_NUMERIC_HINT}"
            ) from exc
        raise


def validate_labels(labels, n_samples: int) -> np.ndarray | None:
    """Check semi-supervised ``labels``: +1 normal, 0 unlabelled, -1 anomaly.

    Returns an int64 array, or None for ``labels=None`` (all unlabelled).

    Raises
    ------
    ValueError
        On a wrong length or shape, values outside {+1, 0, -1}, non-finite or
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
    if arr.dtype.kind not in "iufb":
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


class BaseDeepDetector(OutlierMixin, BaseEstimator, metaclass=ABCMeta):
    """Base class of skad's deep outlier detectors.

    It implements ``fit`` / ``score_samples`` / ``decision_function`` /
    ``predict`` exactly like :class:`sklearn.ensemble.IsolationForest`:
    ``score_samples`` is higher for more normal rows, ``decision_function`` is
    ``score_samples - offset_`` (negative means outlier) and ``predict``
    returns +1 for inliers and -1 for outliers. Subclasses implement the hooks
    described in the module docstring.

    Shared parameters (subclasses accept them by these names):
    ``contamination``, ``max_iter``, ``batch_size``, ``learning_rate_init``,
    ``weight_decay``, ``early_stopping``, ``validation_fraction``,
    ``n_iter_no_change``, ``tol``, ``device``, ``random_state``, ``verbose``.
    """

    _parameter_constraints: dict = {
        "contamination": [Interval(Real, 0, 0.5, closed="right")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    #: Whether ``fit`` accepts ``labels`` (set by BaseSemiSupervisedDetector).
    _supports_labels = False

    # ------------------------------------------------------------------ hooks
    @abstractmethod
    def _build_networks(self, rng: _engine.RandomState) -> None:
        """Create the torch modules as fitted attributes (see module doc)."""

    @abstractmethod
    def _fit_networks(self, X: torch.Tensor, labels, rng: _engine.RandomState) -> None:
        """Train the modules on the device tensor ``X`` (see module doc)."""

    @abstractmethod
    def _score(self, X: torch.Tensor) -> torch.Tensor:
        """Anomaly score (higher = more anomalous) of one chunk."""

    #: Set True in subclasses whose ``_score`` takes gradients (SLA2P).
    _score_needs_grad = False

    #: Rows per scoring forward pass: every chunk has exactly this shape.
    _score_chunk_size = _engine.SCORE_CHUNK_SIZE

    # -------------------------------------------------------------- tags
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        tags.non_deterministic = False
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        """Fitted once ``fit`` has completed (it sets ``offset_`` last)."""
        return hasattr(self, "offset_")

    # -------------------------------------------------------------- helpers
    def _fitted_modules(self) -> dict[str, torch.nn.Module]:
        """Fitted attributes that are torch modules, by name."""
        return {
            k: v
            for k, v in vars(self).items()
            if k.endswith("_")
            and not k.startswith("__")
            and isinstance(v, torch.nn.Module)
        }

    def _record(
        self, history: _engine.History, *, early_stopping: bool | None = None
    ) -> None:
        """Store an engine history as MLP-style fitted attributes.

        Sets ``loss_curve_``, ``n_iter_``, ``best_loss_`` and, when early
        stopping was on, ``validation_scores_`` (validation loss per epoch).
        """
        self.loss_curve_ = list(history.loss_curve)
        self.n_iter_ = int(history.n_iter)
        self.best_loss_ = float(history.best_loss)
        es = self.early_stopping if early_stopping is None else early_stopping
        if es and history.validation_scores is not None:
            self.validation_scores_ = list(history.validation_scores)
        elif hasattr(self, "validation_scores_"):
            del self.validation_scores_

    def _train(
        self,
        step,
        *,
        n_samples,
        modules,
        optimizer,
        rng,
        validation_loss=None,
        desc=None,
        max_iter=None,
        **kwargs,
    ) -> _engine.History:
        """:func:`skad._engine.train_epochs` with this estimator's settings."""
        with _nn.dropout_generator(rng.device):
            return _engine.train_epochs(
                step,
                n_samples=n_samples,
                modules=modules,
                optimizer=optimizer,
                max_iter=self.max_iter if max_iter is None else max_iter,
                batch_size=self.batch_size,
                rng=rng,
                device=self.device_,
                validation_loss=validation_loss,
                n_iter_no_change=self.n_iter_no_change,
                tol=self.tol,
                verbose=self.verbose,
                desc=desc or type(self).__name__,
                learning_rate=self.learning_rate_init,
                **kwargs,
            )

    def _n_epochs(self, n_samples: int, epochs: int, min_updates: int) -> int:
        """``epochs``, raised until at least ``min_updates`` updates run."""
        per_epoch = max(1, n_samples // max(1, min(self.batch_size, n_samples)))
        return max(epochs, -(-int(min_updates) // per_epoch))

    def _split_validation(self, n_samples: int, rng: _engine.RandomState):
        """Index tensors (train, validation) on the device; validation is
        None unless ``early_stopping``."""
        if not self.early_stopping or n_samples < 3:
            return torch.arange(n_samples, device=self.device_), None
        tr, va = _engine.train_validation_split(
            n_samples, self.validation_fraction, rng
        )
        return (
            torch.as_tensor(tr, device=self.device_),
            torch.as_tensor(va, device=self.device_),
        )

    # -------------------------------------------------------------- fit
    def _validate_input(self, X, *, reset: bool):
        """Validate X for ``fit`` (``reset=True``) or scoring.

        The default accepts 2-D numeric arrays (tabular rows, embeddings,
        flattened image features). Detectors with an image mode override it
        to also accept (n, C, H, W) arrays, e.g. with ``allow_nd=True``.
        """
        return validate_data(
            self,
            X,
            reset=reset,
            dtype=[np.float64, np.float32],
            ensure_min_samples=2 if reset else 1,
            ensure_all_finite=True,
        )

    def _fit(self, X, labels=None):
        # offset_ is set last: until then (or when training fails, e.g.
        # diverges) the estimator counts as unfitted, never as a model that
        # scores NaN with a stale threshold.
        vars(self).pop("offset_", None)
        _check_not_strings(X)
        _check_not_3d(X)
        with _explain_non_numeric():
            X = self._validate_input(X, reset=True)
        labels = validate_labels(labels, X.shape[0])
        # Reference row of skad.explain: per-feature (image mode: per-pixel)
        # median of the training rows, from evenly spaced rows (<= ~1e7 values).
        step = max(1, -(-X.size // 10_000_000))
        self.training_median_ = np.median(X[::step], axis=0).astype(np.float64)
        self.device_ = _engine.resolve_device(self.device)
        rng = _engine.make_random_state(self.random_state, self.device_)

        with _engine.preserve_global_rng():
            self._build_networks(rng)
        modules = self._fitted_modules()
        _nn.reset_parameters(modules.values(), rng.cpu)
        for m in modules.values():
            m.to(self.device_)

        X_t = _engine.to_tensor(X, self.device_)
        labels_t = (
            None if labels is None else torch.as_tensor(labels, device=self.device_)
        )
        self._fit_networks(X_t, labels_t, rng)
        del X_t
        self._eval_modules()

        scores = self._score_samples(X)
        if not np.all(np.isfinite(scores)):
            epoch = getattr(self, "n_iter_", None)
            at = "" if epoch is None else f" at epoch {epoch}"
            raise _engine.TrainingDivergedError(
                f"{type(self).__name__} produced non-finite scores on the training "
                f"data after training{at}; try a lower learning_rate_init or "
                "standardised features."
            )
        self.offset_ = float(np.percentile(scores, 100.0 * self.contamination))
        return self

    def _eval_modules(self) -> None:
        """Put every fitted module in eval mode (modules stay float32)."""
        for name, value in vars(self).items():
            if name.endswith("_") and not name.startswith("__"):
                _map_tensors(
                    value, lambda t: t.eval() if isinstance(t, torch.nn.Module) else t
                )

    def _map_chunks(self, fn, X, **kwargs):
        """:func:`skad._engine.predict_in_chunks` on this detector's device,
        with its fixed chunk shape."""
        return _engine.predict_in_chunks(
            fn, X, self.device_, chunk_size=self._score_chunk_size, **kwargs
        )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the detector.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows (tabular rows, embeddings or image features).
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        return self._fit(X)

    # -------------------------------------------------------------- scoring
    def _score_samples(self, X) -> np.ndarray:
        """Scores (higher = more normal) of validated X, without checks."""
        return -self._map_chunks(self._score, X, grad=self._score_needs_grad)

    def score_samples(self, X):
        """Opposite of the anomaly score of each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,), dtype float64
            The higher, the more normal. It is the method's anomaly score,
            negated (scikit-learn's convention).
        """
        check_is_fitted(self)
        _check_not_strings(X)
        _check_not_3d(X)
        with _explain_non_numeric():
            X = self._validate_input(X, reset=False)
        return self._score_samples(X)

    def decision_function(self, X):
        """Shifted scores: negative for outliers, positive for inliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,), dtype float64
            ``score_samples(X) - offset_``.
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """Predict whether each row is an inlier (+1) or an outlier (-1).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        is_inlier : ndarray of shape (n_samples,), dtype int
        """
        decision = self.decision_function(X)
        is_inlier = np.ones(decision.shape[0], dtype=int)
        is_inlier[decision < 0] = -1
        return is_inlier

    # -------------------------------------------------------------- pickling
    def __getstate__(self):
        state = super().__getstate__()
        state = dict(state)
        for k, v in list(state.items()):
            if _has_tensors(v):
                state[k] = _map_tensors(v, lambda t: copy.deepcopy(t).to("cpu"))
        if "device_" in state:
            state["device_"] = str(state["device_"])
        state["_skad_version"] = __version__
        return state

    def __setstate__(self, state):
        version = state.pop("_skad_version", None)
        if version is not None and version != __version__:
            warnings.warn(
                f"Trying to unpickle {type(self).__name__} from skad {version} "
                f"when using skad {__version__}; this might lead to breaking "
                "code or invalid results. Use at your own risk.",
                UserWarning,
                stacklevel=2,
            )
        super().__setstate__(state)
        if "device_" in state:
            device = _engine.map_location(state["device_"])
            self.device_ = device
            for k, v in list(vars(self).items()):
                if _has_tensors(v):
                    setattr(self, k, _map_tensors(v, lambda t: t.to(device)))
            self._eval_modules()


class BaseSemiSupervisedDetector(BaseDeepDetector):
    """Base class of detectors that can learn from a few labels.

    ``fit(X, y=None, *, labels=None)`` takes the labels as a keyword fit
    parameter in Deep SAD's convention: +1 labelled normal, 0 unlabelled, -1
    labelled anomaly. ``y`` stays ignored, as in every scikit-learn outlier
    detector, so that ``GridSearchCV(...).fit(X, y, labels=labels)`` splits
    the labels with the folds while scorers still see the truth ``y``.
    """

    _supports_labels = True

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, *, labels=None):
        """Fit the detector, optionally with a few labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored
            Not used, present for API consistency by convention.
        labels : array-like of shape (n_samples,), default=None
            +1 for labelled normal rows, -1 for labelled anomalies, 0 for
            unlabelled rows. None means every row is unlabelled.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        return self._fit(X, labels=labels)
