"""The training engine shared by every skad detector.

Everything generic about training a torch model the scikit-learn way lives
here, once: device resolution, local random generators, tensor-sliced
mini-batches, optimiser set-up, the epoch loop with early stopping, the
training record, the progress bar, the NaN guard and chunked inference.

Method modules never write their own loop; they hand :func:`train_epochs` a
``step`` callable that turns one mini-batch into a loss.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.utils import check_random_state

logger = logging.getLogger("skad")

#: Rows per scoring forward pass (every chunk is padded to this shape, see
#: :func:`predict_in_chunks`); chosen by measurement, see docs/reliability.rst.
SCORE_CHUNK_SIZE = 1024

_OOM_ERRORS = (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),)


class TrainingDivergedError(FloatingPointError):
    """Raised when a training loss becomes NaN or infinite.

    A model whose loss diverged would score NaN; skad never returns one.

    Examples
    --------
    >>> from skad import TrainingDivergedError
    >>> issubclass(TrainingDivergedError, FloatingPointError)
    True
    """


# ---------------------------------------------------------------------------
# Device
# ---------------------------------------------------------------------------


def resolve_device(device) -> torch.device:
    """Turn the ``device`` parameter into a :class:`torch.device`.

    ``"auto"`` means CUDA when available, else CPU. Any other value must be a
    valid torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``)
    or :class:`torch.device`, and must be usable on this machine.

    Raises
    ------
    ValueError
        If the string is not a torch device, or the device is not available.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a valid torch device; use 'auto', 'cpu', "
            "'cuda' or 'cuda:N'."
        ) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available on "
                "this machine; use device='auto' to fall back to the CPU."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} was requested but only "
                f"{torch.cuda.device_count()} CUDA device(s) are present."
            )
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(
                f"device={device!r} was requested but MPS is not available."
            )
    elif dev.type != "cpu":
        raise ValueError(
            f"device={device!r} is not supported; use 'auto', 'cpu' or 'cuda'."
        )
    return dev


def map_location(device: torch.device | str) -> torch.device:
    """Device to load a stored model onto: ``device`` if usable, else CPU."""
    try:
        return resolve_device(device)
    except ValueError:
        warnings.warn(
            f"The model was trained on {str(device)!r}, which is not available "
            "here; it is loaded on the CPU.",
            UserWarning,
            stacklevel=3,
        )
        return torch.device("cpu")


# ---------------------------------------------------------------------------
# Randomness
# ---------------------------------------------------------------------------


@dataclass
class RandomState:
    """Local random generators created in ``fit`` from ``random_state``.

    Attributes
    ----------
    numpy : numpy.random.Generator
        For splits, sampling and anything done in numpy.
    cpu : torch.Generator
        For weight initialisation (modules are built on the CPU) and index
        permutations.
    device : torch.Generator
        For noise drawn on the training device (same object as ``cpu`` when
        the device is the CPU).
    seed : int
        The integer all three were seeded from; methods that regenerate a
        tensor on demand (instead of storing it) keep derived seeds.
    """

    numpy: np.random.Generator
    cpu: torch.Generator
    device: torch.Generator
    seed: int

    def spawn_seed(self) -> int:
        """Draw a fresh integer seed (for tensors regenerated on demand)."""
        return int(self.numpy.integers(0, 2**62))


def make_random_state(random_state, device: torch.device) -> RandomState:
    """Create local generators; the global numpy/torch state is not touched.

    ``random_state`` follows scikit-learn: ``None``, an int or a
    :class:`numpy.random.RandomState` (consumed through
    :func:`sklearn.utils.check_random_state`).
    """
    seed = int(check_random_state(random_state).randint(0, 2**31 - 1))
    cpu = torch.Generator(device="cpu")
    cpu.manual_seed(seed)
    if device.type == "cpu":
        dev = cpu
    else:
        dev = torch.Generator(device=device)
        dev.manual_seed(seed + 1)
    return RandomState(np.random.default_rng(seed), cpu, dev, seed)


@contextlib.contextmanager
def preserve_global_rng() -> Iterator[None]:
    """Restore the global torch CPU RNG state on exit.

    ``torch.nn`` layers draw their default initialisation from the global
    generator when they are constructed. skad re-initialises every parameter
    from its local generator (:func:`skad._nn.reset_parameters`) and wraps
    construction in this context so the user's global state is unchanged.
    """
    state = torch.random.get_rng_state()
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


# ---------------------------------------------------------------------------
# Data on the device
# ---------------------------------------------------------------------------


