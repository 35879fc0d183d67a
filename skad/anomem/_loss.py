"""AnoMem stage-1 loss pieces and the vector / image augmentations."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _contrast(u, v, temperature, negatives=None):
    """Symmetric cross-view NT-Xent: row i of ``u`` matches row i of ``v``;
    other rows (and ``negatives``) are negatives."""
    u = F.normalize(u, dim=1)
    v = F.normalize(v, dim=1)
    target = torch.arange(u.shape[0], device=u.device)
    cand_v, cand_u = v, u
    if negatives is not None and negatives.shape[0]:
        n = F.normalize(negatives, dim=1)
        cand_v = torch.cat([v, n])
        cand_u = torch.cat([u, n])
    loss_u = F.cross_entropy(u @ cand_v.T / temperature, target)
    loss_v = F.cross_entropy(v @ cand_u.T / temperature, target)
    return 0.5 * (loss_u + loss_v)


def _augment_vectors(x, pool, corruption_rate, noise_std, generator):
    """SCARF-style corruption: a share of coordinates takes the value of a
    random other training row; then small Gaussian noise."""
    if corruption_rate > 0:
        mask = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        rows = torch.randint(
            0, pool.shape[0], x.shape, generator=generator, device=x.device
        )
        donor = torch.gather(pool, 0, rows)
        x = torch.where(mask < corruption_rate, donor, x)
    if noise_std is not None:
        noise = torch.randn(x.shape, generator=generator, device=x.device)
        x = x + noise.to(x.dtype) * noise_std
    return x


def _augment_images(x, crop_scale, color_jitter, flip, generator):
    """SimCLR-style augmentations with torch ops: random resized crop,
    horizontal flip, brightness/contrast/saturation jitter (p=0.8) and
    grayscale (p=0.2, colour images only)."""
    b, c = x.shape[:2]
    dev, dt = x.device, x.dtype

    def u(*shape, lo=0.0, hi=1.0):
        r = torch.rand(shape, generator=generator, device=dev, dtype=dt)
        return lo + (hi - lo) * r

    area = u(b, lo=crop_scale[0], hi=crop_scale[1])
    log_ratio = u(b, lo=math.log(3 / 4), hi=math.log(4 / 3))
    sx = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)
    sy = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    tx = (1 - sx) * u(b, lo=-1.0, hi=1.0)
    ty = (1 - sy) * u(b, lo=-1.0, hi=1.0)
    if flip:
        sx = sx * torch.where(u(b) < 0.5, -1.0, 1.0).to(dt)
    theta = torch.zeros(b, 2, 3, device=dev, dtype=dt)
    theta[:, 0, 0], theta[:, 0, 2] = sx, tx
    theta[:, 1, 1], theta[:, 1, 2] = sy, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False, padding_mode="reflection")
    if color_jitter > 0:
        apply = (u(b) < 0.8).to(dt).view(b, 1, 1, 1)
        s = color_jitter
        bright = u(b, lo=1 - s, hi=1 + s).view(b, 1, 1, 1)
        contrast = u(b, lo=1 - s, hi=1 + s).view(b, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        jittered = (x * bright - mean) * contrast + mean
        if c == 3:
            sat = u(b, lo=1 - s, hi=1 + s).view(b, 1, 1, 1)
            gray = jittered.mean(dim=1, keepdim=True)
            jittered = gray + (jittered - gray) * sat
        x = apply * jittered + (1 - apply) * x
    if c == 3:
        to_gray = (u(b) < 0.2).to(dt).view(b, 1, 1, 1)
        x = to_gray * x.mean(dim=1, keepdim=True).expand_as(x) + (1 - to_gray) * x
    return x
