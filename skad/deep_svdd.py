"""Deep SVDD: Deep Support Vector Data Description (Ruff et al., ICML 2018).

A bias-free network maps the data to a space where normal rows sit close to a
fixed centre ``c`` (the mean of the initial embeddings); training minimises the
mean squared distance to ``c`` and the anomaly score is that squared distance.
Biases, bounded activations and a learnable centre are left out because each
would let the network map every row onto ``c`` (hypersphere collapse).
"""

from __future__ import annotations

from numbers import Integral

import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from skad import _engine, _nn
from skad.base import BaseDeepDetector

__all__ = ["DeepSVDD"]


class _SVDDNet(nn.Module):
    """Bias-free MLP encoder with a fixed centre buffer ``c``."""

    def __init__(self, n_features, hidden_layer_sizes, latent_dim, activation, norm):
        super().__init__()
        self.encoder = _nn.MLP(
            n_features,
            hidden_layer_sizes,
            latent_dim,
            activation=activation,
            norm=norm,
            bias=False,
        )
        self.register_buffer("center", torch.zeros(latent_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        """Squared Euclidean distance of each row's embedding to ``c``."""
        return ((self.encoder(x) - self.center) ** 2).sum(dim=1)


@torch.no_grad()
def _init_center(
    net: _SVDDNet, X: torch.Tensor, map_chunks, eps: float = 0.1
) -> None:
    """Set ``c`` to the mean initial embedding; coordinates within ``eps`` of
    zero are pushed to +/-``eps`` (Ruff et al.: a zero coordinate could be
    matched trivially by zero weights). ``map_chunks`` is the detector's
    chunked forward pass (:meth:`BaseDeepDetector._map_chunks`)."""
    net.eval()
    c = map_chunks(net, X, reduce="sum", as_numpy=False) / X.shape[0]
    c[(c.abs() < eps) & (c < 0)] = -eps
    c[(c.abs() < eps) & (c >= 0)] = eps
    net.center.copy_(c)


_SVDD_CONSTRAINTS = {
    "hidden_layer_sizes": [tuple, list],
    "latent_dim": [Interval(Integral, 1, None, closed="left")],
    "activation": [StrOptions({"relu", "leaky_relu", "elu", "gelu", "silu"})],
    "norm": [StrOptions({"batch", "layer"}), None],
}


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
    contamination : float, default=0.1
        Expected share of outliers; ``offset_`` is that quantile of the
        training scores. Must be in (0, 0.5].
    max_iter : int, default=50
        Number of training epochs.
    batch_size : int, default=128
    learning_rate_init : float, default=1e-3
        Adam learning rate.
    weight_decay : float, default=1e-6
        L2 penalty on the weights (the paper's regulariser).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows and stop when their mean
        distance has not improved by ``tol`` for ``n_iter_no_change`` epochs;
        the best weights are restored.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    tol : float, default=0.0
    device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when available, else the CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds the local generators of initialisation and shuffling.
    verbose : int, default=0
        > 0 shows a progress bar with the running loss.

    Attributes
    ----------
    network_ : torch.nn.Module
        The trained encoder; its buffer ``center`` holds ``c``.
    center_ : ndarray of shape (latent_dim,)
        The centre ``c``.
    offset_ : float
        Threshold on ``score_samples`` given by ``contamination``.
    loss_curve_ : list of float
        Mean training loss per epoch.
    n_iter_ : int
        Epochs run.
    best_loss_ : float
    validation_scores_ : list of float
        Validation loss per epoch (only with ``early_stopping=True``).
    device_ : torch.device
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when X has string column names.

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

    _parameter_constraints = {
        **BaseDeepDetector._parameter_constraints,
        **_SVDD_CONSTRAINTS,
    }

    def __init__(
        self,
        *,
        hidden_layer_sizes=(64,),
        latent_dim=32,
        activation="leaky_relu",
        norm=None,
        contamination=0.1,
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

    def _build_networks(self, rng):
        self.network_ = _SVDDNet(
            self.n_features_in_,
            tuple(self.hidden_layer_sizes),
            self.latent_dim,
            self.activation,
            self.norm,
        )

    def _fit_networks(self, X, labels, rng):
        net = self.network_
        _init_center(net, X, self._map_chunks)
        train_idx, val_idx = self._split_validation(X.shape[0], rng)
        X_train = X[train_idx]
        optimizer = _engine.make_optimizer(
            net.parameters(), self.learning_rate_init, self.weight_decay
        )

        def step(idx):
            return net.distance(X_train[idx]).mean()

        val = None
        if val_idx is not None:
            X_val = X[val_idx]

            def val():
                return net.distance(X_val).mean()

        history = self._train(
            step,
            n_samples=X_train.shape[0],
            modules=[net],
            optimizer=optimizer,
            rng=rng,
            validation_loss=val,
        )
        self._record(history)
        self.center_ = net.center.detach().cpu().double().numpy()

    def _score(self, X):
        return self.network_.distance(X)
