"""Reading plain images: PNG / JPEG / TIFF / BMP, as stored (any dtype, grey or colour)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def read_raster(path: Path, suffix: str) -> tuple[np.ndarray, dict]:
    """Read a PNG / JPEG / TIFF / BMP file: the array as stored and its metadata.

    A constant alpha channel is dropped (it carries nothing); colour images are ``(H, W, 3|4)``.
    """
    if suffix in (".tif", ".tiff"):
        import tifffile

        array = tifffile.imread(str(path))
    else:
        import imageio.v3 as iio

        array = iio.imread(str(path))
    array = np.asarray(array)
    rgb = array.ndim == 3 and array.shape[-1] in (3, 4)
    if rgb and array.shape[-1] == 4:
        alpha = array[..., 3]
        if np.all(alpha == alpha.flat[0]):
            array = array[..., :3]
    spacing = (1.0,) * (array.ndim - (1 if rgb else 0))
    metadata = {
        "format": suffix.lstrip("."),
        "spacing": spacing,
        "modality": None,
        "window": None,
        "rgb": bool(rgb),
    }
    return array, metadata
