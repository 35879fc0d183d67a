"""Reverse Distillation with a one-class bottleneck embedding (Deng & Li, CVPR 2022).

A frozen teacher encoder produces features at several depths ("scales"). A
trainable one-class bottleneck embedding (OCBE: multi-scale feature fusion and
a narrow residual block) compresses them into one embedding, and a student
decoder restores the teacher's features at every scale from it. Loss and
anomaly score are ``1 - cos`` between teacher and student features, summed
over scales: normal rows pass the narrow bottleneck, anomalies do not, so the
student fails to restore their features.

Vector mode (``X`` of shape ``(n, d)``) uses an MLP teacher whose hidden layer
outputs are the scales; image mode (``X`` of shape ``(n, C, H, W)`` with a
user-supplied convolutional teacher) uses a convolutional OCBE and decoder and
scores with the Gaussian-smoothed anomaly map of the paper.
"""

from __future__ import annotations

import copy
import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.nn import functional as F

from skad.base import BaseDeepDetector

__all__ = ["ReverseDistillation"]


# ---------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------


def _stage(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_out), nn.LayerNorm(n_out), nn.GELU())


class _MLPTeacher(nn.Module):
    """Stages of Linear + LayerNorm + GELU; every stage output is one scale."""

    def __init__(self, n_features: int, widths):
        super().__init__()
        ins = (n_features, *widths[:-1])
        self.stages = nn.ModuleList(_stage(a, b) for a, b in zip(ins, widths))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    @torch.no_grad()
    def orthogonal_(self, generator: torch.Generator) -> None:
        """Random-teacher initialisation: orthogonal weights, zero biases."""
        for stage in self.stages:
            nn.init.orthogonal_(stage[0].weight, generator=generator)
            nn.init.zeros_(stage[0].bias)


class _ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(width, width),
            nn.LayerNorm(width),
            nn.GELU(),
            nn.Linear(width, width),
        )
        self.norm = nn.LayerNorm(width)

    def forward(self, x):
        return F.gelu(self.norm(x + self.body(x)))


class _VectorStudent(nn.Module):
    """OCBE (fusion + narrow residual bottleneck) and MLP decoder."""

    def __init__(self, widths, fusion_width: int, bottleneck: int):
        super().__init__()
        self.fuse = nn.ModuleList(_stage(w, fusion_width) for w in widths)
        k = len(widths)
        self.oce = nn.Sequential(
            _ResidualBlock(k * fusion_width), _stage(k * fusion_width, bottleneck)
        )
        hidden = [min(w, 512) for w in widths]
        ins = (bottleneck, *hidden[::-1][:-1])
        self.decoder = nn.ModuleList(_stage(a, b) for a, b in zip(ins, hidden[::-1]))
        self.heads = nn.ModuleList(
            nn.Linear(h, w) for h, w in zip(hidden[::-1], widths[::-1])
        )

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        z = self.oce(torch.cat([f(x) for f, x in zip(self.fuse, feats)], dim=1))
        out = []
        for stage, head in zip(self.decoder, self.heads):
            z = stage(z)
            out.append(head(z))
        return out[::-1]


def _conv_block(n_in: int, n_out: int, stride: int = 1) -> nn.Sequential:
    # GroupNorm(1, c): no batch statistics, so a row's score never depends on
    # the other rows of its batch.
    return nn.Sequential(
        nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1),
        nn.GroupNorm(1, n_out),
        nn.ReLU(),
    )


