"""Base classes that own the scikit-learn outlier-detector contract.

Every skad detector subclasses :class:`BaseDeepDetector` (or
:class:`BaseSemiSupervisedDetector` when it learns from a few labels) and
implements three hooks:

``_build_networks(rng)``
    Create the torch modules as fitted attributes (names ending in ``_``) from
    the parameters and the plain fitted attributes set so far
    (``n_features_in_``, ``input_mode_``, ``input_shape_``). Runs on the CPU;
    the base then re-initialises every parameter from the local generator and
    moves the modules to the device. ``skad.load`` calls it too, to rebuild a
    model before loading its weights, so it may only depend on parameters and
    on fitted attributes that are plain numbers, strings or arrays.
``_fit_networks(X, labels, rng)``
    Train them: ``X`` is the float32 training tensor on ``device_``,
    ``labels`` an int64 tensor in {+1, 0, -1} or None, ``rng`` the local
    :class:`~skad._engine.RandomState`. Training is described as phases
    (:meth:`_phase`) run by :meth:`_fit_phases`, with optimisers from
    :meth:`_optimizer`; statistics over the training rows go through
    :meth:`_map_chunks`. Detectors never import the engine.
``_score(X)``
    Anomaly score (higher = more anomalous) of one chunk ``X`` as a 1-D
    tensor. ``X`` is a float32 tensor on ``device_`` of a fixed number of rows
    (``_score_chunk_size``; the last chunk is zero-padded), and the modules
    stay in float32 in eval mode, so a row's score never depends on the other
    rows of the chunk. Rows must be scored independently.

Shared parameters are documented once (:mod:`skad._docstrings`): a class
docstring names them by placeholder and they are filled in when the class
is defined.
"""

from __future__ import annotations

import copy
import math
import warnings
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted

from skad import _engine, _nn, _robust
from skad._device import has_tensors, map_location, map_tensors, resolve_device
from skad._docstrings import fill_shared_docs
from skad._validation import (
    Interval,
    StrOptions,
    _fit_context,
    validate_input,
    validate_labels,
)
from skad._version import __version__
from skad.exceptions import TrainingDivergedError

__all__ = ["BaseDeepDetector", "BaseSemiSupervisedDetector"]

#: Largest magnitude float32 can hold: skad trains and scores in float32.
_FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Training data beyond this magnitude gets a scale hint when training diverges.
_LARGE_SCALE = 1e4
#: ``predict_proba``: logit slope per interquartile range of the training
#: anomaly scores, so that one IQR above (below) the threshold reads 0.9 (0.1).
_PROBA_SLOPE = math.log(9.0)


def _auto_threshold(anomaly: np.ndarray) -> float:
    """The label-free ``contamination="auto"`` threshold on training anomaly
    scores: Tukey's upper fence, third quartile + 1.5 interquartile ranges."""
    q1, q3 = np.percentile(anomaly, [25.0, 75.0])
    return float(q3 + 1.5 * (q3 - q1))


