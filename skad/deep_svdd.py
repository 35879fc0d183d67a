"""Deep SVDD: Deep Support Vector Data Description (Ruff et al., ICML 2018).

A bias-free network maps the data to a space where normal rows sit close to a
fixed centre ``c`` (the mean of the initial embeddings); training minimises the
mean squared distance to ``c`` and the anomaly score is that squared distance.
The network, the centre initialisation and the loss live in
:mod:`skad._hypersphere`, shared with DeepSAD, ESAD and AnoMem.
"""

from __future__ import annotations

from skad._hypersphere import (
    HYPERSPHERE_CONSTRAINTS,
    SVDDNet,
    check_batch_norm,
    init_center,
)
from skad.base import BaseDeepDetector

__all__ = ["DeepSVDD"]


class DeepSVDD(BaseDeepDetector):
    """Deep Support Vector Data Description (one-class Deep SVDD).

    Maps rows with a bias-free MLP to a latent space where the training data
    is pulled towards a fixed centre; the anomaly score is the squared
    distance to that centre (Ruff et al., "Deep One-Class Classification",
    ICML 2018). Supports the unsupervised (contaminated training data) and
    one-class (normal-only training data) settings.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(64,)
        Widths of the hidden layers of the encoder.
    latent_dim : int, default=32
        Width of the output space where the centre lives.
    activation : {"leaky_relu", "relu", "elu", "gelu", "silu"}, default="leaky_relu"
        Hidden activation (unbounded, as Deep SVDD requires).
    norm : {"batch", "layer"} or None, default=None
        Optional normalisation after each hidden layer (without affine shift,
        keeping the network bias-free).
    {contamination}
    {train_contamination}
    {max_iter}
    {batch_size}
    {learning_rate_init}
    {weight_decay}
        The paper's regulariser.
    {early_stopping}
    {validation_fraction}
    {n_iter_no_change}
    {tol}
    {device}
    {random_state}
    {verbose}

    Attributes
    ----------
    network_ : torch.nn.Module
        The trained encoder; its buffer ``center`` holds ``c``.
    center_ : ndarray of shape (latent_dim,)
        The centre ``c``.
    {fitted_attributes}

    See Also
    --------
    skad.DeepSAD : Deep SVDD with a few labels.
    sklearn.ensemble.IsolationForest : Same interface, tree-based.

    Examples
    --------
    >>> import numpy as np
    >>> from skad import DeepSVDD
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4))
    >>> det = DeepSVDD(max_iter=2, device="cpu", random_state=0).fit(X)
    >>> det.predict([[0.0, 0.0, 0.0, 0.0], [8.0, 8.0, 8.0, 8.0]])
    array([ 1, -1])
    """

    #: ``train_contamination="auto"`` (chosen on validation splits).
    _auto_train_contamination = 0.2

    _parameter_constraints = {
        **BaseDeepDetector._parameter_constraints,
        **HYPERSPHERE_CONSTRAINTS,
    }

    def __init__(
        self,
        *,
        hidden_layer_sizes=(64,),
        latent_dim=32,
        activation="leaky_relu",
        norm=None,
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

    def _check_params(self):
        check_batch_norm(self.norm, self.batch_size)

    def _build_networks(self, rng):
        self.network_ = SVDDNet(
            self.n_features_in_,
            tuple(self.hidden_layer_sizes),
            self.latent_dim,
            self.activation,
            self.norm,
        )

    def _fit_networks(self, X, labels, rng):
        net = self.network_
        init_center(net, X, self._map_chunks)
        train_idx, val_idx = self._split_validation(X.shape[0], rng)
        X_train = X[train_idx]
        X_val = None if val_idx is None else X[val_idx]
        self._fit_phases(
            self._phase(
                lambda idx: net.distance(X_train[idx]),
                n_samples=X_train.shape[0],
                modules=[net],
                optimizers=[self._optimizer(net.parameters())],
                validation_loss=(
                    None if X_val is None else lambda: net.distance(X_val).mean()
                ),
            ),
            rng=rng,
        )
        self.center_ = net.center.detach().cpu().double().numpy()

    def _score(self, X):
        return self.network_.distance(X)
