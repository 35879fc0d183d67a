"""Shared fixtures: small planted-anomaly data, GPU marker handling."""

import pytest
import torch

from tests._helpers import make_planted


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def planted():
    return make_planted()
