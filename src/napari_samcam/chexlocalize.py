"""CheXlocalize's own metric definitions, reproduced value for value.

CheXlocalize (Saporta et al., 2022) scores a saliency map against a ground-truth mask with its
scripts ``heatmap_to_segmentation.py`` (binarization) and ``eval.py`` (IoU, hit, bootstrap). Its
definitions differ from this project's defaults (:mod:`napari_samcam.metrics`) in edge cases;
this module gives CheXlocalize's, for the ``chexlocalize`` protocol
(:mod:`napari_samcam.metric_protocols`):

* the map is resized to the image (bilinear, ``align_corners=False``, float32) and scored
  as it is, without clipping;
* :func:`segmentation`: float32 min-max normalisation, ``uint8(255 * map)`` (truncating), Otsu
  by OpenCV, then every contour of the Otsu mask (outer ones and holes) with at least two
  points redrawn as a filled polygon by Pillow: holes are filled, 1-pixel components dropped.
  A constant map (all zeros included) gives an empty mask;
* :func:`iou`: ``true_pos_only=True`` (CheXlocalize's default) is NaN unless both the
  prediction and the ground truth are non-empty; ``False`` is NaN only when both are empty;
* :func:`hit`: the first maximum in row-major order (``numpy.argmax``) is a hit when the ground
  truth holds it; NaN without a ground truth. A constant map's first maximum is pixel (0, 0);
* :func:`bootstrap`: image rows resampled with their NaNs (``numpy.random.seed(seed)``,
  ``choice(n, n)``), each resample's NaN-skipping mean, the mean of those means and the 25th
  and 975th of the 1000 sorted means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .metrics._inputs import EMPTY_REGION
from .saliency_files import resize_map

#: Why a score is NaN (see :func:`results`).
EMPTY_SEGMENTATION = "the map's segmentation is empty (a constant map gives none)"
BOTH_EMPTY = "both the map's segmentation and the region are empty"

__all__ = [
    "PreparedMap",
    "bootstrap",
    "hit",
    "iou",
    "prepare",
    "results",
    "scores",
    "segmentation",
]


def segmentation(resized: np.ndarray) -> np.ndarray:
    """CheXlocalize's Otsu segmentation of a map already at the image's size (bool ``(H, W)``)."""
    import cv2
    from PIL import Image, ImageDraw

    values = np.asarray(resized, dtype=np.float32)
    shifted = values - values.min()
    top = shifted.max()
    if not top > 0:  # CheXlocalize divides 0 by 0; the NaNs cast to an all-zero uint8 image
        return np.zeros(values.shape, dtype=bool)
    u8 = (np.float32(255) * (shifted / top)).astype(np.uint8)
    level = int(u8.max())
    otsu = cv2.threshold(u8, 0, level, cv2.THRESH_OTSU)[1]
    contours = cv2.findContours(otsu, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    contours = contours[0] if len(contours) == 2 else contours[1]
    canvas = Image.new("1", (values.shape[1], values.shape[0]))
    draw = ImageDraw.Draw(canvas)
    for contour in contours:
        if len(contour) > 1:
            draw.polygon([(int(p[0][0]), int(p[0][1])) for p in contour], outline=1, fill=1)
    return np.array(canvas, dtype=bool)


def iou(prediction: np.ndarray, truth: np.ndarray, *, true_pos_only: bool = True) -> float:
    """CheXlocalize's IoU of two boolean masks.

    ``true_pos_only=True``: NaN when either mask is empty; ``False``: NaN when both are.
    """
    pred_area = int(np.count_nonzero(prediction))
    truth_area = int(np.count_nonzero(truth))
    inter = int(np.count_nonzero(np.logical_and(prediction, truth)))
    union = pred_area + truth_area - inter
    if true_pos_only and (pred_area == 0 or truth_area == 0):
        return math.nan
    if union == 0:
        return math.nan
    return inter / union


def hit(resized: np.ndarray, truth: np.ndarray) -> float:
    """CheXlocalize's hit: 1.0 when the first maximum of the map lies in ``truth``, else 0.0;
    NaN when ``truth`` is empty."""
    truth = np.asarray(truth, dtype=bool)
    if not truth.any():
        return math.nan
    row, col = np.unravel_index(int(np.argmax(resized)), resized.shape)
    return 1.0 if truth[row, col] else 0.0


@dataclass
class PreparedMap:
    """What every region scored against one map shares: the map's segmentation and first peak."""

    segmentation: np.ndarray
    peak: tuple[int, int]


def prepare(raw: np.ndarray, shape: tuple[int, int]) -> PreparedMap:
    """Resize ``raw`` to ``shape`` as CheXlocalize does and compute its segmentation and peak."""
    resized = resize_map(raw, shape)
    peak = np.unravel_index(int(np.argmax(resized)), resized.shape)
    return PreparedMap(segmentation(resized), (int(peak[0]), int(peak[1])))


def scores(prepared: PreparedMap, truth: np.ndarray) -> dict[str, float]:
    """``iou`` (``true_pos_only=False``), ``iou_true_pos`` (``True``) and ``hit`` of one map and
    one region."""
    return {name: value for name, (value, _) in results(prepared, truth).items()}


def results(prepared: PreparedMap, truth: np.ndarray) -> dict[str, tuple[float, str | None]]:
    """:func:`scores` with the reason each NaN is undefined: ``{name: (value, reason)}``,
    ``reason`` None where the value is a number."""
    truth = np.asarray(truth, dtype=bool)
    pred = prepared.segmentation
    empty_pred, empty_truth = not pred.any(), not truth.any()
    hit_value = math.nan if empty_truth else float(truth[prepared.peak])
    out = {
        "iou": iou(pred, truth, true_pos_only=False),
        "iou_true_pos": iou(pred, truth, true_pos_only=True),
        "hit": hit_value,
    }
    if empty_pred and empty_truth:
        why = {"iou": BOTH_EMPTY, "iou_true_pos": BOTH_EMPTY, "hit": EMPTY_REGION}
    else:
        why = {"iou_true_pos": EMPTY_SEGMENTATION if empty_pred else EMPTY_REGION}
        why["hit"] = EMPTY_REGION
    return {
        name: (value, why.get(name) if math.isnan(value) else None) for name, value in out.items()
    }


def bootstrap(
    values: np.ndarray, *, n_resamples: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """CheXlocalize's bootstrap of one task's per-image scores: ``(mean, low, high)``.

    Rows (NaN included) are resampled with ``numpy.random.seed(seed)`` and
    ``numpy.random.choice(n, size=n)`` per resample; each resample's mean skips NaNs. ``mean`` is
    the mean of the resampled means, ``low`` and ``high`` the sorted means at positions
    ``int(0.025 * n_resamples) - 1`` and ``int(0.975 * n_resamples) - 1`` (NaN means sort last).
    CheXlocalize rounds the three to 3 decimals when it prints them; they are not rounded here.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n == 0:
        return math.nan, math.nan, math.nan
    state = np.random.RandomState(seed)
    means = np.empty(int(n_resamples))
    for r in range(int(n_resamples)):
        sample = values[state.choice(n, size=n, replace=True)]
        defined = sample[~np.isnan(sample)]
        means[r] = defined.mean() if defined.size else math.nan
    ordered = np.sort(means)  # NaN last, as pandas' sort_values
    confidence_level = 0.05
    low = ordered[int(confidence_level / 2 * len(ordered)) - 1]
    high = ordered[int((1 - confidence_level / 2) * len(ordered)) - 1]
    defined = ordered[~np.isnan(ordered)]
    mean = float(defined.mean()) if defined.size else math.nan
    return mean, float(low), float(high)
