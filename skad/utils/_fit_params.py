"""Which fit parameters an estimator takes, read from its signature."""

from __future__ import annotations

import inspect

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _final_step(estimator):
    """The last step of (nested) pipelines, else ``estimator`` itself."""
    from sklearn.pipeline import Pipeline

    while isinstance(estimator, Pipeline):
        estimator = estimator.steps[-1][1]
    return estimator


def accepts_labels(estimator) -> bool:
    """Whether an estimator's ``fit`` takes semi-supervised ``labels``.

    True when the ``fit`` method of ``estimator`` (of the final step for a
    :class:`~sklearn.pipeline.Pipeline`, nested ones included) has a
    parameter named ``labels`` that can be passed by keyword, as
    ``fit(X, y=None, *, labels=None)`` of skad's semi-supervised detectors.
    Only the signature is read: a ``**kwargs`` catch-all does not count, and
    nothing is fitted or imported.

    Parameters
    ----------
    estimator : estimator instance or class
        A detector, a pipeline ending in one, or their class.

    Returns
    -------
    accepts : bool
        Whether ``estimator.fit(X, labels=labels)`` is supported (for a
        pipeline: ``pipe.fit(X, <last step name>__labels=labels)``).

    See Also
    --------
    skad.utils.semi_supervised_labels : Builds such labels from {0, 1} truth.

    Examples
    --------
    >>> from sklearn.ensemble import IsolationForest
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skad import DeepSAD, DeepSVDD
    >>> from skad.utils import accepts_labels
    >>> accepts_labels(DeepSAD()), accepts_labels(DeepSVDD())
    (True, False)
    >>> accepts_labels(make_pipeline(StandardScaler(), DeepSAD()))
    True
    >>> accepts_labels(IsolationForest)
    False
    """
    fit = getattr(_final_step(estimator), "fit", None)
    if not callable(fit):
        return False
    try:
        parameter = inspect.signature(fit).parameters.get("labels")
    except (TypeError, ValueError):  # builtins without a signature
        return False
    return parameter is not None and parameter.kind in _NAMED
