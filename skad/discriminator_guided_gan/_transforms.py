"""Transformation banks of the discriminator-guided GAN.

Each bank standardises its input with training statistics (buffers) and
applies one of ``K`` transformations ``T_k``, ``T_0`` being the identity:
feature permutations with sign flips or random orthogonal maps for feature
vectors, rotations by quarter turns and flips for images.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["ImageTransforms", "VectorTransforms"]

#: Standardised values are clipped to this magnitude. Training rows stay far
#: below it (a standardised value is at most ``sqrt(n_samples)``); a scored
#: row beyond a million standard deviations is scored as if it were there,
#: which keeps every layer, and so the score, finite in float32.
INPUT_BOUND = 1e6


class _Standardised(nn.Module):
    """Standardisation by the buffers ``mean`` and ``scale``."""

    def _init_statistics(self, shape):
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("scale", torch.ones(shape))

    @torch.no_grad()
    def fit_statistics(self, X):
        """Set ``mean`` and ``scale`` from the training tensor ``X`` (per
        feature, or per channel for 4-D images); near-constant features
        keep a scale of 1."""
        if X.ndim == 4:
            mean = X.mean(dim=(0, 2, 3), keepdim=True)[0]
            std = X.std(dim=(0, 2, 3), keepdim=True)[0]
        else:
            mean, std = X.mean(dim=0), X.std(dim=0)
        std = torch.where(std > 1e-6 * (1 + mean.abs()), std, torch.ones_like(std))
        self.mean.copy_(mean)
        self.scale.copy_(std)

    def standardise(self, x):
        return ((x - self.mean) / self.scale).clamp(-INPUT_BOUND, INPUT_BOUND)


class VectorTransforms(_Standardised):
    """Standardisation plus ``K`` norm-preserving maps of feature vectors.

    ``T_0`` is the identity. ``kind="permutation"``: ``T_k`` permutes the
    features and flips signs; ``kind="orthogonal"``: ``T_k x = W_k x`` with a
    random orthogonal ``W_k``. All are buffers (saved with the weights).
    """

    def __init__(self, n_features, n_transforms, kind, rng: np.random.Generator):
        super().__init__()
        d, K = n_features, n_transforms
        self.kind = kind
        self._init_statistics(d)
        # The buffers, the identity and the range are torch tensors, so that
        # a build on the meta device (skad.load) allocates nothing sized by
        # the number of features: only the random draws are numpy arrays.
        if kind == "permutation":
            perm = torch.empty((K, d), dtype=torch.long)
            perm[0] = torch.arange(d)
            for k in range(1, K):
                perm[k] = torch.as_tensor(rng.permutation(d))
            sign = torch.ones((K, d))
            sign[1:] = torch.as_tensor(rng.choice([-1.0, 1.0], size=(K - 1, d)))
            self.register_buffer("perm", perm)
            self.register_buffer("sign", sign)
        else:
            weight = torch.empty((K, d, d))
            weight[0] = torch.eye(d)
            for k in range(1, K):
                q, r = np.linalg.qr(rng.normal(size=(d, d)))
                weight[k] = torch.as_tensor(q * np.sign(np.diag(r)))
            self.register_buffer("weight", weight)

    def one(self, x, k: int):
        """``T_k`` applied to every row of standardised ``x``."""
        if self.kind == "permutation":
            return x[:, self.perm[k]] * self.sign[k]
        return x @ self.weight[k].T

    def per_row(self, x, k):
        """Row ``i`` transformed by ``T_{k[i]}`` (``k``: long tensor)."""
        if self.kind == "permutation":
            return torch.gather(x, 1, self.perm[k]) * self.sign[k]
        return torch.einsum("bij,bj->bi", self.weight[k], x)


class ImageTransforms(_Standardised):
    """Per-channel standardisation plus rotations by 90 degrees and flips.

    Square images: ``T_k`` rotates by ``k % 4`` quarter turns, then flips
    horizontally when ``k >= 4`` (up to 8 maps). Other shapes: identity,
    horizontal flip, vertical flip, half turn (up to 4 maps).
    """

    def __init__(self, n_channels, square):
        super().__init__()
        self.square = square
        self._init_statistics((n_channels, 1, 1))

    def one(self, x, k: int):
        """``T_k`` applied to every image of standardised ``x``."""
        if self.square:
            x = torch.rot90(x, k % 4, dims=(2, 3))
            return torch.flip(x, dims=(3,)) if k >= 4 else x
        dims = [(), (3,), (2,), (2, 3)][k]
        return torch.flip(x, dims=dims) if dims else x

    def per_row(self, x, k):
        """Image ``i`` transformed by ``T_{k[i]}`` (``k``: long tensor)."""
        out = torch.empty_like(x)
        for j in torch.unique(k).tolist():
            mask = k == j
            out[mask] = self.one(x[mask], j)
        return out
