"""Rebuilding the networks on the meta device, checking them against the
file, then allocating them and copying the weights in."""

from __future__ import annotations

import math

import numpy as np
import torch

from skad._device import has_tensors
from skad.persistence._archive import (
    _FLOAT_DTYPES,
    _TensorFile,
)
from skad.persistence._codec import (
    _module_tensors,
    _ModuleRef,
)
from skad.persistence._common import (
    ModelFileError,
    _is_int,
)
from skad.persistence._schema import (
    _short_repr,
)

# Position of ``size`` among the positional arguments of numpy Generator methods.
_SIZE_ARG = {
    "random": 0,
    "standard_normal": 0,
    "standard_exponential": 0,
    "bytes": 0,
    "normal": 2,
    "uniform": 2,
    "integers": 2,
    "choice": 1,
    "exponential": 1,
    "standard_gamma": 1,
    "poisson": 1,
    "gamma": 2,
    "beta": 2,
    "binomial": 2,
    "laplace": 2,
    "logistic": 2,
    "lognormal": 2,
}


def _n_requested(method: str, args, kwargs) -> int:
    if method in ("permutation", "shuffle", "permuted"):
        x = args[0] if args else kwargs.get("x")
        return int(x) if _is_int(x) else int(np.size(x))
    pos = _SIZE_ARG.get(method)
    size = kwargs.get(
        "size", args[pos] if pos is not None and len(args) > pos else None
    )
    n = 1 if size is None else math.prod(np.atleast_1d(np.asarray(size, dtype=object)))
    if method == "choice":
        a = args[0] if args else kwargs.get("a")
        if _is_int(a):
            n = max(int(n), int(a))
    return int(n)


class _BoundedGenerator:
    """numpy Generator for rebuilding networks at load time.

    Random values drawn while building end up in buffers, which the file
    carries, so a legitimate rebuild draws at most as many values as the file
    holds. This proxy refuses to draw more, so that parameters in a hostile
    file cannot make ``_build_networks`` allocate huge numpy arrays.
    """

    def __init__(self, budget: int, path):
        self._rng = np.random.default_rng(0)
        self._left = budget
        self._path = path

    def __getattr__(self, name):
        attr = getattr(self._rng, name)
        if not callable(attr):
            return attr

        def guarded(*args, **kwargs):
            self._left -= _n_requested(name, args, kwargs)
            if self._left < 0:
                raise ModelFileError(
                    f"{self._path}: rebuilding the network would draw more random "
                    "values than the file holds; its parameters do not match "
                    "its weights."
                )
            return attr(*args, **kwargs)

        return guarded


def _same(a, b) -> bool:
    """Equality of decoded attribute values (arrays, containers, scalars)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and bool(np.array_equal(a, b))
        )
    if isinstance(a, list | tuple) or isinstance(b, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict) or isinstance(b, dict):
        return (
            isinstance(a, dict)
            and isinstance(b, dict)
            and a.keys() == b.keys()
            and all(_same(a[k], b[k]) for k in a)
        )
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - incomparable values differ
        return False


def _has_refs(value) -> bool:
    if isinstance(value, _ModuleRef):
        return True
    if isinstance(value, dict):
        return any(_has_refs(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_refs(v) for v in value)
    return False


def _pair_modules(saved, built, where, path, out):
    """Match the module references of ``saved`` with the rebuilt objects."""
    if isinstance(saved, _ModuleRef):
        if not isinstance(built, torch.nn.Module):
            raise ModelFileError(
                f"{path}: {where} holds the weights of a torch module, but the "
                f"network its parameters describe has no such module (got "
                f"{type(built).__name__})."
            )
        out.append((saved, built, where))
        return built
    if isinstance(saved, dict):
        if not isinstance(built, dict) or set(built) != set(saved):
            raise ModelFileError(f"{path}: cannot rebuild the modules of {where}.")
        return {
            k: _pair_modules(v, built[k], f"{where}[{k!r}]", path, out)
            for k, v in saved.items()
        }
    if isinstance(saved, list | tuple):
        if not isinstance(built, list | tuple) or len(built) != len(saved):
            raise ModelFileError(f"{path}: cannot rebuild the modules of {where}.")
        return type(saved)(
            _pair_modules(s, b, f"{where}[{i}]", path, out)
            for i, (s, b) in enumerate(zip(saved, built))
        )
    return saved


def _check_module(ref: _ModuleRef, module, tensors: _TensorFile, where, path):
    """Names, shapes and dtypes of the weights against the meta-built module."""
    try:
        expected = _module_tensors(module)
    except TypeError as exc:
        raise ModelFileError(f"{path}: cannot rebuild {where}: {exc}") from None
    missing = sorted(set(expected) - set(ref.names))
    extra = sorted(set(ref.names) - set(expected))
    if missing or extra:
        raise ModelFileError(
            f"{path}: the weights of {where} do not match the network its "
            f"parameters describe: missing {missing[:5]}, unexpected {extra[:5]}."
        )
    for name in ref.names:
        target = expected[name]
        dtype, shape = tensors.specs[f"{ref.key}/{name}"][:2]
        if shape != tuple(target.shape):
            raise ModelFileError(
                f"{path}: {where}.{name} has shape {shape} in the file, but "
                f"{tuple(target.shape)} in the network its parameters describe."
            )
        compatible = (
            dtype in _FLOAT_DTYPES
            if target.dtype in _FLOAT_DTYPES
            else dtype == target.dtype
        )
        if not compatible:
            raise ModelFileError(
                f"{path}: {where}.{name} has dtype {dtype} in the file, but "
                f"{target.dtype} in the network."
            )


def _fill_module(ref: _ModuleRef, module, tensors: _TensorFile) -> None:
    module.to_empty(device="cpu")
    targets = dict(module.named_parameters(remove_duplicate=False))
    targets.update(dict(module.named_buffers(remove_duplicate=False)))
    with torch.no_grad():
        for name in ref.names:
            targets[name].copy_(tensors.view(f"{ref.key}/{name}"))


def _find_meta(value, where):
    """Name of a tensor still on the meta device inside ``value``, or None."""
    if isinstance(value, torch.nn.Module):
        for name, t in list(value.named_parameters()) + list(value.named_buffers()):
            if t.is_meta:
                return f"{where}.{name}"
        for mod_name, mod in value.named_modules():
            for k, v in vars(mod).items():
                if isinstance(v, torch.Tensor) and v.is_meta:
                    return f"{where}.{mod_name}.{k}".replace("..", ".")
        return None
    if isinstance(value, torch.Tensor):
        return where if value.is_meta else None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for k, v in items:
        found = _find_meta(v, f"{where}[{k!r}]")
        if found:
            return found
    return None


_MISSING = object()


def _build(est, budget: int, path) -> None:
    """``est``'s networks built by its hook, drawing at most ``budget``
    numpy values (call inside ``torch.device("meta")``)."""
    est._rebuild_networks(numpy=_BoundedGenerator(budget, path))


def _n_values(est) -> int:
    """Number of values in the modules among ``est``'s attributes."""
    return sum(
        t.numel()
        for value in vars(est).values()
        if has_tensors(value)
        for module in _modules_in(value)
        for t in _module_tensors(module).values()
    )


