"""Fitted attributes: names, types declared by the class, ranges."""

from __future__ import annotations

import ast
import functools
import inspect
import keyword
import math
import re

import numpy as np
import torch
from sklearn.utils._param_validation import make_constraint

from skad.persistence._codec import (
    _ModuleRef,
)
from skad.persistence._common import (
    _DEVICE_TYPES,
    _FLOAT32_MAX,
    _MAX_FEATURES,
    _Invalid,
    _is_int,
    _is_real,
)

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
    elif name == "input_mode_":
        if value not in ("vector", "image"):
            raise _Invalid(f"input_mode_ must be 'vector' or 'image', got {value!r}")
    elif name == "input_shape_":
        n, mode = ctx.get("n_features_in_"), ctx.get("input_mode_", "vector")
        length = 3 if mode == "image" else 1
        if not (
            isinstance(value, tuple)
            and len(value) == length
            and all(_is_int(v) and 1 <= v <= _MAX_FEATURES for v in value)
            and (not _is_int(n) or value[0] == n)
        ):
            raise _Invalid(
                "input_shape_ must be (n_features_in_,) in vector mode or "
                f"(n_features_in_, H, W) in image mode, got {value!r}"
            )
    elif name == "training_median_":
        shape = ctx.get("input_shape_")
        if not (
            isinstance(value, np.ndarray)
            and value.dtype.kind == "f"
            and (not isinstance(shape, tuple) or value.shape == shape)
            and np.all(np.isfinite(value))
        ):
            raise _Invalid(
                "training_median_ must be a finite float array of input_shape_"
            )
    elif name in ("score_scale_",):
        if not (_is_real(value) and 0 < float(value) <= _FLOAT32_MAX):
            raise _Invalid(f"{name} must be a positive finite float, got {value!r}")
    elif name == "train_contamination_":
        if not (_is_real(value) and 0 <= float(value) < 0.5):
            raise _Invalid(f"{name} must be a float in [0, 0.5), got {value!r}")


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


#: Attributes the others are checked against: checked first, so that a bad
#: ``n_features_in_`` is reported as such, not as a mismatch of the others.
_CHECKED_FIRST = ("n_features_in_", "input_mode_", "input_shape_")

#: Attributes every fitted detector has (``BaseDeepDetector.fit`` sets them;
#: scoring, ``predict_proba`` and :func:`skad.explain` need them). A file
#: with fitted attributes must hold all of them.
_REQUIRED_WHEN_FITTED = frozenset(
    {
        "offset_",
        "score_scale_",
        "train_contamination_",
        "n_excluded_",
        "loss_curve_",
        "n_iter_",
        "best_loss_",
        "device_",
        "training_median_",
        "input_mode_",
        "input_shape_",
        "n_features_in_",
    }
)


def _declared_constraints(cls) -> dict[str, list[list]]:
    """``{name: [constraints, ...]}`` from ``_fitted_attribute_constraints``
    of ``cls`` and its bases: each class's list is a choice (one constraint
    must hold), and the lists of every class that declares the name must all
    be satisfied, so a subclass need not repeat its bases' declarations."""
    out: dict[str, list[list]] = {}
    for klass in reversed(cls.__mro__):
        declared = vars(klass).get("_fitted_attribute_constraints") or {}
        for name, constraints in declared.items():
            out.setdefault(name, []).append(list(constraints))
    return out


def _check_declared_ranges(cls, name, value, constraints):
    for choice in constraints.get(name, ()):
        checks = [make_constraint(c) for c in choice]
        if not any(c.is_satisfied_by(value) for c in checks):
            raise _Invalid(
                f"{name} must be {' or '.join(str(c) for c in checks)} (as "
                f"{cls.__name__} declares), got {_short_repr(value)}"
            )


def _check_attributes(cls, attributes: dict, params: dict, *, saving=False):
    """Names, declared types and ranges of fitted attributes.

    Types come from the class docstring's ``Attributes`` section; a class may
    also declare value ranges in ``_fitted_attribute_constraints``, a dict
    like ``_parameter_constraints`` (for example ``{"feature_scale_":
    [Interval(Real, 0, None, closed="neither")]}``), merged over its bases.
    A fitted detector must hold every attribute of ``_REQUIRED_WHEN_FITTED``.

    Raises ``_Invalid`` from :func:`load`'s point of view; with ``saving`` it
    raises the ``TypeError`` / ``ValueError`` :func:`save` documents.
    """
    declared = _declared_attributes(cls)
    constraints = _declared_constraints(cls)
    ctx = {**params, **attributes}
    order = sorted(
        attributes,
        key=lambda k: _CHECKED_FIRST.index(k) if k in _CHECKED_FIRST else 99,
    )
    for name in order:
        value = attributes[name]
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
            _check_declared_ranges(cls, name, value, constraints)
        except _Invalid as exc:
            if saving:
                raise ValueError(
                    f"{cls.__name__} cannot be saved: {exc}; skad.load would refuse it."
                ) from None
            raise
    missing = _REQUIRED_WHEN_FITTED - set(attributes) if attributes else ()
    if missing:
        message = (
            f"it holds fitted attributes but lacks {sorted(missing)[:5]}, which "
            f"every fitted {cls.__name__} has"
        )
        if saving:
            raise ValueError(
                f"{cls.__name__} cannot be saved: {message} (did fit fail?); "
                "skad.load would refuse it."
            )
        raise _Invalid(message)


def _short_repr(value) -> str:
    if isinstance(value, _ModuleRef):
        return "a torch module"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
