"""Devices and the tensors of fitted detectors: one module for fitting,
pickling and :func:`skad.save` / :func:`skad.load`."""

from __future__ import annotations

import warnings

import torch

__all__ = ["has_tensors", "map_location", "map_tensors", "resolve_device"]


def resolve_device(device) -> torch.device:
    """Turn the ``device`` parameter into a :class:`torch.device`.

    ``"auto"`` means CUDA when available, else CPU. Any other value must be a
    valid torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``)
    or :class:`torch.device`, and must be usable on this machine.

    Raises
    ------
    ValueError
        If the string is not a torch device, or the device is not available.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a valid torch device; use 'auto', 'cpu', "
            "'cuda' or 'cuda:N'."
        ) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available on "
                "this machine; use device='auto' to fall back to the CPU."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} was requested but only "
                f"{torch.cuda.device_count()} CUDA device(s) are present."
            )
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(
                f"device={device!r} was requested but MPS is not available."
            )
    elif dev.type != "cpu":
        raise ValueError(
            f"device={device!r} is not supported; use 'auto', 'cpu' or 'cuda'."
        )
    return dev


def map_location(device: torch.device | str) -> torch.device:
    """Device to load a stored model onto: ``device`` if usable, else CPU."""
    try:
        return resolve_device(device)
    except ValueError:
        warnings.warn(
            f"The model was trained on {str(device)!r}, which is not available "
            "here; it is loaded on the CPU.",
            UserWarning,
            stacklevel=3,
        )
        return torch.device("cpu")


def map_tensors(obj, fn):
    """Apply ``fn`` to every module / tensor inside ``obj`` (recursively
    through dicts, lists and tuples); other values are returned as they are."""
    if isinstance(obj, torch.nn.Module | torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(map_tensors(v, fn) for v in obj)
    return obj


def has_tensors(obj) -> bool:
    """Whether ``obj`` is, or contains, a torch module or tensor."""
    if isinstance(obj, torch.nn.Module | torch.Tensor):
        return True
    if isinstance(obj, dict):
        return any(has_tensors(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return any(has_tensors(v) for v in obj)
    return False
