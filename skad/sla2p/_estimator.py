"""The SLA2P estimator: parameters and the three hooks of the base class."""

from __future__ import annotations

from numbers import Integral, Real

import torch

from skad._validation import Interval, IntTuple, StrOptions
from skad.base import BaseDeepDetector
from skad.sla2p._loss import (
    brier_error,
    input_gradient,
    perturb,
    projection_loss,
    summed_cross_entropy,
)
from skad.sla2p._net import (
    ProjectionClassifier,
    fold_batchnorm,
    l2_normalize,
    leaky_forward,
)
from skad.sla2p._projections import ProjectionBank

__all__ = ["SLA2P"]

#: Most activations (pairs x widest layer) per validation forward pass.
_SCORE_ACTIVATIONS = 2**21

#: (row, projection) pairs per scoring block.
_SCORE_PAIRS = 1024

#: Projections drawn per training step; the step's pairs are the grid of
#: ``batch_size // _PROJECTIONS_PER_STEP`` rows times these projections.
#: With ``n_transforms >= 2`` every step thus has at least 2 pairs, enough
#: for the classifier's BatchNorm whatever the ``batch_size``.
_PROJECTIONS_PER_STEP = 8

#: Rows per engine "epoch" (the accuracy threshold is checked after each).
_ROWS_PER_EPOCH = 1024


