"""Control of torch's intra-op thread pool during parallel searches."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from numbers import Integral

import torch


@contextlib.contextmanager
def torch_threads(n_threads: int = 1) -> Iterator[int]:
    """Limit torch's CPU threads inside the block, then restore them.

    ``GridSearchCV(n_jobs=k)`` runs its fits in joblib's ``loky`` worker
    processes, and joblib already limits each worker to ``cpu_count() // k``
    OpenMP threads, which torch follows (unless ``OMP_NUM_THREADS`` is set
    in the parent's environment, which then wins). Dask workers started as
    processes by a ``distributed`` nanny get ``OMP_NUM_THREADS=1``. Fits that
    run as *threads of one process* (``joblib`` ``"threading"`` backend, or
    ``distributed.LocalCluster(processes=False)``) share torch's single
    process-wide pool instead; wrap the search in this context manager so the
    concurrent fits do not oversubscribe the cores.

    Parameters
    ----------
    n_threads : int, default=1
        Number of intra-op threads torch may use inside the block.

    Yields
    ------
    previous : int
        The number of threads torch used before the block.

    See Also
    --------
    torch.set_num_threads : The process-wide setting changed here.

    Examples
    --------
    >>> import torch
    >>> from skad.utils import torch_threads
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    if not isinstance(n_threads, Integral) or isinstance(n_threads, bool):
        raise TypeError(f"n_threads must be an int, got {n_threads!r}.")
    if n_threads < 1:
        raise ValueError(f"n_threads must be at least 1, got {n_threads}.")
    previous = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        yield previous
    finally:
        torch.set_num_threads(previous)
