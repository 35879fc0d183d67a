"""Utilities: label conversion for semi-supervised detectors, discovery,
torch thread control for parallel searches."""

from skad.utils._labels import semi_supervised_labels
from skad.utils._threads import torch_threads
from skad.utils.discovery import all_estimators

__all__ = ["all_estimators", "semi_supervised_labels", "torch_threads"]
