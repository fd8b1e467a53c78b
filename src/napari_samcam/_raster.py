"""Reading plain images: PNG / JPEG / TIFF / BMP, as stored (any dtype, grey or colour)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ._files import MAX_ARRAY_BYTES, open_regular
from .errors import ImageReadError

SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

#: The smallest TIFF image directory: entry count, one 12-byte entry, next offset.
_MIN_PAGE_BYTES = 18


def read_tiff(
    path: str | os.PathLike, what: str = "TIFF file", *, limit: int = MAX_ARRAY_BYTES
) -> np.ndarray:
    """The first image series of a TIFF file, its declared size checked before it is read.

    Uncompressed pixels must fit in the file itself; compressed ones in ``limit`` bytes.

    Raises
    ------
    ImageReadError
        The file is not a regular file, not a TIFF, or declares more than it may hold (nothing
        is allocated then). The message names the file.
    """
    import tifffile

    with open_regular(path, what, ImageReadError) as handle:
        size = os.fstat(handle.fileno()).st_size
        try:
            with tifffile.TiffFile(handle, name=Path(path).name) as tif:
                # each page's directory takes at least 18 bytes: a damaged chain of offsets
                # can otherwise name pages without end
                for count, _ in enumerate(tif.pages, 1):
                    if count > size // _MIN_PAGE_BYTES:
                        raise ImageReadError(
                            f"{what} {str(path)!r} chains more pages than its {size:,} bytes "
                            "can hold; the file is damaged: re-export it."
                        )
                series = tif.series[0]
                declared = math.prod(series.shape) * np.dtype(series.dtype).itemsize
                compressed = series.keyframe.compression != 1
                room = limit if compressed else min(limit, size)
                if declared > room:
                    holds = f"{limit:,} bytes" if compressed else f"its {size:,} bytes"
                    raise ImageReadError(
                        f"{what} {str(path)!r} declares {series.shape} {series.dtype} pixels "
                        f"({declared:,} bytes), more than {holds} can hold; nothing was "
                        "allocated. The file is damaged or not what it claims: re-export it."
                    )
                return series.asarray()
        except ImageReadError:
            raise
        except Exception as exc:  # any parser failure means a damaged or mislabelled file
            raise ImageReadError(
                f"{what} {str(path)!r} could not be read as TIFF ({type(exc).__name__}: {exc})."
            ) from exc


def read_raster(path: Path, suffix: str) -> tuple[np.ndarray, dict]:
    """Read a PNG / JPEG / TIFF / BMP file: the array as stored and its metadata.

    A constant alpha channel is dropped (it carries nothing); colour images are ``(H, W, 3|4)``.
    """
    if suffix in (".tif", ".tiff"):
        array = read_tiff(path, "image")
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
