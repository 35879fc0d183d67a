"""Small reusable torch building blocks shared by the detectors."""

from __future__ import annotations

import contextvars
import math
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import nn

#: Generator that :class:`Dropout` draws from while the engine trains. Set
#: by :func:`dropout_generator`; outside it, dropout uses torch's global RNG.
_DROPOUT_GENERATOR: contextvars.ContextVar[torch.Generator | None] = (
    contextvars.ContextVar("skad_dropout_generator", default=None)
)

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}

ACTIVATIONS = tuple(_ACTIVATIONS)
_ACTIVATION_TYPES = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.GELU,
    nn.Tanh,
    nn.Sigmoid,
    nn.ELU,
    nn.SiLU,
    nn.Identity,
)
NORMS = ("batch", "layer", None)


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module by name (see ``ACTIVATIONS``)."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"Unknown activation {name!r}; choose from {ACTIVATIONS}."
        ) from None


class Dropout(nn.Module):
    """Dropout that draws its mask from skad's local generator.

    ``torch.nn.Dropout`` always uses the global RNG, which would make a fit
    depend on (and change) the user's global state. This one uses the
    generator installed by :func:`dropout_generator` during training.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        gen = _DROPOUT_GENERATOR.get()
        if gen is None:
            return nn.functional.dropout(x, self.p, training=True)
        keep = torch.empty_like(x).bernoulli_(1.0 - self.p, generator=gen)
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class dropout_generator:  # noqa: N801 - used like a function
    """Context manager installing ``generator`` for :class:`Dropout` layers."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator
        self._token = None

    def __enter__(self):
        self._token = _DROPOUT_GENERATOR.set(self.generator)
        return self

    def __exit__(self, *exc):
        _DROPOUT_GENERATOR.reset(self._token)
        return False


def _norm(kind: str | None, width: int) -> nn.Module | None:
    if kind is None:
        return None
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.LayerNorm(width)
    raise ValueError(f"Unknown norm {kind!r}; choose from {NORMS}.")


def mlp_layers(
    in_features: int,
    hidden_layer_sizes: Sequence[int],
    out_features: int | None = None,
    *,
    activation: str = "relu",
    norm: str | None = None,
    dropout: float = 0.0,
    bias: bool = True,
    final_activation: bool = False,
) -> list[nn.Module]:
    """Layers of an MLP: ``[Linear, (norm), activation, (dropout)] * hidden``.

    ``out_features=None`` ends after the last hidden block. Bias is disabled in
    every layer with ``bias=False`` (Deep SVDD needs a bias-free network) and
    norm layers are then created without affine shift.
    """
    layers: list[nn.Module] = []
    width = in_features
    sizes = list(hidden_layer_sizes)
    for h in sizes:
        layers.append(nn.Linear(width, h, bias=bias))
        n = _norm(norm, h)
        if n is not None:
            if not bias:
                n = (
                    nn.BatchNorm1d(h, affine=False)
                    if norm == "batch"
                    else nn.LayerNorm(h, elementwise_affine=False)
                )
            layers.append(n)
        layers.append(make_activation(activation))
        if dropout > 0:
            layers.append(Dropout(dropout))
        width = h
    if out_features is not None:
        layers.append(nn.Linear(width, out_features, bias=bias))
        if final_activation:
            layers.append(make_activation(activation))
    return layers


class MLP(nn.Sequential):
    """Multi-layer perceptron with configurable widths, norm and dropout.

    Parameters
    ----------
    in_features : int
    hidden_layer_sizes : sequence of int
    out_features : int or None
        Width of the final linear layer; None ends on the last hidden block.
    activation : str, default="relu"
        One of ``ACTIVATIONS``.
    norm : {"batch", "layer"} or None, default=None
    dropout : float, default=0.0
    bias : bool, default=True
    final_activation : bool, default=False
        Apply the activation after the output layer too.
    """

    def __init__(
        self,
        in_features: int,
        hidden_layer_sizes: Sequence[int],
        out_features: int | None = None,
        *,
        activation: str = "relu",
        norm: str | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        final_activation: bool = False,
    ):
        super().__init__(
            *mlp_layers(
                in_features,
                hidden_layer_sizes,
                out_features,
                activation=activation,
                norm=norm,
                dropout=dropout,
                bias=bias,
                final_activation=final_activation,
            )
        )
        sizes = list(hidden_layer_sizes)
        self.out_features = (
            out_features
            if out_features is not None
            else (sizes[-1] if sizes else in_features)
        )

    def hidden_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Output of every hidden block (multi-scale features), in order.

        A block ends after its activation (and dropout, when present).
        """
        outs = []
        layers = list(self)
        for i, layer in enumerate(layers):
            x = layer(x)
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(layer, _ACTIVATION_TYPES) and not isinstance(nxt, Dropout):
                outs.append(x)
            elif isinstance(layer, Dropout):
                outs.append(x)
        return outs


# ---------------------------------------------------------------------------
# Initialisation from a local generator
# ---------------------------------------------------------------------------

_WEIGHTED = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Bilinear,
)


def reset_parameters(
    modules: nn.Module | Iterable[nn.Module], generator: torch.Generator
) -> None:
    """Re-initialise every layer's parameters from ``generator``.

    Reproduces torch's default initialisation (Kaiming-uniform weights with
    ``a=sqrt(5)`` and uniform biases for linear / convolutional layers) but
    draws from ``generator`` instead of the global RNG, so a fit is
    reproducible from ``random_state`` alone. Norm layers get their usual
    constant initialisation; ``nn.Embedding`` a standard normal. Parameters
    of other module types are left alone: modules that own raw
    ``nn.Parameter`` tensors initialise them in their own ``reset_parameters``
    method that accepts ``generator``.
    """
    if isinstance(modules, nn.Module):
        modules = [modules]
    with torch.no_grad():
        for root in modules:
            for m in root.modules():
                own = getattr(m, "reset_parameters_with", None)
                if own is not None:
                    own(generator)
                elif isinstance(m, _WEIGHTED):
                    w = m.weight
                    nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=generator)
                    if getattr(m, "bias", None) is not None:
                        fan_in, _ = nn.init._calculate_fan_in_and_fan_out(w)
                        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
                        nn.init.uniform_(m.bias, -bound, bound, generator=generator)
                elif isinstance(m, nn.Embedding):
                    nn.init.normal_(m.weight, generator=generator)
                elif isinstance(
                    m, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
                ):
                    m.reset_parameters()


def iter_parameters(modules: Iterable[nn.Module]) -> Iterator[nn.Parameter]:
    """All parameters of several modules (for one optimiser)."""
    for m in modules:
        yield from m.parameters()
