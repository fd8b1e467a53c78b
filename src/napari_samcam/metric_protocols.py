"""Metric protocols: which definitions make a table's numbers.

A protocol is data handed to the scoring of each (map, region) pair and to the summaries; the
evaluation code is the same for every protocol, and every metrics and summary table names the
protocol that made it (its ``protocol`` column).

``samcam`` (the default)
    :func:`napari_samcam.metrics.localization_metrics`: every metric, NaN where a score is
    undefined (a constant map has no peak and no Otsu level), a hit when any of tied maxima is
    inside, and the
    percentile bootstrap of :func:`napari_samcam.agreement.bootstrap_ci` over defined values.
``chexlocalize``
    CheXlocalize's own definitions (:mod:`napari_samcam.chexlocalize`): ``iou`` (its
    ``true_pos_only=False``), ``iou_true_pos`` (its default ``true_pos_only=True``) and ``hit``,
    and its bootstrap over image rows in image-id order, NaNs included.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .agreement import bootstrap_ci
from .chexlocalize import bootstrap, prepare, results
from .errors import InputError
from .metrics import METRIC_NAMES, localization_results, prepare_map

__all__ = ["PROTOCOLS", "Protocol", "get_protocol"]


def _samcam_prepare(saliency: Any, shape: tuple[int, int], device: Any) -> Any:
    return prepare_map(saliency.map, device=device)


def _samcam_results_many(prepared: Any, masks: list, binarization: dict) -> list[dict]:
    return localization_results(prepared, masks, **binarization)


def _samcam_interval(values, defined, *, n_resamples, seed, confidence):
    ci = bootstrap_ci(defined, n_resamples=n_resamples, seed=seed, confidence=confidence)
    return ci.estimate, ci.low, ci.high


def _chexlocalize_prepare(saliency: Any, shape: tuple[int, int], device: Any) -> Any:
    return prepare(saliency.raw, shape)


def _chexlocalize_results_many(prepared: Any, masks: list, binarization: dict) -> list[dict]:
    return [results(prepared, mask) for mask in masks]


def _chexlocalize_interval(values, defined, *, n_resamples, seed, confidence):
    return bootstrap(values, n_resamples=n_resamples, seed=seed)


@dataclass(frozen=True)
class Protocol:
    """How maps are scored and summarized.

    Attributes
    ----------
    name : str
    metric_names : tuple of str
        The metrics it writes, in order.
    description : str
    """

    name: str
    metric_names: tuple
    description: str
    _prepare: Callable = field(repr=False, compare=False)
    _results_many: Callable = field(repr=False, compare=False)
    _interval: Callable = field(repr=False, compare=False)

    def prepare(self, saliency: Any, shape: tuple[int, int], device: Any = None) -> Any:
        """Work shared by every region scored against one saliency map.

        ``device``: a torch device (CUDA) for the sort of the ``samcam`` protocol's map.
        """
        return self._prepare(saliency, shape, device)

    def score_many(
        self, prepared: Any, masks: list[np.ndarray], binarization: dict
    ) -> list[dict[str, float]]:
        """Every metric of one map (as :meth:`prepare` returned it) and each region mask (one
        sort of the map for all of them)."""
        return [
            {name: value for name, (value, _) in region.items()}
            for region in self.results_many(prepared, masks, binarization)
        ]

    def results_many(
        self, prepared: Any, masks: list[np.ndarray], binarization: dict
    ) -> list[dict[str, tuple[float, str | None]]]:
        """:meth:`score_many` with the reason each NaN is undefined: ``{name: (value,
        reason)}`` per region, ``reason`` None where the value is a number."""
        return self._results_many(prepared, masks, binarization)

    def interval(
        self, values: np.ndarray, *, n_resamples: int, seed: int, confidence: float = 0.95
    ) -> tuple[float, float, float, int]:
        """``(mean, ci_low, ci_high, n)`` of per-item scores (NaN where undefined)."""
        values = np.asarray(values, dtype=np.float64)
        defined = values[~np.isnan(values)]
        if not defined.size:
            return math.nan, math.nan, math.nan, 0
        mean, low, high = self._interval(
            values, defined, n_resamples=n_resamples, seed=seed, confidence=confidence
        )
        return mean, low, high, int(defined.size)


#: The protocols by name.
PROTOCOLS = {
    "samcam": Protocol(
        "samcam",
        tuple(METRIC_NAMES),
        "napari-samcam's definitions: NaN where undefined, any of tied maxima can hit",
        _samcam_prepare,
        _samcam_results_many,
        _samcam_interval,
    ),
    "chexlocalize": Protocol(
        "chexlocalize",
        ("iou", "iou_true_pos", "hit"),
        "CheXlocalize's scripts: its Otsu segmentation, first-argmax hit, both mIoU modes, its "
        "bootstrap",
        _chexlocalize_prepare,
        _chexlocalize_results_many,
        _chexlocalize_interval,
    ),
}


def get_protocol(name: Any) -> Protocol:
    """The :class:`Protocol` called ``name`` (a ``Protocol`` passes through).

    Raises
    ------
    InputError
        An unknown name.
    """
    if isinstance(name, Protocol):
        return name
    protocol = PROTOCOLS.get(str(name).lower())
    if protocol is None:
        raise InputError(
            f"protocol {name!r} is unknown; choose one of {', '.join(PROTOCOLS)} "
            "(CLI: --protocol NAME)."
        )
    return protocol
