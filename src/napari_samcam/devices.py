"""Torch devices: the default one, the ones this machine has, and a check of a user's choice.

Torch is imported inside the functions so that importing this module (and the CLI's help)
stays free of it.
"""

from __future__ import annotations

from typing import Any

from .errors import InputError

__all__ = ["available_devices", "check_device", "default_device"]


def default_device(device: Any = None):
    """Return ``torch.device(device)``, or CUDA when available and ``device`` is ``None``.

    Raises
    ------
    InputError
        ``device`` is not a device of this machine (see :func:`check_device`).
    """
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return check_device(device)


def available_devices() -> list[str]:
    """The torch devices of this machine: ``cpu``, then ``cuda:N`` and ``mps`` when present."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def check_device(device: Any):
    """``device`` as a ``torch.device`` that this machine has.

    Raises
    ------
    InputError
        ``device`` is not a device name (``cpu``, ``cuda``, ``cuda:N``, ``mps``) or names one this
        machine lacks; the message lists the devices it has.
    """
    import torch

    try:
        resolved = device if isinstance(device, torch.device) else torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        resolved = None
    available = available_devices()
    if resolved is not None:
        kind, index = resolved.type, resolved.index
        if kind == "cpu" or (kind == "mps" and index in (None, 0) and "mps" in available):
            return resolved
        if kind == "cuda" and f"cuda:{index or 0}" in available:
            return resolved
    raise InputError(
        f"device {str(device)!r} is not available on this machine; choose one of "
        f"{', '.join(available)}."
    )
