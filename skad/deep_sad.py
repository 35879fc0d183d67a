"""Deep SAD: Deep Semi-supervised Anomaly Detection (Ruff et al., ICLR 2020).

Deep SVDD with a few labels: :class:`DeepSAD` is :class:`~skad.DeepSVDD`
(network, checks and score inherited) trained with Deep SAD's loss; the
network, its centre ``c`` and the loss are the shared hypersphere pieces of
:mod:`skad._hypersphere`. Unlabelled rows
and labelled normal rows are pulled towards ``c``; labelled anomalies are
pushed away through the inverse of their squared distance::

    loss_i = ||phi(x_i) - c||^2                        if label_i == 0
    loss_i = eta * (||phi(x_i) - c||^2 + eps) ** label_i   if label_i in {+1, -1}

so a labelled anomaly (label -1) contributes ``eta / (d^2 + eps)``, which
``eps`` keeps finite (at most ``eta / eps``). The anomaly score is the squared
distance to ``c``, as in Deep SVDD.
"""

from __future__ import annotations

from numbers import Real

import torch

from skad._hypersphere import HYPERSPHERE_CONSTRAINTS, deep_sad_loss, init_center
from skad._validation import Interval
from skad.base import BaseSemiSupervisedDetector
from skad.deep_svdd import DeepSVDD

__all__ = ["DeepSAD"]


class DeepSAD(BaseSemiSupervisedDetector, DeepSVDD):
    """Deep Semi-supervised Anomaly Detection (Deep SAD).

    Deep SVDD's bias-free encoder and fixed centre, trained with Deep SAD's
    labelled terms (Ruff et al., "Deep Semi-Supervised Anomaly Detection",
    ICLR 2020): unlabelled and labelled-normal rows are pulled towards the
    centre, labelled anomalies are pushed away through an inverse squared
    distance weighted by ``eta``. The anomaly score is the squared distance to
    the centre. Supports the semi-supervised setting
    (``fit(X, labels=labels)`` with +1 labelled normal, 0 unlabelled, -1
    labelled anomaly) and, with ``labels=None``, reduces to Deep SVDD
    (unsupervised or one-class).

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(64,)
        Widths of the hidden layers of the encoder.
    latent_dim : int, default=32
        Width of the output space where the centre lives.
    activation : {"leaky_relu", "relu", "elu", "gelu", "silu"}, default="leaky_relu"
        Hidden activation.
    norm : {"batch", "layer"} or None, default=None
        Optional normalisation after each hidden layer (without affine shift).
    eta : float, default=1.0
        Weight of the labelled rows' terms against the unlabelled ones (the
        paper's eta; > 1 emphasises the labels).
    {contamination}
    {train_contamination}
    {max_iter}
    {batch_size}
    {learning_rate_init}
    {weight_decay}
    {early_stopping}
        The held-out rows keep their labels.
    {validation_fraction}
    {n_iter_no_change}
    {tol}
    {device}
    {random_state}
    {verbose}

    Attributes
    ----------
    network_ : torch.nn.Module
        The trained encoder (Deep SVDD's network); its buffer ``center``
        holds ``c``.
    center_ : ndarray of shape (latent_dim,)
        The centre ``c``: the mean initial embedding of the rows not labelled
        anomalous.
    n_labeled_anomalies_ : int
        Rows labelled -1 in the training labels.
    {fitted_attributes}

    See Also
    --------
    skad.DeepSVDD : The unsupervised model Deep SAD extends.
    skad.ESAD : Encoder-decoder-encoder semi-supervised detector.

    Notes
    -----
    Batches are drawn uniformly, as in the reference implementation: labelled
    anomalies are not oversampled (compare :class:`skad.ESAD`). The paper
    initialises the encoder from a pretrained autoencoder; skad reuses Deep
    SVDD's network, which starts from a random initialisation.

    Examples
    --------
    >>> import numpy as np
    >>> from skad import DeepSAD
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(size=(200, 4)), rng.normal(5, 1, size=(5, 4))])
    >>> labels = np.r_[np.zeros(200, int), -np.ones(5, int)]
    >>> det = DeepSAD(max_iter=2, device="cpu", random_state=0)
    >>> det = det.fit(X, labels=labels)
    >>> det.predict([[0.0, 0.0, 0.0, 0.0], [8.0, 8.0, 8.0, 8.0]])
    array([ 1, -1])
    """

    _parameter_constraints = {
        **BaseSemiSupervisedDetector._parameter_constraints,
        **HYPERSPHERE_CONSTRAINTS,
        "eta": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        *,
        hidden_layer_sizes=(64,),
        latent_dim=32,
        activation="leaky_relu",
        norm=None,
        eta=1.0,
        contamination=0.1,
        train_contamination="auto",
        max_iter=50,
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
        self.eta = eta
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

    def _fit_networks(self, X, labels, rng):
        net = self.network_
        if labels is None:
            labels = torch.zeros(X.shape[0], dtype=torch.int64, device=X.device)
        self.n_labeled_anomalies_ = int((labels == -1).sum())
        # the centre comes from the rows not known to be anomalous
        init_center(net, X[labels != -1], self._map_chunks)
        train_idx, val_idx = self._split_validation(X.shape[0], rng)
        X_train, lab_train = X[train_idx], labels[train_idx]
        eta = float(self.eta)

        def step(idx):
            return deep_sad_loss(net.distance(X_train[idx]), lab_train[idx], eta)

        val = None
        if val_idx is not None:
            X_val, lab_val = X[val_idx], labels[val_idx]

            def val():
                return deep_sad_loss(net.distance(X_val), lab_val, eta).mean()

        self._fit_phases(
            self._phase(
                step,
                n_samples=X_train.shape[0],
                modules=[net],
                optimizers=[self._optimizer(net.parameters())],
                validation_loss=val,
            ),
            rng=rng,
        )
        self.center_ = net.center.detach().cpu().double().numpy()