class SLA2P(BaseDeepDetector):
    """SLA2P: random-projection pseudo classes with adversarial perturbation.

    Each row (optionally L2-normalised) is transformed by ``n_transforms``
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
    n_transforms : int, default=64
        Number ``K`` of random projections (the transformations, pseudo
        classes). The paper uses 256 (64 on KDDCUP99). 64 keeps the scoring
        cost, ``K`` forward and backward passes per row, affordable on a CPU
        for feature vectors of any width (about 2,000 rows/s on one CPU core
        for 32 features, against about 5,000 with 32 and 11,000 with 16
        projections).
    projection_dim : int, default=64
        Output width ``d`` of every projection. The paper uses 256 (128 on
        Reuters and KDDCUP99) on 2048-d image embeddings; 64 is enough to
        tell 64 projections apart for tabular rows and for 512-1024-d
        embeddings, and keeps ``K * n_features * d`` small enough to cache
        the projections for up to about 4,000 features.
    hidden_layer_sizes : tuple of int or None, default=None
        Hidden widths of the classifier; None means ``(2 d, 4 d)`` as in the
        official code, ``()`` a single Linear layer. Each hidden layer is
        Linear, BatchNorm, LeakyReLU.
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
    {contamination}
    {train_contamination}
    {max_iter}
        Training usually stops earlier, at ``acc_threshold``. An epoch here
        sees ``min(n_samples, 1024)`` rows, each paired with 8 projections
        drawn for its mini-batch.
    {batch_size}
        In SLA2P these are (row, projection) pairs, as in the paper: a step takes
        ``batch_size // 8`` rows (at least one) times 8 random projections
        (``n_transforms`` if fewer), so every step has at least 2 pairs for
        the classifier's BatchNorm.
    {learning_rate_init}
        Adam's ``eps`` is 1e-7, as in the official code.
    {weight_decay}
        As in the official code.
    {early_stopping}
        The validation loss is the held-out rows' cross-entropy over all
        projections.
    {validation_fraction}
    {n_iter_no_change}
    {tol}
    {device}
    {random_state}
        It also seeds the projections.
    {verbose}

    Attributes
    ----------
    classifier_ : torch.nn.Module
        The trained projection classifier (in eval mode).
    projection_seed_ : int
        Seed of the projections (see :func:`gaussian_projections`); the
        matrices themselves are never stored.
    train_accuracy_ : float
        Running training accuracy when training stopped.
    accuracy_curve_ : list of float
        Mean training accuracy per epoch.
    norm_scale_ : float
        Median training-row norm, the extra coordinate of
        ``normalize="sphere"`` (only then).
    {fitted_attributes}

    See Also
    --------
    skad.DeepSVDD : One-class deep detector with a learnt centre.
    sklearn.ensemble.IsolationForest : Same interface, tree-based.

    Notes
    -----
    Scoring costs ``n_transforms`` forward and backward passes of the
    classifier per row (one fewer forward pass with ``perturbation=False``):
    about 21.5 MFLOP per row with the defaults and 32 features. It runs
    without autograd: BatchNorm is folded into the Linear layers, the input
    gradient of the cross-entropy is computed in closed form, and for
    narrow rows the projections are folded into the first layer. The scores
    equal the autograd computation up to float32 rounding.

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

    #: ``train_contamination="auto"``: leaving rows out did not help SLA2P
    #: on validation splits, so it trains on every row.
    _auto_train_contamination = 0.0

    _parameter_constraints = {
        **BaseDeepDetector._parameter_constraints,
        "n_transforms": [Interval(Integral, 2, None, closed="left")],
        "projection_dim": [Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": [None, IntTuple(min_len=0)],
        "acc_threshold": [Interval(Real, 0, 1, closed="right")],
        "epsilon": [Interval(Real, 0, None, closed="left")],
        "normalize": ["boolean", StrOptions({"sphere"})],
        "perturbation": ["boolean"],
    }

    _score_needs_grad = False

    def __init__(
        self,
        *,
        n_transforms=64,
        projection_dim=64,
        hidden_layer_sizes=None,
        acc_threshold=0.6,
        epsilon=1.0,
        normalize="sphere",
        perturbation=True,
        contamination=0.1,
        train_contamination="auto",
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
        self.n_transforms = n_transforms
        self.projection_dim = projection_dim
        self.hidden_layer_sizes = hidden_layer_sizes
        self.acc_threshold = acc_threshold
        self.epsilon = epsilon
        self.normalize = normalize
        self.perturbation = perturbation
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

    # ------------------------------------------------------------ helpers
    def _hidden(self) -> tuple[int, ...]:
        d = self.projection_dim
        if self.hidden_layer_sizes is None:
            return (2 * d, 4 * d)
        return tuple(int(h) for h in self.hidden_layer_sizes)

    def _n_inputs(self) -> int:
        """Width of the rows that are projected (one more with "sphere")."""
        return self.n_features_in_ + (1 if self.normalize == "sphere" else 0)

    def _bank(self) -> ProjectionBank:
        """The fitted projections (generated or cached on demand)."""
        return ProjectionBank(
            self,
            self.projection_seed_,
            self.n_transforms,
            self._n_inputs(),
            self.projection_dim,
        )

    def _prepare(self, X: torch.Tensor) -> torch.Tensor:
        """Row normalisation before the projections (see ``normalize``)."""
        if self.normalize == "sphere":
            c = X.new_full((X.shape[0], 1), self.norm_scale_)
            X = torch.cat([X, c], dim=1)
        if self.normalize:
            X = l2_normalize(X)
        return X

    def _pairs(self, X: torch.Tensor):
        """Yield ``(ts, z, target)`` for blocks of projections: ``z`` holds the
        transformed rows ``X W_t`` of the block, row-major (row, projection)."""
        K, d = self.n_transforms, self.projection_dim
        bank = self._bank()
        width = max([d, K, *self._hidden()])
        kb = max(1, min(K, _SCORE_ACTIVATIONS // max(1, X.shape[0] * width)))
        for k0 in range(0, K, kb):
            ts = torch.arange(k0, min(K, k0 + kb), device=X.device)
            z = bank.project(X, ts).reshape(-1, d)
            yield ts, z, ts.repeat(X.shape[0])

    def _mean_cross_entropy(self, X: torch.Tensor) -> float:
        """Cross-entropy over every (row, projection) pair of prepared rows."""
        total = 0.0
        for _, z, target in self._pairs(X):
            total += summed_cross_entropy(self.classifier_(z), target)
        return total / (X.shape[0] * self.n_transforms)

    def _score_block(self, n: int) -> int:
        """Projections per scoring block (``n`` rows times them = pairs)."""
        return max(1, min(self.n_transforms, _SCORE_PAIRS // max(1, n)))

    # ------------------------------------------------------------ hooks
    def _build_networks(self, rng):
        self.classifier_ = ProjectionClassifier(
            self.projection_dim, self._hidden(), self.n_transforms
        )

    def _fit_networks(self, X, labels, rng):
        self.projection_seed_ = int(rng.numpy.integers(0, 2**31 - 1))
        bank = self._bank()
        bank.forget()
        if self.normalize == "sphere":
            # median row norm: robust to the anomalies in the training rows
            norms = X.double().norm(dim=1)
            self.norm_scale_ = max(float(norms.median()), 1e-12)
        elif hasattr(self, "norm_scale_"):
            del self.norm_scale_
        X = self._prepare(X)
        K = self.n_transforms
        m = min(K, _PROJECTIONS_PER_STEP)
        train_idx, val_idx = self._split_validation(X.shape[0], rng)
        X_train = X[train_idx]
        n = X_train.shape[0]
        net = self.classifier_
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
            z = bank.project(X_train[rows], ts).reshape(-1, self.projection_dim)
            return projection_loss(net(z), ts.repeat(rows.shape[0]))

        def stop_at_threshold(history) -> bool:
            accs = history.extra.get("accuracy", [])
            return bool(accs) and sum(accs) / len(accs) > self.acc_threshold

        val = None
        if val_idx is not None:
            X_val = X[val_idx]

            def val():
                return self._mean_cross_entropy(X_val)

        records = self._fit_phases(
            self._phase(
                step,
                n_samples=min(n, _ROWS_PER_EPOCH),
                modules=[net],
                optimizers=[self._optimizer(net.parameters(), eps=1e-7)],
                batch_size=max(1, self.batch_size // m),
                validation_loss=val,
                on_epoch_end=[stop_at_threshold],
            ),
            rng=rng,
        )
        accs = records["main"].extra.get("accuracy", [0.0])
        self.accuracy_curve_ = list(accs)
        self.train_accuracy_ = float(sum(accs) / len(accs))
        bank.forget()  # the training copy (float32, on the device)

    def _score(self, X):
        """Mean Brier error over the projections, without autograd.

        The classifier runs as plain affine maps (BatchNorm folded into the
        Linear layers, eval mode) and the perturbation's input gradient is
        computed analytically (:func:`~skad.sla2p._loss.input_gradient`), so
        scoring needs no autograd, runs under ``torch.inference_mode`` and
        traces as one static graph. ``z~ = z + eps g_z`` enters the next
        layer as ``a~ = a + eps g_z A`` (the first forward's pre-activations
        reused).
        """
        net = self.classifier_
        net.eval()  # BatchNorm uses its running statistics: rows independent
        layers = fold_batchnorm(net.mlp)
        weight0, bias0, _ = layers[0]
        h = weight0.shape[0]
        X = self._prepare(X)
        n = X.shape[0]
        K = self.n_transforms
        bank = self._bank()
        Q = bank.fold(weight0)
        eye = torch.eye(K, dtype=X.dtype, device=X.device)
        step = bool(self.perturbation) and self.epsilon > 0
        # a~ = a + eps g_a (A^T A) when the Gram matrix is the cheaper product
        gram = weight0 @ weight0.t() if step and h < 2 * weight0.shape[1] else None
        kb = self._score_block(n)
        bias_kb = bias0.repeat(kb)  # the first layer's bias for kb projections
        total = X.new_zeros(n)
        for k0 in range(0, K, kb):
            k1 = min(K, k0 + kb)
            m = k1 - k0
            if Q is not None:
                pre0 = torch.addmm(bias_kb[: m * h], X, Q[:, k0 * h : k1 * h])
                pre0 = pre0.view(n * m, h)  # row-major (row, projection)
            else:
                ts = torch.arange(k0, k1, device=X.device)
                z = bank.project(X, ts).reshape(n * m, -1)
                pre0 = torch.addmm(bias0, z, weight0.t())
            pres = leaky_forward(layers, pre0)
            if step:
                g = input_gradient(layers, pres)
                pres = leaky_forward(
                    layers, perturb(pre0, g, weight0, gram, self.epsilon)
                )
            total += brier_error(pres[-1], eye[k0:k1])
        return total / K
