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

Modules
-------
* :mod:`.definitions`: what each metric means, with its reference;
* :mod:`.binarization`: CheXlocalize's binarization and threshold tuning;
* :mod:`._inputs`: the checks of inputs and options;
* the engine that makes them fast: :mod:`._prepared` (work shared per map),
  :mod:`._sorted_map` and its torch twin :mod:`._sorted_map_torch`, and :mod:`._batched`
  (every metric of several regions in one call).
"""

from __future__ import annotations

from ._batched import localization_metrics, localization_results
from ._inputs import BINARIZE_METHODS, DegenerateInputWarning
from ._prepared import PreparedMap, prepare_map
from .binarization import binarize, tune_thresholds
from .definitions import (
    METRIC_NAMES,
    dice,
    energy_pointing_game,
    iou,
    pixel_precision,
    pixel_recall,
    pixel_specificity,
    pointing_game,
    relevance_rank_accuracy,
    saliency_auprc,
    saliency_auroc,
    top_k_intersection,
)

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
    "localization_results",
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
