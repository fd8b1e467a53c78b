"""Every metric for one map and one or several regions, sharing the work between them."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from ._inputs import (
    DEFAULT_K,
    DegenerateInputWarning,
    binarize_options,
    check_tolerance,
    k_count,
)
from ._prepared import MapRegionPair, prepare_map
from .definitions import kernel_values


def localization_metrics(
    saliency: Any,
    region: Any,
    *,
    method: str = "otsu",
    threshold: float | None = None,
    percentile: float | None = None,
    fill_holes: bool | None = None,
    tolerance: float = 0,
    k: int | float = DEFAULT_K,
) -> dict[str, float] | list[dict[str, float]]:
    """Every metric for one map and one or several regions, sharing the work between them.

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
    many = _is_region_stack(region)
    out = []
    for i, results in enumerate(
        _region_results(
            saliency, region, many, method, threshold, percentile, fill_holes, tolerance, k
        )
    ):
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
        out.append({name: value for name, (value, _) in results.items()})
    return out if many else out[0]


def localization_results(
    saliency: Any,
    region: Any,
    *,
    method: str = "otsu",
    threshold: float | None = None,
    percentile: float | None = None,
    fill_holes: bool | None = None,
    tolerance: float = 0,
    k: int | float = DEFAULT_K,
) -> dict[str, tuple[float, str | None]] | list[dict[str, tuple[float, str | None]]]:
    """Every metric with the reason it is undefined, without warnings.

    Takes the arguments of :func:`localization_metrics` and computes the same values.

    Returns
    -------
    dict or list of dict
        ``{name: (value, reason)}`` in the order of :data:`METRIC_NAMES`: ``reason`` is None
        where ``value`` is a number, else a short phrase such as ``"the region is empty"``
        and ``value`` is ``nan``. One dict for one region, a list of them for several.
    """
    many = _is_region_stack(region)
    out = _region_results(
        saliency, region, many, method, threshold, percentile, fill_holes, tolerance, k
    )
    return out if many else out[0]


def _region_results(
    saliency, region, many, method, threshold, percentile, fill_holes, tolerance, k
) -> list[dict[str, tuple[float, str | None]]]:
    """``{name: (value, reason)}`` of each region; ``nan`` values where a reason is given."""
    opts = binarize_options(method, threshold, percentile, fill_holes)
    tol = check_tolerance(tolerance)
    prepared = prepare_map(saliency)
    count = k_count(k, prepared.n)
    if many:
        pairs = [MapRegionPair(prepared, r, f"region[{i}]") for i, r in enumerate(region)]
    else:
        pairs = [MapRegionPair(prepared, region)]
    if not prepared.constant and any(p.n_pos for p in pairs):
        prepared.order  # noqa: B018 - sorted before binarizing: Otsu then reads the sorted values
    return [
        {
            name: ((math.nan, why) if why is not None else (float(value), None))
            for name, (value, why) in kernel_values(p, opts, tol, count).items()
        }
        for p in pairs
    ]


def _is_region_stack(region: Any) -> bool:
    """A sequence of masks or an (R, M, N) stack, as opposed to one (M, N) mask."""
    if isinstance(region, list | tuple) and all(getattr(r, "ndim", None) == 2 for r in region):
        return True  # (also an empty list) no copy of the masks into one array
    return np.ndim(region) == 3
