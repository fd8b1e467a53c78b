"""COCO masks in NumPy: run-length encoding (compressed or not) and polygons.

CheXlocalize and SIIM-ACR store masks in the same column-major RLE; no ``pycocotools`` is
needed. Every size an RLE declares is checked before a pixel is allocated.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._files import MAX_ARRAY_BYTES
from .errors import InputError

__all__ = [
    "decode_rle",
    "encode_rle",
    "polygons_to_mask",
    "rle_from_string",
    "rle_runs",
    "rle_to_string",
]


def rle_from_string(counts: str) -> list[int]:
    """Decode COCO's compressed RLE string into run lengths.

    Each run length is written in 5-bit groups, least significant first, as characters
    ``chr(48 + group)``; bit 0x20 of a group means "more groups follow", bit 0x10 of the last
    group is the sign. From the third run on, the value stored is the difference to the run two
    places back.
    """
    values: list[int] = []
    position = 0
    data = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    while position < len(data):
        value = 0
        shift = 0
        more = True
        while more:
            if position >= len(data):
                raise InputError(f"RLE string {counts[:40]!r}: truncated in the middle of a run.")
            group = data[position] - 48
            if not 0 <= group < 64:
                raise InputError(
                    f"RLE string {counts[:40]!r}: character {chr(data[position])!r} is not part "
                    "of COCO's compressed RLE alphabet."
                )
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            position += 1
            shift += 5
            if not more and group & 0x10:
                value |= -1 << shift
        if len(values) > 2:
            value += values[-2]
        values.append(value)
    return values


def rle_to_string(runs: list[int]) -> str:
    """Encode run lengths as COCO's compressed RLE string (inverse of :func:`rle_from_string`)."""
    out = []
    for i, run in enumerate(runs):
        value = int(run) - (int(runs[i - 2]) if i > 2 else 0)
        more = True
        while more:
            group = value & 0x1F
            value >>= 5
            more = not ((value == 0 and not group & 0x10) or (value == -1 and group & 0x10))
            if more:
                group |= 0x20
            out.append(chr(group + 48))
    return "".join(out)


def rle_runs(rle: dict, *, shape: tuple[int, int] | None = None) -> tuple[int, int, np.ndarray]:
    """``(height, width, runs)`` of a COCO RLE, checked without building its mask.

    The declared size must be ``shape`` when given (the image's), else at most
    :data:`~napari_samcam._files.MAX_ARRAY_BYTES` pixels, and the runs must add up to it: a
    few bytes of RLE cannot ask for gigabytes.

    Raises
    ------
    InputError
        Not an RLE, a size other than ``shape`` or beyond the bound, or runs that do not fit.
    """
    if not isinstance(rle, dict) or "counts" not in rle:
        raise InputError(f"RLE {str(rle)[:60]!r}: expected a dict with 'size' and 'counts'.")
    size = rle.get("size", rle.get("img_size"))
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(
            f"RLE: size {size!r} is not [height, width]; COCO RLEs carry 'size': [h, w]."
        ) from exc
    if shape is not None and (height, width) != (int(shape[0]), int(shape[1])):
        raise InputError(
            f"RLE: size {[height, width]} is not the image's {[int(shape[0]), int(shape[1])]}; "
            "an RLE mask is stored at its image's size."
        )
    if height < 0 or width < 0 or height * width > MAX_ARRAY_BYTES:
        raise InputError(
            f"RLE: size {[height, width]} is not a mask size this tool builds (at most "
            f"{MAX_ARRAY_BYTES:,} pixels); nothing was allocated."
        )
    counts = rle["counts"]
    try:
        runs = (
            rle_from_string(counts)
            if isinstance(counts, (str, bytes))
            else [int(c) for c in counts]
        )
        runs_arr = np.asarray(runs, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"RLE: counts are not whole numbers ({exc}).") from None
    if (runs_arr < 0).any() or runs_arr.sum() != height * width:
        raise InputError(
            f"RLE: the runs add up to {int(runs_arr.sum())} pixels but size {[height, width]} "
            f"has {height * width}; the counts do not belong to this size."
        )
    return height, width, runs_arr


def decode_rle(rle: dict, *, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A COCO RLE (``{"size": [h, w], "counts": str or list}``) as a bool ``(h, w)`` mask.

    CheXlocalize writes the same layout; an ``img_size`` key instead of ``size`` is accepted
    too. Runs alternate
    background and foreground, starting with background, in column-major (Fortran) order.
    With ``shape`` (the image's), an RLE of another size is refused before anything is built
    (see :func:`rle_runs`).
    """
    height, width, runs_arr = rle_runs(rle, shape=shape)
    values = np.zeros(len(runs_arr), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, runs_arr)
    return flat.reshape((height, width), order="F")


def encode_rle(mask: np.ndarray, *, compressed: bool = True) -> dict:
    """A bool mask as a COCO RLE dict (inverse of :func:`decode_rle`)."""
    mask = np.asarray(mask, dtype=bool)
    flat = mask.reshape(-1, order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(edges).tolist()
    if flat.size and flat[0]:
        runs = [0, *runs]
    counts: Any = rle_to_string(runs) if compressed else runs
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def polygons_to_mask(polygons: list, shape: tuple[int, int]) -> np.ndarray:
    """Fill COCO polygons (flat ``[x0, y0, x1, y1, ...]`` lists, pixel units) into a mask."""
    from skimage.draw import polygon as fill_polygon  # skimage only for polygons

    mask = np.zeros(shape, dtype=bool)
    for poly in polygons:
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        # COCO x, y are continuous coordinates with pixel centres at +0.5.
        rr, cc = fill_polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, shape=shape)
        mask[rr, cc] = True
    return mask
