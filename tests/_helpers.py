"""Helpers shared by the test modules: data, fast detector instances,
small torch modules."""

import numpy as np
import torch
from sklearn.base import clone
from torch import nn

from skad import all_estimators
from skad._nn import reset_parameters

# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def make_planted(n_normal=400, n_anomaly=20, n_features=8, seed=0):
    """Normal rows on a low-dimensional correlated manifold plus scattered
    anomalies: the anomalies are far from the normal structure but not
    trivially larger in norm."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(3, n_features))
    normal = rng.normal(size=(n_normal, 3)) @ basis + 0.1 * rng.normal(
        size=(n_normal, n_features)
    )
    anomalies = rng.uniform(-4, 4, size=(n_anomaly, n_features))
    X = np.vstack([normal, anomalies])
    y = np.r_[np.zeros(n_normal, int), np.ones(n_anomaly, int)]
    perm = rng.permutation(len(y))
    return X[perm], y[perm]


def data(n=40, d=4, seed=0):
    """Standard normal rows."""
    return np.random.default_rng(seed).normal(size=(n, d))


# ---------------------------------------------------------------------------
# Detectors
# ---------------------------------------------------------------------------

#: Per-class keyword arguments that keep the common checks fast on a CPU.
FAST_PARAMS = {
    "AnoMem": dict(max_iter=3),
    "DeepSAD": dict(max_iter=3),
    "DeepSVDD": dict(max_iter=3),
    "DiscriminatorGuidedGAN": dict(max_iter=3),
    "ESAD": dict(max_iter=3),
    "ReverseDistillation": dict(max_iter=3, pretrain_epochs=2),
    "SLA2P": dict(max_iter=2, n_transforms=8, projection_dim=8),
}


def fast_instances():
    """One fast CPU instance of every public detector."""
    out = []
    for name, cls in all_estimators():
        params = dict(device="cpu", random_state=0)
        params.update(FAST_PARAMS.get(name, dict(max_iter=3)))
        out.append(cls(**params))
    return out


def labelled_instances():
    """The fast instances whose ``fit`` takes ``labels``."""
    from skad.utils import accepts_labels

    return [e for e in fast_instances() if accepts_labels(e)]


def name(est) -> str:
    """Test id of a detector: its class name."""
    return type(est).__name__


_FITTED: dict = {}


def fitted(est):
    """``est`` fitted on ``data()``, one per class, shared by the tests that
    only score (they must not modify it)."""
    key = name(est)
    if key not in _FITTED:
        _FITTED[key] = clone(est).fit(data())
    return _FITTED[key]


# ---------------------------------------------------------------------------
# Torch modules
# ---------------------------------------------------------------------------



class ConvTeacher(nn.Module):
    """Small convolutional teacher for 8x8 images: 8x8, 4x4 and 2x2 maps."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.c3 = nn.Conv2d(16, 32, 3, stride=2, padding=1)

    def forward(self, x):
        f1 = torch.relu(self.c1(x))
        f2 = torch.relu(self.c2(f1))
        return [f1, f2, torch.relu(self.c3(f2))]


def seeded(module, seed=0):
    """``module`` with its parameters drawn from a generator seeded with
    ``seed`` (the global RNG is not used)."""
    gen = torch.Generator().manual_seed(seed)
    reset_parameters(module, gen)
    return module


def clustered_task(seed=0):
    """make_planted's normal manifold plus a tight cluster of anomalies.

    A cluster of 40 training anomalies (6 %) is dense enough for an
    unsupervised model to learn it as normal; a few labels say otherwise.
    Returns training rows, their truth, test rows and their truth.
    """
    X, _ = make_planted(n_normal=900, n_anomaly=0, n_features=8, seed=seed)
    rng = np.random.default_rng(seed + 100)
    cluster = rng.uniform(-3, 3, size=8) + 0.3 * rng.normal(size=(90, 8))
    X_train = np.vstack([X[:600], cluster[:40]])
    y_train = np.r_[np.zeros(600, int), np.ones(40, int)]
    X_test = np.vstack([X[600:], cluster[40:]])
    y_test = np.r_[np.zeros(300, int), np.ones(50, int)]
    return X_train, y_train, X_test, y_test
