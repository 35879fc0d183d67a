"""SLA2P's networks: the projection classifier and its folded eval-mode form.

:class:`ProjectionClassifier` is what is trained (and saved). Scoring runs
it as plain affine maps instead: :func:`fold_batchnorm` folds every
BatchNorm (running statistics) into the Linear layer before it and
:func:`leaky_forward` runs the folded layers from the first layer's
pre-activations. The folded weights are derived at every scoring call and
never stored.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from skad import _nn

__all__ = ["ProjectionClassifier", "fold_batchnorm", "l2_normalize", "leaky_forward"]


class ProjectionClassifier(nn.Module):
    """MLP (Linear-BatchNorm-LeakyReLU blocks) that predicts the projection id.

    As in the official code: ``d -> 2d -> 4d -> K`` by default.
    """

    def __init__(self, projection_dim, hidden_layer_sizes, n_transforms):
        super().__init__()
        self.mlp = _nn.MLP(
            projection_dim,
            hidden_layer_sizes,
            n_transforms,
            activation="leaky_relu",
            norm="batch",
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.mlp(z)


def l2_normalize(X: torch.Tensor) -> torch.Tensor:
    """Rows divided by their L2 norm (zero rows stay zero).

    A row whose float32 norm overflows (entries beyond about 1e19) is first
    divided by its largest magnitude, so that it keeps its direction instead
    of collapsing to zero; both forms are computed and ``torch.where`` picks
    one, so the graph has no data-dependent control flow.
    """
    norm = X.norm(dim=1, keepdim=True)
    scaled = X / X.abs().amax(dim=1, keepdim=True).clamp_min(1e-30)
    wide = scaled / scaled.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.where(torch.isfinite(norm), X / norm.clamp_min(1e-12), wide)


def fold_batchnorm(
    mlp: nn.Sequential,
) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    """The eval-mode classifier as affine layers ``(weight, bias, slope)``.

    Every BatchNorm (running statistics) is folded into the Linear before it:
    ``BN(h W^T + b) = h (s W)^T + (b - mean) s + beta`` with
    ``s = gamma / sqrt(var + eps)``. ``slope`` is the negative slope of the
    LeakyReLU after the layer (1.0, the identity, after the output layer).
    Weights are ``(out, in)`` like ``nn.Linear.weight``.
    """
    layers: list[list] = []
    for module in mlp:
        if isinstance(module, nn.Linear):
            bias = module.bias
            if bias is None:
                bias = module.weight.new_zeros(module.out_features)
            layers.append([module.weight, bias, 1.0])
        elif isinstance(module, nn.BatchNorm1d) and layers:
            scale = torch.rsqrt(module.running_var + module.eps)
            if module.weight is not None:
                scale = scale * module.weight
            weight, bias, _ = layers[-1]
            bias = (bias - module.running_mean) * scale
            if module.bias is not None:
                bias = bias + module.bias
            layers[-1][:2] = [weight * scale[:, None], bias]
        elif isinstance(module, nn.LeakyReLU) and layers:
            layers[-1][2] = float(module.negative_slope)
        else:
            raise TypeError(f"cannot fold {type(module).__name__} into a Linear layer")
    return [tuple(layer) for layer in layers]


def leaky_forward(layers, pre0: torch.Tensor) -> list[torch.Tensor]:
    """Pre-activations of every folded layer from the first one's (the last
    are the logits)."""
    pres = [pre0]
    for (_, _, slope), (weight, bias, _) in zip(layers[:-1], layers[1:], strict=True):
        pres.append(torch.addmm(bias, F.leaky_relu(pres[-1], slope), weight.t()))
    return pres