def to_tensor(
    X, device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Copy a numpy array to ``device`` as a contiguous tensor of ``dtype``."""
    X = np.ascontiguousarray(X)
    if not X.flags.writeable:
        # read-only memmaps: torch cannot wrap them without a copy
        X = X.copy()
    return torch.as_tensor(X, dtype=dtype, device=device)


def iter_minibatches(
    n_samples: int,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    *,
    shuffle: bool = True,
    drop_last: bool = False,
    weights: torch.Tensor | None = None,
) -> Iterator[torch.Tensor]:
    """Yield index tensors (on ``device``) that slice in-memory tensors.

    Rows are permuted once per epoch with ``generator`` (no per-row
    ``Dataset.__getitem__``). With ``weights`` (non-negative, one per row),
    an epoch instead draws ``n_samples`` rows with replacement in proportion to
    the weights: this is how semi-supervised detectors oversample their few
    labelled rows. A trailing batch of a single row is merged into the previous
    one so BatchNorm layers always see at least two rows.
    """
    if weights is not None:
        idx = torch.multinomial(
            weights.detach().to("cpu", torch.float64),
            n_samples,
            replacement=True,
            generator=generator,
        )
    elif shuffle:
        idx = torch.randperm(n_samples, generator=generator)
    else:
        idx = torch.arange(n_samples)
    idx = idx.to(device)
    batch_size = max(1, min(batch_size, n_samples))
    starts = list(range(0, n_samples, batch_size))
    if len(starts) > 1 and n_samples - starts[-1] == 1:
        starts.pop()
    for i, start in enumerate(starts):
        stop = starts[i + 1] if i + 1 < len(starts) else n_samples
        if drop_last and stop - start < batch_size and i > 0:
            return
        yield idx[start:stop]


def train_validation_split(
    n_samples: int, validation_fraction: float, rng: RandomState
) -> tuple[np.ndarray, np.ndarray]:
    """Random split of row indices into training and validation rows."""
    n_val = int(math.ceil(validation_fraction * n_samples))
    n_val = min(max(n_val, 1), n_samples - 2) if n_samples >= 3 else 0
    perm = rng.numpy.permutation(n_samples)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


# ---------------------------------------------------------------------------
# Optimiser
# ---------------------------------------------------------------------------


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
    if kind == "adam":
        return torch.optim.Adam(
            params, lr=learning_rate, weight_decay=weight_decay, **kwargs
        )
    if kind == "adamw":
        return torch.optim.AdamW(
            params, lr=learning_rate, weight_decay=weight_decay, **kwargs
        )
    if kind == "sgd":
        return torch.optim.SGD(
            params, lr=learning_rate, weight_decay=weight_decay, **kwargs
        )
    raise ValueError(f"Unknown optimizer {kind!r}.")


# ---------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------


@dataclass
class History:
    """What one call of :func:`train_epochs` records.

    ``loss_curve`` holds the mean training loss per epoch,
    ``validation_scores`` the validation loss per epoch (``None`` without early
    stopping), ``n_iter`` the number of epochs run, ``best_loss`` the best
    training (or, with early stopping, validation) loss, and ``extra`` the
    per-epoch means of any additional named losses the step returned.
    """

    loss_curve: list[float] = field(default_factory=list)
    validation_scores: list[float] | None = None
    n_iter: int = 0
    best_loss: float = math.inf
    extra: dict[str, list[float]] = field(default_factory=dict)
    stopped_early: bool = False


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


def _as_float_dict(out) -> dict[str, float | torch.Tensor]:
    if isinstance(out, dict):
        return dict(out)
    return {"loss": out}


def _set_train(modules: Sequence[torch.nn.Module], mode: bool) -> None:
    for m in modules:
        m.train(mode)


def train_epochs(
    step: Callable[[torch.Tensor], torch.Tensor | float | dict],
    *,
    n_samples: int,
    modules: Sequence[torch.nn.Module],
    optimizer: torch.optim.Optimizer | None,
    max_iter: int,
    batch_size: int,
    rng: RandomState,
    device: torch.device,
    validation_loss: Callable[[], float] | None = None,
    n_iter_no_change: int = 10,
    tol: float = 1e-4,
    verbose: int = 0,
    desc: str = "fit",
    learning_rate: float | None = None,
    sample_weights: torch.Tensor | None = None,
    drop_last: bool = False,
    stop_when: Callable[[History], bool] | None = None,
    restore_best: bool = True,
) -> History:
    """Run the epoch loop shared by every detector.

    Parameters
    ----------
    step : callable
        ``step(idx)`` receives the index tensor of one mini-batch (rows of the
        in-memory training tensors the caller closes over) and returns either a
        scalar loss tensor, or a dict whose ``"loss"`` entry is that tensor and
        whose other entries are extra losses to log. When ``optimizer`` is not
        None the engine does ``zero_grad`` / ``backward`` / ``step``; when it is
        None the step updates its own optimisers (alternating GAN updates) and
        may return plain floats.
    n_samples : int
        Number of training rows the indices range over.
    modules : sequence of torch.nn.Module
        Put in train mode for the loop and in eval mode afterwards.
    optimizer : torch.optim.Optimizer or None
    max_iter : int
        Maximum number of epochs.
    batch_size : int
    rng : RandomState
        Its ``cpu`` generator shuffles the rows.
    device : torch.device
    validation_loss : callable, optional
        Called after each epoch (in eval mode, without gradients); returns the
        validation loss. When given, early stopping watches it and the best
        weights are restored at the end (``restore_best``). Otherwise training
        stops when the training loss has not improved by ``tol`` for
        ``n_iter_no_change`` epochs, as in scikit-learn's MLP.
    n_iter_no_change, tol : int, float
    verbose : int
        > 0 shows a tqdm progress bar with the running losses.
    desc : str
        Label of the progress bar and of error messages.
    learning_rate : float, optional
        Only quoted in the divergence error message.
    sample_weights : torch.Tensor, optional
        Oversampling weights, see :func:`iter_minibatches`.
    drop_last : bool
    stop_when : callable, optional
        ``stop_when(history)`` after each epoch; True stops training (a
        method-specific criterion such as SLA2P's accuracy threshold).
    restore_best : bool
        With ``validation_loss``, reload the weights of the best epoch.

    Returns
    -------
    History

    Raises
    ------
    TrainingDivergedError
        When an epoch's mean loss is NaN or infinite (checked once per epoch,
        so a GPU is not synchronised after every batch); the message names
        the epoch.
    """
    history = History(validation_scores=[] if validation_loss is not None else None)
    best_state = None
    no_improve = 0
    bar = None
    if verbose:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_iter, desc=desc, unit="epoch", leave=False)
    try:
        for epoch in range(1, max_iter + 1):
            _set_train(modules, True)
            sums: dict[str, float] = {}
            count = 0
            for idx in iter_minibatches(
                n_samples,
                batch_size,
                rng.cpu,
                device,
                weights=sample_weights,
                drop_last=drop_last,
            ):
                out = _as_float_dict(step(idx))
                loss = out["loss"]
                if optimizer is not None:
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                n = int(idx.shape[0])
                count += n
                # Accumulate on the device; one host sync per epoch, not per batch.
                for k, v in out.items():
                    v = v.detach() if isinstance(v, torch.Tensor) else float(v)
                    sums[k] = sums.get(k, 0.0) + v * n
            means = {k: float(s) / max(count, 1) for k, s in sums.items()}
            _check_finite(means["loss"], epoch, f"{desc} loss", learning_rate)
            epoch_loss = means.pop("loss")
            history.loss_curve.append(epoch_loss)
            for k, v in means.items():
                history.extra.setdefault(k, []).append(v)
            history.n_iter = epoch
            _set_train(modules, False)

            if validation_loss is not None:
                with torch.no_grad():
                    val = float(validation_loss())
                _check_finite(val, epoch, f"{desc} validation loss", learning_rate)
                history.validation_scores.append(val)
                monitored = val
            else:
                monitored = epoch_loss
            if monitored < history.best_loss - tol:
                no_improve = 0
                if validation_loss is not None and restore_best:
                    best_state = [copy.deepcopy(m.state_dict()) for m in modules]
            else:
                no_improve += 1
            history.best_loss = min(history.best_loss, monitored)

            if bar is not None:
                post = {"loss": f"{epoch_loss:.4g}"}
                if validation_loss is not None:
                    post["val"] = f"{monitored:.4g}"
                post.update({k: f"{v:.3g}" for k, v in means.items()})
                bar.set_postfix(post)
                bar.update(1)
            if stop_when is not None and stop_when(history):
                break
            if no_improve >= n_iter_no_change:
                history.stopped_early = True
                logger.info(
                    "%s: no improvement of more than tol=%g for %d epochs; "
                    "stopping at epoch %d.",
                    desc,
                    tol,
                    n_iter_no_change,
                    epoch,
                )
                break
    finally:
        if bar is not None:
            bar.close()
        _set_train(modules, False)
    if best_state is not None:
        for m, s in zip(modules, best_state):
            m.load_state_dict(s)
    return history


# ---------------------------------------------------------------------------
# Inference
# ---------------------------------------------------------------------------


def _chunk_source(X, start: int, stop: int) -> torch.Tensor:
    """Rows ``start:stop`` of a numpy array or tensor, as a tensor (no copy of
    the whole input; a numpy slice is converted on its own)."""
    if isinstance(X, torch.Tensor):
        return X[start:stop]
    part = np.ascontiguousarray(X[start:stop])
    if not part.flags.writeable:
        part = part.copy()  # read-only memmaps: torch cannot wrap them
    return torch.from_numpy(part)


def predict_in_chunks(
    fn: Callable[[torch.Tensor], torch.Tensor | tuple[torch.Tensor, ...]],
    X,
    device: torch.device,
    *,
    chunk_size: int = SCORE_CHUNK_SIZE,
    grad: bool = False,
    reduce: str | None = None,
    as_numpy: bool = True,
):
    """Apply ``fn`` to ``X`` in chunks of one fixed shape; the only scoring path.

    Every call of ``fn`` receives a float32 tensor on ``device`` of exactly
    ``(chunk_size, *X.shape[1:])``: the last chunk is zero-padded and the
    padding rows are dropped from the result. Matrix products then always run
    with the same shapes and the same kernels, so a row's result does not
    depend on the rows it is scored with, on its position, on the number of
    rows or (measured with 1 and 2 threads) on the thread count; float32 and
    float64 input give the same result because the conversion to float32 is
    the first step. Memory stays bounded for any number of rows: one chunk at
    a time is on the device, and input of any numeric dtype (float16, int8,
    ...) is converted chunk by chunk, never as a whole.

    Parameters
    ----------
    fn : callable
        Maps a chunk to a tensor (or a tuple of tensors) whose first
        dimension indexes the rows of the chunk. Rows must be independent
        (modules in eval mode).
    X : ndarray or torch.Tensor
        Rows to process, any numeric dtype.
    device : torch.device
    chunk_size : int, default=SCORE_CHUNK_SIZE
        Rows per forward pass.
    grad : bool, default=False
        Run ``fn`` with autograd enabled (methods that take a gradient step
        at scoring time); otherwise under :func:`torch.no_grad`.
    reduce : {None, "sum"}, default=None
        ``"sum"`` returns the sum over the rows of each output instead of the
        per-row outputs (statistics over large training sets).
    as_numpy : bool, default=True
        Return float64 numpy arrays (on the host); False keeps float32
        tensors on ``device``.

    Returns
    -------
    ndarray, tensor or tuple of them
        Per-row outputs of shape ``(len(X), ...)``, or their sums.

    Notes
    -----
    When CUDA runs out of memory the chunk is halved and retried, down to a
    single row, for the rest of the call. The shape then changes, so scores
    of that call can differ in the last float32 bits from a call that did not
    run out of memory; the fixed-shape guarantee holds for every call that
    completes without an out-of-memory error.
    """
    n = X.shape[0]
    if reduce not in (None, "sum"):
        raise ValueError(f"reduce must be None or 'sum', got {reduce!r}.")
    ctx = contextlib.nullcontext if grad else torch.no_grad
    # Per-row numpy results go into arrays preallocated on the first chunk
    # (no list of small arrays interleaved with the chunk temporaries, which
    # fragmented the heap so that resident memory grew with n, and no
    # concatenation copy); tensors and sums are collected per chunk.
    results: list | None = None
    single = True
    start = 0
    size = max(1, int(chunk_size))
    buffer = None
    while start < n:
        stop = min(start + size, n)
        m = stop - start
        try:
            if buffer is None or buffer.shape[0] != size:
                buffer = torch.empty(
                    (size, *X.shape[1:]), dtype=torch.float32, device=device
                )
            buffer[:m].copy_(_chunk_source(X, start, stop))
            if m < size:
                buffer[m:].zero_()
            with ctx():
                out = fn(buffer)
            single = not isinstance(out, tuple | list)
            outs = [o[:m].detach() for o in ([out] if single else out)]
            del out
            if reduce == "sum":
                outs = [o.sum(dim=0) for o in outs]
            elif not as_numpy:
                outs = [o.clone() for o in outs]  # fn may return views of buffer
            if as_numpy:
                outs = [o.to("cpu", torch.float64).numpy() for o in outs]
            if results is None:
                if as_numpy and reduce is None:
                    results = [np.empty((n, *o.shape[1:])) for o in outs]
                else:
                    results = [[] for _ in outs]
            for r, o in zip(results, outs):
                if isinstance(r, np.ndarray):
                    r[start:stop] = o
                else:
                    r.append(o)
            del outs
        except _OOM_ERRORS:
            if size == 1:
                raise
            buffer = None
            size = max(1, size // 2)
            logger.warning(
                "Out of device memory while scoring; retrying with chunks of %d rows.",
                size,
            )
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        start = stop
    if results is None:
        if as_numpy:
            return np.empty((0,), dtype=np.float64)
        return torch.empty((0,), dtype=torch.float32, device=device)
    if reduce == "sum":
        merged = [sum(r[1:], r[0]) for r in results]
    elif as_numpy:
        merged = results
    else:
        merged = [torch.cat(r) if len(r) > 1 else r[0] for r in results]
    return merged[0] if single else tuple(merged)
