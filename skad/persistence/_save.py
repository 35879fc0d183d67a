"""Writing a detector: :func:`skad.save` (the format is described in
:mod:`skad.persistence`)."""

from __future__ import annotations

import json
import os
import zipfile

import torch
from safetensors.torch import save as _st_save

from skad._version import __version__
from skad.persistence._archive import (
    _check_json_bytes,
    _integrity,
    _write_atomic,
)
from skad.persistence._codec import (
    _Encoder,
    _module_tensors,
)
from skad.persistence._common import (
    _FORMAT_NAME,
    _IGNORED_ATTRIBUTES,
    _INTEGRITY_NAME,
    _JSON_NAME,
    _MAX_JSON_BYTES,
    _MAX_TENSORS,
    _TENSORS_NAME,
    FORMAT_VERSION,
    _allowed_classes,
    _as_key,
    _Invalid,
)
from skad.persistence._schema import (
    _check_attributes,
    _walk_values,
)

__all__ = ["save"]


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
