"""The networks of Reverse Distillation: the built-in MLP teacher, its
autoencoder decoder, and the students (one-class bottleneck embedding, OCBE,
plus decoder) of vector and image mode."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ConvStudent", "MLPTeacher", "VectorStudent", "frozen_copy", "mlp_decoder"]


def _stage(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_out), nn.LayerNorm(n_out), nn.GELU())


class MLPTeacher(nn.Module):
    """Stages of Linear + LayerNorm + GELU; every stage output is one scale."""

    def __init__(self, n_features: int, widths):
        super().__init__()
        ins = (n_features, *widths[:-1])
        self.stages = nn.ModuleList(_stage(a, b) for a, b in zip(ins, widths))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    @torch.no_grad()
    def orthogonal_(self, generator: torch.Generator) -> None:
        """Random-teacher initialisation: orthogonal weights, zero biases."""
        for stage in self.stages:
            nn.init.orthogonal_(stage[0].weight, generator=generator)
            nn.init.zeros_(stage[0].bias)


def mlp_decoder(widths, n_features: int) -> nn.Sequential:
    """Decoder of the autoencoder that pre-trains an :class:`MLPTeacher` of
    stage ``widths``: the stages mirrored, then a linear output layer."""
    return nn.Sequential(
        *[_stage(a, b) for a, b in zip(widths[::-1], widths[::-1][1:])],
        nn.Linear(widths[0], n_features),
    )


def frozen_copy(module: nn.Module) -> nn.Module:
    """A float32 copy of a user's teacher in eval mode without gradients; the
    user's module is left as it is."""
    teacher = copy.deepcopy(module).float().eval()
    teacher.requires_grad_(False)
    return teacher


class _ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(width, width),
            nn.LayerNorm(width),
            nn.GELU(),
            nn.Linear(width, width),
        )
        self.norm = nn.LayerNorm(width)

    def forward(self, x):
        return F.gelu(self.norm(x + self.body(x)))


class VectorStudent(nn.Module):
    """OCBE (fusion + narrow residual bottleneck) and MLP decoder."""

    def __init__(self, widths, fusion_width: int, latent_dim: int):
        super().__init__()
        self.fuse = nn.ModuleList(_stage(w, fusion_width) for w in widths)
        k = len(widths)
        self.oce = nn.Sequential(
            _ResidualBlock(k * fusion_width), _stage(k * fusion_width, latent_dim)
        )
        hidden = [min(w, 512) for w in widths]
        ins = (latent_dim, *hidden[::-1][:-1])
        self.decoder = nn.ModuleList(_stage(a, b) for a, b in zip(ins, hidden[::-1]))
        self.heads = nn.ModuleList(
            nn.Linear(h, w) for h, w in zip(hidden[::-1], widths[::-1])
        )

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        z = self.oce(torch.cat([f(x) for f, x in zip(self.fuse, feats)], dim=1))
        out = []
        for stage, head in zip(self.decoder, self.heads):
            z = stage(z)
            out.append(head(z))
        return out[::-1]


def _conv_block(n_in: int, n_out: int, stride: int = 1) -> nn.Sequential:
    # GroupNorm(1, c): no batch statistics, so a row's score never depends on
    # the other rows of its batch.
    return nn.Sequential(
        nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1),
        nn.GroupNorm(1, n_out),
        nn.ReLU(),
    )


class _ConvResidual(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(
            _conv_block(ch, ch), nn.Conv2d(ch, ch, 3, padding=1), nn.GroupNorm(1, ch)
        )

    def forward(self, x):
        return F.relu(x + self.body(x))


class ConvStudent(nn.Module):
    """Convolutional OCBE (fusion on the coarsest grid, stride-2 bottleneck)
    and a decoder that upsamples back through every teacher scale."""

    def __init__(self, shapes, fusion_width: int, latent_dim: int):
        super().__init__()
        self.shapes = [tuple(s) for s in shapes]  # (C_k, H_k, W_k)
        self.grid = self.shapes[-1][1:]
        k = len(shapes)
        self.fuse = nn.ModuleList(_conv_block(s[0], fusion_width) for s in shapes)
        self.oce = nn.Sequential(
            _ConvResidual(k * fusion_width),
            _conv_block(k * fusion_width, latent_dim, stride=2),
        )
        hidden = [min(s[0], 256) for s in self.shapes]
        ins = (latent_dim, *hidden[::-1][:-1])
        self.decoder = nn.ModuleList(
            nn.Sequential(_conv_block(a, b), _ConvResidual(b))
            for a, b in zip(ins, hidden[::-1])
        )
        self.heads = nn.ModuleList(
            nn.Conv2d(h, s[0], 1) for h, s in zip(hidden[::-1], self.shapes[::-1])
        )

    def forward(self, feats):
        fused = [
            F.adaptive_avg_pool2d(f(x), self.grid) for f, x in zip(self.fuse, feats)
        ]
        z = self.oce(torch.cat(fused, dim=1))
        out = []
        for stage, head, s in zip(self.decoder, self.heads, self.shapes[::-1]):
            z = F.interpolate(z, size=s[1:], mode="bilinear", align_corners=False)
            z = stage(z)
            out.append(head(z))
        return out[::-1]
