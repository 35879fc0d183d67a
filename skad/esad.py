"""ESAD: End-to-end Deep Semi-supervised Anomaly Detection (Huang et al., 2021).

An encoder-decoder-encoder ``x -> E1 -> z -> Dec -> x^ -> E2 -> z^``
trained end to end with one loss (arXiv:2012.04905, BMVC 2021). A KL
objective splits into the mutual information between data and code (E1 and
the decoder: reconstruction) and the entropy of the code (E2: the code of the
reconstruction is pulled to the origin); a consistency term ties ``z^`` to
``z``. Labelled anomalies get the opposite pressure: they are reconstructed
towards a corrupted target and their ``z^`` is pushed away from the origin.

The paper's method section was not available. The losses follow the
reconstruction in ``shared/methods/esad.md`` (a third-party reimplementation
plus Deep SAD's conventions); every reconstructed choice is a named
parameter, documented as such in :class:`ESAD`.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn
from torch.nn import functional as F

from skad import _nn
from skad.base import BaseSemiSupervisedDetector

__all__ = ["ESAD"]

#: Added to the squared code norm of a labelled anomaly before inverting it:
#: ``1 / (||z^||^2 + eps)`` is smooth and never exceeds ``1 / eps`` (= 1e3),
#: even for a code exactly at the origin.
_INVERSE_EPS = 1e-3
#: Epochs with the entropy term off, then the same number of epochs of linear
#: ramp (at most; ``max_iter // 10`` for short runs).
_WARMUP_EPOCHS = 5


def _auto_sizes(n_features: int) -> tuple[tuple[int, int], int]:
    """Encoder widths and code size from the input width (esad.md, B3)."""
    if n_features <= 40:
        return (32, 16), (4 if n_features < 10 else 8)
    h1 = int(np.clip(n_features // 2, 32, 512))
    h2 = int(np.clip(h1 // 2, 16, 256))
    return (h1, h2), int(np.clip(h2 // 2, 4, 64))


# ---------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------


class _ESADNet(nn.Module):
    """Encoder E1, decoder and encoder E2 (E2 may share E1's weights)."""

    def __init__(self, n_features, hidden, latent_dim, activation, norm, share):
        super().__init__()
        kw = dict(activation=activation, norm=norm)
        self.encoder = _nn.MLP(n_features, hidden, latent_dim, **kw)
        self.decoder = _nn.MLP(latent_dim, tuple(reversed(hidden)), n_features, **kw)
        self.encoder2 = None if share else _nn.MLP(n_features, hidden, latent_dim, **kw)

    def forward(self, x):
        """Return ``(z, x^, z^)``."""
        z = self.encoder(x)
        x_hat = self.decoder(z)
        enc2 = self.encoder if self.encoder2 is None else self.encoder2
        return z, x_hat, enc2(x_hat)


class _Discriminator(nn.Module):
    """GANomaly-style discriminator: hidden features and a real/fake logit."""

    def __init__(self, n_features, hidden, activation):
        super().__init__()
        self.features = _nn.MLP(n_features, hidden, None, activation=activation)
        self.head = nn.Linear(self.features.out_features, 1)

    def forward(self, x):
        f = self.features(x)
        return f, self.head(f).squeeze(1)


# ---------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------


def anomaly_norm_loss(sq_norm, kind: str, margin=None) -> torch.Tensor:
    """Per-row entropy term of labelled anomalies from ``||z^||^2``.

    ``"inverse"``: ``1 / (||z^||^2 + eps)`` with ``eps = 1e-3``, so the term
    is finite and at most 1e3 for any code, the origin included.
    ``"hinge"``: ``max(0, margin - ||z^||)^2``.
    """
    if kind == "inverse":
        return torch.reciprocal(sq_norm + _INVERSE_EPS)
    norm = torch.sqrt(sq_norm + 1e-12)
    return F.relu(margin - norm) ** 2


def _weights(labels, eta, dtype):
    """Deep SAD weighting: 1 for unlabelled rows, ``eta`` for labelled ones."""
    w = torch.ones(labels.shape[0], dtype=dtype, device=labels.device)
    return torch.where(labels != 0, torch.full_like(w, eta), w)


# ---------------------------------------------------------------------------
# Estimator
# ---------------------------------------------------------------------------


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
    norm : {"batch", "layer"} or None, default=None
        Optional normalisation after each hidden layer.
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
        term does not decide the ranking alone. (The issue calls it ``score``; that
        name would shadow the ``score`` method scikit-learn's checks probe.)
    eta : float, default=1.0
        Weight of labelled rows (+1 and -1) against unlabelled ones, as in
        Deep SAD.
    anomaly_batch_fraction : float, default=0.05
        Labelled anomalies are oversampled so that, in expectation, at least
        this share of every batch (and at least 2 rows of a full batch) are
        labelled anomalies. Each epoch then draws ``n_samples`` rows with
        replacement, with probabilities proportional to per-row weights
        (``sample_weights`` of the training engine). No effect without
        labelled anomalies or when they are already that frequent.
    adversarial : bool, default=False
        Add a GANomaly-style discriminator on reconstructions: it learns to
        tell rows from their reconstructions, and the networks also minimise
        the feature-matching loss between them. Not part of ESAD as far as
        its abstract and the reimplementation show (an extension).
    adversarial_weight : float, default=1.0
        Weight of the feature-matching loss when ``adversarial=True``.
    contamination : float, default=0.1
        Expected share of outliers; ``offset_`` is that quantile of the
        training scores. Must be in (0, 0.5].
    max_iter : int, default=100
        Number of training epochs.
    batch_size : int, default=128
    learning_rate_init : float, default=1e-3
        Adam learning rate, decayed along a cosine over ``max_iter`` epochs.
    weight_decay : float, default=1e-6
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows (with their labels) and
        stop when their loss has not improved by ``tol`` for
        ``n_iter_no_change`` epochs; the best weights are restored.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    tol : float, default=0.0
    device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when available, else the CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, sampling and the noise targets.
    verbose : int, default=0
        > 0 shows a progress bar with the running losses.

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
    offset_ : float
        Threshold on ``score_samples`` given by ``contamination``.
    loss_curve_ : list of float
        Mean training loss per epoch.
    n_iter_ : int
    best_loss_ : float
    validation_scores_ : list of float
        Only with ``early_stopping=True``.
    device_ : torch.device
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when X has string column names.

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

    _parameter_constraints = {
        **BaseSemiSupervisedDetector._parameter_constraints,
        "hidden_layer_sizes": [tuple, list, None],
        "latent_dim": [Interval(Integral, 1, None, closed="left"), None],
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
    def _build_networks(self, rng):
        hidden, latent = _auto_sizes(self.n_features_in_)
        if self.hidden_layer_sizes is not None:
            hidden = tuple(int(h) for h in self.hidden_layer_sizes)
        if self.latent_dim is not None:
            latent = int(self.latent_dim)
        self.hidden_layer_sizes_, self.latent_dim_ = hidden, latent
        self.network_ = _ESADNet(
            self.n_features_in_,
            hidden,
            latent,
            self.activation,
            self.norm,
            self.share_encoders,
        )
        if self.adversarial:
            self.discriminator_ = _Discriminator(
                self.n_features_in_, hidden, self.activation
            )
        elif hasattr(self, "discriminator_"):
            del self.discriminator_

    def _sample_weights(self, labels):
        """Oversampling weights so labelled anomalies fill their batch share."""
        anomalous = labels == -1
        m = int(anomalous.sum())
        n_other = labels.shape[0] - m
        share = max(float(self.anomaly_batch_fraction), 2.0 / self.batch_size)
        share = min(share, 0.5)
        if m == 0 or n_other == 0 or m / labels.shape[0] >= share:
            return None
        w_anomaly = share * n_other / ((1.0 - share) * m)
        w = torch.ones(labels.shape[0], dtype=torch.float64)
        w[anomalous.cpu()] = w_anomaly
        return w

    def _fit_networks(self, X, labels, rng):
        net = self.network_
        if labels is None:
            labels = torch.zeros(X.shape[0], dtype=torch.int64, device=X.device)
        self.n_labeled_anomalies_ = int((labels == -1).sum())
        train_idx, val_idx = self._split_validation(X.shape[0], rng)
        X_train, lab_train = X[train_idx], labels[train_idx]
        lo, hi = X_train.min(dim=0).values, X_train.max(dim=0).values

        def target(x):
            if self.anomaly_target == "identity":
                return x
            if self.anomaly_target == "invert":
                return lo + hi - x
            return torch.randn(
                x.shape, generator=rng.device, device=x.device, dtype=x.dtype
            )

        max_iter = self._epochs(X_train.shape[0])
        warmup = min(_WARMUP_EPOCHS, max_iter // 10)
        state = {"epoch": 0}

        def entropy_weight():
            if warmup == 0:
                return float(self.entropy_weight)
            ramp = (state["epoch"] - warmup + 1) / warmup
            return float(self.entropy_weight) * min(max(ramp, 0.0), 1.0)

        def losses(x, lab, x_target=None):
            z, x_hat, z_hat = net(x)
            anomalous = lab == -1
            rec_target = x
            if anomalous.any():
                t = target(x[anomalous]) if x_target is None else x_target
                rec_target = x.clone()
                rec_target[anomalous] = t
            rec = ((x_hat - rec_target) ** 2).mean(dim=1)
            sq = (z_hat**2).sum(dim=1)
            norm_term = sq
            if anomalous.any():
                margin = None
                if self.anomaly_norm_loss == "hinge":
                    others = sq[~anomalous].detach()
                    margin = (
                        torch.sqrt(torch.quantile(others, 0.95) + 1e-12)
                        if others.numel()
                        else torch.ones((), dtype=sq.dtype, device=sq.device)
                    )
                norm_term = torch.where(
                    anomalous,
                    anomaly_norm_loss(sq, self.anomaly_norm_loss, margin),
                    sq,
                )
            con = ((z_hat - z) ** 2).mean(dim=1)
            w = _weights(lab, float(self.eta), x.dtype)
            total = (
                w * (rec + entropy_weight() * norm_term)
                + float(self.consistency_weight) * con
            ).mean()
            parts = {"rec": rec.mean(), "norm": norm_term.mean(), "con": con.mean()}
            return total, parts, x_hat

        params = list(net.parameters())
        optimizer = self._optimizer(params)
        optimizers = [optimizer]
        disc = getattr(self, "discriminator_", None)
        if disc is not None:
            d_opt = self._optimizer(disc.parameters())
            optimizers.append(d_opt)
        schedulers = [
            torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=max_iter)
            for o in optimizers
        ]

        def step(idx):
            x, lab = X_train[idx], lab_train[idx]
            total, parts, x_hat = losses(x, lab)
            if disc is None:
                return {"loss": total, **parts}
            normal = lab != -1
            f_real, _ = disc(x[normal])
            f_fake, _ = disc(x_hat[normal])
            adv = ((f_real.detach() - f_fake) ** 2).mean()
            g_loss = total + float(self.adversarial_weight) * adv
            optimizer.zero_grad(set_to_none=True)
            if torch.isfinite(g_loss):
                g_loss.backward()
                optimizer.step()
            _, real_logit = disc(x[normal])
            _, fake_logit = disc(x_hat[normal].detach())
            d_loss = F.binary_cross_entropy_with_logits(
                real_logit, torch.ones_like(real_logit)
            ) + F.binary_cross_entropy_with_logits(
                fake_logit, torch.zeros_like(fake_logit)
            )
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            return {
                "loss": g_loss.detach(),
                **{k: v.detach() for k, v in parts.items()},
                "adv": adv.detach(),
                "disc": d_loss.detach(),
            }

        def end_of_epoch(history):
            state["epoch"] += 1
            for s in schedulers:
                s.step()
            return False

        val = None
        if val_idx is not None:
            X_val, lab_val = X[val_idx], labels[val_idx]
            n_val_anom = int((lab_val == -1).sum())
            val_target = target(X_val[lab_val == -1]) if n_val_anom else None

            def val():
                return losses(X_val, lab_val, val_target)[0]

        modules = [net] if disc is None else [net, disc]
        weights = self._sample_weights(lab_train)
        # Two phases, one record: warm-up + ramp of the entropy weight, then
        # constant weights. Only the second restores its best weights:
        # losses of the first are not comparable with later ones.
        first = min(2 * warmup, max_iter - 1)
        self._fit_phases(
            *(
                self._phase(
                    step,
                    n_samples=X_train.shape[0],
                    modules=modules,
                    optimizers=optimizers,
                    manual=disc is not None,
                    validation_loss=val,
                    sample_weights=weights,
                    on_epoch_end=[end_of_epoch],
                    max_iter=epochs,
                    restore_best=restore,
                )
                for epochs, restore in (
                    (first, False),
                    (max_iter - first, True),
                )
            ),
            rng=rng,
        )
        self._set_score_scales(X[labels != -1])

    @torch.no_grad()
    def _set_score_scales(self, X):
        """Medians of the two score terms over the rows not labelled -1."""
        self.reconstruction_scale_ = self.norm_scale_ = 1.0
        self.reconstruction_spread_ = self.norm_spread_ = 1.0
        rec, norm = (
            torch.from_numpy(t) for t in self._map_chunks(self._score_terms, X)
        )
        self.reconstruction_scale_ = max(float(rec.median()), 1e-12)
        self.norm_scale_ = max(float(norm.median()), 1e-12)
        q = torch.tensor([0.25, 0.75], dtype=torch.float64)
        r_q = torch.quantile(rec / self.reconstruction_scale_, q)
        n_q = torch.quantile(norm / self.norm_scale_, q)
        self.reconstruction_spread_ = max(float(r_q[1] - r_q[0]), 1e-12)
        self.norm_spread_ = max(float(n_q[1] - n_q[0]), 1e-12)

    def _score_terms(self, X):
        _, x_hat, z_hat = self.network_(X)
        rec = ((x_hat - X) ** 2).mean(dim=1)
        return rec, torch.linalg.vector_norm(z_hat, dim=1)

    def _score(self, X):
        rec, norm = self._score_terms(X)
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