def _modules_in(value):
    if isinstance(value, torch.nn.Module):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _modules_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _modules_in(v)


def _check_feature_count(est, plain: dict, tensors: _TensorFile, path) -> None:
    """Refuse an ``n_features_in_`` that sizes networks beyond the file.

    A ``_build_networks`` hook may allocate numpy arrays sized by the number
    of features before drawing any random number (an identity matrix, a
    range), which the meta device does not cover (skad's own hooks build
    such arrays with torch; this guards any that do not). Builds on the meta
    device at 2, 3 and 4 features (``n_features_in_`` and the first entry of
    ``input_shape_``) tell whether the networks grow with the number of
    features, linearly or quadratically; the file must then hold at least
    ``n_features_in_`` (or its square) values before the real build runs.
    """
    d, have = plain.get("n_features_in_"), tensors.total_elements
    if not _is_int(d) or d <= 4 or d * d <= have:
        return
    shape = plain.get("input_shape_")
    counts = []
    try:
        for probe in (2, 3, 4):
            est.n_features_in_ = probe
            if isinstance(shape, tuple) and shape:  # (d,) or (C, H, W)
                est.input_shape_ = (probe, *shape[1:])
            with torch.device("meta"):
                _build(est, have + 1024, path)
            counts.append(_n_values(est))
    except Exception:  # noqa: BLE001 - cannot tell: assume linear growth
        counts = [0, 1, 2]
    finally:
        for name, value in plain.items():
            setattr(est, name, value)
    c2, c3, c4 = counts
    need = d * d if c4 - c3 > c3 - c2 else d if c4 != c2 else 0
    if have < need:
        raise ModelFileError(
            f"{path}: n_features_in_={d} describes networks of at least {need} "
            f"values, but the file holds {have}."
        )


def _rebuild(est, plain: dict, with_modules: dict, tensors: _TensorFile, path):
    """Rebuild the networks on the meta device, check them against the file,
    then allocate them and copy the weights in."""
    _check_feature_count(est, plain, tensors, path)
    cls = type(est)
    try:
        with torch.device("meta"):
            _build(est, tensors.total_elements + 1024, path)
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(
            f"{path}: {cls.__name__} cannot build a network from the parameters "
            f"and attributes in the file: {type(exc).__name__}: {exc}"
        ) from exc
    state = vars(est)
    for name, saved in plain.items():
        now = state.get(name, _MISSING)
        if now is not saved and (now is _MISSING or not _same(saved, now)):
            raise ModelFileError(
                f"{path}: {name} is {_short_repr(saved)} in the file, but the "
                f"parameters give {_short_repr(now)}."
            )
    pairs = []
    rebuilt = {
        name: _pair_modules(saved, state.get(name), name, path, pairs)
        for name, saved in with_modules.items()
    }
    for name, value in state.items():
        if name not in with_modules and name not in plain and has_tensors(value):
            raise ModelFileError(
                f"{path}: the network its parameters describe has {name}, whose "
                "weights the file lacks."
            )
    for ref, module, where in pairs:
        _check_module(ref, module, tensors, where, path)
    for ref, _, where in pairs:
        for name in ref.names:
            tensors.check_values(
                f"{ref.key}/{name}",
                f"{where}.{name}",
                nonnegative=name.rpartition(".")[2] == "running_var",
            )
    for ref, module, _ in pairs:
        _fill_module(ref, module, tensors)
    for name, value in rebuilt.items():
        setattr(est, name, value)
    for name, value in vars(est).items():
        found = _find_meta(value, name)
        if found:
            raise ModelFileError(
                f"{path}: {cls.__name__} keeps the tensor {found} outside its "
                "state dict, so skad.load cannot restore it."
            )
