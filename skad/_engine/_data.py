"""Data on the device: tensors, mini-batch indices, validation splits and
the one fixed-shape chunked path every forward pass at scoring time takes."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator

import numpy as np
import torch

from skad._engine._random import RandomState

__all__ = [
    "SCORE_CHUNK_SIZE",
    "iter_minibatches",
    "predict_in_chunks",
    "to_tensor",
    "train_validation_split",
]

logger = logging.getLogger("skad")

#: Rows per scoring forward pass (every chunk is padded to this shape, see
#: :func:`predict_in_chunks`); chosen by measurement, see docs/reliability.rst.
SCORE_CHUNK_SIZE = 1024

_OOM_ERRORS = (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),)


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
# Inference: one fixed-shape path
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
            source = _chunk_source(X, start, stop)
            if m == size and source.dtype == torch.float32 and (
                source.device == device and source.is_contiguous()
            ):
                chunk = source  # a full float32 chunk already in place: no copy
            else:
                if buffer is None or buffer.shape[0] != size:
                    buffer = torch.empty(
                        (size, *X.shape[1:]), dtype=torch.float32, device=device
                    )
                buffer[:m].copy_(source)
                if m < size:
                    buffer[m:].zero_()
                chunk = buffer
            with ctx():
                out = fn(chunk)
            single = not isinstance(out, tuple | list)
            outs = [o[:m].detach() for o in ([out] if single else out)]
            del out
            if reduce == "sum":
                outs = [o.sum(dim=0) for o in outs]
            elif not as_numpy:
                outs = [o.clone() for o in outs]  # fn may return views of chunk
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
