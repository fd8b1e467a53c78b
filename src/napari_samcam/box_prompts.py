"""Prompts and regions that need no model: from annotations and from the saliency map itself."""

from __future__ import annotations

import numpy as np

from ._prompt_checks import check_boxes
from .errors import InputError
from .segment import Region

__all__ = [
    "box_region",
    "mask_box",
    "mask_region",
    "saliency_boxes",
    "saliency_peak_points",
]


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """The bounding box ``(row0, col0, row1, col1)`` (end exclusive) of a mask, or None."""
    mask = np.asarray(mask, dtype=bool)
    rows = np.flatnonzero(mask.any(1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(0))
    return np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1])


def box_region(box, shape: tuple[int, int], *, source: str = "box") -> Region:
    """The box annotation itself as a region (the loose mask SAM is meant to refine)."""
    rounded = check_boxes([box], name="box").round()
    ((r0, c0, r1, c1),) = check_boxes(rounded, shape[:2], name="box").astype(int)
    mask = np.zeros(shape[:2], dtype=bool)
    mask[r0:r1, c0:c1] = True
    return Region(mask, source, {"box": [r0, c0, r1, c1]})


def mask_region(mask: np.ndarray, *, source: str = "ground-truth", prompt=None) -> Region:
    """An annotated mask as a region."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"mask: shape {mask.shape}; a region mask is 2-D (H, W).")
    return Region(mask.astype(bool), source, dict(prompt or {}))


def saliency_peak_points(
    saliency: np.ndarray, *, n: int = 1, min_distance: int = 10
) -> np.ndarray:
    """The ``n`` highest local maxima of a saliency map as ``(row, col)`` points.

    Returns
    -------
    numpy.ndarray
        ``(k, 2)`` integer points, ``k <= n``, strongest first; empty for a constant map.
    """
    from skimage.feature import peak_local_max

    saliency = np.asarray(saliency, dtype=np.float32)
    if saliency.ndim != 2:
        raise InputError(f"saliency: shape {saliency.shape}; pass a 2-D map.")
    if float(saliency.max()) <= float(saliency.min()):
        return np.zeros((0, 2), dtype=np.int64)
    peaks = peak_local_max(
        saliency, min_distance=max(1, int(min_distance)), num_peaks=int(n), exclude_border=False
    )
    if len(peaks) == 0:
        peaks = np.array([np.unravel_index(int(np.argmax(saliency)), saliency.shape)])
    return peaks.astype(np.int64)[:n]


def saliency_boxes(
    saliency: np.ndarray,
    *,
    method: str = "otsu",
    threshold: float | None = None,
    percentile: float | None = None,
    max_boxes: int = 1,
    min_area_fraction: float = 0.001,
    margin: float = 0.0,
    binary: np.ndarray | None = None,
) -> np.ndarray:
    """Boxes around the connected components of the binarized saliency map.

    Components are ranked by the saliency they hold (sum of the map inside), strongest first.

    Parameters
    ----------
    saliency : numpy.ndarray
        2-D map.
    method, threshold, percentile
        Binarization, see :func:`napari_samcam.metrics.binarize`.
    max_boxes : int
        Keep at most this many components.
    min_area_fraction : float
        Drop components smaller than this fraction of the image.
    margin : float
        Grow each box by this fraction of its size on every side (clipped to the image).
    binary : numpy.ndarray, optional
        The map already binarized with these options (e.g. ``PreparedMap.binary``), so it is
        not binarized twice.

    Returns
    -------
    numpy.ndarray
        ``(M, 4)`` integer ``(row0, col0, row1, col1)`` boxes, end exclusive; ``(0, 4)`` when
        the map has no foreground.
    """
    from scipy import ndimage

    from .metrics import binarize

    saliency = np.asarray(saliency, dtype=np.float32)
    if binary is None:
        binary = binarize(saliency, method=method, threshold=threshold, percentile=percentile)
    labels, count = ndimage.label(binary)
    if count == 0:
        return np.zeros((0, 4), dtype=np.int64)
    index = np.arange(1, count + 1)
    energy = ndimage.sum_labels(saliency, labels, index)
    area = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    slices = ndimage.find_objects(labels)
    keep = [i for i in np.argsort(-energy) if area[i] >= min_area_fraction * saliency.size]
    boxes = []
    height, width = saliency.shape
    for i in keep[: int(max_boxes)]:
        rows, cols = slices[i]
        r0, r1, c0, c1 = rows.start, rows.stop, cols.start, cols.stop
        dr, dc = margin * (r1 - r0), margin * (c1 - c0)
        boxes.append(
            [
                max(0, int(r0 - dr)),
                max(0, int(c0 - dc)),
                min(height, int(np.ceil(r1 + dr))),
                min(width, int(np.ceil(c1 + dc))),
            ]
        )
    return np.array(boxes, dtype=np.int64).reshape(-1, 4)
