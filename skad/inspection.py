"""Explain anomaly scores: per-feature attributions of any fitted detector.

:func:`explain` attributes a detector's anomaly score (the negated
``score_samples``; higher = more anomalous) to the input features of every
row with Integrated Gradients (Sundararajan et al., ICML 2017), computed by
Captum (``pip install skad[explain]``). One implementation serves every
detector: the fitted detector's scoring hook is wrapped in a small
:class:`torch.nn.Module` and handed to Captum, so any detector that scores
with differentiable tensor operations is explained the same way.
:func:`plot_attributions` draws the largest attributions of one row
(matplotlib, optional).
"""

from __future__ import annotations

import numpy as np

__all__ = ["explain", "plot_attributions"]

#: Preprocessing steps that scale every feature by a constant and shift it,
#: ``z = a * x + c`` with ``a != 0``; Integrated Gradients is invariant under
#: such maps (see :func:`explain`), so attributions in the detector's space
#: are the attributions in the user's columns.
_PER_FEATURE_AFFINE = ("StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler")

_CAPTUM_HINT = (
    "skad.explain needs Captum: install it with `pip install skad[explain]` "
    "(or `pip install captum`)."
)


# ---------------------------------------------------------------------------
# Shared with skad.export: the fitted object and the scoring module
# ---------------------------------------------------------------------------


def _split_pipeline(fitted, caller: str):
    """``(preprocessing steps, detector)`` of a fitted detector or Pipeline.

    The steps are ``(name, transformer)`` pairs without ``None`` /
    ``"passthrough"``; the detector is the Pipeline's last step.
    """
    from sklearn.pipeline import Pipeline
    from sklearn.utils.validation import check_is_fitted

    from skad.base import BaseDeepDetector

    steps = []
    detector = fitted
    if isinstance(fitted, Pipeline):
        *head, (_, detector) = fitted.steps
        steps = [(n, s) for n, s in head if s is not None and s != "passthrough"]
    if not isinstance(detector, BaseDeepDetector):
        raise TypeError(
            f"{caller} takes a fitted skad detector or a Pipeline ending with one; "
            f"got {type(detector).__name__}."
        )
    check_is_fitted(detector)
    if getattr(detector, "_score_needs_grad", False):
        raise NotImplementedError(
            f"{caller} does not support {type(detector).__name__} yet: its score "
            "takes an autograd gradient step at scoring time, which neither "
            "Integrated Gradients (a second derivative) nor the ONNX exporter "
            "can follow."
        )
    return steps, detector


def _row_shape(detector) -> tuple[int, ...]:
    """Shape of one input row: ``(n_features,)`` or ``(C, H, W)``."""
    median = getattr(detector, "training_median_", None)
    if median is not None:
        return tuple(int(s) for s in np.shape(median))
    return (int(detector.n_features_in_),)


def _fitted_tensors(detector):
    """Every torch module / tensor held by the detector's fitted attributes."""
    import torch

    modules, buffers = [], []

    def visit(value):
        if isinstance(value, torch.nn.Module):
            modules.append(value)
        elif isinstance(value, torch.Tensor):
            buffers.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                visit(v)
        elif isinstance(value, list | tuple):
            for v in value:
                visit(v)

    for name, value in vars(detector).items():
        if name.endswith("_") and not name.startswith("__"):
            visit(value)
    return modules, buffers


