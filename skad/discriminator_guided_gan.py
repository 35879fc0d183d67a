"""Discriminator-guided GAN (Xia et al., arXiv 2107.12753, reconstructed).

A GAN whose generator learns from the discriminator's guidance instead of a
reconstruction error. The discriminator ``D`` has a real/fake head and a
pretext head that names which of ``K`` transformations was applied to its
input. The generator ``G`` (an encoder-decoder with a bottleneck) receives a
transformed row ``T_k(x)`` and must produce an output whose transformation
``D`` still recognises (``mode="preserve"``, or the identity with
``mode="restore"``), whose ``D`` features match those of its input and that
``D`` finds real. The anomaly score averages, over the transformations, the
pretext classification error of ``D`` on ``G(T_k x)`` and the feature
mismatch ``||f(T_k x) - f(G(T_k x))||^2``.

Only the paper's abstract was available: the losses, weights, networks and
score below are the reconstruction of ``shared/methods/discriminator_guided_
gan.md`` and every choice is a named parameter. ``generator_loss=
"reconstruction"`` trains the generator GANomaly-style (L1 reconstruction,
no pretext guidance) as the baseline the paper improves on.

Rows are feature vectors (transformations: feature permutations with sign
flips, or random orthogonal maps) or images of shape (n, C, H, W)
(transformations: rotations by multiples of 90 degrees and flips, with small
convolutional networks).
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from skad import _nn
from skad.base import BaseDeepDetector
from skad.exceptions import TrainingWarning

__all__ = ["DiscriminatorGuidedGAN"]

#: Generator outputs whose variance falls below this share of the input
#: variance are reported as a mode collapse (``mode_collapse_``).
COLLAPSE_RATIO = 0.05


# ---------------------------------------------------------------------------
# Transformations
# ---------------------------------------------------------------------------


class _VectorTransforms(nn.Module):
    """Standardisation plus ``K`` norm-preserving maps of feature vectors.

    ``T_0`` is the identity. ``kind="permutation"``: ``T_k`` permutes the
    features and flips signs; ``kind="orthogonal"``: ``T_k x = W_k x`` with a
    random orthogonal ``W_k``. All are buffers (saved with the weights).
    """

    def __init__(self, n_features, n_transforms, kind, rng: np.random.Generator):
        super().__init__()
        d, K = n_features, n_transforms
        self.kind = kind
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("scale", torch.ones(d))
        if kind == "permutation":
            perm = np.stack([np.arange(d)] + [rng.permutation(d) for _ in range(K - 1)])
            sign = np.ones((K, d))
            sign[1:] = rng.choice([-1.0, 1.0], size=(K - 1, d))
            self.register_buffer("perm", torch.as_tensor(perm, dtype=torch.long))
            self.register_buffer("sign", torch.as_tensor(sign, dtype=torch.float32))
        else:
            mats = [np.eye(d)]
            for _ in range(K - 1):
                q, r = np.linalg.qr(rng.normal(size=(d, d)))
                mats.append(q * np.sign(np.diag(r)))
            self.register_buffer(
                "weight", torch.as_tensor(np.stack(mats), dtype=torch.float32)
            )

    def standardise(self, x):
        return (x - self.mean) / self.scale

    def one(self, x, k: int):
        """``T_k`` applied to every row of standardised ``x``."""
        if self.kind == "permutation":
            return x[:, self.perm[k]] * self.sign[k]
        return x @ self.weight[k].T

    def per_row(self, x, k):
        """Row ``i`` transformed by ``T_{k[i]}`` (``k``: long tensor)."""
        if self.kind == "permutation":
            return torch.gather(x, 1, self.perm[k]) * self.sign[k]
        return torch.einsum("bij,bj->bi", self.weight[k], x)


class _ImageTransforms(nn.Module):
    """Per-channel standardisation plus rotations by 90 degrees and flips.

    Square images: ``T_k`` rotates by ``k % 4`` quarter turns, then flips
    horizontally when ``k >= 4`` (up to 8 maps). Other shapes: identity,
    horizontal flip, vertical flip, half turn (up to 4 maps).
    """

    def __init__(self, n_channels, square):
        super().__init__()
        self.square = square
        self.register_buffer("mean", torch.zeros(n_channels, 1, 1))
        self.register_buffer("scale", torch.ones(n_channels, 1, 1))

    def standardise(self, x):
        return (x - self.mean) / self.scale

    def one(self, x, k: int):
        if self.square:
            x = torch.rot90(x, k % 4, dims=(2, 3))
            return torch.flip(x, dims=(3,)) if k >= 4 else x
        dims = [(), (3,), (2,), (2, 3)][k]
        return torch.flip(x, dims=dims) if dims else x

    def per_row(self, x, k):
        out = torch.empty_like(x)
        for j in torch.unique(k).tolist():
            mask = k == j
            out[mask] = self.one(x[mask], j)
        return out


# ---------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------


class _MLPGenerator(nn.Module):
    """Encoder-decoder ``d -> h -> h/2 -> z -> h/2 -> h -> d`` (LayerNorm)."""

    def __init__(self, d, h, z):
        super().__init__()
        kw = dict(activation="leaky_relu", norm="layer")
        self.encoder = _nn.MLP(d, (h, max(h // 2, 1)), z, **kw)
        self.decoder = _nn.MLP(z, (max(h // 2, 1), h), d, **kw)

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


class _MLPDiscriminator(_Heads):
    """Trunk ``d -> h -> h/2`` with a real/fake head and a K-way pretext head."""

    def __init__(self, d, h, K, dropout, all_layers):
        super().__init__()
        width = max(h // 2, 1)
        self.trunk = _nn.MLP(d, (h, width), None, activation="leaky_relu")
        self._init_heads(width, K, dropout, all_layers)

    def features(self, x):
        return self.trunk.hidden_outputs(x)


def _n_down(h, w):
    n = 0
    while min(h, w) > 4 and h % 2 == 0 and w % 2 == 0:
        h, w, n = h // 2, w // 2, n + 1
    return n, h, w


class _ConvGenerator(nn.Module):
    """Small convolutional encoder-decoder with a ``z``-wide bottleneck."""

    def __init__(self, shape, z, width, padding_mode):
        super().__init__()
        C, H, W = shape
        n, h, w = _n_down(H, W)
        pm = dict(padding_mode=padding_mode)
        enc = [nn.Conv2d(C, width, 3, padding=1, **pm), nn.LeakyReLU(0.1)]
        c = width
        for _ in range(n):
            enc += [nn.Conv2d(c, 2 * c, 4, 2, 1, **pm), nn.LeakyReLU(0.1)]
            c *= 2
        enc += [nn.Flatten(), nn.Linear(c * h * w, z)]
        dec = [nn.Linear(z, c * h * w), nn.LeakyReLU(0.1), nn.Unflatten(1, (c, h, w))]
        for _ in range(n):
            dec += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c, c // 2, 3, padding=1, **pm),
                nn.LeakyReLU(0.1),
            ]
            c //= 2
        dec += [nn.Conv2d(c, C, 3, padding=1, **pm)]
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    def forward(self, x):
        return self.decoder(self.encoder(x))


class _ConvDiscriminator(_Heads):
    """Convolutional trunk, ``2 * width`` features, two heads."""

    def __init__(self, shape, K, width, dropout, padding_mode, all_layers):
        super().__init__()
        C, H, W = shape
        n, h, w = _n_down(H, W)
        pm = dict(padding_mode=padding_mode)
        layers = [nn.Conv2d(C, width, 3, padding=1, **pm), nn.LeakyReLU(0.1)]
        c = width
        for _ in range(n):
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1, **pm), nn.LeakyReLU(0.1)]
            c *= 2
        layers += [nn.Flatten(), nn.Linear(c * h * w, 2 * width), nn.LeakyReLU(0.1)]
        self.trunk = nn.Sequential(*layers)
        self._init_heads(2 * width, K, dropout, all_layers)

    def features(self, x):
        out = []
        for layer in self.trunk:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                out.append(x)
        return out


def _sq_dist(a, b):
    """Mean squared difference per row, averaged over feature layers."""
    return sum(((u - v) ** 2).flatten(1).mean(dim=1) for u, v in zip(a, b)) / len(a)


# ---------------------------------------------------------------------------
# Estimator
# ---------------------------------------------------------------------------


class DiscriminatorGuidedGAN(BaseDeepDetector):
    """Discriminator-guided generative anomaly detector.

    A GAN in which the generator is trained by the discriminator's guidance
    rather than by a reconstruction error (Xia et al., "Discriminative-
    Generative Representation Learning for One-Class Anomaly Detection",
    arXiv 2107.12753). The discriminator has a real/fake head and a pretext
    head that predicts which of ``n_transforms`` transformations was applied.
    The generator, an encoder-decoder with a narrow bottleneck, must turn a
    transformed row into an output whose transformation the discriminator
    recognises, whose discriminator features match those of the input and
    that looks real. The anomaly score averages, over the transformations,
    the pretext error on the generated row and the feature mismatch.

    Only the paper's abstract is public; losses, weights, networks and score
    are a documented reconstruction and each choice is a parameter. Rows may
    be feature vectors (2-D ``X``) or images (4-D ``X`` of shape
    (n, C, H, W), detected automatically; rotations and flips are then the
    transformations). Supports the one-class (normal-only training data)
    setting it was designed for, and the unsupervised setting.

    Parameters
    ----------
    n_transforms : int, default=8
        Number ``K`` of transformations, the identity included. Image mode
        has at most 8 (square images) or 4 (other shapes); more are clipped.
    transforms : {"permutation", "orthogonal"}, default="permutation"
        Feature-vector transformations: random feature permutations with
        random sign flips, or random orthogonal matrices. Both keep the norm,
        so the pretext task can only be solved from the data's structure.
        Ignored in image mode.
    generator_loss : {"guided", "reconstruction"}, default="guided"
        ``"guided"``: the generator loss is ``classification_weight`` x the
        discriminator's pretext cross-entropy on the generated row +
        ``feature_matching_weight`` x the discriminator-feature mismatch +
        ``adversarial_weight`` x the non-saturating GAN loss; no
        reconstruction term (the paper's method). ``"reconstruction"``: the
        GANomaly-style baseline, ``reconstruction_weight`` x L1
        reconstruction + the feature-matching and adversarial terms, without
        the pretext term.
    mode : {"preserve", "restore"}, default="preserve"
        Pretext target of the generated row ``G(T_k x)``: ``k`` (the
        generator keeps the transformation) or ``0`` (it undoes it).
    anomaly_score : {"combined", "classification", "features", \
"discriminator"}, default="combined"
        Anomaly score, averaged over the ``K`` transformations:
        ``"classification"``: pretext cross-entropy of ``D`` on ``G(T_k x)``;
        ``"features"``: ``||f(T_k x) - f(G(T_k x))||^2`` divided by its
        training median; ``"combined"``: the first plus
        ``feature_score_weight`` x the second; ``"discriminator"``: the
        pretext cross-entropy of ``D`` on ``T_k x`` itself (GOAD-like, no
        generator).
    classification_weight : float, default=1.0
        Weight of the pretext-guidance term in the generator loss.
    feature_matching_weight : float, default=1.0
        Weight of the discriminator-feature matching term.
    adversarial_weight : float, default=0.1
        Weight of the real/fake term in the generator loss.
    reconstruction_weight : float, default=50.0
        Weight of the L1 reconstruction term; only used with
        ``generator_loss="reconstruction"`` (GANomaly's 50).
    feature_score_weight : float, default=1.0
        Weight of the normalised feature term in the ``"combined"`` score.
    hidden_dim : int or None, default=None
        Width ``h`` of the MLPs (``h`` then ``h/2``); None uses
        ``clip(2 * n_features, 64, 128)`` (the method note's upper bound of
        512 costs 10 times more CPU time on embeddings). In image mode, the number of
        channels of the first convolution (None: 32).
    latent_dim : int or None, default=None
        Bottleneck width of the generator; None uses
        ``clip(n_features // 4, 1, 32)`` (16 in image mode). It must stay
        narrow: a generator that can copy its input wins the game trivially.
    dropout : float, default=0.2
        Dropout before the discriminator's heads.
    label_smoothing : float, default=0.1
        One-sided label smoothing: real rows get the target ``1 - label_smoothing``.
    discriminator_learning_rate : float or None, default=None
        Adam learning rate of the discriminator; None uses twice
        ``learning_rate_init`` (two time-scale update rule).
    feature_layers : {"last", "all"}, default="all"
        Discriminator features ``f`` that the generator must match and that
        the score compares: the last hidden layer (the method note), or every
        hidden layer of the trunk, averaged (``"all"``; earlier layers keep
        more of the input's content, a perceptual-loss-like guidance).
    padding_mode : {"zeros", "circular", "reflect", "replicate"}, default="zeros"
        Padding of the convolutions in image mode (zero padding leaks absolute
        position, which the paper found to hurt). Ignored for vectors.
    contamination : float, default=0.1
        Expected share of outliers; ``offset_`` is that quantile of the
        training scores. Must be in (0, 0.5].
    max_iter : int or "auto", default="auto"
        Number of training epochs (one discriminator and one generator update
        per mini-batch). ``"auto"`` runs enough epochs for about
        600 updates, between 5 and 300 epochs: a GAN needs
        a number of updates rather than of passes over the data, and small
        one-class sets would otherwise get a few dozen updates only.
    batch_size : int, default=128
    learning_rate_init : float, default=1e-3
        Adam learning rate of the generator (betas 0.5, 0.999).
    weight_decay : float, default=1e-5
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows and stop when their mean
        guided loss (pretext error plus feature mismatch of generated rows)
        has not improved by ``tol`` for ``n_iter_no_change`` epochs.
        Otherwise training stops when the summed generator and discriminator
        loss has not improved for ``n_iter_no_change`` epochs.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=300
        Epochs without improvement before stopping. The default switches
        the training-loss rule off in practice (``max_iter="auto"`` runs at
        most 300 epochs): adversarial losses oscillate and are no convergence
        signal, and stopping on them left generators under-trained (in
        development runs a reconstruction generator stopped at epoch 52 with
        collapsed outputs).
    tol : float, default=1e-4
    device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when available, else the CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds the transformations, initialisation, shuffling and dropout.
    verbose : int, default=0
        > 0 shows a progress bar with the running losses.

    Attributes
    ----------
    generator_ : torch.nn.Module
        The trained generator.
    discriminator_ : torch.nn.Module
        The trained discriminator (features ``f``, heads ``adv`` and ``cls``).
    transforms_ : torch.nn.Module
        Standardisation statistics and the transformation bank, as buffers.
    n_transforms_ : int
        Number of transformations used.
    input_mode_ : {"vector", "image"}
    input_shape_ : tuple of int
        ``(n_features,)``, or ``(C, H, W)`` in image mode.
    feature_scale_ : float
        Training median of the feature term (normalises the score).
    loss_curve_ : list of float
        Mean generator + discriminator loss per epoch.
    loss_components_ : dict of str to list of float
        Per-epoch means of ``d_loss``, ``g_loss``, ``d_pretext`` (pretext
        cross-entropy of ``D`` on real rows), ``g_pretext``,
        ``g_features``, ``g_adversarial``, ``g_reconstruction`` and
        ``generator_variance`` (variance of the generated rows over the
        variance of the inputs).
    generator_variance_ : float
        ``generator_variance`` of the last epoch.
    mode_collapse_ : bool
        True when ``generator_variance_`` is below 0.05: the generator
        outputs a near-constant row (a warning is logged).
    n_iter_ : int
    best_loss_ : float
    validation_scores_ : list of float
        Only with ``early_stopping=True``.
    offset_ : float
    device_ : torch.device
    n_features_in_ : int
        Number of features (channels ``C`` in image mode).
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when X has string column names.

    See Also
    --------
    skad.DeepSVDD : One-class deep detector with a hypersphere objective.
    sklearn.ensemble.IsolationForest : Same interface, tree-based.

    Examples
    --------
    >>> import numpy as np
    >>> from skad import DiscriminatorGuidedGAN
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4)) @ rng.normal(size=(4, 8))
    >>> det = DiscriminatorGuidedGAN(max_iter=5, device="cpu", random_state=0)
    >>> det = det.fit(X)
    >>> det.score_samples(X[:3]).shape
    (3,)
    >>> det.predict(X[:3]).tolist()
    [1, 1, 1]
    """

    _parameter_constraints = {
        **BaseDeepDetector._parameter_constraints,
        "max_iter": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "n_transforms": [Interval(Integral, 2, None, closed="left")],
        "transforms": [StrOptions({"permutation", "orthogonal"})],
        "generator_loss": [StrOptions({"guided", "reconstruction"})],
        "mode": [StrOptions({"preserve", "restore"})],
        "anomaly_score": [
            StrOptions({"combined", "classification", "features", "discriminator"})
        ],
        "classification_weight": [Interval(Real, 0, None, closed="left")],
        "feature_matching_weight": [Interval(Real, 0, None, closed="left")],
        "adversarial_weight": [Interval(Real, 0, None, closed="left")],
        "reconstruction_weight": [Interval(Real, 0, None, closed="left")],
        "feature_score_weight": [Interval(Real, 0, None, closed="left")],
        "hidden_dim": [Interval(Integral, 1, None, closed="left"), None],
        "latent_dim": [Interval(Integral, 1, None, closed="left"), None],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "label_smoothing": [Interval(Real, 0, 0.5, closed="left")],
        "discriminator_learning_rate": [
            Interval(Real, 0, None, closed="neither"),
            None,
        ],
        "feature_layers": [StrOptions({"last", "all"})],
        "padding_mode": [StrOptions({"zeros", "circular", "reflect", "replicate"})],
    }

    def __init__(
        self,
        *,
        n_transforms=8,
        transforms="permutation",
        generator_loss="guided",
        mode="preserve",
        anomaly_score="combined",
        classification_weight=1.0,
        feature_matching_weight=1.0,
        adversarial_weight=0.1,
        reconstruction_weight=50.0,
        feature_score_weight=1.0,
        hidden_dim=None,
        latent_dim=None,
        dropout=0.2,
        label_smoothing=0.1,
        discriminator_learning_rate=None,
        feature_layers="all",
        padding_mode="zeros",
        contamination=0.1,
        max_iter="auto",
        batch_size=128,
        learning_rate_init=1e-3,
        weight_decay=1e-5,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=300,
        tol=1e-4,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.n_transforms = n_transforms
        self.transforms = transforms
        self.generator_loss = generator_loss
        self.mode = mode
        self.anomaly_score = anomaly_score
        self.classification_weight = classification_weight
        self.feature_matching_weight = feature_matching_weight
        self.adversarial_weight = adversarial_weight
        self.reconstruction_weight = reconstruction_weight
        self.feature_score_weight = feature_score_weight
        self.hidden_dim = hidden_dim
        self.latent_dim = latent_dim
        self.dropout = dropout
        self.label_smoothing = label_smoothing
        self.discriminator_learning_rate = discriminator_learning_rate
        self.feature_layers = feature_layers
        self.padding_mode = padding_mode
        self.contamination = contamination
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------ input
    _supports_images = True
    #: ``max_iter="auto"``: about 600 generator updates, 5 to 300 epochs.
    _auto_updates = (600, 5, 300)

    # ------------------------------------------------------------ networks
    def _build_networks(self, rng):
        if self.input_mode_ == "image":
            C, H, W = self.input_shape_
            self.n_transforms_ = min(self.n_transforms, 8 if H == W else 4)
            width = self.hidden_dim or 32
            z = self.latent_dim or 16
            self.transforms_ = _ImageTransforms(C, H == W)
            self.generator_ = _ConvGenerator(
                self.input_shape_, z, width, self.padding_mode
            )
            self.discriminator_ = _ConvDiscriminator(
                self.input_shape_,
                self.n_transforms_,
                width,
                self.dropout,
                self.padding_mode,
                self.feature_layers == "all",
            )
            return
        d = self.n_features_in_
        K = self.n_transforms_ = self.n_transforms
        h = self.hidden_dim or int(np.clip(2 * d, 64, 128))
        z = self.latent_dim or int(np.clip(d // 4, 1, 32))
        self.transforms_ = _VectorTransforms(d, K, self.transforms, rng.numpy)
        self.generator_ = _MLPGenerator(d, h, z)
        self.discriminator_ = _MLPDiscriminator(
            d, h, K, self.dropout, self.feature_layers == "all"
        )

    @torch.no_grad()
    def _fit_standardisation(self, X):
        T = self.transforms_
        if X.ndim == 4:
            mean = X.mean(dim=(0, 2, 3), keepdim=True)[0]
            std = X.std(dim=(0, 2, 3), keepdim=True)[0]
        else:
            mean, std = X.mean(dim=0), X.std(dim=0)
        std = torch.where(std > 1e-6 * (1 + mean.abs()), std, torch.ones_like(std))
        T.mean.copy_(mean)
        T.scale.copy_(std)

    def _pretext_target(self, k):
        return torch.zeros_like(k) if self.mode == "restore" else k

    def _fit_networks(self, X, labels, rng):
        G, D, T = self.generator_, self.discriminator_, self.transforms_
        K = self.n_transforms_
        self._fit_standardisation(X)
        Xs = T.standardise(X)
        train_idx, val_idx = self._split_validation(X.shape[0], rng)
        X_train = Xs[train_idx]
        betas = (0.5, 0.999)
        lr_d = self.discriminator_learning_rate or 2 * self.learning_rate_init
        opt_g = self._optimizer(G.parameters(), betas=betas)
        opt_d = self._optimizer(D.parameters(), learning_rate=lr_d, betas=betas)
        real_target = 1.0 - self.label_smoothing
        guided = self.generator_loss == "guided"

        def step(idx):
            x = X_train[idx]
            k = torch.randint(K, (x.shape[0],), generator=rng.device, device=x.device)
            xk = T.per_row(x, k)
            # discriminator update (generator frozen), real and fake in one pass
            with torch.no_grad():
                fake = G(xk)
            f_both, adv_both, cls_both = D(torch.cat([xk, fake]))
            n = xk.shape[0]
            adv_r, adv_f = adv_both[:n], adv_both[n:]
            d_pretext = F.cross_entropy(cls_both[:n], k)
            d_adv = F.binary_cross_entropy_with_logits(
                adv_r, torch.full_like(adv_r, real_target)
            ) + F.binary_cross_entropy_with_logits(adv_f, torch.zeros_like(adv_f))
            d_loss = d_pretext + d_adv
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            # generator update (gradients flow through the discriminator); the
            # feature target f(T_k x) is taken from the pass above, detached
            f_r = [f[:n].detach() for f in f_both]
            D.requires_grad_(False)
            fake = G(xk)
            f_f, adv_f, cls_f = D(fake)
            g_pretext = F.cross_entropy(cls_f, self._pretext_target(k))
            g_feat = _sq_dist(f_f, f_r).mean()
            g_adv = F.binary_cross_entropy_with_logits(adv_f, torch.ones_like(adv_f))
            g_rec = (fake - xk).abs().mean()
            g_loss = self.feature_matching_weight * g_feat
            g_loss = g_loss + self.adversarial_weight * g_adv
            if guided:
                g_loss = g_loss + self.classification_weight * g_pretext
            else:
                g_loss = g_loss + self.reconstruction_weight * g_rec
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            D.requires_grad_(True)
            opt_g.step()
            with torch.no_grad():
                var_ratio = fake.var(dim=0).mean() / xk.var(dim=0).mean().clamp_min(
                    1e-12
                )
            return {
                "loss": float(d_loss.detach() + g_loss.detach()),
                "d_loss": float(d_loss.detach()),
                "g_loss": float(g_loss.detach()),
                "d_pretext": float(d_pretext.detach()),
                "g_pretext": float(g_pretext.detach()),
                "g_features": float(g_feat.detach()),
                "g_adversarial": float(g_adv.detach()),
                "g_reconstruction": float(g_rec.detach()),
                "generator_variance": float(var_ratio),
            }

        val = None
        if val_idx is not None:
            X_val = Xs[val_idx]

            def val():
                return float(self._terms(X_val, standardised=True).sum(0).mean())

        history = self._fit_phases(
            self._phase(
                step,
                n_samples=X_train.shape[0],
                modules=[G, D],
                optimizers=[opt_g, opt_d],
                manual=True,
                validation_loss=val,
            ),
            rng=rng,
        )["main"]
        self.loss_components_ = {k: list(v) for k, v in history.extra.items()}
        self.generator_variance_ = float(
            self.loss_components_["generator_variance"][-1]
        )
        self.mode_collapse_ = bool(self.generator_variance_ < COLLAPSE_RATIO)
        if self.mode_collapse_:
            warnings.warn(
                f"{type(self).__name__}: the generator collapsed (output variance "
                f"{self.generator_variance_:.3g} of the input variance); try a "
                "larger feature_matching_weight.",
                TrainingWarning,
                stacklevel=4,
            )
        feats = self._map_chunks(lambda xb: self._terms(xb, True)[1], Xs)
        self.feature_scale_ = float(max(torch.from_numpy(feats).median().item(), 1e-12))

    # ------------------------------------------------------------ scoring
    def _terms(self, X, standardised=False):
        """(pretext error on G(T_k x), feature mismatch, pretext error on
        T_k x), each averaged over the K transformations: shape (3, n)."""
        G, D, T = self.generator_, self.discriminator_, self.transforms_
        x = X if standardised else T.standardise(X)
        out = torch.zeros(3, x.shape[0], dtype=x.dtype, device=x.device)
        need_g = self.anomaly_score != "discriminator"
        for k in range(self.n_transforms_):
            xk = T.one(x, k)
            f_r, _, cls_r = D(xk)
            kk = torch.full((x.shape[0],), k, dtype=torch.long, device=x.device)
            out[2] += F.cross_entropy(cls_r, kk, reduction="none")
            if need_g:
                f_f, _, cls_f = D(G(xk))
                target = self._pretext_target(kk)
                out[0] += F.cross_entropy(cls_f, target, reduction="none")
                out[1] += _sq_dist(f_f, f_r)
        return out / self.n_transforms_

    def _score(self, X):
        terms = self._terms(X)
        if self.anomaly_score == "classification":
            return terms[0]
        if self.anomaly_score == "features":
            return terms[1] / self.feature_scale_
        if self.anomaly_score == "discriminator":
            return terms[2]
        return terms[0] + self.feature_score_weight * terms[1] / self.feature_scale_
