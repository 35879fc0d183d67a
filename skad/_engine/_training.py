"""The training plan: phases run by one loop.

A detector's training is a list of :class:`Phase` objects. Each phase owns
its step function (one mini-batch in, a loss out), its modules and
optimiser(s), its number of epochs and batch size, its epoch-end callbacks
(learning-rate schedulers, stop rules) and the stop-on-plateau settings.
:func:`run_phases` runs them in order with one loop (mini-batches, NaN
guard, early stopping with best-weight restore, progress bar) and merges the
epochs of the phases that share a ``record`` name into one :class:`History`.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from skad._engine._data import iter_minibatches
from skad._engine._random import RandomState
from skad.exceptions import TrainingDivergedError

__all__ = ["History", "Phase", "make_optimizer", "run_phases"]

logger = logging.getLogger("skad")


def make_optimizer(
    params,
    learning_rate: float,
    weight_decay: float = 0.0,
    *,
    kind: str = "adam",
    **kwargs,
) -> torch.optim.Optimizer:
    """Build the optimiser used by every detector (Adam unless told otherwise)."""
    params = [p for p in params if p.requires_grad]
    classes = {
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "sgd": torch.optim.SGD,
    }
    if kind not in classes:
        raise ValueError(f"Unknown optimizer {kind!r}; choose from {sorted(classes)}.")
    return classes[kind](params, lr=learning_rate, weight_decay=weight_decay, **kwargs)


@dataclass
class History:
    """The training record of one or more phases.

    ``loss_curve`` holds the mean training loss per epoch,
    ``validation_scores`` the validation loss per epoch (``None`` without a
    validation loss), ``n_iter`` the number of epochs run, ``best_loss`` the
    best training (or, with a validation loss, validation) loss of the last
    phase, and ``extra`` the per-epoch means of any additional named losses
    the step returned.
    """

    loss_curve: list[float] = field(default_factory=list)
    validation_scores: list[float] | None = None
    n_iter: int = 0
    best_loss: float = math.inf
    extra: dict[str, list[float]] = field(default_factory=dict)
    stopped_early: bool = False

    def extend(self, other: History) -> None:
        """Append the epochs of a later phase (one merged record)."""
        self.loss_curve += other.loss_curve
        if other.validation_scores is not None:
            self.validation_scores = [
                *(self.validation_scores or []),
                *other.validation_scores,
            ]
        self.n_iter += other.n_iter
        for k, v in other.extra.items():
            self.extra.setdefault(k, []).extend(v)
        self.best_loss = other.best_loss
        self.stopped_early = other.stopped_early


@dataclass
class Phase:
    """One stage of training.

    Parameters
    ----------
    name : str
        Label of the progress bar and of error messages.
    step : callable
        ``step(idx)`` receives the index tensor of one mini-batch (rows of
        in-memory tensors the caller closes over) and returns the loss: a
        scalar tensor, a 1-D tensor of per-row losses (averaged here), or a
        dict whose ``"loss"`` entry is one of those and whose other entries
        are extra values to log per epoch.
    n_samples : int
        Number of rows the indices range over.
    modules : sequence of torch.nn.Module
        Put in train mode for the epochs, in eval mode afterwards.
    optimizers : sequence of torch.optim.Optimizer
        Zeroed, back-propagated and stepped on the step's loss. With
        ``manual=True`` the step updates them itself (alternating
        adversarial updates) and may return plain floats.
    max_iter : int
        Maximum number of epochs.
    batch_size : int
    validation_loss : callable, optional
        Called after each epoch (eval mode, no gradients); returns the
        validation loss. Early stopping then watches it and, with
        ``restore_best``, the weights of the best epoch are restored at the
        end. Otherwise the training loss is watched (scikit-learn's MLP
        rule).
    sample_weights : torch.Tensor, optional
        Oversampling weights, see :func:`skad._engine.iter_minibatches`.
    on_epoch_end : sequence of callables
        ``callback(history)`` after each epoch (schedulers, stop rules,
        logging); one returning True stops the phase.
    n_iter_no_change : int or None
        Stop after this many epochs without an improvement of more than
        ``tol``; None never stops on a plateau.
    tol : float
    restore_best : bool
    drop_last : bool
    record : str
        Phases with the same record name form one merged :class:`History`.
    manual : bool
        The step updates its optimisers itself.
    learning_rate : float, optional
        Only quoted in the divergence error message.
    """

    name: str
    step: Callable
    n_samples: int
    modules: Sequence[torch.nn.Module]
    optimizers: Sequence[torch.optim.Optimizer] = ()
    max_iter: int = 1
    batch_size: int = 128
    validation_loss: Callable | None = None
    sample_weights: torch.Tensor | None = None
    on_epoch_end: Sequence[Callable[[History], bool | None]] = ()
    n_iter_no_change: int | None = 10
    tol: float = 1e-4
    restore_best: bool = True
    drop_last: bool = False
    record: str = "main"
    manual: bool = False
    learning_rate: float | None = None


def _check_finite(value: float, epoch: int, what: str, lr: float | None) -> None:
    if not math.isfinite(value):
        hint = (
            f" Try a lower learning_rate_init (currently {lr:g})."
            if lr is not None
            else " Try a lower learning_rate_init."
        )
        raise TrainingDivergedError(
            f"The {what} became {value} at epoch {epoch}: training diverged.{hint}"
        )


def _set_train(modules: Sequence[torch.nn.Module], mode: bool) -> None:
    for m in modules:
        m.train(mode)


def _run_phase(
    phase: Phase, rng: RandomState, device: torch.device, verbose: int
) -> History:
    """The epoch loop of one phase."""
    history = History(
        validation_scores=[] if phase.validation_loss is not None else None
    )
    best_state = None
    no_improve = 0
    patience = phase.n_iter_no_change
    bar = None
    if verbose:
        from tqdm.auto import tqdm

        bar = tqdm(total=phase.max_iter, desc=phase.name, unit="epoch", leave=False)
    try:
        for epoch in range(1, phase.max_iter + 1):
            _set_train(phase.modules, True)
            sums: dict[str, float] = {}
            count = 0
            for idx in iter_minibatches(
                phase.n_samples,
                phase.batch_size,
                rng.cpu,
                device,
                weights=phase.sample_weights,
                drop_last=phase.drop_last,
            ):
                out = phase.step(idx)
                out = dict(out) if isinstance(out, dict) else {"loss": out}
                loss = out["loss"]
                if isinstance(loss, torch.Tensor) and loss.dim() == 1:
                    loss = out["loss"] = loss.mean()
                if not phase.manual:
                    for opt in phase.optimizers:
                        opt.zero_grad(set_to_none=True)
                    loss.backward()
                    for opt in phase.optimizers:
                        opt.step()
                n = int(idx.shape[0])
                count += n
                # Accumulate on the device; one host sync per epoch, not per batch.
                for k, v in out.items():
                    v = v.detach() if isinstance(v, torch.Tensor) else float(v)
                    sums[k] = sums.get(k, 0.0) + v * n
            means = {k: float(s) / max(count, 1) for k, s in sums.items()}
            _check_finite(
                means["loss"], epoch, f"{phase.name} loss", phase.learning_rate
            )
            epoch_loss = means.pop("loss")
            history.loss_curve.append(epoch_loss)
            for k, v in means.items():
                history.extra.setdefault(k, []).append(v)
            history.n_iter = epoch
            _set_train(phase.modules, False)

            if phase.validation_loss is not None:
                with torch.no_grad():
                    val = float(phase.validation_loss())
                _check_finite(
                    val, epoch, f"{phase.name} validation loss", phase.learning_rate
                )
                history.validation_scores.append(val)
                monitored = val
            else:
                monitored = epoch_loss
            if monitored < history.best_loss - phase.tol:
                no_improve = 0
                if phase.validation_loss is not None and phase.restore_best:
                    best_state = [copy.deepcopy(m.state_dict()) for m in phase.modules]
            else:
                no_improve += 1
            history.best_loss = min(history.best_loss, monitored)

            if bar is not None:
                post = {"loss": f"{epoch_loss:.4g}"}
                if phase.validation_loss is not None:
                    post["val"] = f"{monitored:.4g}"
                post.update({k: f"{v:.3g}" for k, v in means.items()})
                bar.set_postfix(post)
                bar.update(1)
            stop = False
            for callback in phase.on_epoch_end:
                stop = bool(callback(history)) or stop
            if stop:
                break
            if patience is not None and no_improve >= patience:
                history.stopped_early = True
                logger.info(
                    "%s: no improvement of more than tol=%g for %d epochs; "
                    "stopping at epoch %d.",
                    phase.name,
                    phase.tol,
                    patience,
                    epoch,
                )
                break
    finally:
        if bar is not None:
            bar.close()
        _set_train(phase.modules, False)
    if best_state is not None:
        for m, s in zip(phase.modules, best_state):
            m.load_state_dict(s)
    return history


def run_phases(
    phases: Sequence[Phase],
    *,
    rng: RandomState,
    device: torch.device,
    verbose: int = 0,
) -> dict[str, History]:
    """Run ``phases`` in order; returns one merged History per record name.

    Raises
    ------
    TrainingDivergedError
        When an epoch's mean loss (or validation loss) is NaN or infinite
        (checked once per epoch, so a GPU is not synchronised after every
        batch); the message names the phase and the epoch.
    """
    records: dict[str, History] = {}
    for phase in phases:
        if phase.max_iter <= 0:
            continue
        history = _run_phase(phase, rng, device, verbose)
        if phase.record in records:
            records[phase.record].extend(history)
        else:
            records[phase.record] = history
    return records
