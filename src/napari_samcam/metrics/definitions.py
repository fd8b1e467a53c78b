"""What each localization metric means: its formula, its undefined cases and its reference.

Every metric scores a 2-D saliency map ``s`` against a boolean region ``R`` of the same shape.
Each public function states the definition a reviewer can check, and the source it follows:

========================================  ======================================================
metric (key in :data:`METRIC_NAMES`)       reference
========================================  ======================================================
:func:`iou` (``iou``)                      CheXlocalize ``eval.py:calculate_iou`` (Saporta et
                                           al., 2022), on the mask of ``cam_to_segmentation``
                                           (:func:`~.binarization.binarize`)
:func:`dice` (``dice``)                    Dice (1945) of the same binarized mask
:func:`pixel_precision` (``precision``),  CheXlocalize ``precision_recall_specificity.py:``
:func:`pixel_recall` (``recall``),         ``calculate_precision_recall_specificity``, per image
:func:`pixel_specificity`                  here (CheXlocalize pools the pixel counts of a task)
(``specificity``)
:func:`pointing_game` (``hit``)            Zhang et al., 2018, "Top-down neural attention by
                                           excitation backprop"; CheXlocalize
                                           ``eval.py:get_hit_rates``
:func:`energy_pointing_game`               Wang et al., 2020, "Score-CAM" (energy-based pointing
(``energy``)                               game); Arras et al., 2022, relevance mass accuracy
:func:`relevance_rank_accuracy`            Arras et al., 2022, "CLEVR-XAI" (relevance rank
(``rank_accuracy``)                        accuracy)
:func:`top_k_intersection` (``top_k``)     Theiner et al., 2022, "Interpretable semantic photo
                                           geolocation" (top-k intersection, as in Quantus)
:func:`saliency_auroc` (``auroc``)         Mann and Whitney, 1947 (U statistic = ROC AUC)
:func:`saliency_auprc` (``auprc``)         ``sklearn.metrics.average_precision_score``
========================================  ======================================================

What makes them fast (one sort per map, shared by every region) lives apart, in
:mod:`._sorted_map` and :mod:`._prepared`; a kernel here reads counts from a
:class:`~._prepared.MapRegionPair` and returns ``(value, reason it is undefined or None)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from scipy import ndimage as ndi

from ._inputs import (
    BOTH_EMPTY,
    DEFAULT_K,
    EMPTY_PREDICTION,
    EMPTY_REGION,
    FULL_REGION,
    NO_POSITIVE_MASS,
    BinarizeOptions,
    binarize_options,
    check_tolerance,
    constant_map,
    finish,
    k_count,
)
from ._prepared import MapRegionPair

#: Keys of the dict returned by :func:`~napari_samcam.metrics.localization_metrics`, in order.
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

#: ``(value, reason it is undefined)``; the reason is None when the value is defined.
Result = tuple[float, str | None]


# --------------------------------------------------------------------------------------------
# Overlap of the binarized map B and the region R: one table, one kernel
# --------------------------------------------------------------------------------------------


class OverlapMetric(NamedTuple):
    """A ratio of pixel counts of the binarized map ``B`` and the region ``R``.

    ``numerator`` and ``denominator`` take ``(|B ∩ R|, |B|, |R|, |~R|)``. The value is
    undefined, for ``undefined_reason``, where the denominator is 0; when the denominator
    depends on the region alone (``region_only``) that is checked before the map.
    """

    key: str
    function_name: str
    summary: str
    formula: str
    undefined: str
    numerator: Callable[[int, int, int, int], int]
    denominator: Callable[[int, int, int, int], int]
    undefined_reason: str
    region_only: bool = False
    note: str = ""


OVERLAP_METRICS = (
    OverlapMetric(
        "iou",
        "iou",
        "Intersection over union of the binarized map ``B`` and the region ``R``.",
        "IoU = |B ∩ R| / |B ∪ R|",
        "``B`` and ``R`` are both empty",
        lambda tp, pp, pos, neg: tp,
        lambda tp, pp, pos, neg: pp + pos - tp,
        BOTH_EMPTY,
        note="An empty ``R`` with a non-empty ``B`` gives 0, as in CheXlocalize.",
    ),
    OverlapMetric(
        "dice",
        "dice",
        "Dice coefficient of the binarized map ``B`` and the region ``R``.",
        "Dice = 2 |B ∩ R| / (|B| + |R|)  (= 2 IoU / (1 + IoU))",
        "``B`` and ``R`` are both empty",
        lambda tp, pp, pos, neg: 2 * tp,
        lambda tp, pp, pos, neg: pp + pos,
        BOTH_EMPTY,
    ),
    OverlapMetric(
        "precision",
        "pixel_precision",
        "Share of the binarized map inside the region.",
        "precision = |B ∩ R| / |B|",
        "``B`` is empty",
        lambda tp, pp, pos, neg: tp,
        lambda tp, pp, pos, neg: pp,
        EMPTY_PREDICTION,
    ),
    OverlapMetric(
        "recall",
        "pixel_recall",
        "Share of the region covered by the binarized map (sensitivity).",
        "recall = |B ∩ R| / |R|",
        "``R`` is empty",
        lambda tp, pp, pos, neg: tp,
        lambda tp, pp, pos, neg: pos,
        EMPTY_REGION,
        region_only=True,
    ),
    OverlapMetric(
        "specificity",
        "pixel_specificity",
        "Share of the background left out of the binarized map.",
        "specificity = |~B ∩ ~R| / |~R|",
        "``R`` covers the whole image",
        lambda tp, pp, pos, neg: neg - (pp - tp),
        lambda tp, pp, pos, neg: neg,
        FULL_REGION,
        region_only=True,
    ),
)


def _binary_reason(p: MapRegionPair) -> str | None:
    return constant_map(p.lo) if p.constant and not p.was_bool else None


def _overlap(p: MapRegionPair, opts: BinarizeOptions, metric: OverlapMetric) -> Result:
    counts = (0, 0, p.n_pos, p.n_neg)
    if metric.region_only and metric.denominator(*counts) == 0:
        return math.nan, metric.undefined_reason
    if (why := _binary_reason(p)) is not None:
        return math.nan, why
    tp, pp = p.confusion(opts)
    counts = (tp, pp, p.n_pos, p.n_neg)
    denominator = metric.denominator(*counts)
    if denominator == 0:
        return math.nan, metric.undefined_reason
    return metric.numerator(*counts) / denominator, None


_OVERLAP_DOC = """{summary}

    ``{formula}``.
{note}
    Parameters
    ----------
    saliency : (M, N) array_like or PreparedMap
        A float map, binarized with :func:`~napari_samcam.metrics.binarize` and the options
        below, or a bool mask used as it is.
    region : (M, N) array_like of bool
        Region mask (bool, or numbers all 0 or 1).
    method, threshold, percentile, fill_holes : optional
        How a float map is binarized; see :func:`~napari_samcam.metrics.binarize`. Ignored
        for a bool mask.

    Returns
    -------
    float
        In [0, 1]; ``nan`` with a :class:`DegenerateInputWarning` when {undefined} or a float
        map is constant.
    """


def _overlap_function(metric: OverlapMetric) -> Callable[..., float]:
    def score(
        saliency: Any,
        region: Any,
        *,
        method: str = "otsu",
        threshold: float | None = None,
        percentile: float | None = None,
        fill_holes: bool | None = None,
    ) -> float:
        opts = binarize_options(method, threshold, percentile, fill_holes)
        return finish(
            metric.function_name, *_overlap(MapRegionPair(saliency, region), opts, metric)
        )

    note = "".join(f"    {line}\n" for line in metric.note.splitlines())
    score.__name__ = score.__qualname__ = metric.function_name
    score.__module__ = __name__
    score.__doc__ = _OVERLAP_DOC.format(
        summary=metric.summary,
        formula=metric.formula,
        note="\n" + note if note else "",
        undefined=metric.undefined,
    )
    return score


iou, dice, pixel_precision, pixel_recall, pixel_specificity = map(
    _overlap_function, OVERLAP_METRICS
)


# --------------------------------------------------------------------------------------------
# The map's peak, its mass and its ranking
# --------------------------------------------------------------------------------------------


def _rank_reason(p: MapRegionPair) -> str | None:
    if p.n_pos == 0:
        return EMPTY_REGION
    if p.constant:
        return constant_map(p.lo)
    return None


def _hit(p: MapRegionPair, tolerance: float) -> Result:
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


def _energy(p: MapRegionPair) -> Result:
    if (why := _rank_reason(p)) is not None:
        return math.nan, why
    mass, total = p.map.mass
    if total == 0:
        return math.nan, NO_POSITIVE_MASS
    return float(mass.sum(where=p.r, dtype=np.float64)) / total, None


def _rank_accuracy(p: MapRegionPair) -> Result:
    if (why := _rank_reason(p)) is not None:
        return math.nan, why
    return p.top_fraction(p.n_pos), None


def _top_k(p: MapRegionPair, k: int) -> Result:
    if (why := _rank_reason(p)) is not None:
        return math.nan, why
    return p.top_fraction(k), None


def _auc_reason(p: MapRegionPair) -> str | None:
    if p.n_neg == 0:
        return FULL_REGION
    return _rank_reason(p)


def _auroc(p: MapRegionPair) -> Result:
    if (why := _auc_reason(p)) is not None:
        return math.nan, why
    return p.ranking[0], None


def _auprc(p: MapRegionPair) -> Result:
    if (why := _auc_reason(p)) is not None:
        return math.nan, why
    return p.ranking[1], None


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
    tol = check_tolerance(tolerance)
    return finish("pointing_game", *_hit(MapRegionPair(saliency, region), tol))


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
    return finish("energy_pointing_game", *_energy(MapRegionPair(saliency, region)))


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
    return finish("relevance_rank_accuracy", *_rank_accuracy(MapRegionPair(saliency, region)))


def top_k_intersection(saliency: Any, region: Any, *, k: int | float = DEFAULT_K) -> float:
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
    p = MapRegionPair(saliency, region)
    count = k_count(k, p.n)
    return finish("top_k_intersection", *_top_k(p, count))


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
    return finish("saliency_auroc", *_auroc(MapRegionPair(saliency, region)))


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
    return finish("saliency_auprc", *_auprc(MapRegionPair(saliency, region)))


def kernel_values(
    p: MapRegionPair, opts: BinarizeOptions, tolerance: float, k: int
) -> dict[str, Result]:
    """Every metric of one pair, keyed and ordered as :data:`METRIC_NAMES`."""
    overlap = {m.key: _overlap(p, opts, m) for m in OVERLAP_METRICS}
    values = {
        **overlap,
        "hit": _hit(p, tolerance),
        "energy": _energy(p),
        "rank_accuracy": _rank_accuracy(p),
        "top_k": _top_k(p, k),
        "auroc": _auroc(p),
        "auprc": _auprc(p),
    }
    return {name: values[name] for name in METRIC_NAMES}
