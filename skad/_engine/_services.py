"""The services a detector's hooks use, inherited by
:class:`skad.base.BaseDeepDetector`: optimisers, training phases, the
training record, epochs (``max_iter="auto"``), modules made during training,
validation splits and the chunked forward pass. Detectors call these methods
on ``self`` and never import the engine.
"""

from __future__ import annotations

import math

import torch

from skad import _nn
from skad._device import map_tensors
from skad._engine._data import predict_in_chunks, train_validation_split
from skad._engine._random import (
    RandomState,
    make_random_state,
    private_default_generator,
)
from skad._engine._training import History, Phase, make_optimizer, run_phases

__all__ = ["TrainingServices"]


class TrainingServices:
    """Mixin of :class:`skad.base.BaseDeepDetector` (see the module doc)."""

    def _fitted_modules(self) -> dict[str, torch.nn.Module]:
        """Fitted attributes that are torch modules, by name."""
        return {
            k: v
            for k, v in vars(self).items()
            if k.endswith("_")
            and not k.startswith("__")
            and isinstance(v, torch.nn.Module)
        }

    def _optimizer(
        self, params, *, learning_rate=None, weight_decay=None, kind="adam", **kwargs
    ) -> torch.optim.Optimizer:
        """An optimiser with this detector's ``learning_rate_init`` and
        ``weight_decay`` unless given."""
        return make_optimizer(
            params,
            self.learning_rate_init if learning_rate is None else learning_rate,
            self.weight_decay if weight_decay is None else weight_decay,
            kind=kind,
            **kwargs,
        )

    def _phase(
        self,
        step,
        *,
        n_samples: int,
        modules,
        optimizers=(),
        name: str | None = None,
        max_iter: int | None = None,
        batch_size: int | None = None,
        n_iter_no_change="default",
        tol: float | None = None,
        **kwargs,
    ) -> Phase:
        """A training :class:`~skad.Phase` with this detector's
        settings (``max_iter`` resolved, ``batch_size``, ``n_iter_no_change``,
        ``tol``, ``learning_rate_init``) unless given; see
        :class:`~skad.Phase` for the other arguments."""
        batch_size = self.batch_size if batch_size is None else batch_size
        if max_iter is None:
            max_iter = self._epochs(n_samples, batch_size=batch_size)
        return Phase(
            name=name or type(self).__name__,
            step=step,
            n_samples=n_samples,
            modules=list(modules),
            optimizers=list(optimizers),
            max_iter=int(max_iter),
            batch_size=batch_size,
            n_iter_no_change=(
                self.n_iter_no_change
                if n_iter_no_change == "default"
                else n_iter_no_change
            ),
            tol=self.tol if tol is None else tol,
            learning_rate=kwargs.pop("learning_rate", self.learning_rate_init),
            **kwargs,
        )

    def _fit_phases(self, *phases, rng) -> dict[str, History]:
        """Run the training phases in order and store the ``"main"`` record
        as MLP-style fitted attributes (:meth:`_record`); returns every
        record by name."""
        with _nn.dropout_generator(rng.device):
            records = run_phases(
                phases, rng=rng, device=self.device_, verbose=self.verbose
            )
        if "main" in records:
            self._record(records["main"])
        return records

    def _record(self, history: History) -> None:
        """Store a training record as MLP-style fitted attributes.

        Sets ``loss_curve_``, ``n_iter_``, ``best_loss_`` and, when early
        stopping was on, ``validation_scores_`` (validation loss per epoch).
        """
        self.loss_curve_ = list(history.loss_curve)
        self.n_iter_ = int(history.n_iter)
        self.best_loss_ = float(history.best_loss)
        if self.early_stopping and history.validation_scores is not None:
            self.validation_scores_ = list(history.validation_scores)
        elif hasattr(self, "validation_scores_"):
            del self.validation_scores_

    def _epochs(
        self, n_samples: int, max_iter=None, *, batch_size=None, auto=None
    ) -> int:
        """Epochs to run: ``max_iter`` (default: the parameter) as given, or,
        for ``"auto"``, the fewest epochs that give ``updates`` mini-batch
        updates, within ``[min_epochs, max_epochs]``, where ``auto`` (default:
        the class's ``_auto_updates``) is ``(updates, min_epochs,
        max_epochs)``. One rule for every detector and phase."""
        max_iter = self.max_iter if max_iter is None else max_iter
        if max_iter != "auto":
            return int(max_iter)
        target, low, high = self._auto_updates if auto is None else auto
        batch_size = self.batch_size if batch_size is None else batch_size
        per_epoch = max(1, math.ceil(n_samples / max(1, min(batch_size, n_samples))))
        epochs = max(low, math.ceil(target / per_epoch))
        return epochs if high is None else min(epochs, high)

    def _rebuild_networks(self, numpy=None) -> None:
        """Re-create the fitted modules from the parameters and the plain
        fitted attributes, for :func:`skad.load` (which then loads the
        weights); ``numpy`` replaces the numpy generator the hook may draw
        from (the loader bounds it). The global RNG is not touched."""
        rng = make_random_state(0, torch.device("cpu"))
        if numpy is not None:
            rng = RandomState(numpy=numpy, cpu=rng.cpu, device=rng.device, seed=0)
        with private_default_generator():
            self._build_networks(rng)

    def _make_module(self, build, rng: RandomState) -> torch.nn.Module:
        """A module created during training (outside ``_build_networks``):
        ``build()`` runs without touching the global RNG, the parameters are
        initialised from the local generator and the module is moved to the
        device."""
        with private_default_generator():
            module = build()
        _nn.reset_parameters(module, rng.cpu)
        return module.to(self.device_)

    def _split_validation(self, n_samples: int, rng: RandomState):
        """Index tensors (train, validation) on the device; validation is
        None unless ``early_stopping``."""
        if not self.early_stopping or n_samples < 3:
            return torch.arange(n_samples, device=self.device_), None
        tr, va = train_validation_split(
            n_samples, self.validation_fraction, rng
        )
        return (
            torch.as_tensor(tr, device=self.device_),
            torch.as_tensor(va, device=self.device_),
        )

    def _map_chunks(self, fn, X, **kwargs):
        """:func:`skad.predict_in_chunks` on this detector's device,
        with its fixed chunk shape."""
        return predict_in_chunks(
            fn, X, self.device_, chunk_size=self._score_chunk_size, **kwargs
        )

    def _eval_modules(self) -> None:
        """Put every fitted module in eval mode (modules stay float32)."""
        for module in self._fitted_modules().values():
            module.eval()
        for name, value in vars(self).items():
            if name.endswith("_") and isinstance(value, dict | list | tuple):
                map_tensors(
                    value, lambda t: t.eval() if isinstance(t, torch.nn.Module) else t
                )
