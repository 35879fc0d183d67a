"""SLA2P's losses and scoring terms, as plain functions of tensors.

Training minimises the cross-entropy of the projection id ``t`` given the
transformed vector ``z = x W_t`` (:func:`projection_loss`). Scoring moves
every transformed vector one step up the gradient of the cross-entropy at
its predicted class (:func:`input_gradient`, :func:`perturb`: the
"adversarial perturbation", computed in closed form on the folded network)
and measures the Brier-type error between the softmax and the true
projection id (:func:`brier_error`).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = [
    "brier_error",
    "input_gradient",
    "perturb",
    "projection_loss",
    "summed_cross_entropy",
]

_leaky_relu_backward = torch.ops.aten.leaky_relu_backward


def projection_loss(logits: torch.Tensor, target: torch.Tensor) -> dict:
    """A training step's cross-entropy per (row, projection) pair
    (``"loss"``, averaged by the training loop) and the accuracy of its
    predicted projection ids (``"accuracy"``, the stop rule's input)."""
    loss = F.cross_entropy(logits, target, reduction="none")
    acc = (logits.detach().argmax(1) == target).to(torch.float32).mean()
    return {"loss": loss, "accuracy": acc}


def summed_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> float:
    """The cross-entropy summed over (row, projection) pairs (validation)."""
    return float(F.cross_entropy(logits, target, reduction="sum"))


def input_gradient(layers, pres: list[torch.Tensor]) -> torch.Tensor:
    """Gradient, with respect to the first layer's pre-activations, of the
    summed cross-entropy at the predicted class, per row.

    ``layers`` is the folded classifier
    (:func:`~skad.sla2p._net.fold_batchnorm`) and ``pres`` its
    pre-activations (:func:`~skad.sla2p._net.leaky_forward`).
    ``d CE / d logits = softmax - onehot(argmax)``, then back through the
    Linear layers and the LeakyReLU slopes (``1`` where the pre-activation
    is positive, ``slope`` elsewhere: autograd's own LeakyReLU backward
    kernel, an ATen op that traces and exports like any other; it is 20x
    faster on a CPU than the equivalent ``torch.where``).
    """
    logits = pres[-1]
    pred = logits.argmax(dim=1, keepdim=True)
    # softmax - onehot(pred), without building the one-hot matrix
    minus_one = torch.full_like(pred, -1, dtype=logits.dtype)
    g = torch.softmax(logits, dim=1).scatter_add(1, pred, minus_one)
    for i in range(len(layers) - 1, 0, -1):
        g = g @ layers[i][0]
        g = _leaky_relu_backward(g, pres[i - 1], layers[i - 1][2], False)
    return g


def perturb(
    pre0: torch.Tensor,
    g: torch.Tensor,
    weight: torch.Tensor,
    gram: torch.Tensor | None,
    epsilon: float,
) -> torch.Tensor:
    """First-layer pre-activations of the perturbed vectors.

    ``z~ = z + eps g_z`` with ``g_z = g A^T`` (``A = weight^T``, ``g`` from
    :func:`input_gradient`) enters the first layer as
    ``a~ = a + eps g_z A``, or ``a + eps g (A^T A)`` when the Gram matrix
    ``gram = weight weight^T`` is given (the cheaper product when the first
    layer is less than twice as wide as its input).
    """
    if gram is not None:
        return torch.addmm(pre0, g, gram, alpha=epsilon)
    return torch.addmm(pre0, g @ weight, weight.t(), alpha=epsilon)


def brier_error(logits: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """Per row, the Brier-type errors of its projections, summed.

    ``logits`` holds ``n x m`` (row, projection) pairs row-major, ``onehot``
    the ``(m, K)`` one-hot ids of the ``m`` projections: the error of a pair
    is ``mean_k (softmax_k - onehot_k)^2``.
    """
    m, K = onehot.shape
    p = torch.softmax(logits, dim=1).view(-1, m, K)
    return ((p - onehot) ** 2).mean(dim=2).sum(dim=1)
