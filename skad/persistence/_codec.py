"""Encoding fitted state to JSON + tensors, and validating decoding."""

from __future__ import annotations

import math

import numpy as np
import torch

from skad.persistence._archive import (
    _TensorFile,
)
from skad.persistence._common import (
    _DEVICE_TYPES,
    _MAX_NAME_CHARS,
    _MAX_NDIM,
    _MAX_STRING_ARRAY_BYTES,
    _float32_range,
    _Invalid,
    _is_int,
    _is_real,
)

_SAVEABLE_TENSOR_DTYPES = {
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
}


class _Encoder:
    """Turn attribute values into JSON-able data plus a dict of tensors."""

    def __init__(self, owner: str):
        self.owner = owner
        self.tensors: dict[str, torch.Tensor] = {}

    def _store(self, path: str, t: torch.Tensor) -> None:
        if t.dtype not in _SAVEABLE_TENSOR_DTYPES:
            raise TypeError(
                f"{self.owner}: tensor {path!r} has dtype {t.dtype}; skad.save "
                "stores boolean, integer and floating-point tensors only."
            )
        self.tensors[path] = t.detach().to("cpu").contiguous().clone()

    def encode(self, value, path: str):
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, int | float) and type(value) in (int, float):
            return value
        if isinstance(value, np.generic):
            if isinstance(value, np.bool_ | np.integer | np.floating):
                return {"__npscalar__": value.dtype.str, "value": value.item()}
        if isinstance(value, tuple):
            return {
                "__tuple__": [
                    self.encode(v, f"{path}.{i}") for i, v in enumerate(value)
                ]
            }
        if isinstance(value, list):
            return [self.encode(v, f"{path}.{i}") for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {
                "__dict__": [
                    [self.encode(k, f"{path}.key"), self.encode(v, f"{path}.{k}")]
                    for k, v in value.items()
                ]
            }
        if isinstance(value, torch.device):
            return {"__device__": str(value)}
        if isinstance(value, torch.dtype):
            return {"__torch_dtype__": str(value).replace("torch.", "")}
        if isinstance(value, torch.nn.Module):
            return self._module(value, path)
        if isinstance(value, torch.Tensor):
            self._store(path, value)
            return {"__tensor__": path}
        if isinstance(value, np.ndarray):
            return self._ndarray(value, path)
        if isinstance(value, np.random.RandomState):
            name, keys, pos, has_gauss, cached = value.get_state()
            self.tensors[path] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
            return {
                "__random_state__": path,
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "cached_gaussian": float(cached),
            }
        raise TypeError(
            f"{self.owner}: {path.split('.')[0]!r} holds a "
            f"{type(value).__module__}.{type(value).__qualname__} at {path!r}, "
            "which skad.save cannot store without pickle. Use joblib.dump(est, "
            "path) / joblib.load(path) instead (pickle: load only files you trust)."
        )

    def _ndarray(self, value: np.ndarray, path: str):
        if value.dtype.kind in "biuf" and value.dtype.byteorder in "=|<":
            if value.dtype.itemsize > 8:
                raise TypeError(
                    f"{self.owner}: array {path!r} of dtype {value.dtype} cannot be "
                    "saved by skad.save; use joblib.dump instead."
                )
            self.tensors[path] = torch.from_numpy(np.ascontiguousarray(value).copy())
            return {"__ndarray__": path, "dtype": value.dtype.str}
        if value.dtype.kind in "biuf":
            return self._ndarray(value.astype(value.dtype.newbyteorder("<")), path)
        if value.dtype.kind in "OU":
            items = value.tolist()
            flat = value.ravel().tolist()
            if all(isinstance(v, str) for v in flat) or value.dtype.kind == "U":
                return {
                    "__ndarray_str__": items,
                    "dtype": value.dtype.str,
                    "shape": list(value.shape),
                }
            return {
                "__ndarray_obj__": [
                    self.encode(v, f"{path}.{i}") for i, v in enumerate(flat)
                ],
                "shape": list(value.shape),
            }
        raise TypeError(
            f"{self.owner}: array {path!r} of dtype {value.dtype} cannot be saved "
            "by skad.save; use joblib.dump instead."
        )

    def _module(self, module: torch.nn.Module, path: str):
        keys = []
        for name, t in _module_tensors(module).items():
            self._store(f"{path}/{name}", t)
            keys.append(name)
        return {"__module__": path, "keys": keys}


def _module_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of ``module`` plus its non-persistent buffers."""
    state = module.state_dict(keep_vars=True)
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"the state dict of {type(module).__qualname__} holds {name!r} of "
                f"type {type(value).__name__}; skad.save stores tensors only."
            )
    for name, buf in module.named_buffers():
        if name not in state and buf is not None:
            state[name] = buf
    return state


_TORCH_DTYPES = {
    name: getattr(torch, name)
    for name in (
        "float16",
        "bfloat16",
        "float32",
        "float64",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "bool",
    )
}

_MARKERS = {
    "__tuple__": {"__tuple__"},
    "__dict__": {"__dict__"},
    "__npscalar__": {"__npscalar__", "value"},
    "__device__": {"__device__"},
    "__torch_dtype__": {"__torch_dtype__"},
    "__tensor__": {"__tensor__"},
    "__ndarray__": {"__ndarray__", "dtype"},
    "__ndarray_str__": {"__ndarray_str__", "dtype", "shape"},
    "__ndarray_obj__": {"__ndarray_obj__", "shape"},
    "__random_state__": {"__random_state__", "pos", "has_gauss", "cached_gaussian"},
    "__module__": {"__module__", "keys"},
}

_TORCH_TO_NUMPY = {
    torch.bool: np.dtype(np.bool_),
    torch.uint8: np.dtype(np.uint8),
    torch.int8: np.dtype(np.int8),
    torch.int16: np.dtype(np.int16),
    torch.int32: np.dtype(np.int32),
    torch.int64: np.dtype(np.int64),
    torch.float16: np.dtype(np.float16),
    torch.float32: np.dtype(np.float32),
    torch.float64: np.dtype(np.float64),
}

for _t, _n in (("uint16", np.uint16), ("uint32", np.uint32), ("uint64", np.uint64)):
    if hasattr(torch, _t):
        _TORCH_TO_NUMPY[getattr(torch, _t)] = np.dtype(_n)


class _ModuleRef:
    """Placeholder for a module whose weights are in the tensors file."""

    def __init__(self, key: str, names: list[str]):
        self.key = key
        self.names = names


def _parse_device(value, where):
    if not isinstance(value, str) or len(value) > 64:
        raise _Invalid(f"{where} is not a device")
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise _Invalid(f"{where} is the invalid device {value!r}") from None
    if device.type not in _DEVICE_TYPES:
        raise _Invalid(
            f"{where} is the device {value!r}; skad models live on "
            f"{', '.join(_DEVICE_TYPES)}"
        )
    return device


def _shape(value, n_items: int | None, where) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or len(value) > _MAX_NDIM
        or not all(_is_int(s) and s >= 0 for s in value)
    ):
        raise _Invalid(f"{where} has the invalid shape {value!r}")
    if n_items is not None and math.prod(value) != n_items:
        raise _Invalid(f"{where} has shape {value} but {n_items} items")
    return tuple(value)


def _flatten(nested, shape, where) -> list:
    """Items of a nested list that must have exactly ``shape``."""
    if not shape:
        return [nested]
    if not isinstance(nested, list) or len(nested) != shape[0]:
        raise _Invalid(f"{where} does not have its declared shape")
    out = []
    for item in nested:
        out.extend(_flatten(item, shape[1:], where))
    return out


class _Decoder:
    """Validating decoder of the JSON description.

    Every marker must have exactly its keys, every referenced tensor must be
    the one the encoder would have named, and every value is bounded.
    """

    def __init__(self, tensors: _TensorFile):
        self.tensors = tensors
        self.used: set[str] = set()

    def _tensor_key(self, key, at):
        if key != at:
            raise _Invalid(f"{at} refers to tensor {key!r} instead of {at!r}")
        if key not in self.tensors.specs:
            raise _Invalid(f"{at} refers to tensor {key!r}, which is missing")
        if key in self.used:
            raise _Invalid(f"tensor {key!r} is referred to twice")
        self.used.add(key)
        return key

    def _numeric_array(self, key, at) -> np.ndarray:
        dtype = self.tensors.specs[key][0]
        if dtype not in _TORCH_TO_NUMPY:
            raise _Invalid(f"{at} has the tensor dtype {dtype}, which numpy lacks")
        if dtype == torch.bool:
            self.tensors.check_values(key, at)
        return self.tensors.view(key).numpy().copy()

    def decode(self, value, at: str, *, modules: bool):
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise _Invalid(f"{at} holds an integer beyond the int64 range")
        if isinstance(value, float) and not _float32_range(value):
            what = "NaN" if math.isnan(value) else f"{value}, beyond the float32 range"
            raise _Invalid(f"{at} holds {what}")
        if isinstance(value, int | float):
            return value
        if isinstance(value, list):  # decoded in place: no second list
            for i, v in enumerate(value):
                value[i] = self.decode(v, f"{at}.{i}", modules=modules)
            return value
        if not isinstance(value, dict):
            raise _Invalid(f"{at} holds an unexpected value")
        marker = next((m for m in _MARKERS if m in value), None)
        if marker is None or set(value) != _MARKERS[marker]:
            raise _Invalid(f"{at} holds an unknown entry {sorted(value)[:4]}")
        body = value[marker]
        if marker == "__tuple__":
            if not isinstance(body, list):
                raise _Invalid(f"{at} is a malformed tuple")
            return tuple(
                self.decode(v, f"{at}.{i}", modules=modules) for i, v in enumerate(body)
            )
        if marker == "__dict__":
            return self._dict(body, at, modules)
        if marker == "__npscalar__":
            return self._npscalar(body, value["value"], at)
        if marker == "__device__":
            return _parse_device(body, at)
        if marker == "__torch_dtype__":
            if body not in _TORCH_DTYPES:
                raise _Invalid(f"{at} is the unknown dtype {body!r}")
            return _TORCH_DTYPES[body]
        if marker == "__tensor__":
            key = self._tensor_key(body, at)
            self.tensors.check_values(key, at)
            return self.tensors.view(key).clone()
        if marker == "__ndarray__":
            return self._ndarray(body, value["dtype"], at)
        if marker == "__ndarray_str__":
            return self._ndarray_str(body, value["dtype"], value["shape"], at)
        if marker == "__ndarray_obj__":
            return self._ndarray_obj(body, value["shape"], at)
        if marker == "__random_state__":
            return self._random_state(value, at)
        # __module__
        if not modules:
            raise _Invalid(f"{at} is a torch module, which a parameter cannot be")
        names = value["keys"]
        if body != at:
            raise _Invalid(f"{at} refers to module {body!r} instead of {at!r}")
        if (
            not isinstance(names, list)
            or not all(
                isinstance(n, str) and 0 < len(n) <= _MAX_NAME_CHARS for n in names
            )
            or len(set(names)) != len(names)
        ):
            raise _Invalid(f"{at} lists invalid or repeated weight names")
        for n in names:
            self._tensor_key(f"{at}/{n}", f"{at}/{n}")
        return _ModuleRef(at, list(names))

    def _dict(self, body, at, modules):
        if not isinstance(body, list):
            raise _Invalid(f"{at} is a malformed dict")
        out = {}
        for pair in body:
            if not isinstance(pair, list) or len(pair) != 2:
                raise _Invalid(f"{at} is a malformed dict")
            k = self.decode(pair[0], f"{at}.key", modules=False)
            if not (k is None or isinstance(k, str | bool | int | float)):
                raise _Invalid(f"{at} has a key that is not a string or number")
            if k in out:
                raise _Invalid(f"{at} repeats the key {k!r}")
            out[k] = self.decode(pair[1], f"{at}.{k}", modules=modules)
        return out

    def _npscalar(self, dtype, v, at):
        try:
            dt = np.dtype(dtype) if isinstance(dtype, str) and len(dtype) < 8 else None
        except TypeError:
            dt = None
        if dt is None or dt.kind not in "biuf" or dt.itemsize > 8:
            raise _Invalid(f"{at} has the unsupported scalar dtype {dtype!r}")
        if not isinstance(v, bool | int | float):
            raise _Invalid(f"{at} has a non-numeric scalar")
        try:
            return dt.type(v)
        except (OverflowError, ValueError, TypeError):
            raise _Invalid(f"{at}: {v!r} does not fit {dt}") from None

    def _ndarray(self, key, dtype, at):
        key = self._tensor_key(key, at)
        arr = self._numeric_array(key, at)
        try:
            declared = (
                np.dtype(dtype) if isinstance(dtype, str) and len(dtype) < 8 else None
            )
        except TypeError:
            declared = None
        if declared is None or declared != arr.dtype:
            raise _Invalid(
                f"{at} declares dtype {dtype!r} but its tensor holds {arr.dtype}"
            )
        return arr

    def _ndarray_str(self, nested, dtype, shape, at):
        try:
            dt = np.dtype(dtype) if isinstance(dtype, str) and len(dtype) < 16 else None
        except TypeError:
            dt = None
        if dt is None or dt.kind not in "UO":
            raise _Invalid(f"{at} declares the unsupported string dtype {dtype!r}")
        shape = _shape(shape, None, at)
        n = math.prod(shape)
        if dt.kind == "U" and dt.itemsize * n > _MAX_STRING_ARRAY_BYTES:
            raise _Invalid(
                f"{at} declares a string array of {dt.itemsize * n} bytes "
                f"(at most {_MAX_STRING_ARRAY_BYTES})"
            )
        items = _flatten(nested, shape, at)
        if not all(isinstance(s, str) for s in items):
            raise _Invalid(f"{at} is a string array holding non-strings")
        if dt.kind == "U":
            return np.array(items, dtype=dt).reshape(shape)
        arr = np.empty(len(items), dtype=object)
        arr[:] = items
        return arr.reshape(shape)

    def _ndarray_obj(self, body, shape, at):
        if not isinstance(body, list):
            raise _Invalid(f"{at} is a malformed object array")
        shape = _shape(shape, len(body), at)
        items = [self.decode(v, f"{at}.{i}", modules=False) for i, v in enumerate(body)]
        if not all(v is None or isinstance(v, str | bool | int | float) for v in items):
            raise _Invalid(f"{at} is an object array holding containers")
        arr = np.empty(len(items), dtype=object)
        arr[:] = items
        return arr.reshape(shape)

    def _random_state(self, value, at):
        key = self._tensor_key(value["__random_state__"], at)
        dtype, shape = self.tensors.specs[key][:2]
        pos, has_gauss, cached = (
            value["pos"],
            value["has_gauss"],
            value["cached_gaussian"],
        )
        if dtype != torch.int64 or shape != (624,):
            raise _Invalid(f"{at} has a random-state key of the wrong shape or dtype")
        keys = self.tensors.view(key).numpy()
        if (keys < 0).any() or (keys >= 2**32).any():
            raise _Invalid(f"{at} has random-state keys outside [0, 2**32)")
        if not (_is_int(pos) and 0 <= pos <= 624 and has_gauss in (0, 1)):
            raise _Invalid(f"{at} has an invalid random-state position")
        if not (_is_real(cached) and math.isfinite(cached)):
            raise _Invalid(f"{at} has an invalid cached random value")
        rs = np.random.RandomState()
        rs.set_state(("MT19937", keys.astype(np.uint32), pos, has_gauss, float(cached)))
        return rs


def _count_items(value) -> int:
    """Number of JSON values inside ``value`` (a parameter)."""
    if isinstance(value, list):
        return len(value) + sum(_count_items(v) for v in value)
    if isinstance(value, dict):
        return len(value) + sum(_count_items(v) for v in value.values())
    return 0
