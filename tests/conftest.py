"""Shared fixtures: small planted-anomaly data, GPU marker handling."""

import numpy as np
import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


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


@pytest.fixture
def planted():
    return make_planted()
