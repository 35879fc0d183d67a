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
