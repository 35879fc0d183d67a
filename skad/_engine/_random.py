"""Local random generators; the user's global torch and numpy state is never
read, written, saved or restored."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.utils import check_random_state
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["RandomState", "make_random_state", "private_default_generator"]


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


class _DefaultGeneratorRedirect(TorchDispatchMode):
    """Give every random op that would draw from torch's default generator
    ``generator`` instead (dispatch modes are thread-local)."""

    def __init__(self, generator: torch.Generator):
        super().__init__()
        self.generator = generator

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if kwargs.get("generator") is None:
            target = _with_generator(func)
            if target is not None:
                kwargs["generator"] = self.generator
                func = target
        return func(*args, **kwargs)


def _with_generator(func):
    """``func`` itself when it takes a ``generator`` argument, else its
    overload that does (``rand`` -> ``rand.generator``, ``randint.low`` ->
    ``randint.low_generator``), else None (the op draws nothing)."""
    if any(a.name == "generator" for a in func._schema.arguments):
        return func
    name = func._overloadname
    alt = "generator" if name == "default" else f"{name}_generator"
    return getattr(func.overloadpacket, alt, None)


@contextlib.contextmanager
def private_default_generator(seed: int = 0) -> Iterator[torch.Generator]:
    """Serve draws from torch's default CPU generator from a private one.

    ``torch.nn`` layers draw their default initialisation from the global
    generator when they are constructed. skad re-initialises every
    parameter from its local generator afterwards
    (:func:`skad._nn.reset_parameters`); inside this context those first
    draws come from a private generator seeded with ``seed``, so the
    user's global state is neither consumed nor saved and restored (which
    would race with other threads drawing from it).
    """
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    with _DefaultGeneratorRedirect(gen):
        yield gen
