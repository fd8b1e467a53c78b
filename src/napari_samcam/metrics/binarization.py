"""Binarization of a saliency map, as CheXlocalize does it, and per-class threshold tuning.

Reference: CheXlocalize (Saporta et al., 2022, "Benchmarking saliency methods for chest X-ray
interpretation", Nature Machine Intelligence). Its ``heatmap_to_segmentation.py``:
``cam_to_segmentation`` min-max normalises the map, scales it to 8 bits, thresholds it with
OpenCV's Otsu (``cv2.THRESH_OTSU``) and fills every contour it finds (its exact steps are
reproduced in :mod:`napari_samcam.chexlocalize`); ``tune_heatmap_threshold.py`` picks a fixed
threshold per task by mean IoU on a validation set (:func:`tune_thresholds`).

Two library calls were measured against the code here and not used:

* ``skimage.filters.threshold_otsu`` picks a different level on 2 of 20,000 random 8-bit
  histograms (between-class variances equal up to float rounding); Otsu's level here is computed
  from integer moments, so a tie is a tie and the lowest level wins, as in OpenCV.
* ``scipy.ndimage.binary_fill_holes`` gives the same masks as :func:`fill_holes_in_box` but took
  2.8x as long on 2048 x 2048 Otsu masks (65 vs 24 ms), a cost paid once per map.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError
from ._inputs import (
    BinarizeOptions,
    DegenerateInputWarning,
    as_map,
    as_region,
    binarize_options,
    constant_map,
    k_count,
)

#: Default candidate thresholds of :func:`tune_thresholds`: 0, 0.05, ..., 1.
_DEFAULT_CANDIDATES = np.linspace(0.0, 1.0, 21)


def normalise(s: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``(s - min) / (max - min)`` in float64 (``hi > lo``)."""
    return (s.astype(np.float64, copy=False) - lo) / (hi - lo)


def otsu_level(u8: np.ndarray) -> int:
    """Otsu's threshold of an 8-bit image: foreground is ``u8 > level``."""
    return otsu_level_of_histogram(np.bincount(u8.ravel(), minlength=256).astype(np.int64))


def otsu_level_of_histogram(hist: np.ndarray) -> int:
    """Otsu's threshold of a 256-bin int64 histogram of an 8-bit image.

    Maximises the between-class variance ``w1 w2 (mu1 - mu2)^2``, which for counts ``w1, w2``
    and first moments is proportional to ``(N s1 - S w1)^2 / (w1 w2)``; the lowest level wins a
    tie (as in OpenCV and scikit-image).
    """
    w1 = np.cumsum(hist)
    s1 = np.cumsum(hist * np.arange(256, dtype=np.int64))
    n, total = w1[-1], s1[-1]
    w2 = n - w1
    valid = (w1 > 0) & (w2 > 0)
    diff = (n * s1 - total * w1).astype(np.float64)
    denom = np.where(valid, w1 * w2, 1).astype(np.float64)
    between = np.where(valid, diff * diff / denom, -1.0)
    return int(np.argmax(between))


