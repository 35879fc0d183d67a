"""Save and load skad detectors without pickle; every file is treated as hostile.

File layout
-----------
:func:`save` writes one ZIP archive (use the extension ``.skad``) with three
members:

``skad.json``
    UTF-8 JSON: the format name and version, the skad and torch versions that
    wrote it, the detector's class, its parameters (``get_params(deep=False)``)
    and its public fitted attributes. Plain data (numbers, strings, lists,
    tuples, dicts, devices) is stored inline; arrays, tensors and the weights
    of every fitted ``torch.nn.Module`` are referenced by the name of a tensor
    in the next member.
``tensors.safetensors``
    Every tensor, in the safetensors format, stored uncompressed.
``integrity.json``
    ``{"sha256": ...}``, plus ``"hmac_sha256"`` when :func:`save` was given a
    ``key``: the SHA-256 digest and the HMAC-SHA256 tag of the framed content
    ``b"skad-model\\x00" + n_json + json + n_tensors + tensors``, where
    ``n_json`` and ``n_tensors`` are the byte lengths of the two members as
    8-byte little-endian integers.

Files of format 1 (skad 0.1: no ``integrity.json``, a SHA-256 of the tensors
only in ``skad.json``) are still read, with every check below.

What :func:`load` guarantees
----------------------------
:func:`load` runs no pickle and no code from the file, instantiates only
classes listed by :func:`skad.all_estimators`, and raises
:class:`ModelFileError` (a ``ValueError``) with a message naming the file and
the problem for any file it refuses:

* ZIP structure: the end record must end the file and describe at most three
  members in at most 4 KiB; members must have the expected names (no
  duplicates, no others), no encryption, compression ``stored`` or
  ``deflate`` (the tensors: ``stored`` only, so they cannot inflate beyond
  the file). Declared sizes are checked before reading and every read is
  capped, so a header that lies about its size cannot inflate more than the
  cap: ``skad.json`` at most 8 MiB, ``integrity.json`` 1 KiB, the
  safetensors header 8 MiB.
* JSON: nesting depth (at most 32) and number of arrays and objects are
  checked with a scan of the bytes before parsing; duplicate keys, unknown
  entries and unknown top-level keys are refused.
* Integrity: the SHA-256 digest over both members must match. With
  ``key=...`` the HMAC-SHA256 tag must verify (with
  :func:`hmac.compare_digest`) before anything else in the file is parsed;
  an unsigned file is then refused.
* Parameters: only the class's parameters, each list at most 4096 items,
  checked by the class's scikit-learn parameter constraints.
* Networks: rebuilt with the detector's ``_build_networks`` hook on PyTorch's
  ``meta`` device, which allocates no memory, so parameters or attributes
  describing a network of any size cost nothing. Every parameter and buffer
  must then match the safetensors header exactly (same names, same shape,
  a compatible dtype) before any memory is allocated for the weights, so the
  networks hold exactly as many values as the file carries. Random numbers the
  hook draws are limited to that number of values too. Weights and buffers
  must be finite (``running_var`` non-negative), then they are copied in.
* Fitted attributes: names must be identifiers ending in ``_`` that shadow
  nothing of the class (no method, property or parameter); each must be
  declared in the class's ``Attributes`` docstring section (when docstrings
  are available) and have the declared type (``int``, ``float``,
  ``tuple of int``, ``ndarray of shape (n_features_in_,)``, ...); the common
  ones are range checked (``offset_`` finite and within the float32 range,
  ``n_features_in_`` a positive int of at most ``2**24``, ``n_*_``
  non-negative ints, loss curves finite, ``device_`` a CPU, CUDA or MPS
  device, ``feature_names_in_`` a 1-D array of strings). No fitted value may
  be NaN. Arrays hold booleans, integers, floats or strings only. Attributes
  that the rebuild recomputes must equal the file's values.

A checksum only detects accidental corruption: anyone who edits a file can
recompute it. Only the optional key tells you that a file was written by
someone holding the key and not modified since. Neither proves that a model
is any good: a well-formed file can still hold weights that score every row
as normal.

``pickle`` and ``joblib.dump`` / ``joblib.load`` keep working as for any
scikit-learn estimator; use them for objects :func:`save` refuses, such as a
:class:`~sklearn.pipeline.Pipeline` or a detector whose parameters hold a
user-supplied ``torch.nn.Module``, and load such files only if you trust them.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import hmac
import inspect
import json
import keyword
import math
import os
import re
import secrets
import stat
import struct
import warnings
import zipfile
from numbers import Integral, Real

import numpy as np
import torch
from safetensors.torch import save as _st_save
from sklearn.utils._param_validation import make_constraint

from skad import _engine
from skad._version import __version__

__all__ = ["save", "load", "ModelFileError", "InconsistentVersionWarning"]

#: Version of the file layout written by :func:`save`.
FORMAT_VERSION = 2
_FORMAT_NAME = "skad-model"
_JSON_NAME = "skad.json"
_TENSORS_NAME = "tensors.safetensors"
_INTEGRITY_NAME = "integrity.json"
_DIGEST_PREFIX = b"skad-model\x00"
_META_KEYS = {
    "format",
    "format_version",
    "skad_version",
    "torch_version",
    "class",
    "params",
    "attributes",
}
_IGNORED_ATTRIBUTES = {"_metadata_request"}

# Limits of the loader (see the module docstring and docs/reliability.rst).
_MAX_JSON_BYTES = 8 * 2**20
_MAX_JSON_DEPTH = 32
_MAX_JSON_CONTAINERS = 2**16
_MAX_INTEGRITY_BYTES = 1024
_MAX_TENSOR_HEADER_BYTES = 8 * 2**20
_MAX_TENSORS = 2**16
_MAX_CENTRAL_DIRECTORY_BYTES = 4096
_MAX_FEATURES = 2**24
_MAX_PARAM_ITEMS = 4096
_MAX_STRING_ARRAY_BYTES = 64 * 2**20
_MAX_NDIM = 32
_MAX_NAME_CHARS = 1024
_CHECK_CHUNK = 2**22
_READ_CHUNK = 2**20
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_DEVICE_TYPES = ("cpu", "cuda", "mps")
_ZIP_FLAGS_ALLOWED = 0x0002 | 0x0004 | 0x0008 | 0x0800  # deflate options,
# data descriptor, UTF-8 names; anything else (encryption, patches) is refused


class ModelFileError(ValueError):
    """Raised by :func:`load` for a file it refuses.

    The message names the file and what is wrong with it: damaged or
    truncated, not a skad model, a checksum or signature that does not
    verify, or content that does not describe a valid detector (wrong
    shapes, non-finite weights, unexpected attributes, sizes beyond the
    loader's limits). It subclasses ``ValueError``, so ``except ValueError``
    catches it.

    Examples
    --------
    >>> from skad.persistence import ModelFileError
    >>> issubclass(ModelFileError, ValueError)
    True
    """


class InconsistentVersionWarning(UserWarning):
    """Warning raised when a file was written by another version of skad.

    Examples
    --------
    >>> import warnings
    >>> from skad.persistence import InconsistentVersionWarning
    >>> issubclass(InconsistentVersionWarning, UserWarning)
    True
    """


class _Invalid(Exception):
    """A rule broken by a value; :func:`load` and :func:`save` re-raise it."""


def _as_key(key) -> bytes | None:
    if key is None:
        return None
    if isinstance(key, str):
        key = key.encode("utf-8")
    if not isinstance(key, bytes | bytearray | memoryview):
        raise TypeError(
            f"key must be bytes or str, got {type(key).__name__}; for example "
            "secrets.token_bytes(32), kept secret."
        )
    key = bytes(key)
    if not key:
        raise ValueError("key must not be empty; use e.g. secrets.token_bytes(32).")
    return key


def _integrity(json_bytes: bytes, tensor_bytes, key: bytes | None) -> dict:
    """SHA-256 digest (and HMAC-SHA256 tag with ``key``) of the content."""
    parts = (
        _DIGEST_PREFIX,
        struct.pack("<Q", len(json_bytes)),
        json_bytes,
        struct.pack("<Q", len(tensor_bytes)),
        tensor_bytes,
    )
    digest = hashlib.sha256()
    tag = hmac.new(key, digestmod=hashlib.sha256) if key is not None else None
    for part in parts:
        digest.update(part)
        if tag is not None:
            tag.update(part)
    out = {"sha256": digest.hexdigest()}
    if tag is not None:
        out["hmac_sha256"] = tag.hexdigest()
    return out


# ---------------------------------------------------------------------------
# Encoding to JSON + tensors
# ---------------------------------------------------------------------------

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
    """Public fitted state: everything in ``vars`` but parameters and private
    names (a leading underscore marks a cache, rebuilt when needed)."""
    params = set(est.get_params(deep=False))
    return {
        k: v
        for k, v in vars(est).items()
        if k not in params and k not in _IGNORED_ATTRIBUTES and not k.startswith("_")
    }


def _write_atomic(path: str, members) -> None:
    """Write the ZIP archive to a temporary file next to ``path``, then
    ``os.replace`` it: an interrupted save leaves any old file intact."""
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(folder, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)  # the umask applies, as for open()
            break
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue
    try:
        with contextlib.suppress(OSError):  # keep the permissions of a file
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))  # we replace
        with os.fdopen(fd, "wb") as fh:
            with zipfile.ZipFile(fh, "w") as zf:
                for name, data, compress_type in members:
                    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                    info.compress_type = compress_type
                    info.external_attr = 0o644 << 16
                    zf.writestr(info, data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename durable (POSIX)
        with contextlib.suppress(OSError):
            dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def save(estimator, path, *, key=None) -> None:
    """Save a skad detector to a file, without pickle.

    The file is a ZIP archive (suggested extension ``.skad``) with the
    parameters and public fitted attributes as JSON, every tensor in
    safetensors format and a SHA-256 digest of both; see
    :mod:`skad.persistence`. It is written to a temporary file in the same
    folder and then renamed over ``path``, so an interrupted save never
    destroys an existing file. Load it with :func:`load`.

    Parameters
    ----------
    estimator : skad detector
        A fitted (or unfitted) detector listed by :func:`skad.all_estimators`.
    path : str or os.PathLike
        File to write; it is replaced if it exists.
    key : bytes or str, default=None
        Secret key to sign the file with (HMAC-SHA256 over its content), for
        example ``secrets.token_bytes(32)``. ``load(path, key=key)`` then
        verifies that the file was written by a holder of the key and not
        modified since. A ``str`` is encoded as UTF-8.

    Raises
    ------
    TypeError
        If ``estimator`` is not a skad detector (for a ``Pipeline`` use
        ``joblib.dump``), or if a parameter or fitted attribute cannot be
        stored without pickle (such as a user-supplied ``torch.nn.Module``)
        or would be refused by :func:`load` (an undeclared attribute, a name
        that shadows a method).
    ValueError
        If a fitted attribute holds a value :func:`load` refuses (NaN, a
        non-finite ``offset_``), or the description exceeds the loader's
        limits.

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

    Sign the file with a secret key to let :func:`load` check its origin:

    >>> key = b"a secret of at least 32 random bytes..."
    >>> skad.save(det, path, key=key)
    >>> skad.load(path, key=key).predict(X[:3])
    array([1, 1, 1])
    """
    key = _as_key(key)
    cls = type(estimator)
    class_path = f"{cls.__module__}.{cls.__qualname__}"
    if class_path not in _allowed_classes():
        raise TypeError(
            f"skad.save stores skad detectors (see skad.all_estimators()); got "
            f"{class_path}. Use joblib.dump for pipelines and other objects."
        )
    params = _check_params(estimator)
    attributes = _fitted_state(estimator)
    _check_attributes(cls, attributes, params, saving=True)
    for name, value in attributes.items():
        for module in _walk_values(value):
            if isinstance(module, torch.nn.Module) and not all(
                bool(torch.isfinite(t).all())
                for t in _module_tensors(module).values()
                if t.is_floating_point()
            ):
                raise ValueError(
                    f"{cls.__name__} cannot be saved: the weights of {name} hold "
                    "NaN or infinite values; skad.load would refuse them."
                )
    enc = _Encoder(cls.__name__)
    meta = {
        "format": _FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "skad_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
        "class": class_path,
        "params": {k: enc.encode(v, k) for k, v in params.items()},
        "attributes": {k: enc.encode(v, k) for k, v in attributes.items()},
    }
    if len(enc.tensors) > _MAX_TENSORS:
        raise ValueError(
            f"{cls.__name__} holds {len(enc.tensors)} tensors; skad.load accepts "
            f"at most {_MAX_TENSORS}. Use joblib.dump instead."
        )
    text = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode("utf-8")
    try:
        _check_json_bytes(text, _MAX_JSON_BYTES, "the model description")
    except _Invalid as exc:
        raise ValueError(
            f"{cls.__name__} cannot be saved for skad.load: {exc} (for example "
            "very many feature names). Use joblib.dump instead."
        ) from None
    blob = _st_save(enc.tensors)
    integrity = json.dumps(_integrity(text, blob, key), sort_keys=True).encode()
    _write_atomic(
        os.fspath(path),
        [
            (_JSON_NAME, text, zipfile.ZIP_DEFLATED),
            (_TENSORS_NAME, blob, zipfile.ZIP_STORED),
            (_INTEGRITY_NAME, integrity, zipfile.ZIP_STORED),
        ],
    )


# ---------------------------------------------------------------------------
# Reading the archive
# ---------------------------------------------------------------------------

_STRING_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_OPEN, _CLOSE = frozenset(b"[{"), frozenset(b"]}")


def _check_json_bytes(raw: bytes, limit: int, what: str, max_depth=_MAX_JSON_DEPTH):
    """Size, nesting depth and container count of JSON text, before parsing.

    String literals are blanked out, then the brackets are counted: a file
    cannot make the parser (or the decoder) recurse deeply or build millions
    of containers.
    """
    if len(raw) > limit:
        raise _Invalid(f"{what} has {len(raw)} bytes, more than the {limit} allowed")
    bare = _STRING_TOKEN.sub(b"", raw)
    codes = np.frombuffer(bare, dtype=np.uint8)
    opens = (codes == ord("[")) | (codes == ord("{"))
    closes = (codes == ord("]")) | (codes == ord("}"))
    n_open, n_close = int(opens.sum()), int(closes.sum())
    if n_open > _MAX_JSON_CONTAINERS or n_close > _MAX_JSON_CONTAINERS:
        raise _Invalid(
            f"{what} holds more than {_MAX_JSON_CONTAINERS} JSON arrays or objects"
        )
    if n_open > max_depth:
        where = np.flatnonzero(opens | closes)
        steps = np.where(opens[where], 1, -1).astype(np.int32)
        depth = int(np.cumsum(steps).max()) if steps.size else 0
        if depth > max_depth:
            raise _Invalid(
                f"{what} is nested {depth} levels deep (at most {max_depth} allowed)"
            )


def _parse_json(raw: bytes, what: str, path, limit=_MAX_JSON_BYTES, depth=None):
    try:
        _check_json_bytes(raw, limit, what, depth or _MAX_JSON_DEPTH)
    except _Invalid as exc:
        raise ModelFileError(f"{path}: {exc}.") from None

    def no_duplicates(pairs):
        out = dict(pairs)
        if len(out) != len(pairs):
            raise ModelFileError(f"{path}: {what} repeats a key.")
        return out

    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
    except ModelFileError:
        raise
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digits
        raise ModelFileError(f"{path}: {what} is corrupted: {exc}") from exc


def _check_end_record(fh, size: int, path) -> None:
    """Bound the ZIP central directory before ``zipfile`` reads it.

    ``zipfile`` reads the end record from the last 22 bytes when the archive
    has no comment (skad writes none) and the ZIP64 record just before it;
    the same records are checked here.
    """
    bad = (
        f"{path} is not a readable skad model file (truncated or corrupted?): "
        "it does not end with a ZIP end record"
    )
    if size < 22:
        raise ModelFileError(bad + ".")
    fh.seek(size - 22)
    end = fh.read(22)
    sig, _, _, _, n_entries, cd_size, _, comment = struct.unpack("<4s4H2LH", end)
    if sig != b"PK\x05\x06" or comment != 0:
        raise ModelFileError(bad + ".")
    if size >= 22 + 20 + 56:
        fh.seek(size - 42)
        loc_sig = fh.read(20)[:4]
        if loc_sig == b"PK\x06\x07":
            fh.seek(size - 42 - 56)
            rec = fh.read(56)
            fields = struct.unpack("<4sQ2H2L4Q", rec)
            if fields[0] == b"PK\x06\x06":
                n_entries, cd_size = fields[7], fields[8]
    if n_entries > 3 or cd_size > _MAX_CENTRAL_DIRECTORY_BYTES:
        raise ModelFileError(
            f"{path} is not a skad model file: its ZIP directory declares "
            f"{n_entries} members in {cd_size} bytes (at most 3 members in "
            f"{_MAX_CENTRAL_DIRECTORY_BYTES} bytes)."
        )


def _read_member(zf, info, limit: int, path, what: str, size_on_disk: int):
    """Read one member through a capped stream into a bytearray."""
    if info.file_size > limit:
        raise ModelFileError(
            f"{path}: {what} declares {info.file_size} bytes, more than the "
            f"{limit} allowed."
        )
    if info.compress_size > size_on_disk:
        raise ModelFileError(f"{path}: {what} declares more bytes than the file has.")
    out = bytearray(info.file_size)
    view = memoryview(out)
    pos = 0
    try:
        with zf.open(info) as stream:
            while pos < info.file_size:
                chunk = stream.read(min(_READ_CHUNK, info.file_size - pos))
                if not chunk:
                    break
                view[pos : pos + len(chunk)] = chunk
                pos += len(chunk)
            extra = stream.read(1)
    except (zipfile.BadZipFile, EOFError, OSError, RuntimeError) as exc:
        raise ModelFileError(
            f"{path}: {what} is corrupted (truncated or modified?): {exc}"
        ) from exc
    except Exception as exc:  # zlib.error and the like
        raise ModelFileError(
            f"{path}: {what} is corrupted (truncated or modified?): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    finally:
        view.release()
    if pos != info.file_size or extra:
        raise ModelFileError(f"{path}: {what} does not have its declared size.")
    return out


def _read_archive(fh, path):
    """The raw bytes of the members: (json, tensors, integrity or None)."""
    size = os.fstat(fh.fileno()).st_size
    _check_end_record(fh, size, path)
    fh.seek(0)
    try:
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise ModelFileError(
            f"{path} is not a readable skad model file (truncated or corrupted?): {exc}"
        ) from exc
    with zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise ModelFileError(f"{path}: the archive repeats a member name.")
        if set(names) not in (
            {_JSON_NAME, _TENSORS_NAME},
            {_JSON_NAME, _TENSORS_NAME, _INTEGRITY_NAME},
        ):
            raise ModelFileError(
                f"{path} is a ZIP file but not a skad model file: it holds "
                f"{sorted(names)[:5]}, not {_JSON_NAME}, {_TENSORS_NAME} and "
                f"{_INTEGRITY_NAME}."
            )
        by_name = {i.filename: i for i in infos}
        for info in infos:
            if info.flag_bits & ~_ZIP_FLAGS_ALLOWED:
                raise ModelFileError(
                    f"{path}: member {info.filename} is encrypted or uses ZIP "
                    f"features skad does not write (flags {info.flag_bits:#x})."
                )
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ModelFileError(
                    f"{path}: member {info.filename} uses compression method "
                    f"{info.compress_type}; skad files use stored or deflate only."
                )
        tensors_info = by_name[_TENSORS_NAME]
        if tensors_info.compress_type != zipfile.ZIP_STORED or (
            tensors_info.compress_size != tensors_info.file_size
        ):
            raise ModelFileError(
                f"{path}: {_TENSORS_NAME} is compressed; skad stores it "
                "uncompressed so that it cannot inflate beyond the file."
            )
        text = _read_member(
            zf, by_name[_JSON_NAME], _MAX_JSON_BYTES, path, _JSON_NAME, size
        )
        integrity = None
        if _INTEGRITY_NAME in by_name:
            integrity = _read_member(
                zf,
                by_name[_INTEGRITY_NAME],
                _MAX_INTEGRITY_BYTES,
                path,
                _INTEGRITY_NAME,
                size,
            )
        blob = _read_member(zf, tensors_info, size, path, _TENSORS_NAME, size)
    return bytes(text), blob, integrity


def _verify_integrity(text, blob, integrity, key, path) -> None:
    if integrity is None:
        if key is not None:
            raise ModelFileError(
                f"{path} is not signed, so it cannot be verified with the key; "
                "it was saved without key= (or its signature was removed)."
            )
        return  # a format-1 file: checked against tensors_sha256 later
    record = _parse_json(bytes(integrity), _INTEGRITY_NAME, path, depth=1)
    hexdigest = re.compile(r"[0-9a-f]{64}")
    if (
        not isinstance(record, dict)
        or not set(record) <= {"sha256", "hmac_sha256"}
        or not all(
            isinstance(v, str) and hexdigest.fullmatch(v) for v in record.values()
        )
        or "sha256" not in record
    ):
        raise ModelFileError(f"{path}: {_INTEGRITY_NAME} is corrupted.")
    expected = _integrity(text, blob, key)
    if key is not None:
        if "hmac_sha256" not in record:
            raise ModelFileError(
                f"{path} is not signed, so it cannot be verified with the key; "
                "it was saved without key= (or its signature was removed)."
            )
        if not hmac.compare_digest(record["hmac_sha256"], expected["hmac_sha256"]):
            raise ModelFileError(
                f"{path}: the signature does not verify with this key: the file "
                "was modified, or signed with another key."
            )
    if not hmac.compare_digest(record["sha256"], expected["sha256"]):
        raise ModelFileError(
            f"{path}: the content does not match its SHA-256 checksum; the file "
            "was truncated or modified."
        )


# ---------------------------------------------------------------------------
# The safetensors member
# ---------------------------------------------------------------------------

_ST_DTYPES = {
    "BOOL": torch.bool,
    "U8": torch.uint8,
    "I8": torch.int8,
    "I16": torch.int16,
    "I32": torch.int32,
    "I64": torch.int64,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
}
for _name, _attr in (("U16", "uint16"), ("U32", "uint32"), ("U64", "uint64")):
    if hasattr(torch, _attr):
        _ST_DTYPES[_name] = getattr(torch, _attr)
_FLOAT_DTYPES = {torch.float16, torch.bfloat16, torch.float32, torch.float64}


def _is_int(v) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool | np.bool_)


def _is_real(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool | np.bool_)


def _float32_range(v) -> bool:
    """Not NaN, and infinite or within the float32 range (skad computes in
    float32: larger finite values overflow or are never legitimate)."""
    return math.isinf(v) or abs(v) <= _FLOAT32_MAX


class _TensorFile:
    """The safetensors member: header checked on construction, data viewed
    (not copied) on demand."""

    def __init__(self, blob: bytearray, path):
        self.blob = blob
        self.path = path
        if len(blob) < 8:
            self._bad("it is shorter than its header")
        n = int.from_bytes(bytes(blob[:8]), "little")
        if n < 2 or n > min(_MAX_TENSOR_HEADER_BYTES, len(blob) - 8):
            self._bad(f"its header declares {n} bytes")
        header = _parse_json(
            bytes(blob[8 : 8 + n]), f"the header of {_TENSORS_NAME}", path, depth=3
        )
        if not isinstance(header, dict):
            self._bad("its header is not a JSON object")
        extra = header.pop("__metadata__", None)
        if extra is not None and not (
            isinstance(extra, dict) and all(isinstance(v, str) for v in extra.values())
        ):
            self._bad("its __metadata__ is not a map of strings")
        if len(header) > _MAX_TENSORS:
            self._bad(f"it holds {len(header)} tensors (at most {_MAX_TENSORS})")
        start = 8 + n
        data_len = len(blob) - start
        self.specs: dict[str, tuple[torch.dtype, tuple[int, ...], int, int]] = {}
        spans = []
        for name, spec in header.items():
            if len(name) > _MAX_NAME_CHARS:
                self._bad("a tensor name is too long")
            if not isinstance(spec, dict) or set(spec) != {
                "dtype",
                "shape",
                "data_offsets",
            }:
                self._bad(f"the entry of tensor {name!r} is malformed")
            dtype = (
                _ST_DTYPES.get(spec["dtype"])
                if isinstance(spec["dtype"], str)
                else None
            )
            if dtype is None:
                self._bad(
                    f"tensor {name!r} has the unsupported dtype {spec['dtype']!r}"
                )
            shape, offsets = spec["shape"], spec["data_offsets"]
            if (
                not isinstance(shape, list)
                or len(shape) > _MAX_NDIM
                or not all(_is_int(s) and s >= 0 for s in shape)
            ):
                self._bad(f"tensor {name!r} has the invalid shape {shape!r}")
            if (
                not isinstance(offsets, list)
                or len(offsets) != 2
                or not all(_is_int(o) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data_len
            ):
                self._bad(f"tensor {name!r} has invalid data offsets {offsets!r}")
            numel = math.prod(shape)
            nbytes = numel * dtype.itemsize
            if offsets[1] - offsets[0] != nbytes:
                self._bad(
                    f"tensor {name!r} of shape {tuple(shape)} and dtype "
                    f"{spec['dtype']} needs {nbytes} bytes but has "
                    f"{offsets[1] - offsets[0]}"
                )
            self.specs[name] = (dtype, tuple(shape), start + offsets[0], numel)
            spans.append((offsets[0], offsets[1]))
        spans.sort()
        pos = 0
        for a, b in spans:
            if a != pos:
                self._bad("its tensors overlap or leave holes in the data")
            pos = b
        if pos != data_len:
            self._bad("it has bytes that belong to no tensor")
        self.total_elements = sum(s[3] for s in self.specs.values())

    def _bad(self, what):
        raise ModelFileError(f"{self.path}: {_TENSORS_NAME} is invalid: {what}.")

    def spec(self, key, where):
        if key not in self.specs:
            raise ModelFileError(
                f"{self.path}: {where} refers to tensor {key!r}, which the file "
                "does not contain."
            )
        return self.specs[key]

    def view(self, key) -> torch.Tensor:
        """The tensor's data as a view of the file's bytes (no copy)."""
        dtype, shape, offset, numel = self.specs[key]
        if numel == 0:
            return torch.empty(shape, dtype=dtype)
        buf = self.blob
        if offset % dtype.itemsize:  # misaligned: copy
            buf = bytearray(self.blob[offset : offset + numel * dtype.itemsize])
            offset = 0
        return torch.frombuffer(buf, dtype=dtype, count=numel, offset=offset).view(
            shape
        )

    def check_values(self, key, where, *, nonnegative=False) -> None:
        """Finite floats (non-negative if asked), booleans 0 or 1."""
        t = self.view(key).reshape(-1)
        for i in range(0, t.numel(), _CHECK_CHUNK):
            part = t[i : i + _CHECK_CHUNK]
            if t.dtype in _FLOAT_DTYPES and not bool(torch.isfinite(part).all()):
                raise ModelFileError(
                    f"{self.path}: {where} holds NaN or infinite values; a model "
                    "with non-finite weights would score NaN."
                )
            if nonnegative and bool((part < 0).any()):
                raise ModelFileError(f"{self.path}: {where} holds negative values.")
            if t.dtype == torch.bool and bool((part.view(torch.uint8) > 1).any()):
                raise ModelFileError(f"{self.path}: {where} holds invalid booleans.")


# ---------------------------------------------------------------------------
# Decoding the JSON description
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
        if isinstance(value, list):
            return [
                self.decode(v, f"{at}.{i}", modules=modules)
                for i, v in enumerate(value)
            ]
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


# ---------------------------------------------------------------------------
# Fitted attributes: names, declared types, ranges
# ---------------------------------------------------------------------------

_ATTRIBUTES_HEADER = re.compile(r"^Attributes\n-{3,}\n", re.M)
_SECTION_END = re.compile(r"^\S[^\n]*\n-{3,}\n", re.M)
_ENTRY = re.compile(r"^([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*(?::\s*(.*))?$")


@functools.cache
def _declared_attributes(cls) -> dict[str, str | None] | None:
    """``{name: type text}`` from the class's numpydoc ``Attributes`` section.

    None when the class has no docstring (``python -OO``) or no such section.
    """
    doc = cls.__dict__.get("__doc__")
    if not doc:
        return None
    doc = inspect.cleandoc(doc) + "\n"
    head = _ATTRIBUTES_HEADER.search(doc)
    if head is None:
        return None
    body = doc[head.end() :]
    end = _SECTION_END.search(body)
    if end is not None:
        body = body[: end.start()]
    out = {}
    for line in body.splitlines():
        if not line or line[0].isspace():
            continue
        m = _ENTRY.match(line.strip())
        if m:
            for name in m.group(1).split(","):
                out[name.strip()] = (m.group(2) or "").strip() or None
    return out


def _split_or(text: str) -> list[str]:
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        c = text[i]
        if c in "({[":
            depth += 1
        elif c in ")}]":
            depth -= 1
        elif depth == 0 and text.startswith(" or ", i):
            parts.append(text[start:i])
            start = i + 4
            i += 3
        i += 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


_SHAPE_TYPE = re.compile(r"^(?:nd)?array(?: of shape \((.*)\))?$")


@functools.cache
def _type_check(text: str):
    """A ``check(value, context) -> bool`` for a numpydoc type, or None when
    the type is not one this module understands."""
    alternatives = [_single_type_check(a) for a in _split_or(text.rstrip("."))]
    if any(c is None for c in alternatives):
        return None
    return lambda v, ctx: any(c(v, ctx) for c in alternatives)


def _single_type_check(text: str):  # noqa: C901 - one branch per type
    simple = {
        "None": lambda v, ctx: v is None,
        "int": lambda v, ctx: _is_int(v),
        "float": lambda v, ctx: isinstance(v, float | np.floating),
        "bool": lambda v, ctx: isinstance(v, bool | np.bool_),
        "str": lambda v, ctx: isinstance(v, str),
        "torch.device": lambda v, ctx: isinstance(v, torch.device),
        "tuple": lambda v, ctx: isinstance(v, tuple),
        "list": lambda v, ctx: isinstance(v, list),
        "dict": lambda v, ctx: isinstance(v, dict),
    }
    if text in simple:
        return simple[text]
    if text in ("torch.nn.Module", "nn.Module"):
        return lambda v, ctx: isinstance(v, _ModuleRef | torch.nn.Module)
    if text.startswith("{") and text.endswith("}"):
        try:
            choices = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return None
        if not isinstance(choices, set):
            return None
        return lambda v, ctx: isinstance(v, str | int) and v in choices
    m = _SHAPE_TYPE.match(text)
    if m:
        dims = [d.strip() for d in (m.group(1) or "").split(",") if d.strip()]
        return lambda v, ctx: (
            isinstance(v, np.ndarray)
            and (m.group(1) is None or _shape_matches(v.shape, dims, ctx))
        )
    m = re.match(r"^(tuple|list) of (.+)$", text)
    if m:
        inner = _type_check(m.group(2))
        if inner is None:
            return None
        kind = tuple if m.group(1) == "tuple" else list
        return lambda v, ctx: isinstance(v, kind) and all(inner(x, ctx) for x in v)
    m = re.match(r"^dict of (.+?) to (.+)$", text)
    if m:
        k_check, v_check = _type_check(m.group(1)), _type_check(m.group(2))
        if k_check is None or v_check is None:
            return None
        return lambda v, ctx: (
            isinstance(v, dict)
            and all(k_check(k, ctx) and v_check(x, ctx) for k, x in v.items())
        )
    return None


def _shape_matches(shape, dims, ctx) -> bool:
    if len(shape) != len(dims):
        return False
    for size, dim in zip(shape, dims):
        expected = int(dim) if dim.isdigit() else ctx.get(dim)
        if _is_int(expected) and size != expected:
            return False
    return True


def _walk_values(value):
    """Every leaf value inside lists, tuples and dicts."""
    if isinstance(value, list | tuple):
        for v in value:
            yield from _walk_values(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _walk_values(v)
    else:
        yield value


def _check_finite_list(name, value):
    if not isinstance(value, list) or not all(
        _is_real(v) and math.isfinite(v) for v in value
    ):
        raise _Invalid(f"{name} must be a list of finite numbers")


def _check_common(name, value, ctx):  # noqa: C901 - one rule per name
    """Type and range of the attributes every detector shares."""
    if name == "offset_":
        if not (_is_real(value) and abs(float(value)) <= _FLOAT32_MAX):
            raise _Invalid(
                f"offset_ must be a finite float within the float32 range "
                f"(scores are float32 distances), got {value!r}"
            )
    elif name == "n_features_in_":
        if not (_is_int(value) and 1 <= value <= _MAX_FEATURES):
            raise _Invalid(
                f"n_features_in_ must be an int in [1, {_MAX_FEATURES}], got {value!r}"
            )
    elif name.startswith("n_"):
        if not (_is_int(value) and value >= 0):
            raise _Invalid(f"{name} must be a non-negative int, got {value!r}")
    elif name == "device_":
        if not isinstance(value, torch.device) or value.type not in _DEVICE_TYPES:
            raise _Invalid(f"device_ must be a cpu, cuda or mps device, got {value!r}")
    elif name == "feature_names_in_":
        n = ctx.get("n_features_in_")
        if not (
            isinstance(value, np.ndarray)
            and value.ndim == 1
            and value.dtype.kind in "OU"
            and all(isinstance(s, str) for s in value.tolist())
            and (not _is_int(n) or value.shape[0] == n)
        ):
            raise _Invalid(
                "feature_names_in_ must be a 1-D array of n_features_in_ strings"
            )
    elif name.endswith("_curve_") or name == "validation_scores_":
        _check_finite_list(name, value)
    elif name == "best_loss_":
        if not _is_real(value):
            raise _Invalid(f"best_loss_ must be a float, got {value!r}")


def _check_values(name, value):
    """No NaN anywhere, integers within int64, arrays of booleans, numbers or
    strings only."""
    for v in _walk_values(value):
        if isinstance(v, int) and not -(2**63) <= v < 2**63:
            raise _Invalid(f"{name} holds an integer beyond the int64 range")
        if isinstance(v, float | np.floating):
            if math.isnan(v):
                raise _Invalid(f"{name} holds NaN")
            if not math.isfinite(v) or abs(v) > _FLOAT32_MAX:
                raise _Invalid(f"{name} holds {v}, beyond the float32 range")
        if isinstance(v, np.ndarray):
            if v.dtype.kind not in "biufUO":
                raise _Invalid(f"{name} is an array of the unsupported dtype {v.dtype}")
            if v.dtype.kind == "f":
                finite = v[np.isfinite(v)]
                if np.isnan(v).any():
                    raise _Invalid(f"{name} holds NaN")
                if finite.size and np.abs(finite).max() > _FLOAT32_MAX:
                    raise _Invalid(f"{name} holds values beyond the float32 range")
        if isinstance(v, torch.Tensor) and not isinstance(v, torch.nn.Parameter):
            if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                raise _Invalid(f"{name} holds NaN or infinite values")


def _check_attributes(cls, attributes: dict, params: dict, *, saving=False):
    """Names, declared types and ranges of fitted attributes.

    Types come from the class docstring's ``Attributes`` section; a class may
    also declare value ranges in ``_fitted_attribute_constraints``, a dict
    like ``_parameter_constraints`` (for example ``{"feature_scale_":
    [Interval(Real, 0, None, closed="neither")]}``).

    Raises ``_Invalid`` from :func:`load`'s point of view; with ``saving`` it
    raises the ``TypeError`` / ``ValueError`` :func:`save` documents.
    """
    declared = _declared_attributes(cls)
    ctx = {**params, **attributes}
    for name, value in attributes.items():
        try:
            if not (isinstance(name, str) and name.isidentifier()) or (
                keyword.iskeyword(name)
            ):
                raise _Invalid(f"{name!r} is not a valid attribute name")
            if hasattr(cls, name) or name in params:
                raise _Invalid(
                    f"the attribute {name!r} would shadow a method, property or "
                    f"parameter of {cls.__name__}"
                )
            if not name.endswith("_") or name.startswith("_"):
                raise _Invalid(
                    f"{name!r} is not a fitted-attribute name (public, ending in '_')"
                )
            if declared is not None and name not in declared:
                raise _Invalid(
                    f"{name!r} is not a fitted attribute that {cls.__name__} "
                    "declares (its docstring's Attributes section)"
                )
        except _Invalid as exc:
            if saving:
                raise TypeError(
                    f"{cls.__name__} cannot be saved: {exc}; skad.load would "
                    "refuse it. Use joblib.dump instead."
                ) from None
            raise
        try:
            _check_values(name, value)
            _check_common(name, value, ctx)
            check = None if declared is None else _type_check(declared[name] or "")
            if check is not None and not check(value, ctx):
                raise _Invalid(
                    f"{name} must be {declared[name]} (as {cls.__name__} "
                    f"declares), got {_short_repr(value)}"
                )
            constraints = getattr(cls, "_fitted_attribute_constraints", {})
            if name in constraints and not any(
                make_constraint(c).is_satisfied_by(value) for c in constraints[name]
            ):
                raise _Invalid(
                    f"{name} must be "
                    f"{' or '.join(str(make_constraint(c)) for c in constraints[name])}"
                    f" (as {cls.__name__} declares), got {_short_repr(value)}"
                )
        except _Invalid as exc:
            if saving:
                raise ValueError(
                    f"{cls.__name__} cannot be saved: {exc}; skad.load would refuse it."
                ) from None
            raise


def _short_repr(value) -> str:
    if isinstance(value, _ModuleRef):
        return "a torch module"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------------------
# Rebuilding the networks
# ---------------------------------------------------------------------------

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


def _has_tensors(value) -> bool:
    if isinstance(value, torch.nn.Module | torch.Tensor):
        return True
    if isinstance(value, dict):
        return any(_has_tensors(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_tensors(v) for v in value)
    return False


def _map_tensors(value, fn):
    if isinstance(value, torch.nn.Module | torch.Tensor):
        return fn(value)
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_map_tensors(v, fn) for v in value)
    return value


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


def _rebuild(est, plain: dict, with_modules: dict, tensors: _TensorFile, path):
    """Rebuild the networks on the meta device, check them against the file,
    then allocate them and copy the weights in."""
    rng = _engine.RandomState(
        numpy=_BoundedGenerator(tensors.total_elements + 1024, path),
        cpu=torch.Generator(),
        device=torch.Generator(),
        seed=0,
    )
    cls = type(est)
    try:
        with torch.device("meta"):
            est._build_networks(rng)
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
        if name not in with_modules and name not in plain and _has_tensors(value):
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


_MISSING = object()


# ---------------------------------------------------------------------------
# load
# ---------------------------------------------------------------------------


def _parse_version(v: str) -> tuple[int, ...]:
    parts = []
    for piece in str(v).split(".")[:3]:
        m = re.match(r"\d{1,9}", piece)
        parts.append(int(m.group()) if m else 0)
    return tuple(parts)


def _check_meta(meta, blob, integrity, path):
    """Top-level layout and format version; format 1 checks its tensors."""
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT_NAME:
        raise ModelFileError(f"{path} is not a skad model file.")
    fmt = meta.get("format_version")
    if not _is_int(fmt) or fmt < 1:
        raise ModelFileError(f"{path}: invalid format version {fmt!r}.")
    if fmt > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} uses skad file format {fmt!r}, written by skad "
            f"{str(meta.get('skad_version'))[:32]}; this skad {__version__} reads "
            f"format {FORMAT_VERSION} and older. Upgrade skad to load it."
        )
    allowed = _META_KEYS | ({"tensors_sha256"} if fmt == 1 else set())
    if set(meta) - allowed or _META_KEYS - set(meta):
        raise ModelFileError(
            f"{path}: unexpected or missing entries in the model description: "
            f"{sorted(set(meta) ^ allowed)[:5]}."
        )
    for k in ("skad_version", "torch_version", "class"):
        if not isinstance(meta[k], str) or len(meta[k]) > 256:
            raise ModelFileError(f"{path}: {k} in the model description is invalid.")
    if not isinstance(meta["params"], dict) or not isinstance(meta["attributes"], dict):
        raise ModelFileError(f"{path}: the model description is malformed.")
    if fmt == 1:
        if integrity is not None:
            raise ModelFileError(f"{path}: a format-1 file with {_INTEGRITY_NAME}.")
        if not hmac.compare_digest(
            str(meta.get("tensors_sha256")), hashlib.sha256(blob).hexdigest()
        ):
            raise ModelFileError(
                f"{path}: the tensors do not match the checksum recorded in the "
                "file; it was truncated or modified."
            )
    elif integrity is None:
        raise ModelFileError(
            f"{path} lacks {_INTEGRITY_NAME}, the checksum of format {fmt}; it "
            "was modified or damaged."
        )


def _warn_version(meta, path):
    saved_version = meta["skad_version"]
    if saved_version != __version__:
        newer = _parse_version(saved_version)[:2] > _parse_version(__version__)[:2]
        warnings.warn(
            f"{path} was written by skad {saved_version}, "
            + ("a newer version than " if newer else "while this is ")
            + f"skad {__version__}; the model may load incorrectly or score "
            "differently." + (" Upgrade skad to load it safely." if newer else ""),
            InconsistentVersionWarning,
            stacklevel=4,
        )


def _load(fh, path, key):
    text, blob, integrity = _read_archive(fh, path)
    _verify_integrity(text, blob, integrity, key, path)
    meta = _parse_json(text, "the model description", path)
    del text
    _check_meta(meta, blob, integrity, path)
    _warn_version(meta, path)
    cls = _allowed_classes().get(meta["class"])
    if cls is None:
        raise ModelFileError(
            f"{path} names the class {meta['class'][:100]!r}, which is not a skad "
            "detector of this installation; refusing to load it."
        )
    tensors = _TensorFile(blob, path)
    dec = _Decoder(tensors)
    est = cls()
    valid = set(est.get_params(deep=False))
    try:
        params = {}
        for name, value in meta["params"].items():
            if name not in valid:
                raise _Invalid(f"{name!r} is not a parameter of {cls.__name__}")
            if _count_items(value) > _MAX_PARAM_ITEMS:
                raise _Invalid(f"the parameter {name} has too many items")
            params[name] = dec.decode(value, name, modules=False)
        attributes = {}
        for name, value in meta["attributes"].items():
            if not isinstance(name, str) or len(name) > _MAX_NAME_CHARS:
                raise _Invalid("an attribute name is too long")
            attributes[name] = dec.decode(value, name, modules=True)
        est.set_params(**params)
        _check_attributes(cls, attributes, est.get_params(deep=False))
        unused = set(tensors.specs) - dec.used
        if unused:
            raise _Invalid(
                f"{_TENSORS_NAME} holds tensors no attribute refers to: "
                f"{sorted(unused)[:5]}"
            )
    except _Invalid as exc:
        raise ModelFileError(f"{path}: {exc}.") from None
    try:
        est._validate_params()
    except ValueError as exc:  # InvalidParameterError
        raise ModelFileError(f"{path}: invalid parameter in the file: {exc}") from exc

    plain = {k: v for k, v in attributes.items() if not _has_refs(v)}
    with_modules = {k: v for k, v in attributes.items() if _has_refs(v)}
    for k, v in plain.items():
        setattr(est, k, v)
    if with_modules:
        _rebuild(est, plain, with_modules, tensors, path)
    if "device_" in plain:
        device = _engine.map_location(plain["device_"])
        est.device_ = device
        if device.type != "cpu":
            for k, v in list(vars(est).items()):
                if _has_tensors(v):
                    setattr(est, k, _map_tensors(v, lambda t: t.to(device)))
    est._eval_modules()
    return est


def load(path, *, key=None):
    """Load a detector written by :func:`save`, treating the file as hostile.

    Runs no pickle and no code from the file; only classes listed by
    :func:`skad.all_estimators` are instantiated. Everything in the file is
    checked before use (see :mod:`skad.persistence`): the archive structure
    and sizes before reading, the checksum (and, with ``key``, the signature)
    before parsing, the parameters against the class's constraints, every
    network shape against the parameters before any weight memory is
    allocated, every weight for finiteness, and every fitted attribute
    against the type the class declares. The model goes to the device it was
    trained on when that device is available here, otherwise to the CPU,
    with a warning.

    Parameters
    ----------
    path : str or os.PathLike
        File written by :func:`save`.
    key : bytes or str, default=None
        The key the file was signed with. The file is then refused unless its
        HMAC-SHA256 tag verifies, so it was written by a holder of the key and
        not modified since; an unsigned file is refused too. Without a key, a
        signed file loads like an unsigned one (its SHA-256 checksum is still
        verified, which detects accidental damage only).

    Returns
    -------
    estimator : skad detector
        Scores exactly as the saved detector on the same device.

    Raises
    ------
    ModelFileError
        A ``ValueError``: if the file is truncated, corrupted or tampered
        with, exceeds the loader's limits, does not describe a valid
        detector, was written by a newer file-format version, names a class
        outside skad, or (with ``key``) is unsigned or fails to verify.
    FileNotFoundError
        If ``path`` does not exist (other ``OSError`` when it cannot be read).

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

    A damaged or modified file raises a ``ValueError`` naming the problem:

    >>> from pathlib import Path
    >>> data = bytearray(Path(path).read_bytes())
    >>> data[len(data) // 2] ^= 0xFF
    >>> _ = Path(path).write_bytes(bytes(data))
    >>> skad.load(path)
    Traceback (most recent call last):
    ...
    skad.persistence.ModelFileError: ...
    """
    key = _as_key(key)
    name = os.fspath(path)
    with open(name, "rb") as fh:
        try:
            return _load(fh, name, key)
        except (ModelFileError, Warning):
            raise
        except MemoryError as exc:
            raise ModelFileError(
                f"{name}: loading the model needs more memory than is available."
            ) from exc
        except Exception as exc:  # any other failure is a bad file, too
            raise ModelFileError(
                f"{name}: invalid model file ({type(exc).__name__}: {exc})."
            ) from exc
