"""Helpers shared by several test modules."""

import torch
from torch import nn

from skad._nn import reset_parameters


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
    import numpy as np

    from tests.conftest import make_planted

    X, _ = make_planted(n_normal=900, n_anomaly=0, n_features=8, seed=seed)
    rng = np.random.default_rng(seed + 100)
    cluster = rng.uniform(-3, 3, size=8) + 0.3 * rng.normal(size=(90, 8))
    X_train = np.vstack([X[:600], cluster[:40]])
    y_train = np.r_[np.zeros(600, int), np.ones(40, int)]
    X_test = np.vstack([X[600:], cluster[40:]])
    y_test = np.r_[np.zeros(300, int), np.ones(50, int)]
    return X_train, y_train, X_test, y_test