class _ConvResidual(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(
            _conv_block(ch, ch), nn.Conv2d(ch, ch, 3, padding=1), nn.GroupNorm(1, ch)
        )

    def forward(self, x):
        return F.relu(x + self.body(x))


class _ConvStudent(nn.Module):
    """Convolutional OCBE (fusion on the coarsest grid, stride-2 bottleneck)
    and a decoder that upsamples back through every teacher scale."""

    def __init__(self, shapes, fusion_width: int, bottleneck: int):
        super().__init__()
        self.shapes = [tuple(s) for s in shapes]  # (C_k, H_k, W_k)
        self.grid = self.shapes[-1][1:]
        k = len(shapes)
        self.fuse = nn.ModuleList(_conv_block(s[0], fusion_width) for s in shapes)
        self.oce = nn.Sequential(
            _ConvResidual(k * fusion_width),
            _conv_block(k * fusion_width, bottleneck, stride=2),
        )
        hidden = [min(s[0], 256) for s in self.shapes]
        ins = (bottleneck, *hidden[::-1][:-1])
        self.decoder = nn.ModuleList(
            nn.Sequential(_conv_block(a, b), _ConvResidual(b))
            for a, b in zip(ins, hidden[::-1])
        )
        self.heads = nn.ModuleList(
            nn.Conv2d(h, s[0], 1) for h, s in zip(hidden[::-1], self.shapes[::-1])
        )

    def forward(self, feats):
        fused = [
            F.adaptive_avg_pool2d(f(x), self.grid) for f, x in zip(self.fuse, feats)
        ]
        z = self.oce(torch.cat(fused, dim=1))
        out = []
        for stage, head, s in zip(self.decoder, self.heads, self.shapes[::-1]):
            z = F.interpolate(z, size=s[1:], mode="bilinear", align_corners=False)
            z = stage(z)
            out.append(head(z))
        return out[::-1]


# ---------------------------------------------------------------------------
# Losses and anomaly maps
# ---------------------------------------------------------------------------


def _flat(f: torch.Tensor) -> torch.Tensor:
    return f.reshape(f.shape[0], -1)


def _position_distance(t, s, n_groups: int) -> torch.Tensor:
    """``1 - cos`` per position: (n, G) for vectors, (n, H, W) for maps."""
    if t.dim() == 4:
        return 1.0 - F.cosine_similarity(t, s, dim=1)
    t, s = _flat(t), _flat(s)
    g = min(n_groups, t.shape[1])
    return torch.stack(
        [
            1.0 - F.cosine_similarity(a, b, dim=1)
            for a, b in zip(t.tensor_split(g, dim=1), s.tensor_split(g, dim=1))
        ],
        dim=1,
    )


def _distillation_loss(teacher_feats, student_feats, loss: str, n_groups: int):
    """Per-row loss summed over scales: flattened (official code) or grouped
    (the paper's per-position mean)."""
    total = 0.0
    for t, s in zip(teacher_feats, student_feats):
        if loss == "flattened":
            total = total + 1.0 - F.cosine_similarity(_flat(t), _flat(s), dim=1)
        else:
            total = total + _flat(_position_distance(t, s, n_groups)).mean(dim=1)
    return total


def _gaussian_matrix(size: int, sigma: float, dtype, device) -> torch.Tensor:
    """(size, size) matrix applying a 1-D Gaussian filter with scipy's
    ``mode="reflect"`` boundary (kernel radius ``int(4 sigma + 0.5)``) for any
    image size, even smaller than the kernel."""
    radius = int(4.0 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    w = np.exp(-0.5 * (offsets / sigma) ** 2)
    w /= w.sum()
    period = 2 * size
    mat = np.zeros((size, size))
    for i in range(size):
        j = np.mod(i + offsets, period)
        j = np.where(j >= size, period - 1 - j, j)
        np.add.at(mat[i], j, w)
    return torch.as_tensor(mat, dtype=dtype, device=device)


# ---------------------------------------------------------------------------
# Estimator
# ---------------------------------------------------------------------------

_RD_CONSTRAINTS = {
    "teacher": [StrOptions({"pretrained_ae", "random"}), nn.Module],
    "hidden_layer_sizes": [tuple, list],
    "bottleneck_dim": [Interval(Integral, 1, None, closed="left")],
    "loss": [StrOptions({"flattened", "grouped"})],
    "n_groups": [Interval(Integral, 1, None, closed="left")],
    "score_aggregation": [StrOptions({"auto", "sum", "max"})],
    "pretrain_epochs": [Interval(Integral, 1, None, closed="left")],
    "min_updates": [Interval(Integral, 0, None, closed="left")],
    "sigma": [Interval(Real, 0, None, closed="left")],
}


class ReverseDistillation(BaseDeepDetector):
    """Reverse distillation from a one-class bottleneck embedding (RD4AD).

    A frozen teacher maps each row to features at several depths; a trainable
    one-class bottleneck embedding (OCBE) fuses them into a narrow embedding
    from which a student decoder restores the teacher's features at every
    depth. The anomaly score is ``1 - cos`` between teacher and student
    features, summed over the scales (Deng & Li, "Anomaly Detection via
    Reverse Distillation from One-Class Embedding", CVPR 2022). Supports the
    one-class (normal-only training data) and unsupervised (contaminated
    training data) settings.

    Vector mode (default, ``X`` of shape ``(n_samples, n_features)``): the
    teacher is an MLP whose hidden-layer outputs are the scales. Image mode:
    pass ``X`` of shape ``(n_samples, C, H, W)`` together with a frozen
    convolutional ``teacher`` module (for example a pretrained torchvision
    backbone returning three feature maps); the OCBE and decoder are then
    convolutional and the score is the maximum of the Gaussian-smoothed
    anomaly map, see :meth:`anomaly_map`.

    Parameters
    ----------
    teacher : {"pretrained_ae", "random"} or torch.nn.Module, default="pretrained_ae"
        ``"pretrained_ae"`` first trains the MLP teacher as the encoder of an
        autoencoder on ``X`` for ``pretrain_epochs`` epochs, then freezes it
        (best on raw tabular data). ``"random"`` freezes a random orthogonal
        initialisation (for embeddings whose geometry is already good, e.g.
        small sets of wide CNN/ViT features). A ``torch.nn.Module`` maps a
        batch to a list of feature tensors (``(n, w_k)`` in vector mode,
        ``(n, C_k, H_k, W_k)`` from fine to coarse in image mode); it is
        deep-copied into ``teacher_`` and never trained, the module passed
        here is not modified.
    hidden_layer_sizes : tuple of int, default=(128, 64, 32)
        Widths of the stages of the built-in MLP teacher (one scale each).
        Ignored for a module teacher.
    bottleneck_dim : int, default=16
        Width (channels in image mode) of the one-class embedding; must be
        smaller than the summed widths (channels) of the scales. The narrower,
        the less the student can restore anomalies.
    loss : {"flattened", "grouped"}, default="flattened"
        ``"flattened"``: per scale, ``1 - cos`` of the whole feature vector
        (map) of a row, as in the official code. ``"grouped"``: the paper's
        per-position form, the mean of ``1 - cos`` over positions (pixels in
        image mode, ``n_groups`` contiguous groups of features in vector mode).
    n_groups : int, default=4
        Positions per scale of the grouped loss and score in vector mode.
    score_aggregation : {"auto", "sum", "max"}, default="auto"
        How the per-position distances of a row become its score. ``"sum"``:
        their mean (vector mode: summed over scales; image mode: over the
        smoothed map); ``"max"``: their maximum (vector mode: per scale, then
        summed). ``"auto"`` is ``"sum"`` in vector mode and ``"max"`` (the
        paper's image score) in image mode. With ``loss="flattened"`` in vector
        mode each scale is one position and both agree.
    pretrain_epochs : int, default=30
        Autoencoder epochs of the ``"pretrained_ae"`` teacher (raised on small
        data sets, see ``min_updates``).
    min_updates : int, default=2000
        Minimum number of mini-batch updates of the student (and half as many
        of the autoencoder teacher). On small training sets the number of
        epochs grows above ``max_iter`` (``pretrain_epochs``) until this many
        updates have run: 100 epochs of 160 rows are only 200 updates, after
        which the training loss is still falling steeply. The plateau rule
        (``tol``, ``n_iter_no_change``) still stops training early. 0 keeps
        exactly ``max_iter`` epochs.
    sigma : float, default=4.0
        Standard deviation (pixels) of the Gaussian smoothing of the image
        anomaly map; 0 disables it.
    contamination : float, default=0.1
        Expected share of outliers; ``offset_`` is that quantile of the
        training scores. Must be in (0, 0.5].
    {train_contamination}
    max_iter : int, default=100
        Number of epochs of the student (OCBE + decoder), raised on small data
        sets to reach ``min_updates`` updates.
    batch_size : int, default=128
    learning_rate_init : float, default=1e-3
        Adam learning rate (of the student and of the autoencoder teacher).
    weight_decay : float, default=0.0
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows and stop the student when
        their loss has not improved by ``tol`` for ``n_iter_no_change``
        epochs; the best weights are restored. Without it training stops on a
        training-loss plateau.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    tol : float, default=1e-4
    device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when available, else the CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds the local generators of initialisation and shuffling.
    verbose : int, default=0
        > 0 shows a progress bar with the running loss.

    Attributes
    ----------
    teacher_ : torch.nn.Module
        The frozen teacher (a copy of a module ``teacher``).
    student_ : torch.nn.Module
        The trained OCBE and decoder.
    input_mode_ : {"vector", "image"}
    input_shape_ : tuple of int
        Shape of one row: ``(n_features,)`` or ``(C, H, W)``.
    scale_shapes_ : list of tuple of int
        Shape of each teacher scale for one row.
    teacher_loss_curve_ : list of float
        Autoencoder loss per epoch (only for ``teacher="pretrained_ae"``).
    teacher_reconstruction_error_ : float
        Final autoencoder training loss (MSE); only for ``"pretrained_ae"``.
    offset_ : float
        Threshold on ``score_samples`` given by ``contamination``.
    loss_curve_ : list of float
        Mean student training loss per epoch.
    n_iter_ : int
        Student epochs run.
    best_loss_ : float
    validation_scores_ : list of float
        Validation loss per epoch (only with ``early_stopping=True``).
    device_ : torch.device
    n_features_in_ : int
        Number of features (channels ``C`` in image mode).
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when X has string column names.

    See Also
    --------
    skad.DeepSVDD : One-class hypersphere on a learned embedding.
    sklearn.neighbors.LocalOutlierFactor : A strong density baseline.

    Examples
    --------
    >>> import numpy as np
    >>> from skad import ReverseDistillation
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4))
    >>> det = ReverseDistillation(max_iter=2, pretrain_epochs=2, device="cpu",
    ...                           random_state=0).fit(X)
    >>> det.score_samples(X[:3]).shape
    (3,)
    """

    _parameter_constraints = {
        **BaseDeepDetector._parameter_constraints,
        **_RD_CONSTRAINTS,
    }

    def __init__(
        self,
        *,
        teacher="pretrained_ae",
        hidden_layer_sizes=(128, 64, 32),
        bottleneck_dim=16,
        loss="flattened",
        n_groups=4,
        score_aggregation="auto",
        pretrain_epochs=30,
        min_updates=2000,
        sigma=4.0,
        contamination=0.1,
        train_contamination=0.0,
        max_iter=100,
        batch_size=128,
        learning_rate_init=1e-3,
        weight_decay=0.0,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.teacher = teacher
        self.hidden_layer_sizes = hidden_layer_sizes
        self.bottleneck_dim = bottleneck_dim
        self.loss = loss
        self.n_groups = n_groups
        self.score_aggregation = score_aggregation
        self.pretrain_epochs = pretrain_epochs
        self.min_updates = min_updates
        self.sigma = sigma
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

    # ------------------------------------------------------------ input
    _supports_images = True

    def _check_image_mode(self):
        if not isinstance(self.teacher, nn.Module):
            raise ValueError(
                "ReverseDistillation got a 4-D array: images of shape "
                "(n, C, H, W) need image mode, i.e. teacher=<a frozen "
                "convolutional torch.nn.Module returning a list of feature "
                "maps>, fitted on such images. In vector mode X must be 2-D "
                "(n_samples, n_features)."
            )

    # ------------------------------------------------------------ networks
    def _copy_teacher(self) -> nn.Module:
        teacher = copy.deepcopy(self.teacher).float().eval()
        teacher.requires_grad_(False)
        return teacher

    def _build_networks(self, rng):
        image = self.input_mode_ == "image"
        if isinstance(self.teacher, nn.Module):
            teacher = self._copy_teacher()
            probe = torch.zeros((2, *self.input_shape_))
            with torch.no_grad():
                feats = teacher(probe)
            if not isinstance(feats, list | tuple) or not feats:
                raise ValueError(
                    "A teacher module must return a non-empty list of feature "
                    f"tensors; got {type(feats).__name__}."
                )
            want = 4 if image else None
            shapes = []
            for f in feats:
                if want is not None and f.dim() != want:
                    raise ValueError(
                        "In image mode the teacher must return feature maps of "
                        f"shape (n, C, H, W); got a tensor of shape {tuple(f.shape)}."
                    )
                shapes.append(tuple(int(s) for s in f.shape[1:]))
        else:
            widths = tuple(int(w) for w in self.hidden_layer_sizes)
            if not widths or min(widths) < 1:
                raise ValueError(
                    "hidden_layer_sizes must hold at least one positive width; "
                    f"got {self.hidden_layer_sizes!r}."
                )
            teacher = _MLPTeacher(self.n_features_in_, widths)
            shapes = [(w,) for w in widths]
        self.scale_shapes_ = shapes
        widths = [s[0] if image else math.prod(s) for s in shapes]
        if self.bottleneck_dim >= sum(widths):
            raise ValueError(
                f"bottleneck_dim={self.bottleneck_dim} must be smaller than the "
                f"summed widths of the teacher's scales ({sum(widths)}); the "
                "narrow bottleneck is what keeps anomalies from being restored."
            )
        fusion = max(min(widths[-1], 256), self.bottleneck_dim)
        self.teacher_ = teacher
        if image:
            self.student_ = _ConvStudent(shapes, fusion, self.bottleneck_dim)
        else:
            self.student_ = _VectorStudent(widths, fusion, self.bottleneck_dim)

    def _pretrain_teacher(self, X, rng):
        """Train the MLP teacher as the encoder of an autoencoder, then freeze."""
        widths = [s[0] for s in self.scale_shapes_]
        dec = self._make_module(
            lambda: nn.Sequential(
                *[_stage(a, b) for a, b in zip(widths[::-1], widths[::-1][1:])],
                nn.Linear(widths[0], X.shape[1]),
            ),
            rng,
        )
        teacher = self.teacher_
        teacher.requires_grad_(True)
        opt = self._optimizer(
            list(teacher.parameters()) + list(dec.parameters()), weight_decay=0.0
        )

        def step(idx):
            xb = X[idx]
            return F.mse_loss(dec(teacher(xb)[-1]), xb)

        history = self._fit_phases(
            self._phase(
                step,
                n_samples=X.shape[0],
                modules=[teacher, dec],
                optimizers=[opt],
                name="ReverseDistillation teacher",
                max_iter=self._n_epochs(
                    X.shape[0], self.pretrain_epochs, self.min_updates // 2
                ),
                record="teacher",
            ),
            rng=rng,
        )["teacher"]
        self.teacher_loss_curve_ = list(history.loss_curve)
        self.teacher_reconstruction_error_ = float(history.loss_curve[-1])

    def _teacher_features(self, X: torch.Tensor) -> list[torch.Tensor]:
        feats = list(self.teacher_(X))
        if self.input_mode_ == "vector":
            feats = [_flat(f) for f in feats]
        return feats

    def _fit_networks(self, X, labels, rng):
        teacher, student = self.teacher_, self.student_
        for name in ("teacher_loss_curve_", "teacher_reconstruction_error_"):
            if hasattr(self, name):
                delattr(self, name)
        if isinstance(self.teacher, nn.Module):
            # the base re-initialised every fitted module: restore the weights
            teacher.load_state_dict(self.teacher.state_dict())
            teacher.float()
        elif self.teacher == "random":
            teacher.orthogonal_(rng.cpu)
        else:
            self._pretrain_teacher(X, rng)
        teacher.eval()
        teacher.requires_grad_(False)

        train_idx, val_idx = self._split_validation(X.shape[0], rng)
        X_train = X[train_idx]
        opt = self._optimizer(student.parameters())

        def batch_loss(xb):
            with torch.no_grad():
                feats = [f.detach() for f in self._teacher_features(xb)]
            return _distillation_loss(feats, student(feats), self.loss, self.n_groups)

        def step(idx):
            return batch_loss(X_train[idx])

        val = None
        if val_idx is not None:
            X_val = X[val_idx]

            def val():
                return batch_loss(X_val).mean()

        self._fit_phases(
            self._phase(
                step,
                n_samples=X_train.shape[0],
                modules=[student],
                optimizers=[opt],
                validation_loss=val,
                max_iter=self._n_epochs(
                    X_train.shape[0], self.max_iter, self.min_updates
                ),
            ),
            rng=rng,
        )
        teacher.eval()

    # ------------------------------------------------------------ scoring
    def _aggregation(self) -> str:
        if self.score_aggregation != "auto":
            return self.score_aggregation
        return "max" if self.input_mode_ == "image" else "sum"

    def _maps(self, X: torch.Tensor) -> torch.Tensor:
        """Smoothed anomaly maps (n, H, W) of one chunk of images."""
        teacher_feats = self._teacher_features(X)
        student_feats = self.student_(teacher_feats)
        H, W = X.shape[-2:]
        amap = X.new_zeros((X.shape[0], H, W))
        for t, s in zip(teacher_feats, student_feats):
            m = _position_distance(t, s, self.n_groups).unsqueeze(1)
            amap = amap + F.interpolate(
                m, size=(H, W), mode="bilinear", align_corners=True
            ).squeeze(1)
        if self.sigma > 0:
            gh = _gaussian_matrix(H, self.sigma, X.dtype, X.device)
            gw = _gaussian_matrix(W, self.sigma, X.dtype, X.device)
            amap = gh @ amap @ gw.T
        return amap

    def _score(self, X):
        agg = self._aggregation()
        if self.input_mode_ == "image":
            amap = self._maps(X).flatten(1)
            return amap.amax(dim=1) if agg == "max" else amap.mean(dim=1)
        teacher_feats = self._teacher_features(X)
        student_feats = self.student_(teacher_feats)
        if self.loss == "flattened":
            return _distillation_loss(teacher_feats, student_feats, "flattened", 1)
        score = X.new_zeros(X.shape[0])
        for t, s in zip(teacher_feats, student_feats):
            d = _flat(_position_distance(t, s, self.n_groups))
            score = score + (d.amax(dim=1) if agg == "max" else d.mean(dim=1))
        return score

    def anomaly_map(self, X):
        """Per-pixel anomaly maps of images (image mode only).

        Parameters
        ----------
        X : array-like of shape (n_samples, C, H, W)

        Returns
        -------
        maps : ndarray of shape (n_samples, H, W), dtype float64
            ``1 - cos`` between teacher and student features at every pixel,
            upsampled to the input size, summed over scales and smoothed with
            a Gaussian of standard deviation ``sigma``. Higher = more anomalous.
        """
        check_is_fitted(self)
        if self.input_mode_ != "image":
            raise ValueError(
                "anomaly_map needs image mode: fit on images (n, C, H, W) with a "
                "convolutional teacher module."
            )
        X = self._validate_input(X, reset=False)
        maps = self._map_chunks(lambda xb: self._maps(xb).flatten(1), X)
        return maps.reshape(X.shape[0], *X.shape[-2:])
