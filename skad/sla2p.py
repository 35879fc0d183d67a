"""SLA2P: self-supervised anomaly detection with adversarial perturbation.

Wang et al., "Self-supervision Meets Adversarial Perturbation: A Novel
Framework for Anomaly Detection", CIKM 2022 (arXiv 2111.12896).

Every row ``x`` is mapped by ``K`` fixed Gaussian random projections
``W_t`` (``n_features x projection_dim``); the index ``t`` of the projection
is a pseudo class. A small classifier learns to tell, from ``x W_t`` alone,
which projection produced it, and training stops as soon as the running
training accuracy passes ``acc_threshold`` (normal rows are learnt first).
At scoring time each transformed row takes one gradient step that lowers
the softmax of its predicted class; the anomaly score is the Brier-type
error between the softmax on the perturbed vector and the true projection
id, averaged over the ``K`` projections.

Implementation notes:

* The ``n x K`` transformed training set is never built: a training step
  draws a few projections and a few rows and projects them on the fly.
* Projections are not stored. They are generated from ``projection_seed_``
  by a counter-based hash (:func:`gaussian_projections`) directly on the
  device, so the same seed gives the same matrices on the CPU and on a GPU.
  When ``K * n_features * projection_dim`` is small the whole tensor is kept
  in a private cache; otherwise it is regenerated block by block and at
  most ``_PROJECTION_BUDGET`` entries exist at any time.
"""

from __future__ import annotations

import math
import weakref
from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn
from torch.nn import functional as F

from skad import _engine, _nn
from skad.base import BaseDeepDetector

__all__ = ["SLA2P", "gaussian_projections"]

#: Most projection-matrix entries held in memory at once (64 MB in float32).
#: Above it the projections are regenerated per block instead of cached.
_PROJECTION_BUDGET = 2**24

#: Entries hashed per generation pass (bounds the integer temporaries).
_GENERATION_CHUNK = 2**20

#: Most activations (pairs x widest layer) per validation forward pass.
_SCORE_ACTIVATIONS = 2**21

#: (row, projection) pairs per scoring block.
_SCORE_PAIRS = 1024

#: Projections drawn per training step; the step's pairs are the grid of
#: ``batch_size // _PROJECTIONS_PER_STEP`` rows times these projections.
_PROJECTIONS_PER_STEP = 8

#: Rows per engine "epoch" (the accuracy threshold is checked after each).
_ROWS_PER_EPOCH = 1024

_MASK32 = 0xFFFFFFFF

#: Cached projection tensors per fitted estimator. Kept outside the estimator
#: so that pickles, ``skad.save`` files and deep copies never carry them.
_PROJECTION_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# ---------------------------------------------------------------------------
# Seeded Gaussian projections, identical on every device
# ---------------------------------------------------------------------------


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``(x * c) mod 2**32`` for int64 ``x`` in [0, 2**32) without overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _MASK32


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixer ("lowbias32") on int64 tensors in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _hash_int(value: int) -> int:
    return int(_hash32(torch.tensor([value & _MASK32], dtype=torch.int64))[0])


