"""SLA2P's random projections: seeded, counter-based, never stored.

The ``K`` Gaussian matrices ``W_t`` (``D x d``) are generated from one seed
by a counter-based hash (:func:`gaussian_projections`) directly on the
device, so the same seed gives the same matrices on the CPU and on a GPU,
and any block of them can be regenerated on its own. A
:class:`ProjectionBank` serves them to a fitted detector: the whole tensor
from a module-level cache when ``K * D * d`` is at most
``_PROJECTION_BUDGET`` entries, otherwise regenerated block by block with at
most that many entries alive at once. The cache lives here, keyed weakly by
the detector, so that pickles, ``skad.save`` files and deep copies never
carry projections.
"""

from __future__ import annotations

import math
import weakref

import torch

__all__ = ["ProjectionBank", "gaussian_projections"]

#: Most projection-matrix entries held in memory at once (64 MB in float32).
#: Above it the projections are regenerated per block instead of cached.
_PROJECTION_BUDGET = 2**24

#: Entries hashed per generation pass (bounds the integer temporaries).
_GENERATION_CHUNK = 2**20

_MASK32 = 0xFFFFFFFF

#: Cached projection tensors per fitted detector (see the module docstring).
_PROJECTION_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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


class ProjectionBank:
    """The ``n_transforms`` projections ``(n_inputs, projection_dim)`` of one
    fitted detector, generated from its seed on demand.

    A short-lived view: the detector builds one when it needs projections
    and keeps none, and the cached tensor is stored in the module-level
    cache under ``owner`` (the detector), never on it.
    """

    def __init__(self, owner, seed: int, n_transforms: int, n_inputs: int, dim: int):
        self.owner = owner
        self.seed = int(seed)
        self.n_transforms = int(n_transforms)
        self.n_inputs = int(n_inputs)
        self.dim = int(dim)

    def forget(self) -> None:
        """Drop the owner's cached projections."""
        _PROJECTION_CACHE.pop(self.owner, None)

    def cacheable(self) -> bool:
        """Whether all ``K * D * d`` entries fit ``_PROJECTION_BUDGET``."""
        return self.n_transforms * self.n_inputs * self.dim <= _PROJECTION_BUDGET

    def all(self, device, dtype) -> torch.Tensor | None:
        """The full (K, D, d) tensor when it fits the budget (cached)."""
        if not self.cacheable():
            return None
        key = (self.seed, self.n_inputs, str(device), dtype)
        cache = _PROJECTION_CACHE.get(self.owner)
        if cache is None or cache[0] != key:
            # a normal tensor even when the first scoring runs under
            # torch.inference_mode, so that later scoring with autograd on
            # (input attributions) can use the cache
            with torch.inference_mode(False):
                W = gaussian_projections(
                    self.seed,
                    range(self.n_transforms),
                    self.n_inputs,
                    self.dim,
                    device=device,
                    dtype=dtype,
                )
            _PROJECTION_CACHE[self.owner] = cache = (key, W)
        return cache[1]

    def project(self, X: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        """``X @ W_t`` for every ``t`` in ``ts``: shape (n, len(ts), d).

        Uses the cached projections when they fit the budget, otherwise
        regenerates them in blocks of at most ``_PROJECTION_BUDGET`` entries
        (whole matrices, or row blocks of one matrix when one is too big).
        """
        W = self.all(X.device, X.dtype)
        if W is not None:
            return torch.einsum("nf,kfd->nkd", X, W[ts])
        D, d = self.n_inputs, self.dim
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
                    self.seed,
                    ts[k0 : k0 + kb],
                    D,
                    d,
                    features=(f0, f1),
                    device=X.device,
                    dtype=X.dtype,
                )
                out[:, k0 : k0 + kb] += torch.einsum("nf,kfd->nkd", X[:, f0:f1], W)
        return out

    def fold(self, weight: torch.Tensor) -> torch.Tensor | None:
        """``W_t`` times the first (folded) layer for every projection ``t``.

        A ``(D, K * h)`` matrix ``Q`` with ``x Q[:, t h:(t+1) h] = (x W_t) A``,
        ``A = weight^T``: the first layer's pre-activations of all ``K``
        transformed vectors in one product, ``D h`` instead of
        ``D d + d h`` multiply-adds per pair. None when that is not fewer
        (``D`` at least ``d h / (h - d)``) or the projections are not cached.
        """
        K, D, d = self.n_transforms, self.n_inputs, self.dim
        h = weight.shape[0]
        if D * h >= D * d + d * h or K * D * h > _PROJECTION_BUDGET:
            return None
        W = self.all(weight.device, weight.dtype)
        if W is None:
            return None
        return (W @ weight.t()).transpose(0, 1).reshape(D, K * h)
