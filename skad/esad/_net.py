"""ESAD networks: the encoder-decoder-encoder and the optional discriminator."""

from __future__ import annotations

import numpy as np
from torch import nn

from skad import _nn


def default_sizes(n_features: int) -> tuple[tuple[int, int], int]:
    """Encoder widths and code size from the input width (*reconstructed*,
    esad.md B3): ``(32, 16)`` and a code of 4 (below 10 features) or 8 up to
    40 features, else ``d/2, d/4`` and ``d/8``, clipped."""
    if n_features <= 40:
        return (32, 16), (4 if n_features < 10 else 8)
    h1 = int(np.clip(n_features // 2, 32, 512))
    h2 = int(np.clip(h1 // 2, 16, 256))
    return (h1, h2), int(np.clip(h2 // 2, 4, 64))


class ESADNet(nn.Module):
    """Encoder E1, decoder and encoder E2 (E2 may share E1's weights)."""

    def __init__(
        self, n_features, hidden_layer_sizes, latent_dim, activation, norm, share
    ):
        super().__init__()
        kw = dict(activation=activation, norm=norm)
        hidden = tuple(hidden_layer_sizes)
        self.encoder = _nn.MLP(n_features, hidden, latent_dim, **kw)
        self.decoder = _nn.MLP(latent_dim, hidden[::-1], n_features, **kw)
        self.encoder2 = None if share else _nn.MLP(n_features, hidden, latent_dim, **kw)

    def forward(self, x):
        """Return ``(z, x^, z^)``."""
        z = self.encoder(x)
        x_hat = self.decoder(z)
        encoder2 = self.encoder if self.encoder2 is None else self.encoder2
        return z, x_hat, encoder2(x_hat)


class Discriminator(nn.Module):
    """GANomaly-style discriminator: hidden features and a real/fake logit."""

    def __init__(self, n_features, hidden_layer_sizes, activation):
        super().__init__()
        self.features = _nn.MLP(
            n_features, tuple(hidden_layer_sizes), None, activation=activation
        )
        self.head = nn.Linear(self.features.out_features, 1)

    def forward(self, x):
        """Return ``(features, logit)``."""
        f = self.features(x)
        return f, self.head(f).squeeze(1)
