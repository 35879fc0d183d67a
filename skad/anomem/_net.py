"""AnoMem networks: encoder stages, Hopfield memories, deviation head."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from skad import _nn
from skad._hypersphere import SVDDNet

#: Hopfield retrieval temperature: ``beta = 1 / MEMORY_TEMPERATURE``
#: multiplies the similarities between a query and the slots.
#: *Reconstructed*; 0.05 lost on the validation splits.
MEMORY_TEMPERATURE = 0.1
#: Width of the 2-layer projection heads of the contrastive losses (the
#: method note proposes 128; 64 halves the training time).
PROJECTION_DIM = 64


class _HopfieldMemory(nn.Module):
    """Learnable stored patterns read by one modern-Hopfield retrieval step.

    ``a = softmax(beta * sim(q, M))``, ``r = a @ M`` for each query vector,
    with ``sim`` the cosine similarity or the negative squared distance per
    coordinate.
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


def conv_out(size: int, stride: int) -> int:
    """Output size of a 3x3 convolution with padding 1."""
    return (size - 1) // stride + 1


class _AnoMemNet(nn.Module):
    """Encoder stages, one memory per stage and the projection heads.

    Vector mode: stage = Linear + LayerNorm (+ GELU before the next stage);
    every stage is normalised, but the first memory reads the features
    before the norm, so the shallow scale sees the feature magnitude and the
    deeper scales see patterns. Image mode: stage = 3x3 conv + GroupNorm(1)
    (+ GELU), strides 1, 2, 2, ...; the memory reads every spatial position.
    """

    def __init__(
        self,
        n_features,
        widths,
        n_prototypes,
        image_shape=None,
        map_sizes=None,
        similarity="cosine",
    ):
        super().__init__()
        self.image = image_shape is not None
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
                stages.append(nn.Sequential(nn.Linear(width, w), nn.LayerNorm(w)))
            width = w
        self.stages = nn.ModuleList(stages)
        beta = 1.0 / MEMORY_TEMPERATURE
        self.memories = nn.ModuleList(
            _HopfieldMemory(n, w, beta, similarity)
            for n, w in zip(n_prototypes, widths)
        )
        self.heads = nn.ModuleList(
            _nn.MLP(w, (PROJECTION_DIM,), PROJECTION_DIM, activation="gelu")
            for w in widths
        )
        self.final_head = _nn.MLP(
            widths[-1], (PROJECTION_DIM,), PROJECTION_DIM, activation="gelu"
        )
        self.act = nn.GELU()
        n_scales = len(widths)
        self.register_buffer("dev_mean", torch.zeros(n_scales))
        self.register_buffer("dev_std", torch.ones(n_scales))
        self.map_sizes = list(map_sizes if map_sizes is not None else widths)
        # training mean of every deviation-map entry (ones = no rescaling)
        self.register_buffer("map_scale", torch.ones(sum(self.map_sizes)))
        # scoring saturates inputs at this magnitude (set from the training
        # rows): the norms and squared deviations of rows far beyond it would
        # overflow float32
        self.register_buffer("input_bound", torch.tensor(math.inf))

    def forward(self, x):
        """Features, retrievals and attentions of every stage.

        Features are (B, P, c_l) with P positions (1 in vector mode).
        """
        feats, retr, attn = [], [], []
        h = x
        for i, (stage, mem) in enumerate(zip(self.stages, self.memories)):
            inp = self.act(h) if i else h
            if self.image:
                z = h = stage(inp)
            else:
                # the first memory reads the features before the norm
                z = stage[0](inp)
                h = stage[1](z)
                z = z if i == 0 else h
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

    @torch.no_grad()
    def init_slots_from_data(self, X, generator):
        """Set every memory's slots to the features of distinct random
        training rows (one random position per row in image mode), plus a
        little noise so that no two slots start equal (equal slots get equal
        gradients)."""
        dev = X.device
        n_slots = max(m.slots.shape[0] for m in self.memories)
        if X.shape[0] >= n_slots:
            rows = torch.randperm(X.shape[0], generator=generator, device=dev)
            rows = rows[:n_slots]
        else:
            rows = torch.randint(
                0, X.shape[0], (n_slots,), generator=generator, device=dev
            )
        feats, _, _ = self(X[rows])
        for mem, q in zip(self.memories, feats):
            k = mem.slots.shape[0]
            pos = torch.randint(0, q.shape[1], (k,), generator=generator, device=dev)
            slots = q[torch.arange(k, device=dev), pos]
            spread = slots.std(dim=0, keepdim=True) if k > 1 else slots.abs()
            noise = torch.randn(slots.shape, generator=generator, device=dev)
            mem.slots.copy_(
                slots + 0.05 * spread.clamp_min(1e-3) * noise.to(slots.dtype)
            )


class _DeviationHead(SVDDNet):
    """Deep SVDD's bias-free encoder on standardised deviation maps.

    The maps are standardised with the training statistics held in the
    buffers ``in_mean`` / ``in_std``; ``dist_mean`` / ``dist_std`` standardise
    the distance when it is added to the weighted deviation.
    """

    def __init__(self, in_features, hidden_layer_sizes, latent_dim):
        super().__init__(in_features, hidden_layer_sizes, latent_dim, "leaky_relu")
        self.register_buffer("in_mean", torch.zeros(in_features))
        self.register_buffer("in_std", torch.ones(in_features))
        self.register_buffer("dist_mean", torch.zeros(()))
        self.register_buffer("dist_std", torch.ones(()))

    def forward(self, maps):
        return self.encoder((maps - self.in_mean) / self.in_std)

    def distance(self, maps):
        return super().distance((maps - self.in_mean) / self.in_std)
