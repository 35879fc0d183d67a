"""Generators and discriminators of the discriminator-guided GAN.

Feature vectors: MLPs whose hidden widths are ``hidden_layer_sizes`` (the
generator's encoder uses them, its decoder mirrors them, the discriminator's
trunk uses them). Images: small convolutional networks with one stage per
entry of ``hidden_layer_sizes`` (its channels): the first stage keeps the
resolution, each further one halves it with a stride-2 convolution.
"""

from __future__ import annotations

from torch import nn

from skad import _nn

__all__ = [
    "ConvDiscriminator",
    "ConvGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
    "default_channels",
    "max_conv_stages",
]

#: Channels of the first convolution stage by default; they double at each
#: stride-2 stage.
BASE_CHANNELS = 32


def max_conv_stages(height, width):
    """Most convolution stages an image allows: one at full resolution plus
    one per halving, while the smaller side stays above 4 and both sides are
    even."""
    n = 1
    while min(height, width) > 4 and height % 2 == 0 and width % 2 == 0:
        height, width, n = height // 2, width // 2, n + 1
    return n


def default_channels(height, width):
    """``hidden_layer_sizes`` of image mode by default: every stage the image
    allows, 32 channels doubling at each stride-2 stage."""
    return tuple(BASE_CHANNELS * 2**i for i in range(max_conv_stages(height, width)))


class MLPGenerator(nn.Module):
    """Encoder-decoder ``d -> sizes -> z -> reversed(sizes) -> d`` (LayerNorm)."""

    def __init__(self, d, sizes, z):
        super().__init__()
        kw = dict(activation="leaky_relu", norm="layer")
        self.encoder = _nn.MLP(d, tuple(sizes), z, **kw)
        self.decoder = _nn.MLP(z, tuple(reversed(sizes)), d, **kw)

    def forward(self, x):
        return self.decoder(self.encoder(x))


class _Heads(nn.Module):
    """Real/fake and pretext heads on the last trunk features; ``forward``
    returns (list of trunk features, real/fake logit, pretext logits)."""

    def _init_heads(self, width, K, dropout, all_layers):
        self.all_layers = bool(all_layers)
        self.drop = _nn.Dropout(dropout)
        self.adv = nn.Linear(width, 1)
        self.cls = nn.Linear(width, K)

    def forward(self, x):
        feats = self.features(x)
        g = self.drop(feats[-1])
        if not self.all_layers:
            feats = feats[-1:]
        return feats, self.adv(g).squeeze(1), self.cls(g)


class MLPDiscriminator(_Heads):
    """Trunk ``d -> sizes`` with a real/fake head and a K-way pretext head."""

    def __init__(self, d, sizes, K, dropout, all_layers):
        super().__init__()
        self.trunk = _nn.MLP(d, tuple(sizes), None, activation="leaky_relu")
        self._init_heads(sizes[-1], K, dropout, all_layers)

    def features(self, x):
        return self.trunk.hidden_outputs(x)


def _conv_stages(in_channels, channels, padding_mode):
    """A 3x3 convolution to ``channels[0]``, then one stride-2 4x4
    convolution per further entry, each followed by a LeakyReLU."""
    pm = dict(padding_mode=padding_mode)
    layers = [
        nn.Conv2d(in_channels, channels[0], 3, padding=1, **pm),
        nn.LeakyReLU(0.1),
    ]
    for c_in, c_out in zip(channels[:-1], channels[1:]):
        layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, **pm), nn.LeakyReLU(0.1)]
    return layers


def _reduced_size(shape, channels):
    """Number of values after the convolution stages."""
    _, H, W = shape
    shrink = 2 ** (len(channels) - 1)
    return channels[-1], H // shrink, W // shrink


class ConvGenerator(nn.Module):
    """Convolutional encoder-decoder with a ``z``-wide bottleneck; the decoder
    mirrors the encoder's stages (nearest upsampling and 3x3 convolutions)."""

    def __init__(self, shape, z, channels, padding_mode):
        super().__init__()
        C = shape[0]
        c, h, w = _reduced_size(shape, channels)
        enc = _conv_stages(C, channels, padding_mode)
        enc += [nn.Flatten(), nn.Linear(c * h * w, z)]
        dec = [nn.Linear(z, c * h * w), nn.LeakyReLU(0.1), nn.Unflatten(1, (c, h, w))]
        for c_in, c_out in zip(channels[:0:-1], channels[-2::-1]):
            dec += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode=padding_mode),
                nn.LeakyReLU(0.1),
            ]
        dec += [nn.Conv2d(channels[0], C, 3, padding=1, padding_mode=padding_mode)]
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    def forward(self, x):
        return self.decoder(self.encoder(x))


class ConvDiscriminator(_Heads):
    """Convolutional trunk ending in a dense layer of ``2 * channels[0]``
    features, with the two heads on it."""

    def __init__(self, shape, K, channels, dropout, padding_mode, all_layers):
        super().__init__()
        c, h, w = _reduced_size(shape, channels)
        width = 2 * channels[0]
        layers = _conv_stages(shape[0], channels, padding_mode)
        layers += [nn.Flatten(), nn.Linear(c * h * w, width), nn.LeakyReLU(0.1)]
        self.trunk = nn.Sequential(*layers)
        self._init_heads(width, K, dropout, all_layers)

    def features(self, x):
        out = []
        for layer in self.trunk:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                out.append(x)
        return out