def fill_holes_in_box(mask: np.ndarray) -> np.ndarray:
    """Same result as ``scipy.ndimage.binary_fill_holes(mask)``, computed on the bounding box.

    Background pixels outside the foreground's bounding box all reach the image border, so holes
    can only lie inside it; there a hole is a 4-connected background component that does not
    touch the box's edge.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return mask
    cols = np.flatnonzero(mask.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    labels, count = ndi.label(~mask[r0:r1, c0:c1])
    if count == 0:
        return mask
    reaches_edge = np.zeros(count + 1, dtype=bool)
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        reaches_edge[edge] = True
    reaches_edge[0] = True  # label 0 is the foreground
    if reaches_edge.all():
        return mask
    holes = ~reaches_edge[labels]
    if not holes.any():
        return mask
    out = mask.copy()
    out[r0:r1, c0:c1] |= holes
    return out


def _kth_largest_partition(s: np.ndarray, k: int) -> float:
    flat = s.ravel()
    return float(np.partition(flat, flat.size - k)[flat.size - k])


def binary_mask(
    s: np.ndarray, lo: float, hi: float, opts: BinarizeOptions, kth=None
) -> np.ndarray:
    """Binarize a non-constant map (``hi > lo``); ``kth(k)`` gives the k-th largest value."""
    if opts.method == "percentile":
        k = k_count(opts.percentile / 100.0, s.size, "percentile")
        cut = (kth or (lambda kk: _kth_largest_partition(s, kk)))(k)
        mask = s >= cut
    else:
        norm = normalise(s, lo, hi)
        if opts.method == "fixed":
            mask = norm >= opts.threshold
        else:
            u8 = (255.0 * norm).astype(np.uint8)
            mask = u8 > otsu_level(u8)
    if opts.fill_holes:
        mask = fill_holes_in_box(mask)
    return mask


def binarize(
    saliency: Any,
    *,
    method: str = "otsu",
    threshold: float | None = None,
    percentile: float | None = None,
    fill_holes: bool | None = None,
) -> np.ndarray:
    """Turn a saliency map into a boolean mask, as CheXlocalize does.

    Parameters
    ----------
    saliency : (M, N) array_like
        Finite real-valued map.
    method : {'otsu', 'fixed', 'percentile'}, optional
        ``'otsu'`` (default): min-max normalise the map to ``u = (s - min) / (max - min)``
        (float64), scale it to 8 bits as ``floor(255 u)`` and keep pixels strictly above Otsu's
        threshold of that 8-bit image (OpenCV ``THRESH_OTSU`` semantics).
        ``'fixed'``: keep pixels with ``u >= threshold`` (CheXlocalize's own fixed cut keeps
        ``u > threshold``; the two differ only on pixels exactly at the threshold).
        ``'percentile'``: keep the top ``percentile`` percent of pixels, i.e. ``s >= v`` where
        ``v`` is the ``ceil(percentile / 100 * M * N)``-th largest value; pixels tied with ``v``
        are all kept, so ties can make the mask larger than asked.
    threshold : float, optional
        In [0, 1]; required with ``method='fixed'`` and refused otherwise.
    percentile : float, optional
        In (0, 100]; required with ``method='percentile'`` and refused otherwise.
    fill_holes : bool, optional
        Fill the holes of every connected component (``scipy.ndimage.binary_fill_holes``), as
        CheXlocalize does by drawing filled contours. The default ``None`` means True for
        ``'otsu'`` and False for the other two, whose masks then keep their stated meaning.

    Returns
    -------
    mask : (M, N) ndarray of bool

    Warns
    -----
    DegenerateInputWarning
        A constant map (all zeros included) cannot be binarized: the result is all False.

    Raises
    ------
    InputError
        The map is not 2-D, not finite or not numeric, or the options do not fit ``method``.
    """
    opts = binarize_options(method, threshold, percentile, fill_holes)
    s, _, lo, hi = as_map(saliency)
    if lo == hi:
        warnings.warn(
            f"binarize: {constant_map(lo)}, so it has no foreground; returning an all-False mask.",
            DegenerateInputWarning,
            stacklevel=2,
        )
        return np.zeros(s.shape, dtype=bool)
    return binary_mask(s, lo, hi, opts)


def tune_thresholds(
    saliencies: Sequence[Any],
    regions: Sequence[Any],
    classes: Sequence[Hashable],
    *,
    candidates: Any = None,
    fill_holes: bool = False,
) -> dict[Hashable, float]:
    """Per class, the fixed threshold that maximises the mean IoU over a validation set.

    For each class ``c`` and candidate ``t``, the score is
    ``mean_i IoU(binarize(s_i, method='fixed', threshold=t, fill_holes=fill_holes), r_i)`` over
    the images ``i`` of class ``c``, ignoring images where the IoU is undefined (empty region
    and empty prediction) and constant maps. The candidate with the highest score wins; on a
    tie, the smallest threshold.

    Parameters
    ----------
    saliencies : sequence of (M, N) array_like
        One map per image (a 3-D array is read as a stack along its first axis). Images may
        differ in shape from one another.
    regions : sequence of (M, N) array_like of bool
        One region per image, shaped like its map.
    classes : sequence of hashable
        The class (finding) of each image.
    candidates : array_like of float, optional
        Thresholds to try, in [0, 1] on the min-max normalised maps. Default
        ``np.linspace(0, 1, 21)``.
    fill_holes : bool, optional
        Passed to :func:`binarize`; False (the default, as in CheXlocalize's tuning) is
        computed without thresholding each image once per candidate.

    Returns
    -------
    dict
        ``{class: threshold}``; ``nan`` (with a warning) for a class where no image gives a
        defined IoU.

    Raises
    ------
    InputError
        Lengths differ, a class label is unhashable, a candidate is outside [0, 1], or a pair
        fails the checks of the metrics (the message names ``saliencies[i]``/``regions[i]``).
    """
    if isinstance(saliencies, np.ndarray) and saliencies.ndim == 3:
        saliencies = list(saliencies)
    if isinstance(regions, np.ndarray) and regions.ndim == 3:
        regions = list(regions)
    saliencies, regions, classes = list(saliencies), list(regions), list(classes)
    if not (len(saliencies) == len(regions) == len(classes)):
        raise InputError(
            f"saliencies, regions and classes must have one entry per image; got lengths "
            f"{len(saliencies)}, {len(regions)} and {len(classes)}."
        )
    if not saliencies:
        raise InputError("saliencies is empty; pass at least one validation image.")
    for i, c in enumerate(classes):
        if not isinstance(c, Hashable):
            raise InputError(f"classes[{i}] must be hashable (a str or int); got {c!r}.")
    if candidates is None:
        candidates = _DEFAULT_CANDIDATES
    cand = np.asarray(candidates, dtype=np.float64).ravel()
    if cand.size == 0 or not np.all((cand >= 0) & (cand <= 1)):
        raise InputError(
            "candidates must be a non-empty list of thresholds in [0, 1]; "
            f"got {np.asarray(candidates).tolist()!r}."
        )
    cand = np.unique(cand)  # ascending, so argmax takes the smallest threshold on a tie
    fill = binarize_options("fixed", 0.5, None, fill_holes).fill_holes

    scores: dict[Hashable, list[np.ndarray]] = {}
    constant = 0
    for i, (sal, reg, cls) in enumerate(zip(saliencies, regions, classes, strict=True)):
        s, _, lo, hi = as_map(sal, f"saliencies[{i}]")
        r = as_region(reg, s.shape, f"regions[{i}]")
        scores.setdefault(cls, [])
        if lo == hi:
            constant += 1
            continue
        n_region = int(np.count_nonzero(r))
        if fill:
            inter = np.empty(cand.size)
            pred = np.empty(cand.size)
            for j, t in enumerate(cand):
                mask = binary_mask(s, lo, hi, BinarizeOptions("fixed", float(t), None, True))
                inter[j] = np.count_nonzero(mask & r)
                pred[j] = np.count_nonzero(mask)
        else:
            norm = normalise(s, lo, hi)
            every = np.sort(norm, axis=None)
            inside = np.sort(norm[r])
            pred = every.size - np.searchsorted(every, cand, side="left")
            inter = inside.size - np.searchsorted(inside, cand, side="left")
        union = pred + n_region - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            scores[cls].append(np.where(union > 0, inter / np.maximum(union, 1), np.nan))
    if constant:
        warnings.warn(
            f"tune_thresholds: {constant} constant saliency map(s) cannot be binarized and were "
            "left out.",
            DegenerateInputWarning,
            stacklevel=2,
        )
    out: dict[Hashable, float] = {}
    for cls, rows in scores.items():
        table = np.array(rows).reshape(len(rows), cand.size)
        defined = ~np.isnan(table)
        if not defined.any():
            warnings.warn(
                f"tune_thresholds: no image of class {cls!r} has a defined IoU (every region "
                "and prediction is empty, or every map is constant); its threshold is NaN.",
                DegenerateInputWarning,
                stacklevel=2,
            )
            out[cls] = math.nan
            continue
        used = defined.sum(axis=0)
        mean = np.where(used > 0, np.nansum(table, axis=0) / np.maximum(used, 1), -np.inf)
        out[cls] = float(cand[int(np.argmax(mean))])
    return out
