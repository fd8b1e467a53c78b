"""The per-pair implementation of the localization metrics as it was before the per-map
precomputation: it sorts each (map, region) pair's region and background values separately and
merges them. Kept frozen here (the pair, its sort, ranking and binarization, the pointing game
and energy) so the equivalence tests can say that the shared-work version gives the very same
numbers."""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_samcam.metrics._inputs import BinarizeOptions as _Options
from napari_samcam.metrics._inputs import as_map as _as_map
from napari_samcam.metrics._inputs import as_region as _as_region
from napari_samcam.metrics._inputs import binarize_options as _binarize_options
from napari_samcam.metrics._inputs import check_tolerance as _tolerance
from napari_samcam.metrics._inputs import constant_map as _constant
from napari_samcam.metrics._inputs import k_count as _k_count
from napari_samcam.metrics.binarization import binary_mask as _binary_mask
from napari_samcam.metrics.definitions import (
    METRIC_NAMES,
    OVERLAP_METRICS,
    _auprc,
    _auroc,
    _overlap,
    _rank_accuracy,
    _top_k,
)

_OVERLAP = {metric.key: metric for metric in OVERLAP_METRICS}

_EMPTY = "the region is empty"
_NO_MASS = "the saliency map has no positive value"


class _Pair:
    """A validated pair and the pieces several metrics share, each computed at most once."""

    def __init__(self, saliency: Any, region: Any) -> None:
        self.s, self.was_bool, self.lo, self.hi = _as_map(saliency)
        self.r = _as_region(region, self.s.shape)
        self.n = self.s.size
        self.n_pos = int(np.count_nonzero(self.r))
        self.n_neg = self.n - self.n_pos
        self.constant = self.lo == self.hi
        self._confusion: dict[_Options, tuple[int, int]] = {}

    # ---- shared sort ---------------------------------------------------------------------
    @cached_property
    def pos(self) -> np.ndarray:
        """Saliency values inside the region, ascending."""
        return np.sort(self.s[self.r])

    @cached_property
    def neg(self) -> np.ndarray:
        """Saliency values outside the region, ascending."""
        return np.sort(self.s[~self.r])

    @cached_property
    def merged(self) -> tuple[np.ndarray, np.ndarray]:
        """``(values, order)``: ``values[order]`` is the whole map ascending.

        ``values`` is ``pos`` followed by ``neg``; a stable merge of the two sorted runs puts,
        among equal values, region pixels before background pixels.
        """
        values = np.concatenate([self.pos, self.neg])
        return values, np.argsort(values, kind="stable")

    def kth_largest(self, k: int) -> float:
        values, order = self.merged
        return float(values[order[self.n - k]])

    # ---- binarization ----------------------------------------------------------------------
    def confusion(self, opts: _Options) -> tuple[int, int]:
        """``(true positives, predicted positives)`` of the binarized map.

        A map given as a bool mask is used as it is; a float map is binarized (non-constant).
        """
        if opts not in self._confusion:
            if self.was_bool:
                m = self.s != 0
            else:
                m = _binary_mask(self.s, self.lo, self.hi, opts, self.kth_largest)
            self._confusion[opts] = (int(np.count_nonzero(m & self.r)), int(np.count_nonzero(m)))
        return self._confusion[opts]

    # ---- ranking ----------------------------------------------------------------------------
    @cached_property
    def ranking(self) -> tuple[float, float]:
        """``(AUROC, average precision)``; needs ``0 < n_pos < n``."""
        pos, neg = self.pos, self.neg
        n_pos, n_neg = self.n_pos, self.n_neg
        values, order = self.merged
        labels = order < n_pos  # region pixel?, in ascending order of value
        # Background pixels strictly below pos[j]: the merge puts region values first in a tie.
        below = np.flatnonzero(labels) - np.arange(n_pos)
        ascending = values[order]
        same = ascending[1:] == ascending[:-1]
        if not same.any():  # no ties at all: one threshold per pixel
            tp = np.arange(n_pos, 0, -1)
            fp = n_neg - below
            auroc = float(below.sum()) / (n_pos * n_neg)
            return auroc, float(np.sum(tp / (tp + fp))) / n_pos
        # A tied (region, background) pair counts one half; such a tie shows in the merge as a
        # region pixel followed by an equal background pixel.
        tied = ascending[np.flatnonzero(same & labels[:-1] & ~labels[1:])]
        pos_eq = np.searchsorted(pos, tied, "right") - np.searchsorted(pos, tied, "left")
        neg_eq = np.searchsorted(neg, tied, "right") - np.searchsorted(neg, tied, "left")
        twice_u = 2 * int(below.sum()) + int(np.sum(pos_eq * neg_eq))
        auroc = twice_u / (2.0 * n_pos * n_neg)
        # One precision-recall step per distinct region value.
        starts = np.flatnonzero(np.concatenate(([True], pos[1:] != pos[:-1])))
        counts = np.diff(np.append(starts, n_pos))
        tp = n_pos - starts
        fp = n_neg - below[starts]
        return auroc, float(np.sum(counts * (tp / (tp + fp)))) / n_pos

    def top_fraction(self, k: int) -> float:
        """Expected share of region pixels among the ``k`` highest, ties shared evenly."""
        v = self.kth_largest(k)
        pos_right = int(np.searchsorted(self.pos, v, side="right"))
        pos_left = int(np.searchsorted(self.pos, v, side="left"))
        neg_right = int(np.searchsorted(self.neg, v, side="right"))
        neg_left = int(np.searchsorted(self.neg, v, side="left"))
        pos_gt = self.n_pos - pos_right
        all_gt = pos_gt + self.n_neg - neg_right
        pos_eq = pos_right - pos_left
        all_eq = pos_eq + neg_right - neg_left
        return (pos_gt + (k - all_gt) * pos_eq / all_eq) / k


