"""How well is a saliency map localized inside a region mask?

Every function takes a 2-D ``saliency`` map (a Grad-CAM heat map at the image's resolution) and a
2-D boolean ``region`` of the same shape (a ground-truth or Segment Anything mask) and returns a
Python ``float``.

* :func:`iou` (``"iou"``) and :func:`dice` (``"dice"``): overlap of the binarized map and the
  region;
* :func:`pointing_game` (``"hit"``): is the map's maximum inside the region?
* :func:`energy_pointing_game` (``"energy"``): share of the positive saliency mass inside;
* :func:`relevance_rank_accuracy` (``"rank_accuracy"``): share of the top-|region| pixels
  inside;
* :func:`top_k_intersection` (``"top_k"``): share of the top-k pixels inside;
* :func:`saliency_auroc` (``"auroc"``) and :func:`saliency_auprc` (``"auprc"``): the map as a
  pixel classifier of the region, area under the ROC curve and average precision;
* :func:`pixel_precision`, :func:`pixel_recall`, :func:`pixel_specificity` (``"precision"``,
  ``"recall"``, ``"specificity"``): the binarized map as a pixel classifier.

:func:`localization_metrics` computes all of them for one map and one or several regions in one
call and shares the work (one sort of the map, one binarization); :func:`prepare_map` keeps that
work for regions scored later. Every function accepts a :class:`PreparedMap` for the map.

Conventions
-----------
* Binarization (:func:`binarize`) follows CheXlocalize: the map is min-max normalised (in
  float64), scaled to 8 bits and thresholded with Otsu's method, then holes are filled.
* Ties are never broken arbitrarily. Rank metrics (rank accuracy, top-k) give pixels tied at the
  cut-off the credit they get on average over all orderings of the tie; AUROC counts a tied
  (region, background) pair as half a win; average precision places one threshold per distinct
  value.
* Degenerate inputs give ``nan`` and a :class:`DegenerateInputWarning` that says why, never a
  silent value and never an exception:

  - a constant saliency map (all zeros included) ranks no pixel above another and cannot be
    binarized: every metric is ``nan`` (a boolean mask given to the overlap metrics is taken
    as already binarized and is never "constant");
  - an empty region leaves nothing to point at: ``hit``, ``energy``, ``rank_accuracy``,
    ``top_k``, ``auroc``, ``auprc`` and ``recall`` are ``nan``. ``iou``, ``dice``, ``precision``
    and ``specificity`` keep their formula (so a non-empty prediction on an image without a
    finding scores IoU 0, as in CheXlocalize) and are ``nan`` only where it divides by zero;
  - a region covering the whole image: ``auroc``, ``auprc`` and ``specificity`` are ``nan``.
"""

from __future__ import annotations

import itertools
import math
import numbers
import sys
import warnings
from collections.abc import Hashable, Sequence
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
from scipy import ndimage as ndi

from .errors import InputError

__all__ = [
    "BINARIZE_METHODS",
    "METRIC_NAMES",
    "DegenerateInputWarning",
    "PreparedMap",
    "binarize",
    "dice",
    "energy_pointing_game",
    "iou",
    "localization_metrics",
    "pixel_precision",
    "pixel_recall",
    "pixel_specificity",
    "pointing_game",
    "prepare_map",
    "relevance_rank_accuracy",
    "saliency_auprc",
    "saliency_auroc",
    "top_k_intersection",
    "tune_thresholds",
]

#: Keys of the dict returned by :func:`localization_metrics`, in order.
METRIC_NAMES = (
    "iou",
    "dice",
    "hit",
    "energy",
    "rank_accuracy",
    "top_k",
    "auroc",
    "auprc",
    "precision",
    "recall",
    "specificity",
)

#: Methods accepted by :func:`binarize`.
BINARIZE_METHODS = ("otsu", "fixed", "percentile")

#: Default candidate thresholds of :func:`tune_thresholds`: 0, 0.05, ..., 1.
_DEFAULT_CANDIDATES = np.linspace(0.0, 1.0, 21)

_DEFAULT_K = 0.05


