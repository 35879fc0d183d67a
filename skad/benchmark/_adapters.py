"""Adapters that put PyOD and DeepOD detectors behind skad's sign convention.

PyOD and DeepOD return *anomaly* scores (higher = more anomalous) from
``decision_function``, take their seed and device under different names and
sometimes need the number of features at construction. Each adapter handles
those quirks in one place and exposes ``fit`` / ``score_samples`` with
scikit-learn's convention (higher = more normal), so the benchmark treats
every detector alike. Neither package is a dependency: the adapters import
their model lazily, and the registry lists them only when importable.
"""

from __future__ import annotations

import importlib
import inspect

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted

__all__ = [
    "DeepODAdapter",
    "DeepODSemiSupervisedAdapter",
    "PyODAdapter",
    "resolve_target",
]


def resolve_target(target):
    """Import ``"package.module.Name"`` (or ``"package.module:Name"``)."""
    if not isinstance(target, str):
        return target
    if ":" in target:
        module, _, attr = target.partition(":")
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj
    parts = target.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for part in parts[i:]:
                obj = getattr(obj, part)
        except AttributeError as exc:
            raise ImportError(f"Cannot resolve {target!r}: {exc}") from exc
        return obj
    raise ImportError(f"Cannot import {target!r}.")


def _accepts(cls, name) -> bool:
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return False
    return name in sig.parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()
    )


class _ScoreAdapter(OutlierMixin, BaseEstimator):
    """Common part: build the wrapped model at fit, flip its score's sign."""

    #: Name of the wrapped model's seed argument.
    _seed_name = "random_state"
    #: Extra constructor arguments set when the wrapped model accepts them.
    _quiet = {"verbose": 0}

    def __init__(
        self,
        model=None,
        *,
        params=None,
        random_state=None,
        device=None,
        contamination=0.1,
    ):
        self.model = model
        self.params = params
        self.random_state = random_state
        self.device = device
        self.contamination = contamination

    def _default_device(self):
        return None

    def _build(self, X):
        cls = resolve_target(self.model)
        kwargs = dict(self.params or {})
        for key, value in self._quiet.items():
            if _accepts(cls, key):
                kwargs.setdefault(key, value)
        if self.random_state is not None and _accepts(cls, self._seed_name):
            kwargs.setdefault(self._seed_name, self.random_state)
        device = self.device if self.device is not None else self._default_device()
        if device is not None and _accepts(cls, "device"):
            kwargs.setdefault("device", device)
        if _accepts(cls, "n_features"):
            kwargs.setdefault("n_features", X.shape[1])
        if _accepts(cls, "contamination"):
            kwargs.setdefault("contamination", self.contamination)
        return cls(**kwargs)

    def fit(self, X, y=None):
        """Fit the wrapped model on ``X`` (``y`` is ignored)."""
        return self._fit(X)

    def _fit(self, X, peer_y=None):
        X = np.ascontiguousarray(X, dtype=np.float32)
        self.n_features_in_ = X.shape[1]
        self.estimator_ = self._build(X)
        if peer_y is None:
            self.estimator_.fit(X)
        else:
            self.estimator_.fit(X, peer_y)
        # PyOD and DeepOD keep the anomaly scores of the training rows
        train = getattr(self.estimator_, "decision_scores_", None)
        if train is not None and np.shape(train) == (X.shape[0],):
            train = -np.asarray(train, dtype=np.float64)
        else:
            train = self.score_samples(X)
        # the training scores the threshold comes from (the benchmark's F1)
        self.training_scores_ = train
        self.offset_ = float(np.percentile(train, 100.0 * self.contamination))
        return self

    def score_samples(self, X):
        """Negated anomaly score of the wrapped model (higher = more normal)."""
        check_is_fitted(self)
        X = np.ascontiguousarray(X, dtype=np.float32)
        return -np.asarray(self.estimator_.decision_function(X), dtype=np.float64)

    def decision_function(self, X):
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        return np.where(self.decision_function(X) < 0, -1, 1)


class PyODAdapter(_ScoreAdapter):
    """A PyOD detector with scikit-learn's score sign.

    Parameters
    ----------
    model : str or class
        ``"pyod.models.ecod.ECOD"`` or the class itself.
    params : dict, default=None
        Constructor arguments of the model.
    random_state : int, default=None
        Passed as ``random_state`` when the model takes one.
    device : str, default=None
        Passed as ``device`` when the model takes one.
    contamination : float, default=0.1

    Examples
    --------
    >>> import numpy as np
    >>> from skad.benchmark import PyODAdapter
    >>> class Fake:  # PyOD-like: decision_function is the anomaly score
    ...     def fit(self, X, y=None): return self
    ...     def decision_function(self, X): return np.abs(X[:, 0])
    >>> PyODAdapter(Fake).fit(np.zeros((3, 1))).score_samples(np.array([[2.0]]))
    array([-2.])
    """


class DeepODAdapter(_ScoreAdapter):
    """A DeepOD detector with scikit-learn's score sign.

    DeepOD takes its seed as ``random_state`` and prints its training
    progress unless ``verbose=0``; both are set here. Install DeepOD with
    ``pip install deepod --no-deps`` (it pins an old torch).

    Parameters are those of :class:`PyODAdapter`; ``device`` defaults to
    ``"cuda"`` when torch sees a GPU and ``"cpu"`` otherwise.
    """

    def _default_device(self):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


class DeepODSemiSupervisedAdapter(DeepODAdapter):
    """A semi-supervised DeepOD detector (DeepSAD, DevNet, PReNet, RoSAS).

    Its ``fit`` takes skad's ``labels`` (+1 normal, 0 unlabelled, -1
    anomaly) and passes DeepOD's convention, ``y = 1`` for a labelled
    anomaly and 0 otherwise. Parameters are those of :class:`DeepODAdapter`.

    Examples
    --------
    >>> from skad.benchmark import DeepODSemiSupervisedAdapter
    >>> from skad.utils import accepts_labels
    >>> accepts_labels(DeepODSemiSupervisedAdapter("deepod.models.tabular.DevNet"))
    True
    """

    def fit(self, X, y=None, *, labels=None):
        """Fit the wrapped model with ``y = (labels == -1)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored
        labels : array-like of shape (n_samples,)
            +1 labelled normal, 0 unlabelled, -1 labelled anomaly; required.

        Returns
        -------
        self : object
        """
        if labels is None:
            raise ValueError(
                f"{type(self).__name__}({self.model!r}) is semi-supervised and "
                "needs labels (+1 normal, 0 unlabelled, -1 anomaly)."
            )
        return self._fit(X, (np.asarray(labels) == -1).astype(np.int64))
