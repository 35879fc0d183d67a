"""Utilities: label conversion for semi-supervised detectors, discovery,
torch thread control for parallel searches, fit-parameter introspection."""

from skad.utils._fit_params import accepts_labels
from skad.utils._labels import semi_supervised_labels
from skad.utils._threads import torch_threads
from skad.utils.discovery import all_estimators

__all__ = [
    "accepts_labels",
    "all_estimators",
    "semi_supervised_labels",
    "torch_threads",
]
