"""Shared parameter and attribute documentation, written once.

Every detector's class docstring names the shared parameters by placeholder,
on a line of their own at the indentation of a parameter entry::

    Parameters
    ----------
    latent_dim : int, default=32
        Width of the output space.
    {contamination}
    {max_iter}
        Lines indented like a description continue the shared text with
        what is specific to the method.

and :meth:`skad.base.BaseDeepDetector.__init_subclass__` substitutes them
(imbalanced-learn's ``Substitution`` pattern) with the text below, whose
``{default}`` is the default of the class's own ``__init__``: the documented
default cannot drift from the signature. ``{fitted_attributes}`` expands to
the attributes every fitted detector has.
"""

from __future__ import annotations

import inspect
import re

__all__ = ["SHARED_ATTRIBUTES", "SHARED_PARAMETERS", "fill_shared_docs"]

#: name -> (type, description); ``{default}`` is filled from the signature.
SHARED_PARAMETERS: dict[str, tuple[str, str]] = {
    "contamination": (
        'float or "auto"',
        "Expected share of outliers in the training rows: ``offset_`` is "
        "that quantile of the training scores, so ``predict`` flags that "
        'share of them. Must be in (0, 0.5]. ``"auto"`` needs no guess: '
        "the threshold is Tukey's upper fence of the training anomaly "
        "scores (third quartile + 1.5 interquartile ranges). Only the "
        "threshold depends on it, not the training.",
    ),
    "train_contamination": (
        'float or "auto"',
        "Share of the unlabelled training rows treated as suspected "
        "anomalies and left out of training: before training, the rows that "
        "an isolation forest and the 5-nearest-neighbour distance rank as "
        "most anomalous (mean rank) are dropped, so the model does not learn "
        "the anomalies hidden in unlabelled data as normal. Labelled rows "
        "are always used, and every row is still scored. 0 trains on every "
        'row (for training data known to be clean). ``"auto"`` uses '
        "{auto_share} for this detector: the share that gave the best mean "
        "validation ROC AUC on development data sets (see the user guide; 0 "
        "where leaving rows out did not help). Unlike ``contamination``, "
        "which only sets the threshold, this changes what is learned.",
    ),
    "max_iter": (
        'int or "auto"',
        "Maximum number of training epochs (passes over the training "
        'rows). ``"auto"`` runs as many epochs as the method needs for its '
        "minimum number of mini-batch updates (the same rule on every "
        "detector: see the user guide), so small data sets are not "
        "under-trained.",
    ),
    "batch_size": ("int", "Rows per mini-batch."),
    "learning_rate_init": ("float", "Adam learning rate."),
    "weight_decay": ("float", "L2 penalty on the weights (Adam's weight decay)."),
    "early_stopping": (
        "bool",
        "Hold out ``validation_fraction`` of the training rows and stop when "
        "their loss has not improved by more than ``tol`` for "
        "``n_iter_no_change`` epochs; the weights of the best epoch are "
        "restored. Without it, training stops on a plateau of the training "
        "loss (same rule).",
    ),
    "validation_fraction": (
        "float",
        "Share of the training rows held out when ``early_stopping=True``.",
    ),
    "n_iter_no_change": (
        "int",
        "Epochs without an improvement of more than ``tol`` after which "
        "training stops.",
    ),
    "tol": ("float", "Smallest loss improvement that counts as progress."),
    "device": (
        "str or torch.device",
        '``"auto"`` uses CUDA when available, else the CPU; or any torch '
        'device string such as ``"cpu"`` or ``"cuda:1"``.',
    ),
    "random_state": (
        "int, RandomState instance or None",
        "Seeds the local generators of initialisation, shuffling and "
        "sampling; the global random state is never used. Same "
        "``random_state`` and data on the CPU give identical scores.",
    ),
    "verbose": ("int", "> 0 shows a progress bar with the running losses."),
}

#: name -> (type, description) of the attributes every fitted detector has.
SHARED_ATTRIBUTES: dict[str, tuple[str, str]] = {
    "offset_": (
        "float",
        "Threshold on ``score_samples``: ``decision_function`` is "
        "``score_samples - offset_`` (negative = outlier).",
    ),
    "score_scale_": (
        "float",
        "Interquartile range of the training anomaly scores (the scale of "
        "``predict_proba``).",
    ),
    "train_contamination_": (
        "float",
        "The share of unlabelled training rows left out of training.",
    ),
    "n_excluded_": (
        "int",
        "Number of training rows left out of training as suspected anomalies.",
    ),
    "loss_curve_": ("list of float", "Mean training loss per epoch."),
    "n_iter_": ("int", "Epochs run."),
    "best_loss_": (
        "float",
        "Best training loss (validation loss with ``early_stopping``).",
    ),
    "validation_scores_": (
        "list of float",
        "Validation loss per epoch (only with ``early_stopping=True``).",
    ),
    "device_": ("torch.device", "The device the modules live on."),
    "training_median_": (
        "ndarray",
        "Per-feature (image mode: per-pixel) median of the training rows, the "
        "default reference of :func:`skad.explain`.",
    ),
    "input_mode_": (
        '{"vector", "image"}',
        "Rows of features (2-D ``X``) or images (4-D ``X``).",
    ),
    "input_shape_": (
        "tuple of int",
        "Shape of one sample: ``(n_features,)`` or ``(C, H, W)``.",
    ),
    "n_features_in_": (
        "int",
        "Number of features (channels ``C`` in image mode) seen in ``fit``.",
    ),
    "feature_names_in_": (
        "ndarray of shape (n_features_in_,)",
        "Names of the features seen in ``fit`` (only when ``X`` has string "
        "column names).",
    ),
}


def _entry(name: str, type_: str, text: str, indent: str, default) -> str:
    """One numpydoc entry: ``name : type, default=...`` and wrapped text."""
    head = f"{name} : {type_}"
    if default is not inspect.Parameter.empty:
        head += f', default="{default}"' if isinstance(default, str) else (
            f", default={default}"
        )
    lines, line = [], ""
    for word in text.split():
        if line and len(indent) + 4 + len(line) + 1 + len(word) > 80:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    body = "\n".join(f"{indent}    {x}" for x in lines)
    return f"{indent}{head}\n{body}"


def fill_shared_docs(cls) -> None:
    """Substitute the shared placeholders of ``cls.__doc__`` in place."""
    doc = cls.__doc__
    if not doc or "{" not in doc:
        return
    try:
        signature = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtin __init__
        signature = {}

    def replace(match):
        indent, name = match.group(1), match.group(2)
        if name == "fitted_attributes":
            return "\n".join(
                _entry(k, t, d, indent, inspect.Parameter.empty)
                for k, (t, d) in SHARED_ATTRIBUTES.items()
            )
        type_, text = SHARED_PARAMETERS[name]
        default = (
            signature[name].default if name in signature else inspect.Parameter.empty
        )
        if name == "train_contamination":
            share = getattr(cls, "_auto_train_contamination", 0.0)
            text = text.replace("{auto_share}", f"{share:g}")
        return _entry(name, type_, text, indent, default)

    names = "|".join([*SHARED_PARAMETERS, "fitted_attributes"])
    cls.__doc__ = re.sub(
        rf"^([ \t]*)\{{({names})\}}[ \t]*$", replace, doc, flags=re.MULTILINE
    )
