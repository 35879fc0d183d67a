"""Constants, limits and errors shared by the persistence modules."""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

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

# Limits of the loader (see the package docstring and docs/reliability.rst).
_MAX_JSON_BYTES = 4 * 2**20  # skad.json, uncompressed
_MAX_JSON_DEPTH = 32  # nesting of JSON arrays and objects
_MAX_JSON_CONTAINERS = 2**16  # JSON arrays and objects in one document
_MAX_INTEGRITY_BYTES = 1024
_MAX_TENSOR_HEADER_BYTES = 8 * 2**20
_MAX_TENSORS = 2**16
_MAX_CENTRAL_DIRECTORY_BYTES = 4096
_MAX_FEATURES = 2**24  # n_features_in_
_MAX_PARAM_ITEMS = 4096  # JSON values inside one parameter
_MAX_STRING_ARRAY_BYTES = 64 * 2**20
_MAX_NDIM = 32
_MAX_NAME_CHARS = 1024
_CHECK_CHUNK = 2**22  # elements per finiteness check (bounded temporaries)
_READ_CHUNK = 2**20
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_DEVICE_TYPES = ("cpu", "cuda", "mps")
# deflate options, data descriptor, UTF-8 names; anything else (encryption,
# patch data, ...) is refused
_ZIP_FLAGS_ALLOWED = 0x0002 | 0x0004 | 0x0008 | 0x0800


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


ModelFileError.__module__ = InconsistentVersionWarning.__module__ = "skad.persistence"


class _Invalid(Exception):
    """A rule broken by a value; :func:`load` and :func:`save` re-raise it."""


def _is_int(v) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool | np.bool_)


def _is_real(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool | np.bool_)


def _float32_range(v) -> bool:
    """Not NaN, and infinite or within the float32 range (skad computes in
    float32: larger finite values overflow or are never legitimate)."""
    return math.isinf(v) or abs(v) <= _FLOAT32_MAX


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


def _allowed_classes() -> dict[str, type]:
    from skad.utils.discovery import all_estimators

    return {f"{cls.__module__}.{cls.__qualname__}": cls for _, cls in all_estimators()}