def gaussian_projections(
    seed: int,
    projections,
    n_features: int,
    projection_dim: int,
    *,
    features: tuple[int, int] | None = None,
    device="cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal projection matrices generated from ``seed``.

    Entry ``(f, c)`` of matrix ``t`` depends only on ``(seed, t, f, c)``: a
    counter-based hash gives two uniforms per pair of entries and a
    Box-Muller transform (in float64) turns them into normals. Any block of
    matrices or of their rows can thus be regenerated on its own, on any
    device, with the same values (up to the last bit of ``log``/``cos``).

    Parameters
    ----------
    seed : int
    projections : sequence of int or 1-D int tensor
        Indices ``t`` of the matrices to generate.
    n_features, projection_dim : int
        Shape ``(D, d)`` of one full matrix.
    features : (start, stop), optional
        Generate only rows ``start:stop`` of each matrix.
    device, dtype
        Where and in which float type the result lives.

    Returns
    -------
    W : tensor of shape (len(projections), stop - start, projection_dim)
    """
    device = torch.device(device)
    ts = torch.as_tensor(projections, dtype=torch.int64).reshape(-1).tolist()
    f0, f1 = (0, n_features) if features is None else features
    d = projection_dim
    per = (f1 - f0) * d
    out = torch.empty((len(ts), per), dtype=dtype, device=device)
    seed_key = _hash_int(seed)
    keys = torch.tensor(
        [_hash_int((seed_key + _hash_int(t)) & _MASK32) for t in ts],
        dtype=torch.int64,
        device=device,
    )[:, None]
    e0, e1 = f0 * d, f1 * d  # absolute entries of the flattened (D, d) matrix
    step = max(2, _GENERATION_CHUNK // max(1, len(ts)) // 2 * 2)
    for a in range(e0, e1, step):
        b = min(a + step, e1)
        # entries (2m, 2m + 1) share one pair of uniforms
        m = torch.arange(a // 2, (b + 1) // 2, dtype=torch.int64, device=device)
        u = _hash32(_hash32((2 * m) & _MASK32)[None, :] ^ keys).to(torch.float64)
        v = _hash32(_hash32((2 * m + 1) & _MASK32)[None, :] ^ keys).to(torch.float64)
        r = torch.sqrt(-2.0 * torch.log((u + 0.5) / 2.0**32))
        theta = (2.0 * math.pi / 2.0**32) * (v + 0.5)
        z = torch.stack([r * torch.cos(theta), r * torch.sin(theta)], 2)
        lo = a - 2 * (a // 2)
        out[:, a - e0 : b - e0] = z.reshape(len(ts), -1)[:, lo : lo + b - a].to(dtype)
    return out.reshape(len(ts), f1 - f0, d)


# ---------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------


class _ProjectionClassifier(nn.Module):
    """MLP (Linear-BatchNorm-LeakyReLU blocks) that predicts the projection id.

    As in the official code: ``d -> 2d -> 4d -> K`` by default.
    """

    def __init__(self, projection_dim, hidden_layer_sizes, n_projections):
        super().__init__()
        self.mlp = _nn.MLP(
            projection_dim,
            hidden_layer_sizes,
            n_projections,
            activation="leaky_relu",
            norm="batch",
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.mlp(z)


def _fold_batchnorm(
    mlp: nn.Sequential,
) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    """The eval-mode classifier as affine layers ``(weight, bias, slope)``.

    Every BatchNorm (running statistics) is folded into the Linear before it:
    ``BN(h W^T + b) = h (s W)^T + (b - mean) s + beta`` with
    ``s = gamma / sqrt(var + eps)``. ``slope`` is the negative slope of the
    LeakyReLU after the layer (1.0, the identity, after the output layer).
    Weights are ``(out, in)`` like ``nn.Linear.weight``.
    """
    layers: list[list] = []
    for module in mlp:
        if isinstance(module, nn.Linear):
            bias = module.bias
            if bias is None:
                bias = module.weight.new_zeros(module.out_features)
            layers.append([module.weight, bias, 1.0])
        elif isinstance(module, nn.BatchNorm1d) and layers:
            scale = torch.rsqrt(module.running_var + module.eps)
            if module.weight is not None:
                scale = scale * module.weight
            weight, bias, _ = layers[-1]
            bias = (bias - module.running_mean) * scale
            if module.bias is not None:
                bias = bias + module.bias
            layers[-1][:2] = [weight * scale[:, None], bias]
        elif isinstance(module, nn.LeakyReLU) and layers:
            layers[-1][2] = float(module.negative_slope)
        else:
            raise TypeError(f"cannot fold {type(module).__name__} into a Linear layer")
    return [tuple(layer) for layer in layers]


_leaky_relu_backward = torch.ops.aten.leaky_relu_backward


def _leaky_forward(layers, pre0: torch.Tensor) -> list[torch.Tensor]:
    """Pre-activations of every layer from the first one (the last = logits)."""
    pres = [pre0]
    for (_, _, slope), (weight, bias, _) in zip(layers[:-1], layers[1:], strict=True):
        pres.append(torch.addmm(bias, F.leaky_relu(pres[-1], slope), weight.t()))
    return pres


def _logit_gradient(layers, pres: list[torch.Tensor]) -> torch.Tensor:
    """Gradient, with respect to the first layer's pre-activations, of the
    summed cross-entropy at the predicted class, per row.

    ``d CE / d logits = softmax - onehot(argmax)``, then back through the
    Linear layers and the LeakyReLU slopes (``1`` where the pre-activation
    is positive, ``slope`` elsewhere: autograd's own LeakyReLU backward
    kernel, an ATen op that traces and exports like any other; it is 20x
    faster on a CPU than the equivalent ``torch.where``).
    """
    logits = pres[-1]
    pred = logits.argmax(dim=1, keepdim=True)
    # softmax - onehot(pred), without building the one-hot matrix
    minus_one = torch.full_like(pred, -1, dtype=logits.dtype)
    g = torch.softmax(logits, dim=1).scatter_add(1, pred, minus_one)
    for i in range(len(layers) - 1, 0, -1):
        g = g @ layers[i][0]
        g = _leaky_relu_backward(g, pres[i - 1], layers[i - 1][2], False)
    return g


def _l2_normalize(X: torch.Tensor) -> torch.Tensor:
    return X / X.norm(dim=1, keepdim=True).clamp_min(1e-12)


_SLA2P_CONSTRAINTS = {
    "n_projections": [Interval(Integral, 2, None, closed="left")],
    "projection_dim": [Interval(Integral, 1, None, closed="left")],
    "hidden_layer_sizes": [tuple, list, None],
    "acc_threshold": [Interval(Real, 0, 1, closed="right")],
    "epsilon": [Interval(Real, 0, None, closed="left")],
    "normalize": ["boolean", StrOptions({"sphere"})],
    "perturbation": ["boolean"],
}


class SLA2P(BaseDeepDetector):
    """SLA2P: random-projection pseudo classes with adversarial perturbation.

    Each row (optionally L2-normalised) is transformed by ``n_projections``
    fixed Gaussian random projections; a classifier learns which projection
    produced each transformed vector, with training stopped once its running
    accuracy passes ``acc_threshold``. A row is scored by taking one gradient
    step on each transformed vector that lowers the softmax of its predicted
    class and measuring, with a Brier-type error, how far the classifier's
    softmax on the perturbed vector then is from the true projection id;
    the errors are averaged over the projections. Normal rows are classified
    confidently and robustly, anomalies are not (Wang et al., CIKM 2022).
    Supports the unsupervised (contaminated training data) and one-class
    settings; scoring is inductive (any rows), whereas the paper scores its
    training set.

    Parameters
    ----------
    n_projections : int, default=64
        Number ``K`` of random projections (pseudo classes). The paper uses
        256 (64 on KDDCUP99). 64 keeps the scoring cost, ``K`` forward and
        backward passes per row, affordable on a CPU for feature vectors of
        any width.
    projection_dim : int, default=64
        Output width ``d`` of every projection. The paper uses 256 (128 on
        Reuters and KDDCUP99) on 2048-d image embeddings; 64 is enough to
        tell 64 projections apart for tabular rows and for 512-1024-d
        embeddings, and keeps ``K * n_features * d`` small enough to cache
        the projections for up to about 4,000 features.
    hidden_layer_sizes : tuple of int, default=None
        Hidden widths of the classifier; None means ``(2 d, 4 d)`` as in the
        official code. Each hidden layer is Linear, BatchNorm, LeakyReLU.
    acc_threshold : float, default=0.6
        Training stops as soon as the running (cumulative since the start)
        training accuracy exceeds this value. It deliberately under-fits:
        normal rows are learnt first. 0.6 is the paper's value for images
        and tabular data; higher values fit the anomalies as well and hurt.
    epsilon : float, default=1.0
        Size of the scoring-time gradient step, per sample, in raw gradient
        units: ``z <- z + epsilon * grad_z CE(f(z), argmax f(z))``. The
        official code takes the gradient of the *batch-mean* cross-entropy
        (batch 128), so its per-sample step is ``epsilon_code / 128`` and
        depends on the batch size (larger for the last, partial batch); here
        each row gets its own gradient and the step does not depend on the
        batch. The code's 1000 thus corresponds to about 7.8 here. On
        L2-normalised rows the median gradient norm is about 0.8 against a
        transformed-vector norm of about 8, so 1.0 moves a vector by about
        10% of its norm; much larger steps can reverse the ranking.
    normalize : bool or "sphere", default="sphere"
        Row normalisation before projecting. True: L2-normalise every row
        (the official code, for images and tabular data). It discards the
        row norm, often the main anomaly signal of standardised data (far
        rows), and made the classifier reach ``acc_threshold`` slowly on
        wide embeddings. "sphere": append the median training-row norm
        ``norm_scale_`` as an extra coordinate, then L2-normalise, a lift of
        the rows onto a sphere in one more dimension that keeps both the
        direction and the norm while the classifier's inputs stay bounded.
        False: raw rows. Put a ``StandardScaler`` in front for tabular data.
    perturbation : bool, default=True
        Take the adversarial step when scoring. False gives the paper's
        ablation without perturbation (the ``sla`` variant of the code).
    contamination : float, default=0.1
        Expected share of outliers; ``offset_`` is that quantile of the
        training scores. Must be in (0, 0.5].
    max_iter : int, default=30
        Cap on training epochs when ``acc_threshold`` is not reached. An
        epoch here sees ``min(n_samples, 1024)`` rows, each paired with
        8 projections drawn for its mini-batch.
    batch_size : int, default=128
        Number of (row, projection) pairs per step, as in the paper: a step
        takes ``batch_size // 8`` rows times 8 random projections.
    learning_rate_init : float, default=1e-3
        Adam learning rate (Adam's ``eps`` is 1e-7 as in the official code).
    weight_decay : float, default=5e-4
        L2 penalty of Adam, as in the official code.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows and also stop when their
        cross-entropy over all projections stops improving; the best weights
        are restored.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    tol : float, default=1e-4
    device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when available, else the CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds the projections, the initialisation and the sampling.
    verbose : int, default=0
        > 0 shows a progress bar with the running loss and accuracy.

    Attributes
    ----------
    classifier_ : torch.nn.Module
        The trained projection classifier (in eval mode).
    projection_seed_ : int
        Seed of the projections (see :func:`gaussian_projections`); the
        matrices themselves are never stored.
    train_accuracy_ : float
        Running training accuracy when training stopped.
    norm_scale_ : float
        Median training-row norm, the extra coordinate of
        ``normalize="sphere"`` (only then).
    offset_ : float
        Threshold on ``score_samples`` given by ``contamination``.
    loss_curve_ : list of float
        Mean training cross-entropy per epoch.
    accuracy_curve_ : list of float
        Mean training accuracy per epoch.
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
    skad.DeepSVDD : One-class deep detector with a learnt centre.
    sklearn.ensemble.IsolationForest : Same interface, tree-based.

    Notes
    -----
    Scoring costs ``n_projections`` forward and backward passes of the
    classifier per row (one fewer forward pass with ``perturbation=False``).

    Examples
    --------
    >>> import numpy as np
    >>> from skad import SLA2P
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4)) @ rng.normal(size=(4, 8))
    >>> det = SLA2P(max_iter=2, device="cpu", random_state=0).fit(X)
    >>> det.score_samples(X[:3]).shape
    (3,)
    """

    _parameter_constraints = {
        **BaseDeepDetector._parameter_constraints,
        **_SLA2P_CONSTRAINTS,
    }

    _score_needs_grad = False

    def __init__(
        self,
        *,
        n_projections=64,
        projection_dim=64,
        hidden_layer_sizes=None,
        acc_threshold=0.6,
        epsilon=1.0,
        normalize="sphere",
        perturbation=True,
        contamination=0.1,
        max_iter=30,
        batch_size=128,
        learning_rate_init=1e-3,
        weight_decay=5e-4,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.n_projections = n_projections
        self.projection_dim = projection_dim
        self.hidden_layer_sizes = hidden_layer_sizes
        self.acc_threshold = acc_threshold
        self.epsilon = epsilon
        self.normalize = normalize
        self.perturbation = perturbation
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

    # ------------------------------------------------------------ projections
    def _hidden(self) -> tuple[int, ...]:
        d = self.projection_dim
        if self.hidden_layer_sizes is None:
            return (2 * d, 4 * d)
        return tuple(int(h) for h in self.hidden_layer_sizes)

    def _n_inputs(self) -> int:
        """Width of the rows that are projected (one more with "sphere")."""
        return self.n_features_in_ + (1 if self.normalize == "sphere" else 0)

    def _prepare(self, X: torch.Tensor) -> torch.Tensor:
        """Row normalisation before the projections (see ``normalize``)."""
        if self.normalize == "sphere":
            c = X.new_full((X.shape[0], 1), self.norm_scale_)
            X = torch.cat([X, c], dim=1)
        if self.normalize:
            X = _l2_normalize(X)
        return X

    def _cacheable(self) -> bool:
        K, D, d = self.n_projections, self._n_inputs(), self.projection_dim
        return K * D * d <= _PROJECTION_BUDGET

    def _all_projections(self, device, dtype) -> torch.Tensor | None:
        """The full (K, D, d) tensor when it fits the budget (cached)."""
        if not self._cacheable():
            return None
        key = (self.projection_seed_, self._n_inputs(), str(device), dtype)
        cache = _PROJECTION_CACHE.get(self)
        if cache is None or cache[0] != key:
            # a normal tensor even when the first scoring runs under
            # torch.inference_mode, so that later scoring with autograd on
            # (input attributions) can use the cache
            with torch.inference_mode(False):
                W = gaussian_projections(
                    self.projection_seed_,
                    range(self.n_projections),
                    self._n_inputs(),
                    self.projection_dim,
                    device=device,
                    dtype=dtype,
                )
            _PROJECTION_CACHE[self] = cache = (key, W)
        return cache[1]

    def _project(self, X: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        """``X @ W_t`` for every ``t`` in ``ts``: shape (n, len(ts), d).

        Uses the cached projections when they fit the budget, otherwise
        regenerates them in blocks of at most ``_PROJECTION_BUDGET`` entries
        (whole matrices, or row blocks of one matrix when one is too big).
        """
        W = self._all_projections(X.device, X.dtype)
        if W is not None:
            return torch.einsum("nf,kfd->nkd", X, W[ts])
        D, d = self._n_inputs(), self.projection_dim
        n, k = X.shape[0], ts.shape[0]
        out = X.new_zeros((n, k, d))
        if D * d <= _PROJECTION_BUDGET:
            kb, fb = max(1, _PROJECTION_BUDGET // (D * d)), D
        else:
            kb, fb = 1, max(1, _PROJECTION_BUDGET // d)
        for k0 in range(0, k, kb):
            for f0 in range(0, D, fb):
                f1 = min(D, f0 + fb)
                W = gaussian_projections(
                    self.projection_seed_,
                    ts[k0 : k0 + kb],
                    D,
                    d,
                    features=(f0, f1),
                    device=X.device,
                    dtype=X.dtype,
                )
                out[:, k0 : k0 + kb] += torch.einsum("nf,kfd->nkd", X[:, f0:f1], W)
        return out

    # ------------------------------------------------------------ hooks
    def _build_networks(self, rng):
        self.classifier_ = _ProjectionClassifier(
            self.projection_dim, self._hidden(), self.n_projections
        )

    def _fit_networks(self, X, labels, rng):
        _PROJECTION_CACHE.pop(self, None)
        self.projection_seed_ = int(rng.numpy.integers(0, 2**31 - 1))
        if self.normalize == "sphere":
            # median row norm: robust to the anomalies in the training rows
            norms = X.double().norm(dim=1)
            self.norm_scale_ = max(float(norms.median()), 1e-12)
        elif hasattr(self, "norm_scale_"):
            del self.norm_scale_
        X = self._prepare(X)
        K = self.n_projections
        m = min(K, _PROJECTIONS_PER_STEP)
        rows_per_step = max(1, self.batch_size // m)
        train_idx, val_idx = self._split_validation(X.shape[0], rng)
        X_train = X[train_idx]
        n = X_train.shape[0]
        net = self.classifier_
        optimizer = _engine.make_optimizer(
            net.parameters(), self.learning_rate_init, self.weight_decay, eps=1e-7
        )
        device = X.device

        # Rows come from a stream of random permutations of all training
        # rows; the engine's indices only set the size of each step, so that
        # an engine epoch (and the threshold check) is at most 1024 rows.
        stream = {"perm": torch.empty(0, dtype=torch.int64), "pos": 0}

        def next_rows(count: int) -> torch.Tensor:
            parts = []
            while count > 0:
                if stream["pos"] >= stream["perm"].shape[0]:
                    stream["perm"] = torch.randperm(n, generator=rng.cpu)
                    stream["pos"] = 0
                take = stream["perm"][stream["pos"] : stream["pos"] + count]
                stream["pos"] += take.shape[0]
                count -= take.shape[0]
                parts.append(take)
            return torch.cat(parts).to(device)

        def step(idx):
            rows = next_rows(int(idx.shape[0]))
            ts = torch.randperm(K, generator=rng.cpu)[:m].to(device)
            z = self._project(X_train[rows], ts).reshape(-1, self.projection_dim)
            target = ts.repeat(rows.shape[0])
            logits = net(z)
            loss = F.cross_entropy(logits, target)
            acc = (logits.detach().argmax(1) == target).to(torch.float32).mean()
            return {"loss": loss, "accuracy": acc}

        def stop_when(history) -> bool:
            accs = history.extra.get("accuracy", [])
            return bool(accs) and sum(accs) / len(accs) > self.acc_threshold

        val = None
        if val_idx is not None:
            X_val = X[val_idx]

            def val():
                return self._mean_cross_entropy(X_val)

        with _nn.dropout_generator(rng.device):
            history = _engine.train_epochs(
                step,
                n_samples=min(n, _ROWS_PER_EPOCH),
                modules=[net],
                optimizer=optimizer,
                max_iter=self.max_iter,
                batch_size=rows_per_step,
                rng=rng,
                device=device,
                validation_loss=val,
                n_iter_no_change=self.n_iter_no_change,
                tol=self.tol,
                verbose=self.verbose,
                desc=type(self).__name__,
                learning_rate=self.learning_rate_init,
                stop_when=stop_when,
            )
        self._record(history)
        accs = history.extra.get("accuracy", [0.0])
        self.accuracy_curve_ = list(accs)
        self.train_accuracy_ = float(sum(accs) / len(accs))
        _PROJECTION_CACHE.pop(self, None)  # training copy (float32)

    def _mean_cross_entropy(self, X: torch.Tensor) -> float:
        total = 0.0
        for _, z, target in self._pairs(X):
            ce = F.cross_entropy(self.classifier_(z), target, reduction="sum")
            total += float(ce)
        return total / (X.shape[0] * self.n_projections)

    def _pairs(self, X: torch.Tensor):
        """Yield ``(ts, z, target)`` for blocks of projections: ``z`` holds the
        transformed rows ``X W_t`` of the block, row-major (row, projection)."""
        K, d = self.n_projections, self.projection_dim
        width = max([d, K, *self._hidden()])
        kb = max(1, min(K, _SCORE_ACTIVATIONS // max(1, X.shape[0] * width)))
        for k0 in range(0, K, kb):
            ts = torch.arange(k0, min(K, k0 + kb), device=X.device)
            z = self._project(X, ts).reshape(-1, d)
            yield ts, z, ts.repeat(X.shape[0])

    def _folded_projections(self, weight: torch.Tensor) -> torch.Tensor | None:
        """``W_t`` times the first (folded) layer for every projection ``t``.

        A ``(D, K * h)`` matrix ``Q`` with ``x Q[:, t h:(t+1) h] = (x W_t) A``,
        ``A = weight^T``: the first layer's pre-activations of all ``K``
        transformed vectors in one product, ``D h`` instead of
        ``D d + d h`` multiply-adds per pair. None when that is not fewer
        (``D`` at least ``d h / (h - d)``) or the projections are not cached.
        """
        K, D, d = self.n_projections, self._n_inputs(), self.projection_dim
        h = weight.shape[0]
        if D * h >= D * d + d * h or K * D * h > _PROJECTION_BUDGET:
            return None
        W = self._all_projections(weight.device, weight.dtype)
        if W is None:
            return None
        return (W @ weight.t()).transpose(0, 1).reshape(D, K * h)

    def _score_block(self, n: int) -> int:
        """Projections per scoring block (``n`` rows times them = pairs)."""
        return max(1, min(self.n_projections, _SCORE_PAIRS // max(1, n)))

    def _score(self, X):
        """Mean Brier error over the projections, without autograd.

        The classifier runs as plain affine maps (BatchNorm folded into the
        Linear layers, eval mode) and the perturbation's input gradient is
        computed analytically (:func:`_logit_gradient`), so scoring needs no
        autograd, runs under ``torch.inference_mode`` and traces as one
        static graph. ``z~ = z + eps g_z`` enters the next layer as
        ``a~ = a + eps g_z A`` (the first forward's pre-activations reused).
        """
        net = self.classifier_
        net.eval()  # BatchNorm uses its running statistics: rows independent
        layers = _fold_batchnorm(net.mlp)
        weight0, bias0, _ = layers[0]
        h = weight0.shape[0]
        X = self._prepare(X)
        n = X.shape[0]
        K = self.n_projections
        Q = self._folded_projections(weight0)
        eye = torch.eye(K, dtype=X.dtype, device=X.device)
        perturb = bool(self.perturbation) and self.epsilon > 0
        # a~ = a + eps g_a (A^T A) when the Gram matrix is the cheaper product
        gram = weight0 @ weight0.t() if perturb and h < 2 * weight0.shape[1] else None
        kb = self._score_block(n)
        total = X.new_zeros(n)
        for k0 in range(0, K, kb):
            k1 = min(K, k0 + kb)
            m = k1 - k0
            if Q is not None:
                pre0 = torch.addmm(bias0.repeat(m), X, Q[:, k0 * h : k1 * h])
                pre0 = pre0.view(n * m, h)  # row-major (row, projection)
            else:
                ts = torch.arange(k0, k1, device=X.device)
                z = self._project(X, ts).reshape(n * m, -1)
                pre0 = torch.addmm(bias0, z, weight0.t())
            pres = _leaky_forward(layers, pre0)
            if perturb:
                g = _logit_gradient(layers, pres)
                if gram is not None:
                    pre0 = torch.addmm(pre0, g, gram, alpha=self.epsilon)
                else:
                    pre0 = torch.addmm(
                        pre0, g @ weight0, weight0.t(), alpha=self.epsilon
                    )
                pres = _leaky_forward(layers, pre0)
            p = torch.softmax(pres[-1], dim=1).view(n, m, K)
            total += ((p - eye[k0:k1]) ** 2).mean(dim=2).sum(dim=1)
        return total / K
