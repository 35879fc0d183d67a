"""Reading a file as hostile: :func:`skad.load` (the checks are listed in
:mod:`skad.persistence`)."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import warnings

from skad._device import has_tensors, map_location, map_tensors
from skad._version import __version__
from skad.persistence._archive import (
    _parse_json,
    _read_archive,
    _TensorFile,
    _verify_integrity,
)
from skad.persistence._codec import (
    _count_items,
    _Decoder,
)
from skad.persistence._common import (
    _FORMAT_NAME,
    _INTEGRITY_NAME,
    _MAX_NAME_CHARS,
    _MAX_PARAM_ITEMS,
    _META_KEYS,
    _TENSORS_NAME,
    FORMAT_VERSION,
    InconsistentVersionWarning,
    ModelFileError,
    _allowed_classes,
    _as_key,
    _Invalid,
    _is_int,
)
from skad.persistence._rebuild import (
    _has_refs,
    _rebuild,
)
from skad.persistence._schema import (
    _check_attributes,
)

__all__ = ["load"]


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
