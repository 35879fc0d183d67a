"""skad: deep anomaly detection as scikit-learn estimators.

Every detector is trained with PyTorch (GPU when there is one, CPU otherwise)
and behaves like :class:`sklearn.ensemble.IsolationForest`: ``fit`` /
``score_samples`` / ``decision_function`` / ``predict``.

Public names are loaded on first use (PEP 562), the way scikit-learn loads
its submodules: ``import skad`` stays cheap, ``skad.DeepSVDD`` or
``from skad import DeepSVDD`` imports the detector, and ``skad.metrics`` /
``skad.datasets`` / ``skad.utils`` / ``skad.benchmark`` work as attributes
after a plain ``import skad``.
"""

import importlib

from skad._version import __version__

#: Public name -> module that defines it.
_LAZY = {
    "AnoMem": "skad.anomem",
    "DeepSAD": "skad.deep_sad",
    "DeepSVDD": "skad.deep_svdd",
    "DiscriminatorGuidedGAN": "skad.discriminator_guided_gan",
    "ESAD": "skad.esad",
    "ReverseDistillation": "skad.reverse_distillation",
    "SLA2P": "skad.sla2p",
    "TrainingDivergedError": "skad.exceptions",
    "all_estimators": "skad.utils.discovery",
    "explain": "skad.inspection",
    "export_onnx": "skad.export",
    "load": "skad.persistence",
    "plot_attributions": "skad.inspection",
    "save": "skad.persistence",
}

#: Submodules reachable as attributes of ``skad``.
_SUBMODULES = (
    "benchmark",
    "datasets",
    "exceptions",
    "export",
    "inspection",
    "metrics",
    "persistence",
    "utils",
)

__all__ = [
    "AnoMem",
    "DeepSAD",
    "DeepSVDD",
    "DiscriminatorGuidedGAN",
    "ESAD",
    "ReverseDistillation",
    "SLA2P",
    "TrainingDivergedError",
    "all_estimators",
    "explain",
    "export_onnx",
    "load",
    "plot_attributions",
    "save",
    "__version__",
]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"skad.{name}")
    else:
        raise AttributeError(f"module 'skad' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