class BaseDeepDetector(
    _engine.TrainingServices, OutlierMixin, BaseEstimator, metaclass=ABCMeta
):
    """Base class of skad's deep outlier detectors.

    It implements ``fit`` / ``score_samples`` / ``decision_function`` /
    ``predict`` exactly like :class:`sklearn.ensemble.IsolationForest`:
    ``score_samples`` is higher for more normal rows, ``decision_function`` is
    ``score_samples - offset_`` (negative means outlier) and ``predict``
    returns +1 for inliers and -1 for outliers. Subclasses implement the hooks
    described in the module docstring.

    Shared parameters (subclasses accept them by these names):
    ``contamination``, ``train_contamination``, ``max_iter``, ``batch_size``,
    ``learning_rate_init``, ``weight_decay``, ``early_stopping``,
    ``validation_fraction``,
    ``n_iter_no_change``, ``tol``, ``device``, ``random_state``, ``verbose``.
    """

    _parameter_constraints: dict = {
        "contamination": [Interval(Real, 0, 0.5, closed="right"), StrOptions({"auto"})],
        "train_contamination": [
            Interval(Real, 0, 0.5, closed="left"),
            StrOptions({"auto"}),
        ],
        "max_iter": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
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

    #: Whether 4-D input (n, C, H, W) selects an image mode.
    _supports_images = False

    #: ``max_iter="auto"``: epochs that give at least this many mini-batch
    #: updates, bounded by ``(min_epochs, max_epochs)`` (None: unbounded).
    _auto_updates: tuple[int, int, int | None] = (1000, 10, 500)

    #: ``train_contamination="auto"``: share of the unlabelled training rows
    #: left out of training (chosen on validation splits, see the user guide).
    _auto_train_contamination = 0.1

    #: Set True in subclasses whose ``_score`` takes gradients.
    _score_needs_grad = False

    #: Rows per scoring forward pass: every chunk has exactly this shape.
    _score_chunk_size = _engine.SCORE_CHUNK_SIZE

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        fill_shared_docs(cls)

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

    def _check_image_mode(self) -> None:
        """Raise a ValueError when image mode is not possible with these
        parameters (called at ``fit`` on 4-D input)."""

    def _check_params(self) -> None:
        """Cross-parameter checks that the constraints cannot express; runs at
        ``fit`` after the parameter validation, before any network is built.
        Raise ``ValueError`` with the fix in the message."""

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

    # -------------------------------------------------------------- input
    def _validate_input(self, X, *, reset: bool):
        """Validate ``X`` for ``fit`` (``reset=True``) or scoring; see
        :func:`skad._validation.validate_input`."""
        return validate_input(self, X, reset=reset)

    # -------------------------------------------------------------- fit
    def _fit(self, X, labels=None):
        # offset_ is set last: until then (or when training fails, e.g.
        # diverges) the estimator counts as unfitted, never as a model that
        # scores NaN with a stale threshold.
        vars(self).pop("offset_", None)
        self._check_params()
        X = self._validate_input(X, reset=True)
        labels = validate_labels(labels, X.shape[0])
        scale = max(abs(float(X.max())), abs(float(X.min()))) if X.size else 0.0
        if scale > _FLOAT32_MAX:
            raise ValueError(
                f"X has values up to {scale:.3g} in magnitude, beyond what float32 "
                f"(the precision skad trains and scores in, at most "
                f"{_FLOAT32_MAX:.3g}) can hold; rescale the features, for example "
                "with sklearn.preprocessing.StandardScaler."
            )
        # Reference row of skad.explain: per-feature (image mode: per-pixel)
        # median of the training rows, from evenly spaced rows (<= ~1e7 values).
        step = max(1, -(-X.size // 10_000_000))
        self.training_median_ = np.median(X[::step], axis=0).astype(np.float64)
        self.device_ = resolve_device(self.device)
        rng = _engine.make_random_state(self.random_state, self.device_)

        with _engine.private_default_generator():
            self._build_networks(rng)
        modules = self._fitted_modules()
        _nn.reset_parameters(modules.values(), rng.cpu)
        for m in modules.values():
            m.to(self.device_)

        X_fit, labels_fit = self._robust_rows(X, labels, rng)
        X_t = _engine.to_tensor(X_fit, self.device_)
        labels_t = (
            None
            if labels_fit is None
            else torch.as_tensor(labels_fit, device=self.device_)
        )
        del X_fit
        try:
            self._fit_networks(X_t, labels_t, rng)
        except TrainingDivergedError as exc:
            raise self._scale_hint(exc, scale) from exc
        del X_t
        self._eval_modules()

        scores = self._score_samples(X, finite=False)
        if not np.all(np.isfinite(scores)):
            epoch = getattr(self, "n_iter_", None)
            at = "" if epoch is None else f" at epoch {epoch}"
            raise self._scale_hint(
                TrainingDivergedError(
                    f"{type(self).__name__} produced non-finite scores on the "
                    f"training data after training{at}; try a lower "
                    "learning_rate_init or standardised features."
                ),
                scale,
            )
        self._set_threshold(scores)
        return self

    def _set_threshold(self, scores: np.ndarray) -> None:
        """``offset_`` and ``score_scale_`` from the training scores."""
        anomaly = -scores
        q1, q3 = np.percentile(anomaly, [25.0, 75.0])
        spread = float(q3 - q1)
        if not spread > 0:
            spread = float(np.std(anomaly))
        self.score_scale_ = spread if spread > 0 else 1.0
        if self.contamination == "auto":
            self.offset_ = -_auto_threshold(anomaly)
        else:
            self.offset_ = float(np.percentile(scores, 100.0 * self.contamination))

    def _robust_rows(self, X, labels, rng):
        """The training rows (and labels) the networks are trained on: the
        most suspect ``train_contamination`` share of the unlabelled rows is
        left out (:mod:`skad._robust`); labelled rows always stay."""
        fraction = self.train_contamination
        if fraction == "auto":
            fraction = self._auto_train_contamination
        self.train_contamination_ = float(fraction)
        keep = _robust.training_rows(X, labels, self.train_contamination_, rng.seed)
        self.n_excluded_ = int((~keep).sum())
        if self.n_excluded_ == 0:
            return X, labels
        return X[keep], (None if labels is None else labels[keep])

    @staticmethod
    def _scale_hint(exc: TrainingDivergedError, scale: float):
        """The divergence error, naming the data scale when it is large."""
        if scale <= _LARGE_SCALE:
            return exc
        return TrainingDivergedError(
            f"{exc} The training data reaches {scale:.3g} in magnitude: "
            "standardise the features (sklearn.preprocessing.StandardScaler) "
            "before lowering the learning rate."
        )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the detector.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows (tabular rows, embeddings or image features); 4-D
            images ``(n_samples, C, H, W)`` in detectors with an image mode.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        return self._fit(X)

    # -------------------------------------------------------------- scoring
    def _score_samples(self, X, *, finite: bool = True) -> np.ndarray:
        """Scores (higher = more normal) of validated X, without checks.

        With ``finite``, a row whose anomaly score is not finite (features
        beyond float32's range, or an overflow inside the network) gets the
        most anomalous finite score: it is flagged as an outlier, never NaN.
        """
        anomaly = self._map_chunks(self._score, X, grad=self._score_needs_grad)
        if finite:
            big = np.finfo(np.float64).max
            anomaly = np.nan_to_num(anomaly, nan=big, posinf=big, neginf=-big)
        return -anomaly

    def score_samples(self, X):
        """Opposite of the anomaly score of each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,), dtype float64
            The higher, the more normal. It is the method's anomaly score,
            negated (scikit-learn's convention). Always finite: a row the
            network cannot score in float32 gets the lowest score.
        """
        check_is_fitted(self)
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
        is_inlier[~(decision >= 0)] = -1
        return is_inlier

    def predict_proba(self, X):
        """Probability-like outlier scores.

        A monotone squashing of the decision function, centred on the
        threshold: ``p_outlier = 1 / (1 + exp(-log(9) * (anomaly_score -
        threshold) / score_scale_))`` where ``score_scale_`` is the
        interquartile range of the training anomaly scores. A row on the
        threshold gets 0.5, one interquartile range above it 0.9, one below
        it 0.1, so ``predict`` flags exactly the rows with
        ``p_outlier > 0.5``.

        These are not calibrated probabilities: they rank rows like the
        scores do and are relative to the training data's score
        distribution (and to ``contamination``, which sets the threshold).
        Calibrate on labelled rows (e.g. with isotonic regression) when a
        true probability is needed.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, 2), dtype float64
            Column 0: inlier, column 1: outlier; rows sum to 1.
        """
        decision = self.decision_function(X)
        with np.errstate(over="ignore"):
            z = -_PROBA_SLOPE * (decision / self.score_scale_)
            outlier = 1.0 / (1.0 + np.exp(-z))
        return np.column_stack([1.0 - outlier, outlier])

    # -------------------------------------------------------------- pickling
    def __getstate__(self):
        state = dict(super().__getstate__())
        for k, v in list(state.items()):
            if has_tensors(v):
                state[k] = map_tensors(v, lambda t: copy.deepcopy(t).to("cpu"))
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
            device = map_location(state["device_"])
            self.device_ = device
            for k, v in list(vars(self).items()):
                if has_tensors(v):
                    setattr(self, k, map_tensors(v, lambda t: t.to(device)))
            self._eval_modules()


class BaseSemiSupervisedDetector(BaseDeepDetector):
    """Base class of detectors that can learn from a few labels.

    ``fit(X, y=None, *, labels=None)`` takes the labels as a keyword fit
    parameter in Deep SAD's convention: +1 labelled normal, 0 unlabelled, -1
    labelled anomaly. ``y`` stays ignored, as in every scikit-learn outlier
    detector, so that ``GridSearchCV(...).fit(X, y, labels=labels)`` splits
    the labels with the folds while scorers still see the truth ``y``.
    """

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, *, labels=None):
        """Fit the detector, optionally with a few labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows; 4-D images ``(n_samples, C, H, W)`` in detectors
            with an image mode.
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
