"""Utilities: label conversion for semi-supervised detectors, discovery."""

from skad.utils._labels import semi_supervised_labels
from skad.utils.discovery import all_estimators

__all__ = ["all_estimators", "semi_supervised_labels"]
