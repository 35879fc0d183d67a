"""skad: deep anomaly detection as scikit-learn estimators.

Every detector is trained with PyTorch (GPU when there is one, CPU otherwise)
and behaves like :class:`sklearn.ensemble.IsolationForest`: ``fit`` /
``score_samples`` / ``decision_function`` / ``predict``.
"""

__version__ = "0.1.0"

from skad import datasets as datasets
from skad._engine import TrainingDivergedError
from skad.anomem import AnoMem
from skad.deep_sad import DeepSAD
from skad.deep_svdd import DeepSVDD
from skad.discriminator_guided_gan import DiscriminatorGuidedGAN
from skad.esad import ESAD
from skad.persistence import load, save
from skad.reverse_distillation import ReverseDistillation
from skad.sla2p import SLA2P
from skad.utils.discovery import all_estimators

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
    "load",
    "save",
    "__version__",
]
