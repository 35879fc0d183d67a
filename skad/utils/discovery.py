"""Discovery of skad's public detectors, as in scikit-learn's project template."""

from __future__ import annotations

import inspect


def all_estimators():
    """List every public skad detector.

    Returns
    -------
    estimators : list of (name, class) tuples
        Sorted by name; every class is a concrete subclass of
        :class:`skad.base.BaseDeepDetector` exported by ``skad``.

    Examples
    --------
    >>> from skad import all_estimators
    >>> dict(all_estimators())["DeepSVDD"]
    <class 'skad.deep_svdd.DeepSVDD'>
    """
    import skad
    from skad.base import BaseDeepDetector

    found = []
    for name in skad.__all__:
        obj = getattr(skad, name, None)
        if (
            inspect.isclass(obj)
            and issubclass(obj, BaseDeepDetector)
            and not inspect.isabstract(obj)
        ):
            found.append((name, obj))
    return sorted(found, key=lambda t: t[0])
