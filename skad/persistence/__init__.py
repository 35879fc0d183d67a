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
  cap: ``skad.json`` at most 4 MiB, ``integrity.json`` 1 KiB, the
  safetensors header 8 MiB.
* JSON: nesting depth (at most 32) and number of arrays and objects are
  checked with a scan of the bytes before parsing; duplicate keys, unknown
  entries and unknown top-level keys are refused.
* Integrity: the SHA-256 digest over both members must match. With
  ``key=...`` the HMAC-SHA256 tag must verify (with
  :func:`hmac.compare_digest`) before anything else in the file is parsed;
  an unsigned file is then refused.
* Parameters: only the class's parameters, each list at most 4096 items,
  integers within int64 and floats within the float32 range, checked by the
  class's scikit-learn parameter constraints.
* Networks: rebuilt with the detector's ``_build_networks`` hook on PyTorch's
  ``meta`` device, which allocates no memory, so parameters or attributes
  describing a network of any size cost nothing. Every parameter and buffer
  must then match the safetensors header exactly (same names, same shape,
  a compatible dtype) before any memory is allocated for the weights, so the
  networks hold exactly as many values as the file carries. What the hook
  computes in numpy is bounded too: the random values it draws are limited
  to the number of values in the file, and when the networks grow with
  ``n_features_in_`` (probed with meta builds at 2, 3 and 4 features) the
  file must hold at least ``n_features_in_`` values (its square when they
  grow quadratically). Weights and buffers must be finite (``running_var``
  non-negative), then they are copied in.
* Fitted attributes: names must be identifiers ending in ``_`` that shadow
  nothing of the class (no method, property or parameter); each must be
  declared in the class's ``Attributes`` docstring section (when docstrings
  are available) and have the declared type (``int``, ``float``,
  ``tuple of int``, ``ndarray of shape (n_features_in_,)``, ...); the common
  ones are range checked (``offset_`` finite and within the float32 range,
  ``n_features_in_`` a positive int of at most ``2**24``, ``n_*_``
  non-negative ints, loss curves finite, ``device_`` a CPU, CUDA or MPS
  device, ``feature_names_in_`` a 1-D array of strings). No fitted value may
  be NaN, no plain float infinite; floats stay within the float32 range and
  integers within int64. Arrays hold booleans, integers, floats or strings
  only. Attributes that the rebuild recomputes must equal the file's values.
  A class may declare value ranges in ``_fitted_attribute_constraints`` (a
  dict like ``_parameter_constraints``), which are checked as well.

Memory: loading a file of ``S`` bytes uses about ``S`` for the tensors
member (read once, never inflated), the networks' own weights (as many
values as the file holds) and at most about 45 MiB for the parsed
description, whatever the file declares; ``docs/reliability.rst`` lists
measurements (``scripts/bench_hostile_load.py``).

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

import hashlib
import hmac
import json
import os
import re
import warnings
import zipfile

import torch
from safetensors.torch import save as _st_save

from skad._device import has_tensors, map_location, map_tensors
from skad._version import __version__
from skad.persistence._archive import (
    _check_json_bytes,
    _integrity,
    _parse_json,
    _read_archive,
    _TensorFile,
    _verify_integrity,
    _write_atomic,
)
from skad.persistence._codec import (
    _count_items,
    _Decoder,
    _Encoder,
    _module_tensors,
)
from skad.persistence._common import (
    _FORMAT_NAME,
    _IGNORED_ATTRIBUTES,
    _INTEGRITY_NAME,
    _JSON_NAME,
    _MAX_JSON_BYTES,
    _MAX_NAME_CHARS,
    _MAX_PARAM_ITEMS,
    _MAX_TENSORS,
    _META_KEYS,
    _TENSORS_NAME,
    FORMAT_VERSION,
    InconsistentVersionWarning,
    ModelFileError,
    _Invalid,
    _is_int,
)
from skad.persistence._rebuild import (
    _has_refs,
    _rebuild,
)
from skad.persistence._schema import (
    _check_attributes,
    _walk_values,
)

__all__ = ["save", "load", "ModelFileError", "InconsistentVersionWarning"]


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
        device = map_location(plain["device_"])
        est.device_ = device
        if device.type != "cpu":
            for k, v in list(vars(est).items()):
                if has_tensors(v):
                    setattr(est, k, map_tensors(v, lambda t: t.to(device)))
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
