"""Save and load skad detectors without pickle.

:func:`save` writes one file: a ZIP archive (use the extension ``.skad``)
holding two members,

``skad.json``
    The format version, the skad and torch versions that wrote it, the
    detector's class, its parameters (``get_params(deep=False)``) and every
    fitted attribute that is plain data (numbers, strings, lists, tuples,
    dicts, devices). Arrays and tensors are referenced by key.
``tensors.safetensors``
    Every tensor: the ``state_dict`` of each fitted ``torch.nn.Module`` and
    each fitted ``torch.Tensor`` or numeric ``numpy.ndarray``. Its SHA-256 is
    recorded in ``skad.json`` and checked on loading.

:func:`load` reads the JSON and the safetensors file and runs no pickle. It
only instantiates detector classes listed by :func:`skad.all_estimators`,
rebuilds their networks with the detector's ``_build_networks`` hook (which
depends only on parameters and plain fitted attributes), loads the weights,
and places the model on the device it was trained on, or on the CPU, with a
warning, when that device is not available here. Loading a file is therefore
safe for files from untrusted sources, unlike ``pickle`` / ``joblib.load``.

``pickle`` and ``joblib.dump`` / ``joblib.load`` keep working as for any
scikit-learn estimator; use them for objects :func:`save` refuses, such as a
:class:`~sklearn.pipeline.Pipeline` or a detector whose parameters hold a
user-supplied ``torch.nn.Module``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
import zipfile

import numpy as np
import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from skad._device import has_tensors, map_location, map_tensors
from skad._version import __version__

__all__ = ["save", "load", "InconsistentVersionWarning"]

#: Version of the file layout written by :func:`save`.
FORMAT_VERSION = 1
_FORMAT_NAME = "skad-model"
_JSON_NAME = "skad.json"
_TENSORS_NAME = "tensors.safetensors"
_IGNORED_ATTRIBUTES = {"_metadata_request"}


class InconsistentVersionWarning(UserWarning):
    """Warning raised when a file was written by another version of skad.

    Examples
    --------
    >>> import warnings
    >>> from skad.persistence import InconsistentVersionWarning
    >>> issubclass(InconsistentVersionWarning, UserWarning)
    True
    """


# ---------------------------------------------------------------------------
# Encoding to JSON + tensors
# ---------------------------------------------------------------------------


class _Encoder:
    """Turn attribute values into JSON-able data plus a dict of tensors."""

    def __init__(self, owner: str):
        self.owner = owner
        self.tensors: dict[str, torch.Tensor] = {}

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
            self.tensors[path] = value.detach().to("cpu").contiguous().clone()
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
        state = module.state_dict()
        persistent = set(state)
        for name, buf in module.named_buffers():
            if name not in persistent and buf is not None:
                state[name] = buf
        keys = []
        for name, t in state.items():
            key = f"{path}/{name}"
            self.tensors[key] = t.detach().to("cpu").contiguous().clone()
            keys.append(name)
        return {"__module__": path, "keys": keys}


def _check_params(est) -> dict:
    params = est.get_params(deep=False)
    for name, value in params.items():
        if isinstance(value, torch.nn.Module):
            raise TypeError(
                f"{type(est).__name__}.{name} is a user-supplied torch.nn.Module "
                f"({type(value).__qualname__}); skad.save stores only modules that "
                "the detector builds itself, because loading an arbitrary module "
                "would need pickle. Use joblib.dump(est, path) and "
                "joblib.load(path) instead (pickle: load only files you trust)."
            )
    return params


def _allowed_classes() -> dict[str, type]:
    from skad.utils.discovery import all_estimators

    return {f"{cls.__module__}.{cls.__qualname__}": cls for _, cls in all_estimators()}


def _fitted_state(est) -> dict:
    params = set(est.get_params(deep=False))
    return {
        k: v
        for k, v in vars(est).items()
        if k not in params and k not in _IGNORED_ATTRIBUTES and not k.startswith("__")
    }


def save(estimator, path) -> None:
    """Save a skad detector to a file, without pickle.

    The file is a ZIP archive (suggested extension ``.skad``) with the
    parameters and plain fitted attributes as JSON and every tensor in
    safetensors format; see :mod:`skad.persistence`. Load it with
    :func:`load`.

    Parameters
    ----------
    estimator : skad detector
        A fitted (or unfitted) detector listed by :func:`skad.all_estimators`.
    path : str or os.PathLike
        File to write; it is overwritten if it exists.

    Raises
    ------
    TypeError
        If ``estimator`` is not a skad detector (for a ``Pipeline`` use
        ``joblib.dump``), or if a parameter or fitted attribute cannot be
        stored without pickle, such as a user-supplied ``torch.nn.Module``.

    See Also
    --------
    load : Read a file written by this function.
    joblib.dump : Pickle-based persistence of any estimator.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import skad
    >>> X = np.random.default_rng(0).normal(size=(100, 3))
    >>> det = skad.DeepSVDD(max_iter=2, device="cpu", random_state=0).fit(X)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.skad")
    >>> skad.save(det, path)
    >>> loaded = skad.load(path)
    >>> bool(np.array_equal(loaded.score_samples(X), det.score_samples(X)))
    True
    """

    cls = type(estimator)
    class_path = f"{cls.__module__}.{cls.__qualname__}"
    if class_path not in _allowed_classes():
        raise TypeError(
            f"skad.save stores skad detectors (see skad.all_estimators()); got "
            f"{class_path}. Use joblib.dump for pipelines and other objects."
        )
    params = _check_params(estimator)
    enc = _Encoder(cls.__name__)
    meta = {
        "format": _FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "skad_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
        "class": class_path,
        "params": {k: enc.encode(v, k) for k, v in params.items()},
        "attributes": {
            k: enc.encode(v, k) for k, v in _fitted_state(estimator).items()
        },
    }
    blob = _st_save(enc.tensors) if enc.tensors else _st_save({})
    meta["tensors_sha256"] = hashlib.sha256(blob).hexdigest()
    text = json.dumps(meta, indent=1, sort_keys=True)
    with zipfile.ZipFile(os.fspath(path), "w") as zf:
        zf.writestr(_JSON_NAME, text, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr(_TENSORS_NAME, blob, compress_type=zipfile.ZIP_STORED)


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------

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
        "complex64",
        "complex128",
    )
}


class _Decoder:
    def __init__(self, tensors: dict[str, torch.Tensor], path):
        self.tensors = tensors
        self.path = path
        self.modules: list[tuple[str, list[str]]] = []

    def _tensor(self, key):
        if not isinstance(key, str) or key not in self.tensors:
            raise ValueError(
                f"{self.path}: the model file refers to a tensor {key!r} that is "
                "missing; the file is damaged."
            )
        return self.tensors[key]

    def decode(self, value):
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        if not isinstance(value, dict) or len(value) == 0:
            raise ValueError(f"{self.path}: unexpected value {value!r} in the file.")
        if "__tuple__" in value:
            return tuple(self.decode(v) for v in value["__tuple__"])
        if "__dict__" in value:
            return {self.decode(k): self.decode(v) for k, v in value["__dict__"]}
        if "__npscalar__" in value:
            return np.dtype(value["__npscalar__"]).type(value["value"])
        if "__device__" in value:
            return torch.device(value["__device__"])
        if "__torch_dtype__" in value:
            return _TORCH_DTYPES[value["__torch_dtype__"]]
        if "__tensor__" in value:
            return self._tensor(value["__tensor__"])
        if "__ndarray__" in value:
            arr = self._tensor(value["__ndarray__"]).numpy()
            return arr.astype(np.dtype(value["dtype"]), copy=False)
        if "__ndarray_str__" in value:
            arr = np.array(value["__ndarray_str__"], dtype=np.dtype(value["dtype"]))
            return arr.reshape(value["shape"])
        if "__ndarray_obj__" in value:
            items = [self.decode(v) for v in value["__ndarray_obj__"]]
            arr = np.empty(len(items), dtype=object)
            arr[:] = items
            return arr.reshape(value["shape"])
        if "__random_state__" in value:
            keys = self._tensor(value["__random_state__"]).numpy().astype(np.uint32)
            rs = np.random.RandomState()
            rs.set_state(
                (
                    "MT19937",
                    keys,
                    int(value["pos"]),
                    int(value["has_gauss"]),
                    float(value["cached_gaussian"]),
                )
            )
            return rs
        if "__module__" in value:
            return _ModuleRef(value["__module__"], list(value["keys"]))
        raise ValueError(f"{self.path}: unknown entry {sorted(value)} in the file.")


class _ModuleRef:
    """Placeholder for a module whose weights are in the tensors file."""

    def __init__(self, key: str, names: list[str]):
        self.key = key
        self.names = names


def _has_refs(value) -> bool:
    if isinstance(value, _ModuleRef):
        return True
    if isinstance(value, dict):
        return any(_has_refs(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_refs(v) for v in value)
    return False


def _fill_modules(saved, built, tensors, where: str, path):
    """Load the weights referenced by ``saved`` into the rebuilt ``built``."""
    if isinstance(saved, _ModuleRef):
        if not isinstance(built, torch.nn.Module):
            raise ValueError(
                f"{path}: {where} was a torch module when saved, but the "
                "detector's _build_networks did not rebuild it (got "
                f"{type(built).__name__}); this model cannot be loaded by "
                "skad.load."
            )
        _load_module_state(built, saved, tensors, where, path)
        return built
    if isinstance(saved, dict):
        if not isinstance(built, dict) or set(built) != set(saved):
            raise ValueError(f"{path}: cannot rebuild the modules of {where}.")
        return {
            k: _fill_modules(v, built[k], tensors, f"{where}[{k!r}]", path)
            for k, v in saved.items()
        }
    if isinstance(saved, list | tuple):
        if not isinstance(built, list | tuple) or len(built) != len(saved):
            raise ValueError(f"{path}: cannot rebuild the modules of {where}.")
        out = [
            _fill_modules(s, b, tensors, f"{where}[{i}]", path)
            for i, (s, b) in enumerate(zip(saved, built))
        ]
        return type(saved)(out)
    return saved


def _load_module_state(module, ref: _ModuleRef, tensors, where, path):
    expected = set(module.state_dict())
    missing = expected - set(ref.names)
    if missing:
        raise ValueError(
            f"{path}: the weights of {where} lack {sorted(missing)[:5]}; the file "
            "does not match this version of the detector."
        )
    params = dict(module.named_parameters())
    with torch.no_grad():
        for name in ref.names:
            t = tensors.get(f"{ref.key}/{name}")
            if t is None:
                raise ValueError(f"{path}: tensor {ref.key}/{name} is missing.")
            owner_name, _, leaf = name.rpartition(".")
            owner = module.get_submodule(owner_name) if owner_name else module
            if name in params:
                p = params[name]
                if p.shape != t.shape:
                    raise ValueError(
                        f"{path}: {where}.{name} has shape {tuple(t.shape)} in the "
                        f"file but {tuple(p.shape)} in the rebuilt network."
                    )
                p.data = t.to(p.device, p.dtype)
            elif leaf in owner._buffers:
                old = owner._buffers[leaf]
                if old is not None and old.is_floating_point():
                    t = t.to(old.dtype) if t.is_floating_point() else t
                owner._buffers[leaf] = t
            else:
                raise ValueError(
                    f"{path}: {where} has no parameter or buffer {name!r}; the "
                    "file does not match this version of the detector."
                )


def _parse_version(v: str) -> tuple[int, ...]:
    parts = []
    for piece in str(v).split(".")[:3]:
        m = re.match(r"\d+", piece)
        parts.append(int(m.group()) if m else 0)
    return tuple(parts)


def _read(path):
    try:
        with zipfile.ZipFile(os.fspath(path), "r") as zf:
            names = set(zf.namelist())
            if _JSON_NAME not in names or _TENSORS_NAME not in names:
                raise ValueError(
                    f"{path} is a ZIP file but not a skad model file (it lacks "
                    f"{_JSON_NAME} or {_TENSORS_NAME})."
                )
            text = zf.read(_JSON_NAME)
            blob = zf.read(_TENSORS_NAME)
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise ValueError(
            f"{path} is not a readable skad model file (truncated or corrupted?): {exc}"
        ) from exc
    try:
        meta = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: the model description is corrupted: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT_NAME:
        raise ValueError(f"{path} is not a skad model file.")
    return meta, blob


def load(path):
    """Load a detector written by :func:`save`; runs no pickle.

    Only classes listed by :func:`skad.all_estimators` are instantiated. The
    model goes to the device it was trained on when that device is available
    here, otherwise to the CPU with a warning.

    Parameters
    ----------
    path : str or os.PathLike
        File written by :func:`save`.

    Returns
    -------
    estimator : skad detector
        Scores exactly as the saved detector on the same device.

    Raises
    ------
    ValueError
        If the file is truncated, corrupted or tampered with, was written by
        a newer file-format version, or names a class outside skad.

    Warns
    -----
    InconsistentVersionWarning
        If the file was written by another version of skad.
    UserWarning
        If the model was trained on a device that is not available here.

    See Also
    --------
    save : Write a detector to a file.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import skad
    >>> X = np.random.default_rng(0).normal(size=(100, 3))
    >>> path = os.path.join(tempfile.mkdtemp(), "model.skad")
    >>> skad.save(skad.DeepSVDD(max_iter=2, device="cpu").fit(X), path)
    >>> skad.load(path).predict(X[:3])
    array([1, 1, 1])
    """

    meta, blob = _read(path)
    fmt = meta.get("format_version")
    if not isinstance(fmt, int) or fmt > FORMAT_VERSION:
        raise ValueError(
            f"{path} uses skad file format {fmt!r}, written by skad "
            f"{meta.get('skad_version')}; this skad {__version__} reads format "
            f"{FORMAT_VERSION} and older. Upgrade skad to load it."
        )
    saved_version = str(meta.get("skad_version"))
    if saved_version != __version__:
        newer = _parse_version(saved_version)[:2] > _parse_version(__version__)[:2]
        warnings.warn(
            f"{path} was written by skad {saved_version}, "
            + ("a newer version than " if newer else "while this is ")
            + f"skad {__version__}; the model may load incorrectly or score "
            "differently." + (" Upgrade skad to load it safely." if newer else ""),
            InconsistentVersionWarning,
            stacklevel=2,
        )
    if meta.get("tensors_sha256") != hashlib.sha256(blob).hexdigest():
        raise ValueError(
            f"{path}: the tensors do not match the checksum recorded in the file; "
            "it was truncated or modified."
        )
    classes = _allowed_classes()
    cls = classes.get(meta.get("class"))
    if cls is None:
        raise ValueError(
            f"{path} names the class {meta.get('class')!r}, which is not a skad "
            "detector of this installation; refusing to load it."
        )
    try:
        tensors = _st_load(blob)
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"{path}: the tensors are corrupted: {exc}") from exc

    dec = _Decoder(tensors, path)
    try:
        params = {k: dec.decode(v) for k, v in meta["params"].items()}
        attributes = {k: dec.decode(v) for k, v in meta["attributes"].items()}
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: the model description is corrupted: {exc}") from exc

    est = cls()
    est.set_params(**params)
    plain = {k: v for k, v in attributes.items() if not _has_refs(v)}
    with_modules = {k: v for k, v in attributes.items() if _has_refs(v)}
    saved_device = plain.get("device_")
    for k, v in plain.items():
        setattr(est, k, v)
    if saved_device is not None:
        device = map_location(saved_device)
        est.device_ = device
    else:
        device = torch.device("cpu")

    if with_modules:
        est._rebuild_networks()
        for k, v in plain.items():  # the build may have set plain attributes
            if k != "device_":
                setattr(est, k, v)
        for k, saved in with_modules.items():
            built = getattr(est, k, None)
            setattr(est, k, _fill_modules(saved, built, tensors, k, path))

    if saved_device is not None:
        for k, v in list(vars(est).items()):
            if has_tensors(v):
                setattr(est, k, map_tensors(v, lambda t: t.to(device)))
        est._eval_modules()
    return est
