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
  non-negative), then they are copied in. (``score_samples`` would report a
  non-finite score as the most anomalous one, so such a model would flag
  every row it cannot score; it is refused instead.)
* Fitted attributes: names must be identifiers ending in ``_`` that shadow
  nothing of the class (no method, property or parameter); each must be
  declared in the class's ``Attributes`` docstring section (when docstrings
  are available) and have the declared type (``int``, ``float``,
  ``tuple of int``, ``ndarray of shape (n_features_in_,)``, ...); the
  shared ones are range checked, ``n_features_in_``, ``input_mode_`` and
  ``input_shape_`` first: ``n_features_in_`` a positive int of at most
  ``2**24``, ``input_mode_`` ``"vector"`` or ``"image"``, ``input_shape_``
  ``(n_features_in_,)`` or ``(n_features_in_, H, W)`` accordingly,
  ``training_median_`` a finite float array of ``input_shape_``, ``offset_``
  finite and within the float32 range, ``score_scale_`` positive,
  ``train_contamination_`` in [0, 0.5), ``n_*_`` non-negative ints, loss
  curves finite, ``device_`` a CPU, CUDA or MPS device,
  ``feature_names_in_`` a 1-D array of ``n_features_in_`` strings. A file
  with fitted attributes must hold every attribute that ``fit`` always
  sets (``offset_``, ``score_scale_``, ``input_shape_``,
  ``training_median_``, ...). No fitted value may be NaN, no plain float
  infinite; floats stay within the float32 range and integers within
  int64. Arrays hold booleans, integers, floats or strings only. Attributes
  that the rebuild recomputes must equal the file's values. A class may
  declare value ranges in ``_fitted_attribute_constraints`` (a dict like
  ``_parameter_constraints``; the declarations of its bases hold too),
  which are checked as well: :class:`~skad.ESAD` and
  :class:`~skad.DiscriminatorGuidedGAN` declare the scales their scores
  divide by positive.

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

# FORMAT_VERSION: the file format this skad writes (re-exported).
from skad.persistence._common import FORMAT_VERSION as FORMAT_VERSION
from skad.persistence._common import InconsistentVersionWarning, ModelFileError
from skad.persistence._load import load
from skad.persistence._save import save

__all__ = ["save", "load", "ModelFileError", "InconsistentVersionWarning"]

# Documented, and reported in tracebacks, where users import them from.
save.__module__ = load.__module__ = "skad.persistence"
