"""Checks of the metrics' inputs and options, and the reasons a value is undefined."""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, NamedTuple

import numpy as np

from ..errors import InputError

#: Methods accepted by :func:`binarize`.
BINARIZE_METHODS = ("otsu", "fixed", "percentile")

#: Default top-k size of :func:`top_k_intersection`: the top 5 % of the pixels.
DEFAULT_K = 0.05


class DegenerateInputWarning(UserWarning):
    """A metric is undefined for this input (empty region, constant map, ...) and is ``nan``."""


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def as_map(saliency: Any, name: str = "saliency") -> tuple[np.ndarray, bool, float, float]:
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


def as_region(region: Any, shape: tuple[int, ...], name: str = "region") -> np.ndarray:
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


def real_number(value: Any, name: str) -> float:
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a real number; got {value!r}.")
    out = float(value)
    if not math.isfinite(out):
        raise InputError(f"{name} must be finite; got {value!r}.")
    return out


class BinarizeOptions(NamedTuple):
    method: str
    threshold: float | None
    percentile: float | None
    fill_holes: bool


def binarize_options(
    method: Any, threshold: Any, percentile: Any, fill_holes: Any
) -> BinarizeOptions:
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
        threshold = real_number(threshold, "threshold")
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
        percentile = real_number(percentile, "percentile")
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
    return BinarizeOptions(method, threshold, percentile, bool(fill_holes))


def k_count(k: Any, n: int, name: str = "k") -> int:
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


def check_tolerance(tolerance: Any) -> float:
    tol = real_number(tolerance, "tolerance")
    if tol < 0:
        raise InputError(f"tolerance is a distance in pixels and must be >= 0; got {tolerance!r}.")
    return tol


# --------------------------------------------------------------------------------------------
# Warnings
# --------------------------------------------------------------------------------------------

EMPTY_REGION = "the region is empty"
FULL_REGION = "the region covers the whole image"
NO_POSITIVE_MASS = "the saliency map has no positive value"
EMPTY_PREDICTION = "the binarized saliency map is empty"
BOTH_EMPTY = "both the binarized saliency map and the region are empty"


def constant_map(value: float) -> str:
    return f"the saliency map is constant (every pixel is {value:g})"


def finish(name: str, value: float, reason: str | None) -> float:
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
