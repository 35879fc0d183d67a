"""The ReverseDistillation estimator: parameters and the base's hooks."""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.nn import functional as F

from skad._validation import Interval, IntTuple, StrOptions
from skad.base import BaseDeepDetector
from skad.reverse_distillation._loss import (
    anomaly_maps,
    distillation_loss,
    flat,
    vector_scores,
)
from skad.reverse_distillation._net import (
    ConvStudent,
    MLPTeacher,
    VectorStudent,
    frozen_copy,
    mlp_decoder,
)

__all__ = ["ReverseDistillation"]

#: ``pretrain_epochs="auto"``: (updates, min_epochs, max_epochs) of the
#: autoencoder teacher, half the student's updates.
_TEACHER_AUTO_UPDATES = (1000, 30, None)


def _check_latent_dim(latent_dim: int, widths) -> None:
    if latent_dim >= sum(widths):
        raise ValueError(
            f"latent_dim={latent_dim} must be smaller than the summed widths of "
            f"the teacher's scales ({sum(widths)}); the narrow bottleneck is "
            "what keeps anomalies from being restored."
        )


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
    latent_dim : int, default=16
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
    anomaly_score : {"auto", "mean", "max"}, default="auto"
        How the per-position distances of a row become its score: their mean
        (vector mode: per scale, then summed over scales; image mode: over
        the smoothed map) or their maximum (vector mode: per scale, then
        summed). ``"auto"`` is ``"mean"`` in vector mode and ``"max"`` (the
        paper's image score) in image mode. With ``loss="flattened"`` in
        vector mode each scale is one position and both agree.
    pretrain_epochs : int or "auto", default="auto"
        Autoencoder epochs of the ``"pretrained_ae"`` teacher. ``"auto"``
        runs at least 30 epochs, more on small data sets so that 1,000
        mini-batch updates run; the plateau rule (``tol``,
        ``n_iter_no_change``) still stops early.
    sigma : float, default=4.0
        Standard deviation (pixels) of the Gaussian smoothing of the image
        anomaly map; 0 disables it.
    {contamination}
    {train_contamination}
    {max_iter}
        Here: epochs of the student (OCBE and decoder); ``"auto"`` is at
        least 100 epochs and 2,000 updates (100 epochs of 160 rows are only
        200 updates, after which the training loss still falls steeply).
    {batch_size}
    {learning_rate_init}
        Of the student and of the autoencoder teacher.
    {weight_decay}
        Of the student (the autoencoder teacher has none).
    {early_stopping}
        Applies to the student.
    {validation_fraction}
    {n_iter_no_change}
    {tol}
    {device}
    {random_state}
    {verbose}

    Attributes
    ----------
    teacher_ : torch.nn.Module
        The frozen teacher (a copy of a module ``teacher``).
    student_ : torch.nn.Module
        The trained OCBE and decoder.
    scale_shapes_ : list of tuple of int
        Shape of each teacher scale for one row.
    teacher_loss_curve_ : list of float
        Autoencoder loss per epoch (only for ``teacher="pretrained_ae"``).
    teacher_reconstruction_error_ : float
        Final autoencoder training loss (MSE); only for ``"pretrained_ae"``.
    {fitted_attributes}

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
        "teacher": [StrOptions({"pretrained_ae", "random"}), nn.Module],
        "hidden_layer_sizes": [IntTuple()],
        "latent_dim": [Interval(Integral, 1, 2**20, closed="both")],
        "loss": [StrOptions({"flattened", "grouped"})],
        "n_groups": [Interval(Integral, 1, None, closed="left")],
        "anomaly_score": [StrOptions({"auto", "mean", "max"})],
        "pretrain_epochs": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "sigma": [Interval(Real, 0, None, closed="left")],
    }

    #: ``max_iter="auto"``: 2,000 student updates, at least 100 epochs.
    _auto_updates = (2000, 100, None)

    _supports_images = True

    def __init__(
        self,
        *,
        teacher="pretrained_ae",
        hidden_layer_sizes=(128, 64, 32),
        latent_dim=16,
        loss="flattened",
        n_groups=4,
        anomaly_score="auto",
        pretrain_epochs="auto",
        sigma=4.0,
        contamination=0.1,
        train_contamination="auto",
        max_iter="auto",
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
        self.latent_dim = latent_dim
        self.loss = loss
        self.n_groups = n_groups
        self.anomaly_score = anomaly_score
        self.pretrain_epochs = pretrain_epochs
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

    # ------------------------------------------------------------ checks
    def _check_params(self):
        if not isinstance(self.teacher, nn.Module):
            _check_latent_dim(self.latent_dim, self.hidden_layer_sizes)

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
    def _build_networks(self, rng):
        image = self.input_mode_ == "image"
        if isinstance(self.teacher, nn.Module):
            teacher = frozen_copy(self.teacher)
            with torch.no_grad():
                feats = teacher(torch.zeros((2, *self.input_shape_)))
            if not isinstance(feats, list | tuple) or not feats:
                raise ValueError(
                    "A teacher module must return a non-empty list of feature "
                    f"tensors; got {type(feats).__name__}."
                )
            for f in feats:
                if image and f.dim() != 4:
                    raise ValueError(
                        "In image mode the teacher must return feature maps of "
                        f"shape (n, C, H, W); got a tensor of shape {tuple(f.shape)}."
                    )
            shapes = [tuple(int(s) for s in f.shape[1:]) for f in feats]
        else:
            widths = tuple(int(w) for w in self.hidden_layer_sizes)
            teacher = MLPTeacher(self.n_features_in_, widths)
            shapes = [(w,) for w in widths]
        self.scale_shapes_ = shapes
        widths = [s[0] if image else math.prod(s) for s in shapes]
        _check_latent_dim(self.latent_dim, widths)
        fusion = max(min(widths[-1], 256), self.latent_dim)
        self.teacher_ = teacher
        student = ConvStudent if image else VectorStudent
        self.student_ = student(shapes if image else widths, fusion, self.latent_dim)

    def _pretrain_teacher(self, X, rng):
        """Train the MLP teacher as the encoder of an autoencoder (its own
        phase, record ``"teacher"``)."""
        widths = [s[0] for s in self.scale_shapes_]
        dec = self._make_module(lambda: mlp_decoder(widths, X.shape[1]), rng)
        teacher = self.teacher_
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
                max_iter=self._epochs(
                    X.shape[0],
                    max_iter=self.pretrain_epochs,
                    auto=_TEACHER_AUTO_UPDATES,
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
            feats = [flat(f) for f in feats]
        return feats

    def _fit_networks(self, X, labels, rng):
        teacher, student = self.teacher_, self.student_
        for name in ("teacher_loss_curve_", "teacher_reconstruction_error_"):
            vars(self).pop(name, None)
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

        def batch_loss(xb):
            with torch.no_grad():
                feats = [f.detach() for f in self._teacher_features(xb)]
            return distillation_loss(feats, student(feats), self.loss, self.n_groups)

        val = None
        if val_idx is not None:
            X_val = X[val_idx]

            def val():
                return batch_loss(X_val).mean()

        self._fit_phases(
            self._phase(
                lambda idx: batch_loss(X_train[idx]),
                n_samples=X_train.shape[0],
                modules=[student],
                optimizers=[self._optimizer(student.parameters())],
                validation_loss=val,
            ),
            rng=rng,
        )

    # ------------------------------------------------------------ scoring
    def _how(self) -> str:
        """The resolved ``anomaly_score``."""
        if self.anomaly_score != "auto":
            return self.anomaly_score
        return "max" if self.input_mode_ == "image" else "mean"

    def _maps(self, X: torch.Tensor) -> torch.Tensor:
        """Smoothed anomaly maps (n, H, W) of one chunk of images."""
        teacher_feats = self._teacher_features(X)
        return anomaly_maps(
            teacher_feats, self.student_(teacher_feats), X.shape[-2:], self.sigma
        )

    def _score(self, X):
        how = self._how()
        if self.input_mode_ == "image":
            amap = self._maps(X).flatten(1)
            return amap.amax(dim=1) if how == "max" else amap.mean(dim=1)
        teacher_feats = self._teacher_features(X)
        return vector_scores(
            teacher_feats, self.student_(teacher_feats), self.loss, self.n_groups, how
        )

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
