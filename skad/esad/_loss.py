"""ESAD's loss terms, as plain functions of tensors.

Per row, with ``w = 1`` for unlabelled rows and ``eta`` for labelled ones
(Deep SAD's weighting) and reconstruction errors averaged over features::

    label 0 or +1:  w * (||x^ - x||^2    + entropy_weight * ||z^||^2)
    label -1:       w * (||x^ - t(x)||^2 + entropy_weight * n(||z^||^2))
    every row:      + consistency_weight * mean_j (z^_j - z_j)^2

where ``t`` is the reconstruction target of labelled anomalies
(:func:`make_anomaly_target`) and ``n`` their push-away term
(:func:`anomaly_norm_loss`). The adversarial extension adds a feature-matching
loss for the networks and a real/fake loss for the discriminator.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from skad._hypersphere import inverse_distance

#: Added to the squared code norm of a labelled anomaly before inverting it:
#: ``1 / (||z^||^2 + eps)`` is smooth and never exceeds ``1 / eps`` (= 1e3),
#: even for a code exactly at the origin.
INVERSE_EPS = 1e-3


def ramp_weight(weight: float, epoch: int, warmup: int) -> float:
    """The entropy weight in ``epoch`` (counted from 0): off for ``warmup``
    epochs, then a linear ramp to ``weight`` over as many epochs."""
    if warmup == 0:
        return float(weight)
    ramp = (epoch - warmup + 1) / warmup
    return float(weight) * min(max(ramp, 0.0), 1.0)


def make_anomaly_target(kind: str, X: torch.Tensor, generator: torch.Generator):
    """What labelled anomalies are reconstructed towards, as a function of
    their rows: ``"identity"`` the rows themselves, ``"invert"``
    ``min + max - x`` with the per-feature range of ``X``, ``"gauss"`` fresh
    standard normal noise drawn from ``generator`` at each call."""
    if kind == "identity":
        return lambda x: x
    if kind == "invert":
        lo, hi = X.min(dim=0).values, X.max(dim=0).values
        return lambda x: lo + hi - x
    return lambda x: torch.randn(
        x.shape, generator=generator, device=x.device, dtype=x.dtype
    )


def reconstruction_error(x_hat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-row squared error ``mean_j (x^_j - target_j)^2``."""
    return ((x_hat - target) ** 2).mean(dim=1)


def consistency(z: torch.Tensor, z_hat: torch.Tensor) -> torch.Tensor:
    """Per-row consistency term ``mean_j (z^_j - z_j)^2``."""
    return ((z_hat - z) ** 2).mean(dim=1)


def score_terms(x, x_hat, z_hat):
    """The two terms of the anomaly score of each row: the reconstruction
    error and the code norm ``||z^||``."""
    return reconstruction_error(x_hat, x), torch.linalg.vector_norm(z_hat, dim=1)


def anomaly_norm_loss(sq_norm, kind: str, margin=None) -> torch.Tensor:
    """Per-row entropy term of labelled anomalies from ``||z^||^2``.

    ``"inverse"``: ``1 / (||z^||^2 + eps)`` with ``eps = 1e-3``
    (:func:`skad._hypersphere.inverse_distance`), so the term is finite and
    at most 1e3 for any code, the origin included.
    ``"hinge"``: ``max(0, margin - ||z^||)^2``.
    """
    if kind == "inverse":
        return inverse_distance(sq_norm, eps=INVERSE_EPS)
    norm = torch.sqrt(sq_norm + 1e-12)
    return F.relu(margin - norm) ** 2


def hinge_margin(sq_norm: torch.Tensor, anomalous: torch.Tensor) -> torch.Tensor:
    """Margin of the hinge term: the 95th percentile of ``||z^||`` over the
    rows not labelled anomalous (1 when the batch has none)."""
    others = sq_norm[~anomalous].detach()
    if not others.numel():
        return torch.ones((), dtype=sq_norm.dtype, device=sq_norm.device)
    return torch.sqrt(torch.quantile(others, 0.95) + 1e-12)


def entropy_term(sq_norm: torch.Tensor, anomalous: torch.Tensor, kind: str):
    """Per-row entropy term: ``||z^||^2``, and :func:`anomaly_norm_loss` of
    ``kind`` for the rows labelled anomalous."""
    if not anomalous.any():
        return sq_norm
    margin = hinge_margin(sq_norm, anomalous) if kind == "hinge" else None
    return torch.where(anomalous, anomaly_norm_loss(sq_norm, kind, margin), sq_norm)


def label_weights(labels: torch.Tensor, eta: float, dtype) -> torch.Tensor:
    """Deep SAD weighting: 1 for unlabelled rows, ``eta`` for labelled ones."""
    w = torch.ones(labels.shape[0], dtype=dtype, device=labels.device)
    return torch.where(labels != 0, torch.full_like(w, eta), w)


def esad_loss(
    x,
    z,
    x_hat,
    z_hat,
    labels,
    anomaly_target=None,
    *,
    eta: float,
    entropy_weight: float,
    consistency_weight: float,
    norm_loss: str = "inverse",
):
    """Per-row ESAD loss and the batch means of its three terms.

    ``(z, x^, z^)`` is the network's output for ``x``; ``anomaly_target``
    holds the reconstruction targets of the rows labelled -1 (in order), or
    is None when the batch has none.
    """
    anomalous = labels == -1
    target = x
    if anomaly_target is not None:
        target = x.clone()
        target[anomalous] = anomaly_target
    rec = reconstruction_error(x_hat, target)
    norm = entropy_term((z_hat**2).sum(dim=1), anomalous, norm_loss)
    con = consistency(z, z_hat)
    w = label_weights(labels, eta, x.dtype)
    loss = w * (rec + entropy_weight * norm) + consistency_weight * con
    return loss, {"rec": rec.mean(), "norm": norm.mean(), "con": con.mean()}


def oversampling_weights(labels: torch.Tensor, fraction: float, batch_size: int):
    """Sampling weights that make labelled anomalies, in expectation, at least
    ``fraction`` of every batch and at least 2 rows of a full batch (at most
    half of it); None when there are none or they are already that frequent."""
    anomalous = labels == -1
    m = int(anomalous.sum())
    n_other = labels.shape[0] - m
    share = min(max(float(fraction), 2.0 / batch_size), 0.5)
    if m == 0 or n_other == 0 or m / labels.shape[0] >= share:
        return None
    w = torch.ones(labels.shape[0], dtype=torch.float64)
    w[anomalous.cpu()] = share * n_other / ((1.0 - share) * m)
    return w


def feature_matching_loss(f_real: torch.Tensor, f_fake: torch.Tensor):
    """GANomaly's adversarial loss of the generator: the squared distance
    between the discriminator features of rows and of their reconstructions
    (the rows' side is a fixed target)."""
    return ((f_real.detach() - f_fake) ** 2).mean()


def discriminator_loss(real_logit: torch.Tensor, fake_logit: torch.Tensor):
    """Binary cross-entropy of telling rows (1) from reconstructions (0)."""
    return F.binary_cross_entropy_with_logits(
        real_logit, torch.ones_like(real_logit)
    ) + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit))
