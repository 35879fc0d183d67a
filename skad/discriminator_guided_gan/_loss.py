"""Losses and score terms of the discriminator-guided GAN, as functions of
tensors (network outputs, transformation indices)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "anomaly_scores",
    "discriminator_loss",
    "feature_distance",
    "generator_loss",
    "generator_terms",
    "pretext_error",
    "pretext_labels",
    "variance_ratio",
]


def feature_distance(a, b):
    """Mean squared difference per row, averaged over the feature layers
    (two lists of tensors)."""
    return sum(((u - v) ** 2).flatten(1).mean(dim=1) for u, v in zip(a, b)) / len(a)


def pretext_labels(k, pretext_target):
    """Pretext class the discriminator should read on ``G(T_k x)``: ``k``
    (``"preserve"``) or the identity ``0`` (``"restore"``)."""
    return torch.zeros_like(k) if pretext_target == "restore" else k


def pretext_error(logits, labels):
    """Per-row cross-entropy of the pretext head."""
    return F.cross_entropy(logits, labels, reduction="none")


def discriminator_loss(adv_real, adv_fake, cls_real, k, real_target):
    """Pretext cross-entropy on real rows plus the real/fake cross-entropy
    with one-sided label smoothing (real target ``real_target``); returns
    ``(loss, pretext term)``."""
    pretext = F.cross_entropy(cls_real, k)
    adversarial = F.binary_cross_entropy_with_logits(
        adv_real, torch.full_like(adv_real, real_target)
    ) + F.binary_cross_entropy_with_logits(adv_fake, torch.zeros_like(adv_fake))
    return pretext + adversarial, pretext


def generator_terms(fake, xk, feats_fake, feats_real, adv_fake, cls_fake, labels):
    """The generator's loss terms on ``fake = G(xk)``: pretext cross-entropy
    (towards ``labels``), feature mismatch with the detached real features,
    non-saturating adversarial loss and L1 reconstruction error."""
    return {
        "pretext": F.cross_entropy(cls_fake, labels),
        "features": feature_distance(feats_fake, feats_real).mean(),
        "adversarial": F.binary_cross_entropy_with_logits(
            adv_fake, torch.ones_like(adv_fake)
        ),
        "reconstruction": (fake - xk).abs().mean(),
    }


def generator_loss(
    terms,
    *,
    guided,
    classification_weight,
    feature_matching_weight,
    adversarial_weight,
    reconstruction_weight,
):
    """Weighted generator loss: feature matching and adversarial terms plus
    the pretext guidance (``guided``) or the L1 reconstruction."""
    loss = feature_matching_weight * terms["features"]
    loss = loss + adversarial_weight * terms["adversarial"]
    if guided:
        return loss + classification_weight * terms["pretext"]
    return loss + reconstruction_weight * terms["reconstruction"]


@torch.no_grad()
def variance_ratio(fake, x):
    """Variance of the generated rows over the variance of the inputs (mode
    collapse detector)."""
    return fake.var(dim=0).mean() / x.var(dim=0).mean().clamp_min(1e-12)


def anomaly_scores(terms, kind, feature_scale, feature_score_weight):
    """The anomaly score ``kind`` from the (3, n) score terms: pretext error
    on ``G(T_k x)``, feature mismatch, pretext error on ``T_k x``."""
    if kind == "classification":
        return terms[0]
    if kind == "features":
        return terms[1] / feature_scale
    if kind == "discriminator":
        return terms[2]
    return terms[0] + feature_score_weight * terms[1] / feature_scale