# --------------------------------------------------------------------------------------------
# The pointing game and energy as they were; the other kernels only ask the pair for its
# confusion counts, ranking and top fraction, and are the module's own.
# --------------------------------------------------------------------------------------------

_Result = tuple[float, str | None]


def _rank_reason(p: _Pair) -> str | None:
    if p.n_pos == 0:
        return _EMPTY
    if p.constant:
        return _constant(p.lo)
    return None


def _hit(p: _Pair, tolerance: float) -> _Result:
    if (why := _rank_reason(p)) is not None:
        return math.nan, why
    maxima = p.s == p.hi
    if tolerance == 0:
        return float(np.any(p.r[maxima])), None
    rows, cols = np.nonzero(maxima)
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
    mass = np.maximum(p.s, 0)
    total = float(mass.sum(dtype=np.float64))
    if total == 0:
        return math.nan, _NO_MASS
    return float(mass.sum(where=p.r, dtype=np.float64)) / total, None


def reference_metrics(
    saliency,
    region,
    *,
    method="otsu",
    threshold=None,
    percentile=None,
    fill_holes=None,
    tolerance=0,
    k=0.05,
) -> dict[str, float]:
    """``localization_metrics`` as computed per pair (NaN where undefined, no warnings)."""
    opts = _binarize_options(method, threshold, percentile, fill_holes)
    tol = _tolerance(tolerance)
    p = _Pair(saliency, region)
    count = _k_count(k, p.n)
    results = {
        "iou": _overlap(p, opts, _OVERLAP["iou"]),
        "dice": _overlap(p, opts, _OVERLAP["dice"]),
        "hit": _hit(p, tol),
        "energy": _energy(p),
        "rank_accuracy": _rank_accuracy(p),
        "top_k": _top_k(p, count),
        "auroc": _auroc(p),
        "auprc": _auprc(p),
        "precision": _overlap(p, opts, _OVERLAP["precision"]),
        "recall": _overlap(p, opts, _OVERLAP["recall"]),
        "specificity": _overlap(p, opts, _OVERLAP["specificity"]),
    }
    assert tuple(results) == METRIC_NAMES
    return {name: (math.nan if why else float(v)) for name, (v, why) in results.items()}
