"""AnoMem networks: encoder stages, Hopfield memories, deviation head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from skad import _nn


class _HopfieldMemory(nn.Module):
    """Learnable stored patterns read by one modern-Hopfield retrieval step.

    ``a = softmax(beta * cos(q, M))``, ``r = a @ M`` for each query vector.
    """

    def __init__(self, n_slots: int, width: int, beta: float, similarity="cosine"):
        super().__init__()
        self.beta = float(beta)
        self.similarity = similarity
        self.slots = nn.Parameter(torch.empty(n_slots, width))

    def reset_parameters_with(self, generator: torch.Generator) -> None:
        nn.init.normal_(self.slots, 0.0, 1.0, generator=generator)

    def forward(self, q: torch.Tensor):
        if self.similarity == "cosine":
            keys = F.normalize(self.slots, dim=-1)
            sim = F.normalize(q, dim=-1) @ keys.T
        else:  # negative squared distance per coordinate
            sq = (q**2).sum(-1, keepdim=True) + (self.slots**2).sum(-1)
            sim = -(sq - 2.0 * q @ self.slots.T).clamp_min(0.0) / q.shape[-1]
        attn = torch.softmax(self.beta * sim, dim=-1)
        return attn @ self.slots, attn

    def variance_penalty(self) -> torch.Tensor:
        """VICReg-style hinge: every coordinate should vary across slots."""
        std = torch.sqrt(self.slots.var(dim=0) + 1e-4)
        return F.relu(1.0 - std).mean()


def _conv_out(size: int, stride: int) -> int:
    return (size - 1) // stride + 1


class _AnoMemNet(nn.Module):
    """Encoder stages, one memory per stage and the projection heads.

    Vector mode: stage = Linear + LayerNorm (+ GELU before the next stage);
    features are the LayerNorm outputs (one position, ``c_l`` coordinates).
    Image mode: stage = 3x3 conv + GroupNorm(1) (+ GELU); the memory reads
    every spatial position.
    """

    def __init__(
        self,
        n_features,
        widths,
        n_prototypes,
        beta,
        projection_dim,
        image_shape=None,
        norm="layer",
        map_sizes=None,
        similarity="cosine",
    ):
        super().__init__()
        self.image = image_shape is not None
        self.mixed = norm == "mixed" and not self.image
        stages = []
        width = n_features if not self.image else image_shape[0]
        for i, w in enumerate(widths):
            if self.image:
                stride = 1 if i == 0 else 2
                stages.append(
                    nn.Sequential(
                        nn.Conv2d(width, w, 3, stride=stride, padding=1),
                        nn.GroupNorm(1, w),
                    )
                )
            else:
                layers = [nn.Linear(width, w)]
                if norm is not None:
                    layers.append(nn.LayerNorm(w))
                stages.append(nn.Sequential(*layers))
            width = w
        self.stages = nn.ModuleList(stages)
        self.memories = nn.ModuleList(
            _HopfieldMemory(n, w, beta, similarity)
            for n, w in zip(n_prototypes, widths)
        )
        self.heads = nn.ModuleList(
            _nn.MLP(w, (projection_dim,), projection_dim, activation="gelu")
            for w in widths
        )
        self.final_head = _nn.MLP(
            widths[-1], (projection_dim,), projection_dim, activation="gelu"
        )
        self.act = nn.GELU()
        n_scales = len(widths)
        self.register_buffer("dev_mean", torch.zeros(n_scales))
        self.register_buffer("dev_std", torch.ones(n_scales))
        self.map_sizes = list(map_sizes if map_sizes is not None else widths)
        # training mean of every deviation-map entry (ones = no rescaling)
        self.register_buffer("map_scale", torch.ones(sum(self.map_sizes)))

    def forward(self, x):
        """Features, retrievals and attentions of every stage.

        Features are (B, P, c_l) with P positions (1 in vector mode).
        """
        feats, retr, attn = [], [], []
        h = x
        for i, (stage, mem) in enumerate(zip(self.stages, self.memories)):
            inp = self.act(h) if i else h
            if self.mixed and i == 0:
                # "mixed": the first memory reads the un-normalised features
                z = stage[0](inp)
                h = stage[1](z)
            else:
                z = h = stage(inp)
            q = z.flatten(2).transpose(1, 2) if self.image else z.unsqueeze(1)
            r, a = mem(q)
            feats.append(q)
            retr.append(r)
            attn.append(a)
        return feats, retr, attn

    @staticmethod
    def deviation(z, r):
        """Per-position deviation ``||z - r||^2 / c`` of shape (B, P)."""
        return ((z - r) ** 2).mean(dim=-1)

    def deviation_maps(self, x):
        """Per-scale deviation maps used by the detectors: (B, P_l) each.

        Vector mode has one position per scale, so its map is the
        per-coordinate squared deviation (B, c_l).
        """
        feats, retr, _ = self(x)
        if self.image:
            return [self.deviation(z, r) for z, r in zip(feats, retr)]
        return [((z - r) ** 2).squeeze(1) for z, r in zip(feats, retr)]

    def scale_deviations(self, x, maps=None):
        """Mean of each scale's deviation map, each entry divided by its
        training mean (``map_scale``): (B, L)."""
        maps = self.deviation_maps(x) if maps is None else maps
        scales = self.map_scale.split(self.map_sizes)
        return torch.stack([(m / s).mean(dim=1) for m, s in zip(maps, scales)], dim=1)


class _DeviationHead(nn.Module):
    """Bias-free MLP on standardised deviation maps with a centre ``c``."""

    def __init__(self, in_features, hidden_layer_sizes, latent_dim):
        super().__init__()
        self.net = _nn.MLP(
            in_features,
            hidden_layer_sizes,
            latent_dim,
            activation="leaky_relu",
            bias=False,
        )
        self.register_buffer("in_mean", torch.zeros(in_features))
        self.register_buffer("in_std", torch.ones(in_features))
        self.register_buffer("center", torch.zeros(latent_dim))
        self.register_buffer("dist_mean", torch.zeros(()))
        self.register_buffer("dist_std", torch.ones(()))

    def forward(self, maps):
        return self.net((maps - self.in_mean) / self.in_std)

    def distance(self, maps):
        return ((self(maps) - self.center) ** 2).sum(dim=1)
