"""The DiscriminatorGuidedGAN estimator: parameters and the base's hooks."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import torch

from skad._validation import Interval, IntTuple, StrOptions
from skad.base import BaseDeepDetector
from skad.discriminator_guided_gan import _loss
from skad.discriminator_guided_gan._net import (
    ConvDiscriminator,
    ConvGenerator,
    MLPDiscriminator,
    MLPGenerator,
    default_channels,
    max_conv_stages,
)
from skad.discriminator_guided_gan._transforms import ImageTransforms, VectorTransforms
from skad.exceptions import TrainingWarning

__all__ = ["DiscriminatorGuidedGAN"]

#: Generator outputs whose variance falls below this share of the input
#: variance are reported as a mode collapse (``mode_collapse_``).
COLLAPSE_RATIO = 0.05

#: (loss_components_ key, generator term) recorded per epoch.
_GENERATOR_RECORD = (
    ("g_pretext", "pretext"),
    ("g_features", "features"),
    ("g_adversarial", "adversarial"),
    ("g_reconstruction", "reconstruction"),
)


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
        Number ``K`` of transformations, the identity included (at least 2).
        Image mode has at most 8 (square images) or 4 (other shapes); more
        are clipped.
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
    pretext_target : {"preserve", "restore"}, default="preserve"
        Pretext class the discriminator must read on the generated row
        ``G(T_k x)``: ``k`` (the generator keeps the transformation) or ``0``
        (it undoes it).
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
    hidden_layer_sizes : tuple of int or None, default=None
        Feature vectors: the hidden widths of the MLPs; the generator's
        encoder uses them, its decoder mirrors them and the discriminator's
        trunk uses them. None uses ``(h, h // 2)`` with
        ``h = clip(2 * n_features, 64, 128)`` (the method note's upper bound
        of 512 costs 10 times more CPU time on embeddings). Images: the
        channels of the convolution stages, the first at full resolution,
        each further one halving the image with a stride-2 convolution (the
        generator's decoder mirrors them; the discriminator ends in a dense
        layer of twice the first stage's channels). An image allows one
        halving per factor 2 of its sides while its smaller side stays above
        4 and both sides are even (8x8: 2 stages, 32x32: 4, 6x4: 1); None
        uses every stage it allows with 32 channels doubling at each stage,
        e.g. ``(32, 64)`` for 8x8 images. Used values: ``hidden_layer_sizes_``.
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
    {contamination}
    {train_contamination}
    {max_iter}
        One epoch makes one discriminator and one generator update per
        mini-batch; ``"auto"`` aims at 600 updates, within 5 to 300 epochs: a
        GAN needs a number of updates rather than of passes over the data.
    {batch_size}
    {learning_rate_init}
        It is the generator's; both networks use Adam betas (0.5, 0.999).
    {weight_decay}
    {early_stopping}
        The validation loss is the sum of the three score terms (the two
        pretext errors and the feature mismatch), averaged over the held-out
        rows; the training loss is the summed generator and discriminator
        loss.
    {validation_fraction}
    {n_iter_no_change}
        The default switches the training-loss rule off in practice
        (``max_iter="auto"`` runs at most 300 epochs): adversarial losses
        oscillate and are no convergence signal, and stopping on them left
        generators under-trained (in development runs a reconstruction
        generator stopped at epoch 52 with collapsed outputs).
    {tol}
    {device}
    {random_state}
        It also seeds the transformations and the dropout masks.
    {verbose}

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
    hidden_layer_sizes_ : tuple of int
        MLP widths, or channels of the convolution stages, used.
    latent_dim_ : int
        Bottleneck width used.
    feature_scale_ : float
        Training median of the feature term (normalises the score).
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
        outputs a near-constant row (a ``TrainingWarning`` is issued).
    {fitted_attributes}

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
    >>> det.hidden_layer_sizes_
    (64, 32)
    """

    _parameter_constraints = {
        **BaseDeepDetector._parameter_constraints,
        "n_transforms": [Interval(Integral, 2, None, closed="left")],
        "transforms": [StrOptions({"permutation", "orthogonal"})],
        "generator_loss": [StrOptions({"guided", "reconstruction"})],
        "pretext_target": [StrOptions({"preserve", "restore"})],
        "anomaly_score": [
            StrOptions({"combined", "classification", "features", "discriminator"})
        ],
        "classification_weight": [Interval(Real, 0, None, closed="left")],
        "feature_matching_weight": [Interval(Real, 0, None, closed="left")],
        "adversarial_weight": [Interval(Real, 0, None, closed="left")],
        "reconstruction_weight": [Interval(Real, 0, None, closed="left")],
        "feature_score_weight": [Interval(Real, 0, None, closed="left")],
        "hidden_layer_sizes": [IntTuple(min_len=1), None],
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

    #: Checked by :func:`skad.load`: the score divides by ``feature_scale_``
    #: (the training median of the feature term, floored at 1e-12 in fit).
    _fitted_attribute_constraints = {
        "feature_scale_": [Interval(Real, 1e-12, None, closed="left")],
    }

    _supports_images = True
    _auto_updates = (600, 5, 300)

    def __init__(
        self,
        *,
        n_transforms=8,
        transforms="permutation",
        generator_loss="guided",
        pretext_target="preserve",
        anomaly_score="combined",
        classification_weight=1.0,
        feature_matching_weight=1.0,
        adversarial_weight=0.1,
        reconstruction_weight=50.0,
        feature_score_weight=1.0,
        hidden_layer_sizes=None,
        latent_dim=None,
        dropout=0.2,
        label_smoothing=0.1,
        discriminator_learning_rate=None,
        feature_layers="all",
        padding_mode="zeros",
        contamination=0.1,
        train_contamination="auto",
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
        self.pretext_target = pretext_target
        self.anomaly_score = anomaly_score
        self.classification_weight = classification_weight
        self.feature_matching_weight = feature_matching_weight
        self.adversarial_weight = adversarial_weight
        self.reconstruction_weight = reconstruction_weight
        self.feature_score_weight = feature_score_weight
        self.hidden_layer_sizes = hidden_layer_sizes
        self.latent_dim = latent_dim
        self.dropout = dropout
        self.label_smoothing = label_smoothing
        self.discriminator_learning_rate = discriminator_learning_rate
        self.feature_layers = feature_layers
        self.padding_mode = padding_mode
        self.contamination = contamination
        self.train_contamination = train_contamination
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

    # ------------------------------------------------------------ networks
    def _image_channels(self):
        """Channels of the convolution stages, checked against the image."""
        _, H, W = self.input_shape_
        if self.hidden_layer_sizes is None:
            return default_channels(H, W)
        channels = tuple(int(c) for c in self.hidden_layer_sizes)
        most = max_conv_stages(H, W)
        if len(channels) > most:
            raise ValueError(
                f"hidden_layer_sizes={self.hidden_layer_sizes!r} asks for "
                f"{len(channels)} convolution stages, but {H}x{W} images allow "
                f"at most {most} (one at full resolution, then one per halving "
                "while the smaller side stays above 4 and both sides are even). "
                f"Give at most {most} channel counts, e.g. "
                f"{default_channels(H, W)!r}, or None."
            )
        return channels

    def _build_networks(self, rng):
        all_layers = self.feature_layers == "all"
        if self.input_mode_ == "image":
            C, H, W = self.input_shape_
            sizes = self._image_channels()
            self.n_transforms_ = min(self.n_transforms, 8 if H == W else 4)
            z = self.latent_dim or 16
            self.transforms_ = ImageTransforms(C, H == W)
            self.generator_ = ConvGenerator(
                self.input_shape_, z, sizes, self.padding_mode
            )
            self.discriminator_ = ConvDiscriminator(
                self.input_shape_,
                self.n_transforms_,
                sizes,
                self.dropout,
                self.padding_mode,
                all_layers,
            )
        else:
            d = self.n_features_in_
            K = self.n_transforms_ = self.n_transforms
            if self.hidden_layer_sizes is None:
                h = int(np.clip(2 * d, 64, 128))
                sizes = (h, h // 2)
            else:
                sizes = tuple(int(s) for s in self.hidden_layer_sizes)
            z = self.latent_dim or int(np.clip(d // 4, 1, 32))
            self.transforms_ = VectorTransforms(d, K, self.transforms, rng.numpy)
            self.generator_ = MLPGenerator(d, sizes, z)
            self.discriminator_ = MLPDiscriminator(
                d, sizes, K, self.dropout, all_layers
            )
        self.hidden_layer_sizes_ = sizes
        self.latent_dim_ = int(z)

    # ------------------------------------------------------------ training
    def _fit_networks(self, X, labels, rng):
        G, D, T = self.generator_, self.discriminator_, self.transforms_
        K = self.n_transforms_
        T.fit_statistics(X)
        Xs = T.standardise(X)
        train_idx, val_idx = self._split_validation(X.shape[0], rng)
        X_train = Xs[train_idx]
        betas = (0.5, 0.999)
        lr_d = self.discriminator_learning_rate or 2 * self.learning_rate_init
        opt_g = self._optimizer(G.parameters(), betas=betas)
        opt_d = self._optimizer(D.parameters(), learning_rate=lr_d, betas=betas)
        real_target = 1.0 - self.label_smoothing
        weights = dict(
            guided=self.generator_loss == "guided",
            classification_weight=self.classification_weight,
            feature_matching_weight=self.feature_matching_weight,
            adversarial_weight=self.adversarial_weight,
            reconstruction_weight=self.reconstruction_weight,
        )

        def step(idx):
            x = X_train[idx]
            k = torch.randint(K, (x.shape[0],), generator=rng.device, device=x.device)
            xk = T.per_row(x, k)
            # discriminator update (generator frozen), real and fake in one pass
            with torch.no_grad():
                fake = G(xk)
            f_both, adv_both, cls_both = D(torch.cat([xk, fake]))
            n = xk.shape[0]
            d_loss, d_pretext = _loss.discriminator_loss(
                adv_both[:n], adv_both[n:], cls_both[:n], k, real_target
            )
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            # generator update (gradients flow through the discriminator); the
            # feature target f(T_k x) is taken from the pass above, detached
            f_r = [f[:n].detach() for f in f_both]
            D.requires_grad_(False)
            fake = G(xk)
            f_f, adv_f, cls_f = D(fake)
            target = _loss.pretext_labels(k, self.pretext_target)
            terms = _loss.generator_terms(fake, xk, f_f, f_r, adv_f, cls_f, target)
            g_loss = _loss.generator_loss(terms, **weights)
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            D.requires_grad_(True)
            opt_g.step()
            record = {
                "loss": float(d_loss.detach() + g_loss.detach()),
                "d_loss": float(d_loss.detach()),
                "g_loss": float(g_loss.detach()),
                "d_pretext": float(d_pretext.detach()),
            }
            for key, term in _GENERATOR_RECORD:
                record[key] = float(terms[term].detach())
            record["generator_variance"] = float(_loss.variance_ratio(fake, xk))
            return record

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
        with_generator = self.anomaly_score != "discriminator"
        for k in range(self.n_transforms_):
            xk = T.one(x, k)
            f_r, _, cls_r = D(xk)
            kk = torch.full((x.shape[0],), k, dtype=torch.long, device=x.device)
            out[2] += _loss.pretext_error(cls_r, kk)
            if with_generator:
                f_f, _, cls_f = D(G(xk))
                labels = _loss.pretext_labels(kk, self.pretext_target)
                out[0] += _loss.pretext_error(cls_f, labels)
                out[1] += _loss.feature_distance(f_f, f_r)
        return out / self.n_transforms_

    def _score(self, X):
        return _loss.anomaly_scores(
            self._terms(X),
            self.anomaly_score,
            self.feature_scale_,
            self.feature_score_weight,
        )
