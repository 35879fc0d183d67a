"""AnoMem stage 2: deviation statistics, memory health and the learned head.

With encoder and memories frozen, every row gets one deviation map per
scale. The *weighted* score standardises each scale's mean deviation with
training statistics and sums them with the scale weights; the *learned*
head is Deep SVDD's network (:mod:`skad._hypersphere`) on the standardised
maps, trained with the Deep SVDD objective, or Deep SAD's when labelled
anomalies are given.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from skad._hypersphere import init_center

#: Hidden widths of the learned head.
HEAD_HIDDEN_LAYER_SIZES = (64,)
#: Output width of the learned head (where its centre lives).
HEAD_LATENT_DIM = 16
#: Epochs of the learned head; fixed, as the Deep SAD loss has no
#: meaningful plateau.
HEAD_MAX_ITER = 30

#: Floor of the training statistics that scores are divided by.
_EPS = 1e-6


@torch.no_grad()
def fit_deviation_statistics(net, X, map_chunks):
    """Set ``net``'s map scales and per-scale deviation statistics from the
    normal training rows ``X``; return the deviation mean and standard
    deviation per scale and the summed retrieval attention of every memory
    (its slot usage)."""
    n_scales = len(net.memories)

    def usage_and_maps(xc):
        _, _, attn = net(xc)
        out = [a.sum(dim=1) for a in attn]
        out.append(torch.cat(net.deviation_maps(xc), dim=1))
        return tuple(out)

    sums = map_chunks(usage_and_maps, X, reduce="sum", as_numpy=False)
    usage = list(sums[:n_scales])
    scale = sums[n_scales] / X.shape[0]
    net.map_scale.copy_(torch.where(scale > _EPS, scale, _EPS))
    devs = map_chunks(net.scale_deviations, X, as_numpy=False)
    mean = devs.mean(dim=0)
    sd = devs.std(dim=0) if devs.shape[0] > 1 else torch.ones_like(mean)
    sd = torch.where(sd > _EPS, sd, torch.full_like(sd, _EPS))
    net.dev_mean.copy_(mean)
    net.dev_std.copy_(sd)
    return mean, sd, usage


def memory_health(memories, usage):
    """Normalised slot-usage entropy and minimum pairwise slot distance."""
    entropy, min_dist = [], []
    for mem, u in zip(memories, usage):
        p = (u / u.sum()).double().clamp_min(1e-300)
        n = p.shape[0]
        h = float(-(p * p.log()).sum() / math.log(n)) if n > 1 else 1.0
        entropy.append(h)
        slots = mem.slots.detach().double()
        if n > 1:
            d = torch.cdist(slots, slots)
            d.fill_diagonal_(math.inf)
            min_dist.append(float(d.min()))
        else:
            min_dist.append(math.inf)
    return np.asarray(entropy), np.asarray(min_dist)


@torch.no_grad()
def init_head(head, maps, map_chunks):
    """Standardisation buffers and centre of the head from the deviation
    maps of the rows not labelled anomalous."""
    head.in_mean.copy_(maps.mean(dim=0))
    sd = maps.std(dim=0) if maps.shape[0] > 1 else torch.ones_like(maps[0])
    head.in_std.copy_(torch.where(sd > _EPS, sd, torch.ones_like(sd)))
    init_center(head, maps, map_chunks)


@torch.no_grad()
def fit_distance_statistics(head, maps):
    """Mean and standard deviation of the trained head's distance over the
    normal rows' ``maps`` (to add it to the weighted deviation)."""
    dist = head.distance(maps)
    head.dist_mean.copy_(dist.mean())
    sd = dist.std() if dist.shape[0] > 1 else torch.ones_like(dist[0])
    head.dist_std.copy_(torch.where(sd > _EPS, sd, torch.ones_like(sd)))
