"""The hypersphere pieces shared by DeepSVDD, DeepSAD, ESAD and AnoMem.

Deep SVDD (Ruff et al., ICML 2018) maps rows with a bias-free network to a
space where normal rows sit close to a fixed centre ``c`` (the mean of the
initial embeddings); the anomaly score is the squared distance to ``c``.
Deep SAD (Ruff et al., ICLR 2020) adds labelled rows: labelled anomalies are
pushed away through the inverse of their squared distance.
"""

from __future__ import annotations

from numbers import Integral

import torch
from torch import nn

from skad import _nn
from skad._validation import Interval, IntTuple, StrOptions, check_batch_norm

__all__ = [
    "HYPERSPHERE_CONSTRAINTS",
    "SVDDNet",
    "check_batch_norm",
    "deep_sad_loss",
    "init_center",
    "inverse_distance",
]

#: Added to the squared distance of labelled rows before the power, as in
#: the Deep SAD reference implementation; bounds the inverse term by
#: ``eta / eps``.
DEEP_SAD_EPS = 1e-6

#: Parameter constraints of the hypersphere encoder (DeepSVDD, DeepSAD).
HYPERSPHERE_CONSTRAINTS = {
    "hidden_layer_sizes": [IntTuple(min_len=0)],
    "latent_dim": [Interval(Integral, 1, 2**20, closed="both")],
    "activation": [StrOptions({"relu", "leaky_relu", "elu", "gelu", "silu"})],
    "norm": [StrOptions({"batch", "layer"}), None],
}


class SVDDNet(nn.Module):
    """Bias-free MLP encoder with a fixed centre buffer ``center``.

    Biases, bounded activations and a learnable centre are left out because
    each would let the network map every row onto the centre (hypersphere
    collapse).
    """

    def __init__(
        self, n_features, hidden_layer_sizes, latent_dim, activation, norm=None
    ):
        super().__init__()
        self.encoder = _nn.MLP(
            n_features,
            hidden_layer_sizes,
            latent_dim,
            activation=activation,
            norm=norm,
            bias=False,
        )
        self.register_buffer("center", torch.zeros(latent_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        """Squared Euclidean distance of each row's embedding to the centre."""
        z = self.encoder(x)
        if torch.is_grad_enabled() and z.requires_grad:
            return ((z - self.center) ** 2).sum(dim=1)
        # scoring: the same operations in place (no temporaries)
        return z.sub_(self.center).square_().sum(dim=1)


@torch.no_grad()
def init_center(net: SVDDNet, X: torch.Tensor, map_chunks, eps: float = 0.1) -> None:
    """Set ``net.center`` to the mean initial embedding of ``X``.

    Coordinates within ``eps`` of zero are pushed to +/-``eps`` (Ruff et al.:
    a zero coordinate could be matched trivially by zero weights).
    ``map_chunks`` is the detector's chunked forward pass
    (:meth:`skad.base.BaseDeepDetector._map_chunks`).
    """
    net.eval()
    c = map_chunks(net, X, reduce="sum", as_numpy=False) / X.shape[0]
    c[(c.abs() < eps) & (c < 0)] = -eps
    c[(c.abs() < eps) & (c >= 0)] = eps
    net.center.copy_(c)


def inverse_distance(dist: torch.Tensor, eps: float) -> torch.Tensor:
    """``1 / (dist + eps)``: the push-away term of labelled anomalies,
    smooth and bounded by ``1 / eps``."""
    return torch.reciprocal(dist + eps)


def deep_sad_loss(dist, labels, eta: float, eps: float = DEEP_SAD_EPS):
    """Per-row Deep SAD loss from squared distances ``dist`` and labels.

    Unlabelled rows (0) keep ``dist``; labelled rows get
    ``eta * (dist + eps) ** label``, i.e. ``eta * (dist + eps)`` for labelled
    normals and ``eta / (dist + eps)`` for labelled anomalies.
    """
    if labels is None:
        return dist
    power = labels.to(dist.dtype)
    labelled = eta * (dist + eps) ** power
    return torch.where(labels == 0, dist, labelled)
