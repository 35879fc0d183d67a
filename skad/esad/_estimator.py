"""The ESAD estimator: parameters and the three hooks of the base class."""

from __future__ import annotations

from numbers import Integral, Real

import torch

from skad._validation import Interval, IntTuple, StrOptions, check_batch_norm
from skad.base import BaseSemiSupervisedDetector
from skad.esad._loss import (
    discriminator_loss,
    esad_loss,
    feature_matching_loss,
    make_anomaly_target,
    oversampling_weights,
    ramp_weight,
    score_terms,
)
from skad.esad._net import Discriminator, ESADNet, default_sizes

__all__ = ["ESAD"]

#: Epochs with the entropy term off, then the same number of epochs of linear
#: ramp (at most; ``max_iter // 10`` for short runs).
_WARMUP_EPOCHS = 5
#: Floor of the training medians and spreads that divide the score terms.
_SCALE_FLOOR = 1e-12


class ESAD(BaseSemiSupervisedDetector):
    """End-to-end Deep Semi-supervised Anomaly Detection (ESAD).

    An encoder ``E1``, a decoder and a second encoder ``E2`` form
    ``x -> z -> x^ -> z^`` (Huang et al., "ESAD: End-to-end Deep
    Semi-supervised Anomaly Detection", BMVC 2021). For rows not labelled
    anomalous the loss is the reconstruction error ``||x^ - x||^2`` (mutual
    information), plus ``entropy_weight`` times ``||z^||^2`` (entropy: codes
    of reconstructions gather at the origin), plus ``consistency_weight``
    times ``mean_j (z^_j - z_j)^2`` (consistency, on every row). Labelled
    anomalies are reconstructed towards ``anomaly_target`` instead of
    themselves and their ``z^`` is pushed away from the origin
    (``anomaly_norm_loss``). The anomaly score adds the reconstruction error
    and ``||z^||``, each divided by its median over the training rows not
    labelled anomalous. Supports the semi-supervised setting
    (``fit(X, labels=labels)``: +1 labelled normal, 0 unlabelled, -1 labelled
    anomaly) and, with ``labels=None``, the unsupervised and one-class
    settings (an autoencoder with a latent-norm penalty).

    The paper's losses, layer sizes and score were not available; the choices
    marked *reconstructed* below follow a third-party reimplementation and
    Deep SAD, and each is a parameter.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int or None, default=None
        Widths of ``E1``'s (and ``E2``'s) hidden layers; the decoder mirrors
        them. None (*reconstructed*): ``(32, 16)`` for up to 40 features,
        else ``h1 = clip(d // 2, 32, 512)``, ``h2 = clip(h1 // 2, 16, 256)``.
    latent_dim : int or None, default=None
        Code size. None: 4 below 10 features, 8 up to 40, else
        ``clip(h2 // 2, 4, 64)``.
    activation : {"leaky_relu", "relu", "elu", "gelu", "silu"}, default="leaky_relu"
        Hidden activation.
    norm : {"batch", "layer"} or None, default=None
        Optional normalisation after each hidden layer (``"batch"`` needs
        ``batch_size >= 2``).
    entropy_weight : float, default=1.0
        Weight of the code-norm (entropy) term (*reconstructed*: 1 in the
        reimplementation). It is off for the first ``min(5, max_iter // 10)``
        epochs and ramps up linearly over as many epochs.
    consistency_weight : float, default=1.0
        Weight of the consistency term between ``z^`` and ``z``.
    anomaly_target : {"gauss", "identity", "invert"}, default="gauss"
        What labelled anomalies are reconstructed towards (*reconstructed*).
        ``"gauss"``: fresh standard normal noise each step (on standardised
        data, the normal mean); ``"identity"``: the row itself (labels then
        act only through the norm term); ``"invert"``: ``min + max - x`` with
        the per-feature training range (``1 - x`` on min-max scaled data).
    anomaly_norm_loss : {"inverse", "hinge"}, default="inverse"
        Entropy term of labelled anomalies (*reconstructed*). ``"inverse"``:
        ``1 / (||z^||^2 + 1e-3)``, bounded by 1e3 so it is never infinite;
        ``"hinge"``: ``max(0, m - ||z^||)^2`` with ``m`` the 95th percentile
        of ``||z^||`` over the batch's other rows.
    share_encoders : bool, default=False
        Use ``E1``'s weights for ``E2`` (as the reimplementation does); the
        paper speaks of two encoders, hence separate weights by default.
    anomaly_score : {"sum", "robust_sum", "reconstruction", "norm"}, default="sum"
        Anomaly score: scaled reconstruction error plus scaled ``||z^||``, or
        either alone (*reconstructed*). ``"robust_sum"`` (a skad addition)
        also divides each scaled term's deviation from 1 by its interquartile
        range on the training rows, so that the heavy-tailed reconstruction
        term does not decide the ranking alone.
    eta : float, default=1.0
        Weight of labelled rows (+1 and -1) against unlabelled ones, as in
        Deep SAD.
    anomaly_batch_fraction : float, default=0.05
        Labelled anomalies are oversampled so that, in expectation, at least
        this share of every batch (and at least 2 rows of a full batch) are
        labelled anomalies. Each epoch then draws as many rows as there are
        training rows, with replacement, with probabilities proportional to
        per-row weights. No effect without labelled anomalies or when they
        are already that frequent.
    adversarial : bool, default=False
        Add a GANomaly-style discriminator on reconstructions: it learns to
        tell rows from their reconstructions, and the networks also minimise
        the feature-matching loss between them. Not part of ESAD as far as
        its abstract and the reimplementation show (an extension).
    adversarial_weight : float, default=1.0
        Weight of the feature-matching loss when ``adversarial=True``.
    {contamination}
    {train_contamination}
    {max_iter}
    {batch_size}
    {learning_rate_init}
        It decays along a cosine over the epochs.
    {weight_decay}
    {early_stopping}
        The held-out rows keep their labels; the best weights are sought
        among the epochs after the ramp of the entropy weight.
    {validation_fraction}
    {n_iter_no_change}
    {tol}
    {device}
    {random_state}
        It also draws the noise targets of labelled anomalies.
    {verbose}

    Attributes
    ----------
    network_ : torch.nn.Module
        Encoder, decoder and second encoder (``encoder2`` is None with
        ``share_encoders=True``).
    discriminator_ : torch.nn.Module
        Only with ``adversarial=True``.
    hidden_layer_sizes_ : tuple of int
        The encoder widths used.
    latent_dim_ : int
        The code size used.
    reconstruction_scale_ : float
        Median reconstruction error (mean over features) of the training rows
        not labelled anomalous; divides that score term.
    norm_scale_ : float
        Median ``||z^||`` of the same rows; divides that score term.
    reconstruction_spread_, norm_spread_ : float
        Interquartile ranges of the two scaled terms on the same rows (used
        by ``anomaly_score="robust_sum"``).
    n_labeled_anomalies_ : int
        Rows labelled -1 in the training labels.
    {fitted_attributes}

    See Also
    --------
    skad.DeepSAD : Deep SVDD with Deep SAD's labelled terms.
    skad.DeepSVDD : Unsupervised hypersphere model.

    Examples
    --------
    >>> import numpy as np
    >>> from skad import ESAD
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(size=(200, 4)), rng.normal(5, 1, size=(5, 4))])
    >>> labels = np.r_[np.zeros(200, int), -np.ones(5, int)]
    >>> det = ESAD(max_iter=2, device="cpu", random_state=0)
    >>> det = det.fit(X, labels=labels)
    >>> det.predict([[0.0, 0.0, 0.0, 0.0], [8.0, 8.0, 8.0, 8.0]])
    array([ 1, -1])
    """

    #: ``train_contamination="auto"``: leaving rows out did not help ESAD
    #: on validation splits, so it trains on every row.
    _auto_train_contamination = 0.0

    _parameter_constraints = {
        **BaseSemiSupervisedDetector._parameter_constraints,
        "hidden_layer_sizes": [IntTuple(min_len=0), None],
        "latent_dim": [Interval(Integral, 1, 2**20, closed="both"), None],
        "activation": [StrOptions({"relu", "leaky_relu", "elu", "gelu", "silu"})],
        "norm": [StrOptions({"batch", "layer"}), None],
        "entropy_weight": [Interval(Real, 0, None, closed="left")],
        "consistency_weight": [Interval(Real, 0, None, closed="left")],
        "anomaly_target": [StrOptions({"gauss", "identity", "invert"})],
        "anomaly_norm_loss": [StrOptions({"inverse", "hinge"})],
        "share_encoders": ["boolean"],
        "anomaly_score": [StrOptions({"sum", "robust_sum", "reconstruction", "norm"})],
        "eta": [Interval(Real, 0, None, closed="neither")],
        "anomaly_batch_fraction": [Interval(Real, 0, 1, closed="left")],
        "adversarial": ["boolean"],
        "adversarial_weight": [Interval(Real, 0, None, closed="left")],
    }

    #: Checked by :func:`skad.load`: the score divides by these (set in
    #: ``_set_score_scales``, never below ``_SCALE_FLOOR``).
    _fitted_attribute_constraints = {
        name: [Interval(Real, _SCALE_FLOOR, None, closed="left")]
        for name in (
            "reconstruction_scale_",
            "norm_scale_",
            "reconstruction_spread_",
            "norm_spread_",
        )
    }

    def __init__(
        self,
        *,
        hidden_layer_sizes=None,
        latent_dim=None,
        activation="leaky_relu",
        norm=None,
        entropy_weight=1.0,
        consistency_weight=1.0,
        anomaly_target="gauss",
        anomaly_norm_loss="inverse",
        share_encoders=False,
        anomaly_score="sum",
        eta=1.0,
        anomaly_batch_fraction=0.05,
        adversarial=False,
        adversarial_weight=1.0,
        contamination=0.1,
        train_contamination="auto",
        max_iter=100,
        batch_size=128,
        learning_rate_init=1e-3,
        weight_decay=1e-6,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=0.0,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.latent_dim = latent_dim
        self.activation = activation
        self.norm = norm
        self.entropy_weight = entropy_weight
        self.consistency_weight = consistency_weight
        self.anomaly_target = anomaly_target
        self.anomaly_norm_loss = anomaly_norm_loss
        self.share_encoders = share_encoders
        self.anomaly_score = anomaly_score
        self.eta = eta
        self.anomaly_batch_fraction = anomaly_batch_fraction
        self.adversarial = adversarial
        self.adversarial_weight = adversarial_weight
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

    # ------------------------------------------------------------------ hooks
    def _check_params(self):
        check_batch_norm(self.norm, self.batch_size)

    def _build_networks(self, rng):
        hidden, latent = default_sizes(self.n_features_in_)
        if self.hidden_layer_sizes is not None:
            hidden = tuple(int(h) for h in self.hidden_layer_sizes)
        if self.latent_dim is not None:
            latent = int(self.latent_dim)
        self.hidden_layer_sizes_, self.latent_dim_ = hidden, latent
        self.network_ = ESADNet(
            self.n_features_in_,
            hidden,
            latent,
            self.activation,
            self.norm,
            self.share_encoders,
        )
        if self.adversarial:
            self.discriminator_ = Discriminator(
                self.n_features_in_, hidden, self.activation
            )
        elif hasattr(self, "discriminator_"):
            del self.discriminator_

    def _fit_networks(self, X, labels, rng):
        net = self.network_
        disc = getattr(self, "discriminator_", None)
        if labels is None:
            labels = torch.zeros(X.shape[0], dtype=torch.int64, device=X.device)
        self.n_labeled_anomalies_ = int((labels == -1).sum())
        train_idx, val_idx = self._split_validation(X.shape[0], rng)
        X_train, lab_train = X[train_idx], labels[train_idx]
        anomaly_target = make_anomaly_target(self.anomaly_target, X_train, rng.device)
        max_iter = self._epochs(X_train.shape[0])
        warmup = min(_WARMUP_EPOCHS, max_iter // 10)
        epoch = 0  # counted by end_of_epoch across both phases

        def batch_loss(x, lab, targets):
            z, x_hat, z_hat = net(x)
            loss, parts = esad_loss(
                x,
                z,
                x_hat,
                z_hat,
                lab,
                targets,
                eta=float(self.eta),
                entropy_weight=ramp_weight(self.entropy_weight, epoch, warmup),
                consistency_weight=float(self.consistency_weight),
                norm_loss=self.anomaly_norm_loss,
            )
            return loss, parts, x_hat

        def targets(x, lab):
            """Reconstruction targets of the rows labelled anomalous."""
            anomalous = lab == -1
            return anomaly_target(x[anomalous]) if anomalous.any() else None

        optimizers = [self._optimizer(net.parameters())]
        if disc is not None:
            optimizers.append(self._optimizer(disc.parameters()))
        schedulers = [
            torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=max_iter)
            for o in optimizers
        ]

        def step(idx):
            x, lab = X_train[idx], lab_train[idx]
            loss, parts, x_hat = batch_loss(x, lab, targets(x, lab))
            if disc is None:
                return {"loss": loss, **parts}
            return self._adversarial_update(
                x, lab, x_hat, loss.mean(), parts, *optimizers
            )

        def end_of_epoch(history):
            nonlocal epoch
            epoch += 1
            for scheduler in schedulers:
                scheduler.step()

        val = None
        if val_idx is not None:
            X_val, lab_val = X[val_idx], labels[val_idx]
            # drawn once, so that validation losses compare across epochs
            val_targets = targets(X_val, lab_val)

            def val():
                return batch_loss(X_val, lab_val, val_targets)[0].mean()

        settings = dict(
            n_samples=X_train.shape[0],
            modules=[net] if disc is None else [net, disc],
            optimizers=optimizers,
            manual=disc is not None,
            validation_loss=val,
            sample_weights=oversampling_weights(
                lab_train, self.anomaly_batch_fraction, self.batch_size
            ),
            on_epoch_end=[end_of_epoch],
        )
        # One record, two phases: the warm-up and ramp of the entropy weight,
        # then constant weights. Only the second restores its best weights:
        # the losses of the first are not comparable with later ones.
        ramp = min(2 * warmup, max_iter - 1)
        self._fit_phases(
            self._phase(step, max_iter=ramp, restore_best=False, **settings),
            self._phase(step, max_iter=max_iter - ramp, **settings),
            rng=rng,
        )
        self._set_score_scales(X[labels != -1])

    def _adversarial_update(self, x, lab, x_hat, loss, parts, optimizer, d_optimizer):
        """One alternating update: the networks on the ESAD loss plus the
        feature-matching loss, then the discriminator on real/fake rows (the
        rows labelled anomalous take no part)."""
        disc = self.discriminator_
        normal = lab != -1
        f_real, _ = disc(x[normal])
        f_fake, _ = disc(x_hat[normal])
        adv = feature_matching_loss(f_real, f_fake)
        g_loss = loss + float(self.adversarial_weight) * adv
        optimizer.zero_grad(set_to_none=True)
        if torch.isfinite(g_loss):  # else the engine reports the epoch's NaN
            g_loss.backward()
            optimizer.step()
        _, real_logit = disc(x[normal])
        _, fake_logit = disc(x_hat[normal].detach())
        d_loss = discriminator_loss(real_logit, fake_logit)
        d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        d_optimizer.step()
        return {
            "loss": g_loss.detach(),
            **{k: v.detach() for k, v in parts.items()},
            "adv": adv.detach(),
            "disc": d_loss.detach(),
        }

    @torch.no_grad()
    def _set_score_scales(self, X):
        """Medians and interquartile ranges of the two score terms over the
        rows ``X`` (those not labelled anomalous)."""
        rec, norm = (
            torch.from_numpy(t) for t in self._map_chunks(self._score_terms, X)
        )
        self.reconstruction_scale_ = max(float(rec.median()), _SCALE_FLOOR)
        self.norm_scale_ = max(float(norm.median()), _SCALE_FLOOR)
        q = torch.tensor([0.25, 0.75], dtype=torch.float64)
        r_q = torch.quantile(rec / self.reconstruction_scale_, q)
        n_q = torch.quantile(norm / self.norm_scale_, q)
        self.reconstruction_spread_ = max(float(r_q[1] - r_q[0]), _SCALE_FLOOR)
        self.norm_spread_ = max(float(n_q[1] - n_q[0]), _SCALE_FLOOR)

    def _score_terms(self, X):
        """Reconstruction error and ``||z^||`` of each row."""
        _, x_hat, z_hat = self.network_(X)
        return score_terms(X, x_hat, z_hat)

    def _score(self, X):
        _, x_hat, z_hat = self.network_(X)
        score = self._combine(*score_terms(X, x_hat, z_hat))
        # Squares overflow float32 beyond |x| ~ 1e19: such rows get the same
        # formula in float64 (every other row keeps its float32 score).
        wide = self._combine(*score_terms(X.double(), x_hat.double(), z_hat.double()))
        return torch.where(torch.isfinite(score), score.double(), wide)

    def _combine(self, rec, norm):
        """The anomaly score from the two terms, scaled by their training
        medians (and spreads)."""
        rec = rec / self.reconstruction_scale_
        norm = norm / self.norm_scale_
        if self.anomaly_score == "reconstruction":
            return rec
        if self.anomaly_score == "norm":
            return norm
        if self.anomaly_score == "robust_sum":
            return (rec - 1.0) / self.reconstruction_spread_ + (
                norm - 1.0
            ) / self.norm_spread_
        return rec + norm