class DegenerateInputWarning(UserWarning):
    """A metric is undefined for this input (empty region, constant map, ...) and is ``nan``."""


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _as_map(saliency: Any, name: str = "saliency") -> tuple[np.ndarray, bool, float, float]:
    """Return ``(map, was_bool, min, max)``; the map is float32 or float64, finite and 2-D."""
    arr = np.asarray(saliency)
    if arr.dtype.kind not in "biuf":
        raise InputError(
            f"{name} must be a real-valued numeric array; got dtype {arr.dtype}. "
            f"Convert it first, e.g. np.asarray({name}, dtype=float)."
        )
    if arr.ndim != 2:
        raise InputError(
            f"{name} must be a 2-D map (rows, columns); got shape {arr.shape}. "
            "Drop batch and channel axes first, e.g. np.squeeze(saliency) or saliency[0]."
        )
    if arr.size == 0:
        raise InputError(f"{name} is empty (shape {arr.shape}); pass a map with pixels.")
    was_bool = arr.dtype == bool
    if arr.dtype.kind == "f" and arr.dtype.itemsize == 4:
        pass
    elif arr.dtype.kind == "f" and arr.dtype.itemsize < 4:
        arr = arr.astype(np.float32)
    else:
        arr = arr.astype(np.float64, copy=False)
    lo, hi = float(arr.min()), float(arr.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise InputError(
            f"{name} has {bad} non-finite value(s) (NaN or inf); a saliency map must be finite. "
            f"Replace them first, e.g. np.nan_to_num({name}, nan=0.0)."
        )
    if not math.isfinite(hi - lo):
        raise InputError(
            f"{name} spans [{lo:g}, {hi:g}], too wide to normalise in float64; "
            f"rescale it first, e.g. {name} / np.abs({name}).max()."
        )
    return arr, was_bool, lo, hi


def _as_region(region: Any, shape: tuple[int, ...], name: str = "region") -> np.ndarray:
    arr = np.asarray(region)
    if arr.dtype.kind not in "biuf":
        raise InputError(
            f"{name} must be a boolean mask; got dtype {arr.dtype}. "
            f"Convert it first, e.g. np.asarray({name}) > 0."
        )
    if arr.shape != shape:
        raise InputError(
            f"{name} has shape {arr.shape} but the saliency map has shape {shape}; they must "
            "match pixel for pixel. Resize the map to the region, e.g. "
            "skimage.transform.resize(saliency, region.shape, order=1)."
        )
    if arr.dtype == bool:
        return arr
    binary = (arr == 0) | (arr == 1)
    if not binary.all():
        examples = np.unique(arr[~binary])[:3].tolist()
        raise InputError(
            f"{name} must be a binary mask (bool, or numbers that are all 0 or 1); it also "
            f"holds {examples}. Pass {name} > 0 for a 0/255 mask, or labels == k for one label "
            "of a label image."
        )
    return arr != 0


def _real(value: Any, name: str) -> float:
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a real number; got {value!r}.")
    out = float(value)
    if not math.isfinite(out):
        raise InputError(f"{name} must be finite; got {value!r}.")
    return out


class _Options(NamedTuple):
    method: str
    threshold: float | None
    percentile: float | None
    fill_holes: bool


def _binarize_options(method: Any, threshold: Any, percentile: Any, fill_holes: Any) -> _Options:
    if not isinstance(method, str) or method not in BINARIZE_METHODS:
        raise InputError(
            f"method must be one of {', '.join(map(repr, BINARIZE_METHODS))}; got {method!r}."
        )
    if method == "fixed":
        if threshold is None:
            raise InputError(
                "threshold is required with method='fixed': a value in [0, 1] on the min-max "
                "normalised map, e.g. threshold=0.5."
            )
        threshold = _real(threshold, "threshold")
        if not 0.0 <= threshold <= 1.0:
            raise InputError(
                f"threshold must lie in [0, 1] (it applies to the min-max normalised map); "
                f"got {threshold!r}."
            )
    elif threshold is not None:
        raise InputError(
            f"threshold is only used with method='fixed'; got threshold={threshold!r} with "
            f"method={method!r}. Pass method='fixed' or drop threshold."
        )
    if method == "percentile":
        if percentile is None:
            raise InputError(
                "percentile is required with method='percentile': the share of pixels, in "
                "percent, kept as foreground, e.g. percentile=10."
            )
        percentile = _real(percentile, "percentile")
        if not 0.0 < percentile <= 100.0:
            raise InputError(f"percentile must lie in (0, 100]; got {percentile!r}.")
    elif percentile is not None:
        raise InputError(
            f"percentile is only used with method='percentile'; got percentile={percentile!r} "
            f"with method={method!r}. Pass method='percentile' or drop percentile."
        )
    if fill_holes is None:
        fill_holes = method == "otsu"
    elif not isinstance(fill_holes, bool | np.bool_):
        raise InputError(f"fill_holes must be True, False or None; got {fill_holes!r}.")
    return _Options(method, threshold, percentile, bool(fill_holes))


def _k_count(k: Any, n: int, name: str = "k") -> int:
    """Turn ``k`` (a pixel count, or a fraction of the ``n`` pixels when a float) into a count."""
    if isinstance(k, bool | np.bool_):
        raise InputError(f"{name} must be an int (pixels) or a float in (0, 1]; got {k!r}.")
    if isinstance(k, numbers.Integral):
        count = int(k)
        if not 1 <= count <= n:
            raise InputError(
                f"{name}={count} pixels is outside [1, {n}] (the image has {n} pixels); pass a "
                "count in that range or a float fraction such as 0.05."
            )
        return count
    if isinstance(k, numbers.Real):
        frac = float(k)
        if not (math.isfinite(frac) and 0.0 < frac <= 1.0):
            raise InputError(
                f"{name} as a float is a fraction of the image and must lie in (0, 1]; got {k!r}."
                " Pass an int for a pixel count."
            )
        return max(1, min(n, math.ceil(frac * n)))
    raise InputError(f"{name} must be an int (pixels) or a float in (0, 1]; got {k!r}.")


def _tolerance(tolerance: Any) -> float:
    tol = _real(tolerance, "tolerance")
    if tol < 0:
        raise InputError(f"tolerance is a distance in pixels and must be >= 0; got {tolerance!r}.")
    return tol


# --------------------------------------------------------------------------------------------
# Warnings
# --------------------------------------------------------------------------------------------

_EMPTY = "the region is empty"
_FULL = "the region covers the whole image"
_NO_MASS = "the saliency map has no positive value"
_EMPTY_PRED = "the binarized saliency map is empty"
_BOTH_EMPTY = "both the binarized saliency map and the region are empty"


def _constant(value: float) -> str:
    return f"the saliency map is constant (every pixel is {value:g})"


def _finish(name: str, value: float, reason: str | None) -> float:
    """Return ``value`` as a float; warn (on the caller's caller's line) when it is undefined."""
    if reason is not None:
        warnings.warn(
            f"{name} is undefined because {reason}; returning NaN.",
            DegenerateInputWarning,
            stacklevel=3,
        )
        return math.nan
    return float(value)


# --------------------------------------------------------------------------------------------
# Binarization
# --------------------------------------------------------------------------------------------


def _normalise(s: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``(s - min) / (max - min)`` in float64 (``hi > lo``)."""
    return (s.astype(np.float64, copy=False) - lo) / (hi - lo)


def _otsu_level(u8: np.ndarray) -> int:
    """Otsu's threshold of an 8-bit image: foreground is ``u8 > level``."""
    return _otsu_level_of(np.bincount(u8.ravel(), minlength=256).astype(np.int64))


def _otsu_level_of(hist: np.ndarray) -> int:
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


def _fill_holes(mask: np.ndarray) -> np.ndarray:
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


def _binary_mask(s: np.ndarray, lo: float, hi: float, opts: _Options, kth=None) -> np.ndarray:
    """Binarize a non-constant map (``hi > lo``); ``kth(k)`` gives the k-th largest value."""
    if opts.method == "percentile":
        k = _k_count(opts.percentile / 100.0, s.size, "percentile")
        cut = (kth or (lambda kk: _kth_largest_partition(s, kk)))(k)
        mask = s >= cut
    else:
        norm = _normalise(s, lo, hi)
        if opts.method == "fixed":
            mask = norm >= opts.threshold
        else:
            u8 = (255.0 * norm).astype(np.uint8)
            mask = u8 > _otsu_level(u8)
    if opts.fill_holes:
        mask = _fill_holes(mask)
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
    opts = _binarize_options(method, threshold, percentile, fill_holes)
    s, _, lo, hi = _as_map(saliency)
    if lo == hi:
        warnings.warn(
            f"binarize: {_constant(lo)}, so it has no foreground; returning an all-False mask.",
            DegenerateInputWarning,
            stacklevel=2,
        )
        return np.zeros(s.shape, dtype=bool)
    return _binary_mask(s, lo, hi, opts)


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
    fill = _binarize_options("fixed", 0.5, None, fill_holes).fill_holes

    scores: dict[Hashable, list[np.ndarray]] = {}
    constant = 0
    for i, (sal, reg, cls) in enumerate(zip(saliencies, regions, classes, strict=True)):
        s, _, lo, hi = _as_map(sal, f"saliencies[{i}]")
        r = _as_region(reg, s.shape, f"regions[{i}]")
        scores.setdefault(cls, [])
        if lo == hi:
            constant += 1
            continue
        n_region = int(np.count_nonzero(r))
        if fill:
            inter = np.empty(cand.size)
            pred = np.empty(cand.size)
            for j, t in enumerate(cand):
                mask = _binary_mask(s, lo, hi, _Options("fixed", float(t), None, True))
                inter[j] = np.count_nonzero(mask & r)
                pred[j] = np.count_nonzero(mask)
        else:
            norm = _normalise(s, lo, hi)
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


# --------------------------------------------------------------------------------------------
# Work shared by every region scored against one map
# --------------------------------------------------------------------------------------------


#: Maps with at least this many values are sorted in parallel parts (:func:`sort_values`).
PARALLEL_SORT_MIN = 1 << 20


def sort_values(flat: np.ndarray, workers: int | None = None) -> np.ndarray:
    """``np.sort(flat)``, sorted as a few parts on worker threads and then merged.

    Each part is sorted in place on its own thread (numpy releases the GIL), and a stable sort
    of the whole (timsort) finds the sorted runs and merges them, one pass per doubling: on two
    free cores a radiograph-size map (6.6 M values) sorts in about 0.6 of ``np.sort``'s time.
    On busy cores the parts gain nothing and the merge costs about 0.14 of a sort, so by
    default (``workers=None``) the parts are as many as the CPUs the load average leaves idle,
    at most 4.
    """
    from ._threads import idle_cpus, run_threads

    workers = min(4, idle_cpus()) if workers is None else int(workers)
    if workers < 2 or flat.size < PARALLEL_SORT_MIN:
        return np.sort(flat)
    out = np.array(flat, copy=True)
    bounds = np.linspace(0, out.size, workers + 1).astype(int)
    run_threads(
        lambda part: part.sort(), [out[a:b] for a, b in itertools.pairwise(bounds)], workers
    )
    out.sort(kind="stable")
    return out


def _flag_positions(flags: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """``np.flatnonzero(flags)``, as int32 when every position and twice it fit, built chunk
    by chunk.

    A radiograph-size map has millions of groups: their positions as int64 take ~40 MB, more
    than glibc's largest heap-served block (32 MB), so each map would get fresh pages from the
    kernel, and on a virtual machine whose idle memory the host reclaims a page fault can cost
    tens of microseconds (measured: 7,930 faults and 0.5-1 s more per map on one such machine).
    """
    if flags.size >= 1 << 30:
        return np.flatnonzero(flags)
    out = np.empty(int(np.count_nonzero(flags)), dtype=np.int32)
    filled = 0
    for begin in range(0, flags.size, chunk):
        found = np.flatnonzero(flags[begin : begin + chunk])
        out[filled : filled + found.size] = found
        out[filled : filled + found.size] += begin
        filled += found.size
    return out


class _SortedMap:
    """The map's values sorted once, as runs of equal values ("groups").

    ``values[g]`` is the g-th distinct value (ascending), ``bounds[g]`` the number of pixels
    strictly below it and ``bounds[g + 1] - bounds[g]`` the number equal to it (12 bytes per
    distinct value). That is all the rank metrics need from the map; a region then only adds
    its own pixels' groups (:meth:`region_groups`).
    """

    def __init__(self, flat: np.ndarray) -> None:
        self.flat = flat
        ascending = sort_values(flat)
        # A group starts where the value changes (-0.0 == 0.0 share one: the comparison, not
        # the bits, decides equality); one flag pass, one index pass, no concatenation.
        starts = np.empty(flat.size + 1, dtype=bool)
        starts[0] = starts[-1] = True
        np.not_equal(ascending[1:], ascending[:-1], out=starts[1:-1])
        self.bounds = _flag_positions(starts)
        self.values = ascending[self.bounds[:-1]]

    @property
    def starts(self) -> np.ndarray:
        """Pixels strictly below each distinct value."""
        return self.bounds[:-1]

    def sizes(self, groups: np.ndarray | None = None) -> np.ndarray:
        """Pixels equal to each distinct value (of ``groups``, or all of them)."""
        if groups is None:
            return np.diff(self.bounds)
        return self.bounds[groups + 1] - self.bounds[groups]

    def region_groups(self, inside: np.ndarray, n_pos: int) -> tuple[np.ndarray, np.ndarray]:
        """``(groups, counts)``: the groups holding region pixels (ascending) and how many.

        Sorts whichever side of the region is smaller, so a region costs at most a sort of
        half the map (a small lesion, a fraction of it) plus a look-up in :attr:`values`.
        """
        if n_pos <= self.flat.size - n_pos:
            values, counts = _runs(np.sort(self.flat[inside]))
            return np.searchsorted(self.values, values), counts
        values, counts = _runs(np.sort(self.flat[~inside]))
        inside_counts = self.sizes()
        inside_counts[np.searchsorted(self.values, values)] -= counts
        groups = np.flatnonzero(inside_counts)
        return groups, inside_counts[groups]


def _runs(ascending: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of a sorted array and how often each occurs."""
    if ascending.size == 0:
        return ascending, np.zeros(0, dtype=np.int64)
    first = np.concatenate(([0], np.flatnonzero(ascending[1:] != ascending[:-1]) + 1))
    return ascending[first], np.diff(np.append(first, ascending.size))


def _first_at_least(values: np.ndarray, score, levels: np.ndarray) -> np.ndarray:
    """For each level, the first index ``i`` of ``values`` with ``score(values[i]) >= level``
    (``values.size`` if none), for a ``score`` non-decreasing along ``values``; a vectorised
    bisection that evaluates ``score`` on ``len(levels)`` values per step."""
    lo = np.zeros(levels.shape, dtype=np.int64)
    hi = np.full(levels.shape, values.size, dtype=np.int64)
    while (active := lo < hi).any():
        mid = (lo + hi) // 2
        ok = score(values[np.minimum(mid, values.size - 1)]) >= levels
        hi = np.where(active & ok, mid, hi)
        lo = np.where(active & ~ok, mid + 1, lo)
    return lo


class PreparedMap:
    """One saliency map and the work every region scored against it shares.

    Validates the map once and computes, each at most once and only when a metric asks for
    it: the sort of its values (for rank accuracy, top-k, AUROC and AUPRC), its binarized mask
    per set of options (for IoU, Dice, precision, recall, specificity), its maxima (pointing
    game) and its positive mass (energy). Pass it instead of the array to
    :func:`localization_metrics` or to any single metric; the values are the same.

    Parameters
    ----------
    saliency : (M, N) array_like or torch.Tensor
        Finite real-valued map (see :func:`localization_metrics`).
    device : str or torch.device, optional
        Sort on this torch device (e.g. ``"cuda"``): the sort and the per-region look-ups run
        there, exactly (integer counts), and every value equals the numpy path's. By default a
        torch tensor is sorted on its own device and any other array with numpy.

    Attributes
    ----------
    shape : tuple of int
    constant : bool
        Every pixel has the same value (the metrics are then NaN).
    """

    def __init__(self, saliency: Any, *, device: Any = None) -> None:
        tensor = None
        if _is_tensor(saliency):
            tensor = saliency.detach()
            device = tensor.device if device is None else device
            saliency = _tensor_to_numpy(tensor)
        self.s, self.was_bool, self.lo, self.hi = _as_map(saliency)
        self.shape = self.s.shape
        self.n = self.s.size
        self.constant = self.lo == self.hi
        self.device = device
        self._tensor = tensor
        self._masks: dict[_Options, np.ndarray] = {}

    @cached_property
    def order(self) -> _SortedMap:
        """The sorted values (one sort per map)."""
        if self.device is None:
            return _SortedMap(self.s.ravel())
        from ._metrics_torch import TorchSortedMap

        return TorchSortedMap(self.s.ravel(), self._tensor, self.device)

    def kth_largest(self, k: int) -> float:
        order = self.order
        g = int(np.searchsorted(order.starts, self.n - k, side="right")) - 1
        return float(order.values[g])

    def binarize(
        self,
        *,
        method: str = "otsu",
        threshold: float | None = None,
        percentile: float | None = None,
        fill_holes: bool | None = None,
    ) -> np.ndarray:
        """:func:`binarize` of this map, computed once per set of options.

        The overlap metrics (IoU, Dice, precision, recall, specificity) of every region read
        the same cached mask. Do not modify the returned array.
        """
        opts = _binarize_options(method, threshold, percentile, fill_holes)
        if self.constant and not self.was_bool:
            warnings.warn(
                f"binarize: {_constant(self.lo)}, so it has no foreground; returning an "
                "all-False mask.",
                DegenerateInputWarning,
                stacklevel=2,
            )
            return np.zeros(self.shape, dtype=bool)
        return self.binary(opts)

    def binary(self, opts: _Options) -> np.ndarray:
        """The binarized map (cached per options); a bool map is used as it is."""
        if opts not in self._masks:
            if self.was_bool:
                mask = self.s != 0
            elif opts.method != "percentile" and "order" in self.__dict__:
                mask = self._binary_from_order(opts)
            else:
                kth = self.kth_largest if "order" in self.__dict__ else None
                mask = _binary_mask(self.s, self.lo, self.hi, opts, kth)
            self._masks[opts] = mask
        return self._masks[opts]

    def _binary_from_order(self, opts: _Options) -> np.ndarray:
        """:func:`_binary_mask` from the sorted distinct values: one comparison over the pixels.

        The min-max normalisation and its 8-bit scaling are monotone in the value, so Otsu's
        histogram follows from where each level starts among the distinct values (a bisection
        on a few hundred of them), and the mask is ``s >= v`` for the smallest value that
        passes.
        """
        order = self.order

        def norm(v: np.ndarray) -> np.ndarray:
            return _normalise(v, self.lo, self.hi)

        if opts.method == "fixed":
            first = int(_first_at_least(order.values, norm, np.array([opts.threshold]))[0])
        else:
            levels = np.arange(257)
            at = _first_at_least(
                order.values, lambda v: (255.0 * norm(v)).astype(np.uint8), levels
            )
            pixels_below = order.bounds[at]
            first = int(at[_otsu_level_of(np.diff(pixels_below)) + 1])
        if first < order.values.size:
            mask = self.s >= order.values[first]
        else:
            mask = np.zeros(self.shape, dtype=bool)
        return _fill_holes(mask) if opts.fill_holes else mask

    @cached_property
    def maxima(self) -> np.ndarray:
        """Flat indices of the pixels equal to the maximum."""
        return np.flatnonzero(self.s == self.hi)

    @cached_property
    def mass(self) -> tuple[np.ndarray, float]:
        """``(max(s, 0), its sum in float64)``."""
        mass = self.s if self.lo >= 0 else np.maximum(self.s, 0)
        return mass, float(mass.sum(dtype=np.float64))


def prepare_map(saliency: Any, *, device: Any = None) -> PreparedMap:
    """Validate a saliency map once for scoring several regions against it.

    Parameters
    ----------
    saliency : (M, N) array_like or torch.Tensor
        The map; a :class:`PreparedMap` is returned as it is.
    device : str or torch.device, optional
        Torch device for the sort (see :class:`PreparedMap`); ``None``: numpy, or a tensor's
        own device.

    Returns
    -------
    PreparedMap
    """
    if isinstance(saliency, PreparedMap):
        return saliency
    return PreparedMap(saliency, device=device)


def _is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _tensor_to_numpy(tensor) -> np.ndarray:
    torch = sys.modules["torch"]
    if tensor.dtype in (torch.bfloat16, torch.float16):
        tensor = tensor.float()
    return tensor.cpu().numpy()


class _Pair:
    """A prepared map, a validated region and the pieces several metrics share."""

    def __init__(self, saliency: Any, region: Any, name: str = "region") -> None:
        self.map = prepare_map(saliency)
        self.s, self.was_bool = self.map.s, self.map.was_bool
        self.lo, self.hi = self.map.lo, self.map.hi
        self.r = _as_region(region, self.s.shape, name)
        self.n = self.map.n
        self.n_pos = int(np.count_nonzero(self.r))
        self.n_neg = self.n - self.n_pos
        self.constant = self.map.constant
        self._confusion: dict[_Options, tuple[int, int]] = {}

    def kth_largest(self, k: int) -> float:
        return self.map.kth_largest(k)

    # ---- binarization ----------------------------------------------------------------------
    def confusion(self, opts: _Options) -> tuple[int, int]:
        """``(true positives, predicted positives)`` of the binarized map."""
        if opts not in self._confusion:
            m = self.map.binary(opts)
            self._confusion[opts] = (int(np.count_nonzero(m & self.r)), int(np.count_nonzero(m)))
        return self._confusion[opts]

    # ---- ranking ----------------------------------------------------------------------------
    @cached_property
    def groups(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per group of equal map values holding region pixels, ascending:
        ``(group, region count, pixels below, pixels equal, region pixels below)``."""
        order = self.map.order
        groups, counts = order.region_groups(self.r.ravel(), self.n_pos)
        before = np.cumsum(counts) - counts
        return groups, counts, order.starts[groups], order.sizes(groups), before

    @cached_property
    def ranking(self) -> tuple[float, float]:
        """``(AUROC, average precision)``; needs ``0 < n_pos < n``.

        AUROC is Mann-Whitney's U from mid-ranks, ``2U = sum over region pixels of (2 below +
        equal + 1) - n_R (n_R + 1)``, which counts a tied (region, background) pair one half.
        Average precision takes one step per distinct region value ``v``: ``tp`` region
        pixels and ``n - below(v)`` pixels in all are ``>= v``.
        """
        n_pos, n_neg = self.n_pos, self.n_neg
        _, counts, below, equal, before = self.groups
        # Positions may be int32 (_flag_positions); their sum over millions of pixels is not.
        weights = 2 * below.astype(np.int64) + equal + 1
        twice_u = int(np.dot(counts.astype(np.int64), weights)) - n_pos * (n_pos + 1)
        auroc = twice_u / (2.0 * n_pos * n_neg)
        tp = n_pos - before
        return auroc, float(np.sum(counts * (tp / (self.n - below)))) / n_pos

    def top_fraction(self, k: int) -> float:
        """Expected share of region pixels among the ``k`` highest, ties shared evenly."""
        order = self.map.order
        g = int(np.searchsorted(order.starts, self.n - k, side="right")) - 1
        all_eq = int(order.bounds[g + 1] - order.bounds[g])
        all_gt = self.n - int(order.starts[g]) - all_eq
        groups, counts, _, _, before = self.groups
        j = int(np.searchsorted(groups, g, side="left"))
        pos_eq = int(counts[j]) if j < groups.size and groups[j] == g else 0
        pos_le = int(before[j]) + pos_eq if j < groups.size else self.n_pos
        pos_gt = self.n_pos - pos_le
        return (pos_gt + (k - all_gt) * pos_eq / all_eq) / k


# --------------------------------------------------------------------------------------------
# Metric kernels: (value, reason-it-is-undefined or None)
# --------------------------------------------------------------------------------------------

_Result = tuple[float, str | None]


def _binary_reason(p: _Pair) -> str | None:
    return _constant(p.lo) if p.constant and not p.was_bool else None


def _iou(p: _Pair, opts: _Options) -> _Result:
    if (why := _binary_reason(p)) is not None:
        return math.nan, why
    tp, pp = p.confusion(opts)
    union = pp + p.n_pos - tp
    return (math.nan, _BOTH_EMPTY) if union == 0 else (tp / union, None)


def _dice(p: _Pair, opts: _Options) -> _Result:
    if (why := _binary_reason(p)) is not None:
        return math.nan, why
    tp, pp = p.confusion(opts)
    denom = pp + p.n_pos
    return (math.nan, _BOTH_EMPTY) if denom == 0 else (2 * tp / denom, None)


def _precision(p: _Pair, opts: _Options) -> _Result:
    if (why := _binary_reason(p)) is not None:
        return math.nan, why
    tp, pp = p.confusion(opts)
    return (math.nan, _EMPTY_PRED) if pp == 0 else (tp / pp, None)


def _recall(p: _Pair, opts: _Options) -> _Result:
    if p.n_pos == 0:
        return math.nan, _EMPTY
    if (why := _binary_reason(p)) is not None:
        return math.nan, why
    tp, _ = p.confusion(opts)
    return tp / p.n_pos, None


def _specificity(p: _Pair, opts: _Options) -> _Result:
    if p.n_neg == 0:
        return math.nan, _FULL
    if (why := _binary_reason(p)) is not None:
        return math.nan, why
    tp, pp = p.confusion(opts)
    return (p.n_neg - (pp - tp)) / p.n_neg, None


def _rank_reason(p: _Pair) -> str | None:
    if p.n_pos == 0:
        return _EMPTY
    if p.constant:
        return _constant(p.lo)
    return None


def _hit(p: _Pair, tolerance: float) -> _Result:
    if (why := _rank_reason(p)) is not None:
        return math.nan, why
    maxima = p.map.maxima
    if tolerance == 0:
        return float(np.any(p.r.ravel()[maxima])), None
    rows, cols = np.unravel_index(maxima, p.s.shape)
    pad = math.floor(tolerance)
    r0, c0 = max(int(rows.min()) - pad, 0), max(int(cols.min()) - pad, 0)
    r1, c1 = int(rows.max()) + pad + 1, int(cols.max()) + pad + 1
    window = p.r[r0:r1, c0:c1]
    if not window.any():
        return 0.0, None
    distance = ndi.distance_transform_edt(~window)
    return float(np.any(distance[rows - r0, cols - c0] <= tolerance)), None


def _energy(p: _Pair) -> _Result:
    if (why := _rank_reason(p)) is not None:
        return math.nan, why
    mass, total = p.map.mass
    if total == 0:
        return math.nan, _NO_MASS
    return float(mass.sum(where=p.r, dtype=np.float64)) / total, None


def _rank_accuracy(p: _Pair) -> _Result:
    if (why := _rank_reason(p)) is not None:
        return math.nan, why
    return p.top_fraction(p.n_pos), None


def _top_k(p: _Pair, k: int) -> _Result:
    if (why := _rank_reason(p)) is not None:
        return math.nan, why
    return p.top_fraction(k), None


def _auc_reason(p: _Pair) -> str | None:
    if p.n_neg == 0:
        return _FULL
    return _rank_reason(p)


def _auroc(p: _Pair) -> _Result:
    if (why := _auc_reason(p)) is not None:
        return math.nan, why
    return p.ranking[0], None


def _auprc(p: _Pair) -> _Result:
    if (why := _auc_reason(p)) is not None:
        return math.nan, why
    return p.ranking[1], None


# --------------------------------------------------------------------------------------------
# Public metrics
# --------------------------------------------------------------------------------------------


def iou(
    saliency: Any,
    region: Any,
    *,
    method: str = "otsu",
    threshold: float | None = None,
    percentile: float | None = None,
    fill_holes: bool | None = None,
) -> float:
    """Intersection over union of the binarized map ``B`` and the region ``R``.

    ``IoU = |B ∩ R| / |B ∪ R|``.

    Parameters
    ----------
    saliency : (M, N) array_like
        A float map, binarized with :func:`binarize` and the options below, or a bool mask
        used as it is.
    region : (M, N) array_like of bool
        Region mask (bool, or numbers all 0 or 1).
    method, threshold, percentile, fill_holes : optional
        How a float map is binarized; see :func:`binarize`. Ignored for a bool mask.

    Returns
    -------
    float
        In [0, 1]. ``nan`` (with a :class:`DegenerateInputWarning`) when ``B`` and ``R`` are
        both empty, or when a float map is constant. An empty ``R`` with a non-empty ``B``
        gives 0, as in CheXlocalize.
    """
    opts = _binarize_options(method, threshold, percentile, fill_holes)
    return _finish("iou", *_iou(_Pair(saliency, region), opts))


def dice(
    saliency: Any,
    region: Any,
    *,
    method: str = "otsu",
    threshold: float | None = None,
    percentile: float | None = None,
    fill_holes: bool | None = None,
) -> float:
    """Dice coefficient of the binarized map ``B`` and the region ``R``.

    ``Dice = 2 |B ∩ R| / (|B| + |R|)`` (= ``2 IoU / (1 + IoU)``).

    Parameters
    ----------
    saliency : (M, N) array_like
        A float map, binarized with :func:`binarize`, or a bool mask used as it is.
    region : (M, N) array_like of bool
        Region mask.
    method, threshold, percentile, fill_holes : optional
        How a float map is binarized; see :func:`binarize`. Ignored for a bool mask.

    Returns
    -------
    float
        In [0, 1]; ``nan`` with a warning when ``B`` and ``R`` are both empty or a float map is
        constant.
    """
    opts = _binarize_options(method, threshold, percentile, fill_holes)
    return _finish("dice", *_dice(_Pair(saliency, region), opts))


def pixel_precision(
    saliency: Any,
    region: Any,
    *,
    method: str = "otsu",
    threshold: float | None = None,
    percentile: float | None = None,
    fill_holes: bool | None = None,
) -> float:
    """Share of the binarized map inside the region: ``|B ∩ R| / |B|``.

    Parameters
    ----------
    saliency : (M, N) array_like
        A float map, binarized with :func:`binarize`, or a bool mask used as it is.
    region : (M, N) array_like of bool
        Region mask.
    method, threshold, percentile, fill_holes : optional
        How a float map is binarized; see :func:`binarize`. Ignored for a bool mask.

    Returns
    -------
    float
        In [0, 1]; ``nan`` with a warning when ``B`` is empty or a float map is constant.
    """
    opts = _binarize_options(method, threshold, percentile, fill_holes)
    return _finish("pixel_precision", *_precision(_Pair(saliency, region), opts))


def pixel_recall(
    saliency: Any,
    region: Any,
    *,
    method: str = "otsu",
    threshold: float | None = None,
    percentile: float | None = None,
    fill_holes: bool | None = None,
) -> float:
    """Share of the region covered by the binarized map: ``|B ∩ R| / |R|`` (sensitivity).

    Parameters
    ----------
    saliency : (M, N) array_like
        A float map, binarized with :func:`binarize`, or a bool mask used as it is.
    region : (M, N) array_like of bool
        Region mask.
    method, threshold, percentile, fill_holes : optional
        How a float map is binarized; see :func:`binarize`. Ignored for a bool mask.

    Returns
    -------
    float
        In [0, 1]; ``nan`` with a warning when ``R`` is empty or a float map is constant.
    """
    opts = _binarize_options(method, threshold, percentile, fill_holes)
    return _finish("pixel_recall", *_recall(_Pair(saliency, region), opts))


def pixel_specificity(
    saliency: Any,
    region: Any,
    *,
    method: str = "otsu",
    threshold: float | None = None,
    percentile: float | None = None,
    fill_holes: bool | None = None,
) -> float:
    """Share of the background left out of the binarized map: ``|~B ∩ ~R| / |~R|``.

    Parameters
    ----------
    saliency : (M, N) array_like
        A float map, binarized with :func:`binarize`, or a bool mask used as it is.
    region : (M, N) array_like of bool
        Region mask.
    method, threshold, percentile, fill_holes : optional
        How a float map is binarized; see :func:`binarize`. Ignored for a bool mask.

    Returns
    -------
    float
        In [0, 1]; ``nan`` with a warning when ``R`` covers the whole image or a float map is
        constant.
    """
    opts = _binarize_options(method, threshold, percentile, fill_holes)
    return _finish("pixel_specificity", *_specificity(_Pair(saliency, region), opts))


def pointing_game(saliency: Any, region: Any, *, tolerance: float = 0) -> float:
    """Pointing game: does the map's maximum fall within ``tolerance`` pixels of the region?

    ``hit = 1`` if ``min over maxima m, region pixels q of ||m - q||_2 <= tolerance``, else 0,
    where the maxima are *all* pixels equal to ``max(s)`` and distances are Euclidean between
    pixel centres. With tied maxima one of them in reach is enough (the lenient choice; a map
    whose maximum is a plateau straddling the region border counts as a hit).

    Parameters
    ----------
    saliency : (M, N) array_like
        Saliency map.
    region : (M, N) array_like of bool
        Region mask.
    tolerance : float, optional
        Slack in pixels; 0 (default) asks for a maximum inside the region.

    Returns
    -------
    float
        1.0 or 0.0; ``nan`` with a warning when the region is empty or the map is constant.
    """
    tol = _tolerance(tolerance)
    return _finish("pointing_game", *_hit(_Pair(saliency, region), tol))


def energy_pointing_game(saliency: Any, region: Any) -> float:
    """Energy-based pointing game (relevance mass accuracy).

    ``energy = sum(s+ * r) / sum(s+)`` with ``s+ = max(s, 0)``: negative saliency is clipped to
    0, so it neither adds to nor takes from the mass (Grad-CAM is non-negative after its ReLU;
    for signed maps only the evidence *for* the class counts).

    Parameters
    ----------
    saliency : (M, N) array_like
        Saliency map.
    region : (M, N) array_like of bool
        Region mask.

    Returns
    -------
    float
        In [0, 1]; ``nan`` with a warning when the region is empty, the map is constant, or it
        has no positive value.
    """
    return _finish("energy_pointing_game", *_energy(_Pair(saliency, region)))


def relevance_rank_accuracy(saliency: Any, region: Any) -> float:
    """Relevance rank accuracy: share of the ``K = |R|`` highest pixels that lie in the region.

    ``rank_accuracy = |top_K(s) ∩ R| / K``. Pixels tied at the K-th value share the remaining
    places evenly: with ``a`` pixels strictly above the cut-off value ``v``, ``e`` pixels equal
    to ``v`` of which ``e_R`` lie in the region, the tied pixels contribute
    ``(K - a) e_R / e`` (the mean over all orders of the tie).

    Parameters
    ----------
    saliency : (M, N) array_like
        Saliency map.
    region : (M, N) array_like of bool
        Region mask.

    Returns
    -------
    float
        In [0, 1]; ``nan`` with a warning when the region is empty or the map is constant. A
        region covering the image gives 1.
    """
    return _finish("relevance_rank_accuracy", *_rank_accuracy(_Pair(saliency, region)))


def top_k_intersection(saliency: Any, region: Any, *, k: int | float = _DEFAULT_K) -> float:
    """Share of the ``k`` highest pixels that lie in the region.

    ``top_k = |top_k(s) ∩ R| / k``, with pixels tied at the cut-off sharing the remaining places
    evenly as in :func:`relevance_rank_accuracy`.

    Parameters
    ----------
    saliency : (M, N) array_like
        Saliency map.
    region : (M, N) array_like of bool
        Region mask.
    k : int or float, optional
        An int is a pixel count in [1, M N]; a float in (0, 1] is a fraction of the image,
        rounded up to a count (default 0.05, the top 5 %). Note ``k=1`` is one pixel and
        ``k=1.0`` the whole image.

    Returns
    -------
    float
        In [0, 1]; ``nan`` with a warning when the region is empty or the map is constant.
    """
    p = _Pair(saliency, region)
    count = _k_count(k, p.n)
    return _finish("top_k_intersection", *_top_k(p, count))


def saliency_auroc(saliency: Any, region: Any) -> float:
    """Area under the ROC curve of the map as a pixel classifier of the region.

    ``AUROC = (sum of the ranks of the region pixels - n_R (n_R + 1) / 2) / (n_R n_B)``
    (Mann-Whitney U over ``n_R`` region and ``n_B`` background pixels), with tied values given
    their average rank, i.e. a tied (region, background) pair counts one half. 0.5 is chance.

    Parameters
    ----------
    saliency : (M, N) array_like
        Saliency map.
    region : (M, N) array_like of bool
        Region mask.

    Returns
    -------
    float
        In [0, 1]; ``nan`` with a warning when the region is empty, covers the whole image, or
        the map is constant.
    """
    return _finish("saliency_auroc", *_auroc(_Pair(saliency, region)))


def saliency_auprc(saliency: Any, region: Any) -> float:
    """Average precision of the map as a pixel classifier of the region.

    ``AP = sum_t (R_t - R_{t-1}) P_t`` over one threshold ``t`` per distinct map value, with
    precision ``P_t`` and recall ``R_t`` of ``s >= t`` (the step-wise definition of
    ``sklearn.metrics.average_precision_score``). Chance level is ``|R| / (M N)``.

    Parameters
    ----------
    saliency : (M, N) array_like
        Saliency map.
    region : (M, N) array_like of bool
        Region mask.

    Returns
    -------
    float
        In [0, 1]; ``nan`` with a warning when the region is empty, covers the whole image, or
        the map is constant.
    """
    return _finish("saliency_auprc", *_auprc(_Pair(saliency, region)))


def localization_metrics(
    saliency: Any,
    region: Any,
    *,
    method: str = "otsu",
    threshold: float | None = None,
    percentile: float | None = None,
    fill_holes: bool | None = None,
    tolerance: float = 0,
    k: int | float = _DEFAULT_K,
) -> dict[str, float] | list[dict[str, float]]:
    """Every metric of this module for one map and one or several regions, sharing the work.

    The map is validated and sorted once (:class:`PreparedMap`), and that order serves rank
    accuracy, top-k, AUROC and AUPRC of every region; it is binarized once for IoU, Dice,
    precision, recall and specificity. A region then costs a few passes over its pixels and a
    sort of the smaller of its inside and outside. Each value equals what the single-metric
    function returns for the same options.

    Parameters
    ----------
    saliency : (M, N) array_like, torch.Tensor or PreparedMap
        Saliency map (a bool mask is used as it is by the overlap metrics). A CUDA tensor is
        sorted on its device (see :class:`PreparedMap`).
    region : (M, N) array_like of bool, or a sequence of them / a (R, M, N) stack
        Region mask, or several regions scored against the same map.
    method, threshold, percentile, fill_holes : optional
        Binarization, see :func:`binarize`.
    tolerance : float, optional
        Pointing-game slack in pixels, see :func:`pointing_game`.
    k : int or float, optional
        Top-k size, see :func:`top_k_intersection`.

    Returns
    -------
    dict or list of dict
        ``{name: value}`` for the names in :data:`METRIC_NAMES`, in that order: one dict for
        one region, a list of them (in the regions' order) for a sequence or stack. Undefined
        values are ``nan``, with one :class:`DegenerateInputWarning` per region and reason
        listing the metrics concerned.
    """
    opts = _binarize_options(method, threshold, percentile, fill_holes)
    tol = _tolerance(tolerance)
    prepared = prepare_map(saliency)
    count = _k_count(k, prepared.n)
    many = _is_region_stack(region)
    if many:
        pairs = [_Pair(prepared, r, f"region[{i}]") for i, r in enumerate(region)]
    else:
        pairs = [_Pair(prepared, region)]
    if not prepared.constant and any(p.n_pos for p in pairs):
        prepared.order  # noqa: B018 - sorted before binarizing: Otsu then reads the sorted values
    out = []
    for i, p in enumerate(pairs):
        results: dict[str, _Result] = {
            "iou": _iou(p, opts),
            "dice": _dice(p, opts),
            "hit": _hit(p, tol),
            "energy": _energy(p),
            "rank_accuracy": _rank_accuracy(p),
            "top_k": _top_k(p, count),
            "auroc": _auroc(p),
            "auprc": _auprc(p),
            "precision": _precision(p, opts),
            "recall": _recall(p, opts),
            "specificity": _specificity(p, opts),
        }
        by_reason: dict[str, list[str]] = {}
        for name, (_, why) in results.items():
            if why is not None:
                by_reason.setdefault(why, []).append(name)
        where = f"localization_metrics: region[{i}]: " if many else "localization_metrics: "
        for why, names in by_reason.items():
            warnings.warn(
                f"{where}{', '.join(names)} undefined because {why}; returning NaN for them.",
                DegenerateInputWarning,
                stacklevel=2,
            )
        out.append(
            {
                name: (math.nan if why is not None else float(value))
                for name, (value, why) in results.items()
            }
        )
    return out if many else out[0]


def _is_region_stack(region: Any) -> bool:
    """A sequence of masks or an (R, M, N) stack, as opposed to one (M, N) mask."""
    if isinstance(region, list | tuple) and all(getattr(r, "ndim", None) == 2 for r in region):
        return True  # (also an empty list) no copy of the masks into one array
    return np.ndim(region) == 3