def _score_module(detector, *, score_samples: bool = False, extra_rows: int = 0):
    """The detector's scoring hook as a :class:`torch.nn.Module`.

    ``forward(x)`` maps rows (any float dtype, on ``detector.device_``) to the
    anomaly score of each row (``_score``, float32), or with
    ``score_samples=True`` to skad's ``score_samples`` (negated, float64).
    The fitted modules and tensors are registered as its submodules and
    buffers, so exporters see them as weights. ``extra_rows`` zero rows are
    appended before scoring (and their scores dropped): for a hook whose
    work split depends on the number of rows, this keeps that split the same
    for every batch size of an exported graph.
    """
    import torch

    modules, buffers = _fitted_tensors(detector)

    class _AnomalyScore(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fitted = torch.nn.ModuleList(modules)
            for i, t in enumerate(buffers):
                self.register_buffer(f"fitted_tensor_{i}", t, persistent=False)

        def forward(self, x):
            x = x.to(torch.float32)
            if extra_rows:
                n = x.shape[0]
                fill = x.new_zeros((extra_rows, *x.shape[1:]))
                out = detector._score(torch.cat([x, fill]))[:n]
            else:
                out = detector._score(x)
            if score_samples:
                return -out.to(torch.float64)
            return out

    return _AnomalyScore().eval()


# ---------------------------------------------------------------------------
# explain
# ---------------------------------------------------------------------------


def _check_per_feature_affine(steps) -> None:
    for name, step in steps:
        kind = type(step).__name__
        ok = kind in _PER_FEATURE_AFFINE and type(step).__module__.startswith(
            "sklearn."
        )
        if ok and kind == "MinMaxScaler" and getattr(step, "clip", False):
            ok = False
            kind = "MinMaxScaler(clip=True)"
        if not ok:
            raise ValueError(
                f"skad.explain cannot attribute through the step {name!r} "
                f"({kind}): only steps that scale and shift each feature "
                f"({', '.join(_PER_FEATURE_AFFINE)}) keep the attributions in "
                "your columns. Explain the detector on the transformed data "
                "instead: skad.explain(pipe[-1], pipe[:-1].transform(X))."
            )


def _baseline(baseline, detector, steps, fitted, row_shape):
    """The reference point in the detector's input space, float64."""
    if isinstance(baseline, str):
        if baseline == "median":
            median = getattr(detector, "training_median_", None)
            if median is None:
                raise ValueError(
                    f"This {type(detector).__name__} has no training_median_ "
                    "(fitted with an older skad); pass baseline= explicitly, "
                    "e.g. the median of your training rows."
                )
            return np.asarray(median, dtype=np.float64)
        if baseline == "zeros":
            return np.zeros(row_shape)
        raise ValueError(
            f'baseline must be "median", "zeros", a number or an array of one '
            f"row; got {baseline!r}."
        )
    b = np.asarray(baseline, dtype=np.float64)
    if b.ndim == 0:
        b = np.full(row_shape, float(b))
    if b.shape != row_shape:
        raise ValueError(
            f"baseline has shape {b.shape}; it must be one row of shape "
            f"{row_shape} (in the units of X), a number, or a string."
        )
    if not np.all(np.isfinite(b)):
        raise ValueError("baseline contains NaN or infinite values.")
    if steps:
        row = b[None, :]
        names = getattr(fitted, "feature_names_in_", None)
        if names is not None:
            import pandas as pd

            row = pd.DataFrame(row, columns=names)
        b = np.asarray(fitted[:-1].transform(row), dtype=np.float64)[0]
    return b


def explain(
    fitted,
    X,
    *,
    baseline="median",
    n_steps=64,
    return_delta=False,
):
    """Per-feature attributions of the anomaly score of every row.

    Integrated Gradients (computed by Captum) of the detector's anomaly score,
    ``-score_samples`` (higher = more anomalous), along the straight path from
    a ``baseline`` row to each row of ``X``. Attributions are additive: the
    attributions of a row sum to ``score(baseline) - score(x)`` in terms of
    ``score_samples`` (completeness), up to the integration error reported
    by ``return_delta=True``. A positive attribution pushes the row towards
    *anomalous*, a negative one towards normal.

    Parameters
    ----------
    fitted : skad detector or sklearn.pipeline.Pipeline
        A fitted detector, or a fitted Pipeline ending with one whose other
        steps scale and shift each feature (``StandardScaler``,
        ``MinMaxScaler``, ``MaxAbsScaler``, ``RobustScaler``; ``None`` /
        ``"passthrough"`` are skipped). Integrated Gradients is invariant
        under such maps, so the attributions are those of your own columns.
    X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
        Rows to explain, as passed to ``score_samples`` (a DataFrame gives a
        DataFrame back). 4-D images for detectors fitted in an image mode.
    baseline : {"median", "zeros"}, float or array-like, default="median"
        Reference point, in the units of ``X``. ``"median"``: the per-feature
        (image mode: per-pixel) median of the training rows, stored by
        ``fit`` as ``training_median_`` (after the Pipeline's scaling, which
        maps medians to medians); a typical normal row, whose anomaly score is
        low. ``"zeros"``: the origin of the detector's input space (the
        training mean after a ``StandardScaler``). Or one row of shape
        ``(n_features,)`` / ``(C, H, W)``, or a number for every feature.
    n_steps : int, default=64
        Gauss-Legendre nodes of the path integral. Each row costs ``n_steps``
        forward and backward passes; more steps shrink the completeness error
        (see ``return_delta``).
    return_delta : bool, default=False
        Also return the completeness error of every row: the sum of its
        attributions minus ``score_samples(baseline) - score_samples(x)``.

    Returns
    -------
    attributions : ndarray or pandas.DataFrame of shape (n_samples, n_features)
        float64, finite. Image modes: an ndarray of shape (n_samples, C, H, W),
        one map per image. A DataFrame (with the columns and index of ``X``)
        when ``X`` is one.
    delta : ndarray of shape (n_samples,)
        Only with ``return_delta=True``.

    Raises
    ------
    ImportError
        If Captum is not installed.
    ValueError
        For a Pipeline step that is not a per-feature scaling, or a baseline
        of the wrong shape.

    Notes
    -----
    Rows are attributed in groups whose ``n_steps`` path points fill at
    most one scoring chunk (``_score_chunk_size`` rows), which bounds memory
    as scoring does. The chunks are not padded to a fixed shape: Captum sums
    the gradients over the path in float32, so a row's attributions depend
    on the rows it is grouped with by float32 rounding anyway (about 1e-7
    relative), and padding would multiply the cost of explaining a few rows
    by up to ``_score_chunk_size / n_steps``. The completeness error
    (``return_delta``) is measured against skad's own ``score_samples``.

    With the default 64 steps the completeness error of the rows one
    explains (anomalies) stays within 2% of ``|score(x) - score(baseline)|``
    for every detector whose score is continuous (measured: at most 1.0%,
    most detectors below 0.1%); a score that takes a maximum
    (ReverseDistillation's image score, the maximum of its anomaly map)
    converges more slowly and needs about 256 steps. Rows close to the
    baseline have a tiny gap, so their relative error can be larger. SLA2P's
    default score jumps where the predicted pseudo class of a projection
    changes (its perturbation follows that class); Integrated Gradients
    cannot see jumps, and ``delta`` is then their sum (``perturbation=False``
    gives a continuous score).

    Examples
    --------
    >>> import numpy as np
    >>> import skad
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 4))
    >>> det = skad.DeepSVDD(max_iter=2, device="cpu", random_state=0).fit(X)
    >>> x = np.array([[0.0, 0.0, 6.0, 0.0]])
    >>> attr, delta = skad.explain(det, x, return_delta=True)
    >>> attr.shape, int(np.argmax(attr[0]))
    ((1, 4), 2)
    >>> bool(abs(delta[0]) < 1e-2 * abs(attr.sum()))
    True
    """
    from numbers import Integral

    try:
        from captum.attr import IntegratedGradients
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(_CAPTUM_HINT) from exc
    import torch
    from sklearn.utils import check_array

    if not isinstance(n_steps, Integral) or isinstance(n_steps, bool) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive int; got {n_steps!r}.")
    n_steps = int(n_steps)
    steps, detector = _split_pipeline(fitted, "skad.explain")
    _check_per_feature_affine(steps)

    # The public scoring path validates X (shape, names, finiteness) and gives
    # the official scores the completeness check compares with.
    scores = np.asarray(fitted.score_samples(X), dtype=np.float64)
    columns = getattr(X, "columns", None) if getattr(X, "ndim", 0) == 2 else None
    index = getattr(X, "index", None) if columns is not None else None
    Z = fitted[:-1].transform(X) if steps else X
    Z = check_array(Z, dtype=np.float64, allow_nd=True, ensure_all_finite=True)
    row_shape = tuple(Z.shape[1:])
    b = _baseline(baseline, detector, steps, fitted, row_shape)

    device = detector.device_
    module = _score_module(detector)
    ig = IntegratedGradients(module)
    chunk = int(detector._score_chunk_size)
    group = max(1, chunk // n_steps)
    internal = chunk if group == 1 and n_steps > chunk else None
    b_t = torch.as_tensor(b, dtype=torch.float32, device=device).unsqueeze(0)
    out = np.empty(Z.shape, dtype=np.float64)
    for start in range(0, Z.shape[0], group):
        # a float32 copy: also for read-only or negatively strided input
        rows = np.array(Z[start : start + group], dtype=np.float32)
        x = torch.from_numpy(rows).to(device)
        attr = ig.attribute(
            x,
            baselines=b_t.expand_as(x),
            n_steps=n_steps,
            method="gausslegendre",
            internal_batch_size=internal,
        )
        out[start : start + x.shape[0]] = attr.detach().to("cpu", torch.float64)
    if not np.all(np.isfinite(out)):
        raise FloatingPointError(
            "Integrated Gradients produced non-finite attributions; the "
            "detector's score is not differentiable along the path from the "
            "baseline (try another baseline)."
        )
    result = out
    if columns is not None:
        import pandas as pd

        result = pd.DataFrame(out, columns=columns, index=index)
    if not return_delta:
        return result
    s_base = float(detector._score_samples(b[None])[0])  # skad's scoring path
    delta = out.reshape(out.shape[0], -1).sum(axis=1) - (s_base - scores)
    return result, delta


# ---------------------------------------------------------------------------
# plot_attributions
# ---------------------------------------------------------------------------


def plot_attributions(attributions, row=0, *, top=10, feature_names=None, ax=None):
    """Bar chart of the largest attributions of one row.

    Parameters
    ----------
    attributions : array-like or pandas.DataFrame of shape (n_samples, n_features)
        Output of :func:`explain` (a 1-D array or Series is one row).
    row : int, default=0
        Position of the row to show.
    top : int, default=10
        Number of features shown: those with the largest absolute
        attribution, largest at the top.
    feature_names : sequence of str, default=None
        Names of the features; taken from the DataFrame's columns (or the
        Series' index) when not given, else ``x0, x1, ...``.
    ax : matplotlib.axes.Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib.axes.Axes
        Bars to the right (red) push the row towards anomalous, bars to the
        left (blue) towards normal.

    Examples
    --------
    >>> import numpy as np
    >>> from skad.inspection import plot_attributions
    >>> ax = plot_attributions(np.array([[0.1, -0.4, 2.0]]), top=2)
    >>> [t.get_text() for t in ax.get_yticklabels()]
    ['x1', 'x2']
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "plot_attributions needs matplotlib: `pip install matplotlib` "
            "(or `pip install skad[plot]`)."
        ) from exc
    names = feature_names
    if names is None:
        names = getattr(attributions, "columns", None)
        if names is None and getattr(attributions, "ndim", 2) == 1:
            names = getattr(attributions, "index", None)
    values = np.asarray(attributions, dtype=np.float64)
    if values.ndim == 1:
        values = values[None, :]
    if values.ndim != 2:
        raise ValueError(
            "plot_attributions shows tabular attributions of shape (n_samples, "
            f"n_features); got shape {values.shape} (show image maps with "
            "matplotlib's imshow)."
        )
    v = values[row]
    names = [f"x{i}" for i in range(v.shape[0])] if names is None else list(names)
    if len(names) != v.shape[0]:
        raise ValueError(
            f"feature_names has {len(names)} entries for {v.shape[0]} features."
        )
    order = np.argsort(-np.abs(v), kind="stable")[: max(1, int(top))][::-1]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.35 * len(order) + 1.2))
    colors = ["tab:red" if v[i] > 0 else "tab:blue" for i in order]
    ax.barh(range(len(order)), v[order], color=colors)
    ax.set_yticks(range(len(order)), [str(names[i]) for i in order])
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("attribution to the anomaly score (> 0: towards anomalous)")
    ax.set_title(f"Top {len(order)} attributions of row {row}")
    return ax
