"""Reverse Distillation's loss and scores, as plain functions of tensors.

Teacher and student features come as lists, one tensor per scale: ``(n, w)``
in vector mode, ``(n, C, H, W)`` in image mode. Every distance is
``1 - cos`` between teacher and student features.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

__all__ = [
    "anomaly_maps",
    "distillation_loss",
    "flat",
    "gaussian_matrix",
    "position_distance",
    "vector_scores",
]


def flat(f: torch.Tensor) -> torch.Tensor:
    """One row per sample: ``(n, -1)``."""
    return f.reshape(f.shape[0], -1)


def position_distance(t, s, n_groups: int) -> torch.Tensor:
    """``1 - cos`` per position: (n, G) for vectors (``n_groups`` contiguous
    groups of features), (n, H, W) for maps (over the channels)."""
    if t.dim() == 4:
        return 1.0 - F.cosine_similarity(t, s, dim=1)
    t, s = flat(t), flat(s)
    g = min(n_groups, t.shape[1])
    return torch.stack(
        [
            1.0 - F.cosine_similarity(a, b, dim=1)
            for a, b in zip(t.tensor_split(g, dim=1), s.tensor_split(g, dim=1))
        ],
        dim=1,
    )


def distillation_loss(teacher_feats, student_feats, loss: str, n_groups: int):
    """Per-row loss summed over scales: flattened (official code) or grouped
    (the paper's per-position mean)."""
    total = 0.0
    for t, s in zip(teacher_feats, student_feats):
        if loss == "flattened":
            total = total + 1.0 - F.cosine_similarity(flat(t), flat(s), dim=1)
        else:
            total = total + flat(position_distance(t, s, n_groups)).mean(dim=1)
    return total


def vector_scores(teacher_feats, student_feats, loss: str, n_groups: int, how: str):
    """Anomaly score of each row in vector mode: the flattened loss, or, for
    the grouped loss, the mean (``how="mean"``) or maximum (``"max"``) of the
    per-group distances of each scale, summed over scales."""
    if loss == "flattened":
        return distillation_loss(teacher_feats, student_feats, "flattened", 1)
    score = teacher_feats[0].new_zeros(teacher_feats[0].shape[0])
    for t, s in zip(teacher_feats, student_feats):
        d = flat(position_distance(t, s, n_groups))
        score = score + (d.amax(dim=1) if how == "max" else d.mean(dim=1))
    return score


def gaussian_matrix(size: int, sigma: float, dtype, device) -> torch.Tensor:
    """(size, size) matrix applying a 1-D Gaussian filter with scipy's
    ``mode="reflect"`` boundary (kernel radius ``int(4 sigma + 0.5)``) for any
    image size, even smaller than the kernel."""
    radius = int(4.0 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    w = np.exp(-0.5 * (offsets / sigma) ** 2)
    w /= w.sum()
    period = 2 * size
    mat = np.zeros((size, size))
    for i in range(size):
        j = np.mod(i + offsets, period)
        j = np.where(j >= size, period - 1 - j, j)
        np.add.at(mat[i], j, w)
    return torch.as_tensor(mat, dtype=dtype, device=device)


def anomaly_maps(teacher_feats, student_feats, size, sigma: float) -> torch.Tensor:
    """The paper's anomaly maps (n, H, W) for images of spatial ``size``
    (H, W): per-pixel ``1 - cos`` of every scale, upsampled (bilinear, corners
    aligned), summed over scales and smoothed with a Gaussian of standard
    deviation ``sigma`` pixels (none for 0)."""
    H, W = size
    t0 = teacher_feats[0]
    amap = t0.new_zeros((t0.shape[0], H, W))
    for t, s in zip(teacher_feats, student_feats):
        m = position_distance(t, s, 1).unsqueeze(1)
        amap = amap + F.interpolate(
            m, size=(H, W), mode="bilinear", align_corners=True
        ).squeeze(1)
    if sigma > 0:
        gh = gaussian_matrix(H, sigma, t0.dtype, t0.device)
        gw = gaussian_matrix(W, sigma, t0.dtype, t0.device)
        amap = gh @ amap @ gw.T
    return amap
