"""AnoMem losses: the stage-1 contrastive memory loss, its augmentations
and the stage-2 head loss, as plain functions of tensors.

The weights and augmentation strengths below are fixed: they were the
reconstructed defaults that the selection on validation splits kept (see
``docs/methods/anomem.rst``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from skad._hypersphere import DEEP_SAD_EPS, inverse_distance

#: NT-Xent temperature of every contrastive term (SimCLR's default).
TEMPERATURE = 0.5
#: Weight of the variance hinge that keeps every slot coordinate's standard
#: deviation across slots above 1 (against prototype collapse).
#: *Reconstructed form.*
VARIANCE_WEIGHT = 1.0
#: Weight of the mean deviation of normal rows from their retrieval (pulls
#: the prototypes onto the data). *Reconstructed.*
MEMORY_FIT_WEIGHT = 1.0
#: Margin of the hinge ``max(0, m - deviation)`` that pushes labelled
#: anomalies away from every prototype. *Reconstructed.*
ANOMALY_MARGIN = 1.0
#: Vector augmentation: share of the coordinates replaced by the value of a
#: random other training row (SCARF-style). *Reconstructed.*
CORRUPTION_RATE = 0.3
#: Vector augmentation: Gaussian noise of this times each feature's training
#: standard deviation. *Reconstructed.*
NOISE_SCALE = 0.05
#: Image augmentation: area range of the random resized crop.
CROP_SCALE = (0.2, 1.0)
#: Image augmentation: brightness / contrast / saturation strength (applied
#: with probability 0.8).
COLOR_JITTER = 0.4
#: Image augmentation: random horizontal flips.
FLIP = True


def contrast(u, v, temperature, negatives=None):
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


def augment_vectors(x, pool, corruption_rate, noise_std, generator):
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


def augment_images(x, crop_scale, color_jitter, flip, generator):
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


def variance_penalty(slots):
    """VICReg-style hinge: every coordinate should vary across the slots."""
    std = torch.sqrt(slots.var(dim=0) + 1e-4)
    return F.relu(1.0 - std).mean()


def stage1_loss(net, xb, xa, augment):
    """Stage-1 loss of a batch of normal rows ``xb`` and labelled anomalies
    ``xa`` (possibly empty); ``augment(x)`` draws one augmented view.

    Per scale: NT-Xent between the projected features of view a and the
    projected memory retrieval of view b (labelled anomalies are extra
    negatives), the memory fit (mean deviation of both views from their
    retrieval) and, for labelled anomalies, a hinge pushing them away from
    every prototype. Then an NT-Xent between the final features of the two
    views and the variance hinge of every memory.
    """
    na = xa.shape[0]
    views = [augment(xb) for _ in range(2)]
    fa, ra, _ = net(torch.cat([views[0], xa]) if na else views[0])
    fb, rb, _ = net(views[1])
    loss = xb.new_zeros(())
    fit = xb.new_zeros(())
    n = xb.shape[0]
    for head, za, zra, zb, zrb in zip(net.heads, fa, ra, fb, rb):
        # one head call per scale: features of view a against the retrieval
        # of view b, and the anomalies' features
        pooled = torch.cat([za[:n].mean(1), zrb.mean(1), za[n:].mean(1)])
        pa, prb, neg = head(pooled).split([n, n, na])
        loss = loss + contrast(pa, prb, TEMPERATURE, neg)
        fit = fit + 0.5 * (
            net.deviation(za[:n], zra[:n]).mean() + net.deviation(zb, zrb).mean()
        )
        if na:
            dev_a = net.deviation(za[n:], zra[n:]).mean(dim=1)
            loss = loss + F.relu(ANOMALY_MARGIN - dev_a).mean()
    pooled = torch.cat([fa[-1][:n].mean(1), fb[-1].mean(1), fa[-1][n:].mean(1)])
    pa, pb, neg = net.final_head(pooled).split([n, n, na])
    loss = loss + contrast(pa, pb, TEMPERATURE, neg)
    var = sum(variance_penalty(m.slots) for m in net.memories)
    total = loss + VARIANCE_WEIGHT * var + MEMORY_FIT_WEIGHT * fit
    return {"loss": total, "contrast": loss.detach(), "variance": var.detach()}


def head_loss(head, maps, anomaly_maps, eta):
    """Stage-2 loss of the learned head: the Deep SVDD distance of the
    normal rows' ``maps``, plus, for labelled anomalies (``anomaly_maps``,
    or None), Deep SAD's inverse distance weighted by ``eta``."""
    loss = head.distance(maps).mean()
    if anomaly_maps is not None:
        d = head.distance(anomaly_maps)
        loss = loss + eta * inverse_distance(d, DEEP_SAD_EPS).mean()
    return loss
