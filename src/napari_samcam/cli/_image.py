"""Picking the 2-D image a command works on."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..images import ImageData


def select_2d(data: ImageData, index: int | None, name: str) -> np.ndarray:
    """The 2-D image of ``data``: itself, or slice ``index`` of a volume."""
    array = data.array
    volume = array.ndim == 3 and not data.rgb
    if not volume:
        if index is not None:
            raise InputError(f"--slice {index}: {name!r} is a 2-D image; drop --slice.")
        return array
    if index is None:
        raise InputError(
            f"{name!r} is a volume of {array.shape[0]} slices; choose one with --slice N."
        )
    if not 0 <= index < array.shape[0]:
        raise InputError(f"--slice {index} is outside 0..{array.shape[0] - 1} for {name!r}.")
    return array[index]
