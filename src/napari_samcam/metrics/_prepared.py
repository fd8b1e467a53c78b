"""One saliency map validated once, and the work every region scored against it shares."""

from __future__ import annotations

import sys
import warnings
from functools import cached_property
from typing import Any

import numpy as np

from ._inputs import (
    BinarizeOptions,
    DegenerateInputWarning,
    as_map,
    as_region,
    binarize_options,
    constant_map,
)
from ._sorted_map import SortedMap, first_at_least
from .binarization import binary_mask, fill_holes_in_box, normalise, otsu_level_of_histogram


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
        self.s, self.was_bool, self.lo, self.hi = as_map(saliency)
        self.shape = self.s.shape
        self.n = self.s.size
        self.constant = self.lo == self.hi
        self.device = device
        self._tensor = tensor
        self._masks: dict[BinarizeOptions, np.ndarray] = {}

    @cached_property
    def order(self) -> SortedMap:
        """The sorted values (one sort per map)."""
        if self.device is None:
            return SortedMap(self.s.ravel())
        from ._sorted_map_torch import TorchSortedMap

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
        opts = binarize_options(method, threshold, percentile, fill_holes)
        if self.constant and not self.was_bool:
            warnings.warn(
                f"binarize: {constant_map(self.lo)}, so it has no foreground; returning an "
                "all-False mask.",
                DegenerateInputWarning,
                stacklevel=2,
            )
            return np.zeros(self.shape, dtype=bool)
        return self.binary(opts)

    def binary(self, opts: BinarizeOptions) -> np.ndarray:
        """The binarized map (cached per options); a bool map is used as it is."""
        if opts not in self._masks:
            if self.was_bool:
                mask = self.s != 0
            elif opts.method != "percentile" and "order" in self.__dict__:
                mask = self._binary_from_order(opts)
            else:
                kth = self.kth_largest if "order" in self.__dict__ else None
                mask = binary_mask(self.s, self.lo, self.hi, opts, kth)
            self._masks[opts] = mask
        return self._masks[opts]

    def _binary_from_order(self, opts: BinarizeOptions) -> np.ndarray:
        """:func:`binary_mask` from the sorted distinct values: one comparison over the pixels.

        The min-max normalisation and its 8-bit scaling are monotone in the value, so Otsu's
        histogram follows from where each level starts among the distinct values (a bisection
        on a few hundred of them), and the mask is ``s >= v`` for the smallest value that
        passes.
        """
        order = self.order

        def norm(v: np.ndarray) -> np.ndarray:
            return normalise(v, self.lo, self.hi)

        if opts.method == "fixed":
            first = int(first_at_least(order.values, norm, np.array([opts.threshold]))[0])
        else:
            levels = np.arange(257)
            at = first_at_least(order.values, lambda v: (255.0 * norm(v)).astype(np.uint8), levels)
            pixels_below = order.bounds[at]
            first = int(at[otsu_level_of_histogram(np.diff(pixels_below)) + 1])
        if first < order.values.size:
            mask = self.s >= order.values[first]
        else:
            mask = np.zeros(self.shape, dtype=bool)
        return fill_holes_in_box(mask) if opts.fill_holes else mask

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


class MapRegionPair:
    """A prepared map, a validated region and the pieces several metrics share."""

    def __init__(self, saliency: Any, region: Any, name: str = "region") -> None:
        self.map = prepare_map(saliency)
        self.s, self.was_bool = self.map.s, self.map.was_bool
        self.lo, self.hi = self.map.lo, self.map.hi
        self.r = as_region(region, self.s.shape, name)
        self.n = self.map.n
        self.n_pos = int(np.count_nonzero(self.r))
        self.n_neg = self.n - self.n_pos
        self.constant = self.map.constant
        self._confusion: dict[BinarizeOptions, tuple[int, int]] = {}

    def kth_largest(self, k: int) -> float:
        return self.map.kth_largest(k)

    # ---- binarization ----------------------------------------------------------------------
    def confusion(self, opts: BinarizeOptions) -> tuple[int, int]:
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
        # Positions may be int32 (flag_positions); their sum over millions of pixels is not.
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
