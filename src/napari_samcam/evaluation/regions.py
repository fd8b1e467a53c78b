"""Region sources: the masks a saliency map is scored against.

=====================  ==========================================================================
source                 region
=====================  ==========================================================================
``ground-truth``       the annotated mask (empty for an image without the finding)
``box``                the box annotation(s) filled as a mask
``sam-box``            SAM prompted with each box annotation, in zoom mode (``context``)
``sam-trust``          like ``sam-box``, but a mask is kept only if SAM's own signals and its
                       fit to the box say it can be trusted; else another of SAM's outputs, a
                       re-prompt or the box itself (:mod:`napari_samcam.trusted_box`)
``sam-saliency-box``   SAM prompted with the boxes of the binarized saliency's strongest
                       components (:func:`napari_samcam.box_prompts.saliency_boxes`), in zoom mode
``sam-saliency-peak``  SAM prompted at the saliency's peak: with a point for models that take
                       points; for box-only models (LiteMedSAM) with the box of the
                       half-maximum blob around the peak (pixels >= half the peak value that are
                       connected to it), in zoom mode
``sam-text``           SAM prompted by text through CLIP (needs CLIP weights)
``readers``            each reader's boxes of a multi-reader item (VinDr-CXR, phantoms with
                       simulated readers) as a region source of its own, ``reader:<id>``
=====================  ==========================================================================

Several boxes give one region: the union of their masks. The prompt that made a region is kept
in ``Region.prompt`` and ends up, as JSON, in every output row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..box_prompts import saliency_boxes, saliency_peak_points
from ..clip_regions import segment_text
from ..errors import InputError
from ..region_sources import (
    ANNOTATION_SOURCES,
    DEFAULT_REGION_SOURCES,
    REGION_SOURCES,
    SALIENCY_SOURCES,
    SAM_SOURCES,
)
from ..segment import Region
from ..trusted_box import trusted_box_region

__all__ = [
    "ANNOTATION_SOURCES",
    "DEFAULT_REGION_SOURCES",
    "REGION_SOURCES",
    "SALIENCY_SOURCES",
    "SAM_SOURCES",
    "annotation_region",
    "check_region_sources",
    "half_maximum_box",
    "saliency_region",
]


def check_region_sources(sources) -> tuple[str, ...]:
    """Validate and de-duplicate region source names (order kept)."""
    if isinstance(sources, str):
        sources = [sources]
    out: list[str] = []
    for source in sources:
        if source not in REGION_SOURCES:
            raise InputError(
                f"region source {source!r} is unknown; choose from {', '.join(REGION_SOURCES)}."
            )
        if source not in out:
            out.append(source)
    if not out:
        raise InputError("no region source given; pass at least one, e.g. 'ground-truth'.")
    return tuple(out)


def _union(regions: list[Region], shape, source: str, prompt: dict, model: str) -> Region:
    if len(regions) == 1:
        mask = regions[0].mask  # no full-size copy of a single region
    else:
        mask = np.zeros(shape, dtype=bool)
        for region in regions:
            mask |= region.mask
    scores = [r.score for r in regions if np.isfinite(r.score)]
    score = float(np.mean(scores)) if scores else float("nan")
    return Region(mask, source, prompt, score, model)


def annotation_region(
    source: str,
    image: np.ndarray,
    *,
    mask: np.ndarray | None,
    boxes: list,
    segmenter: Any = None,
    context: float | None = 2.5,
    window=None,
    text: str | None = None,
    clip: Any = None,
    text_options: dict | None = None,
    key: str | None = None,
    preprocess: str | None = None,
) -> Region | None:
    """The region of an annotation-based source, or ``None`` when the item lacks what it needs.

    ``ground-truth`` needs a mask, ``box``, ``sam-box`` and ``sam-trust`` need at least one
    box, ``sam-text`` needs a text. ``key``: the image's
    :func:`~napari_samcam.images.image_hash`, when known.
    ``preprocess``: SAM's contrast pre-processing (:mod:`napari_samcam.sam_preprocess`) for
    ``sam-box``, recorded in the prompt.
    """
    shape = image.shape[:2]
    boxes = [tuple(int(v) for v in b) for b in boxes]
    extra = {} if preprocess is None else {"preprocess": preprocess}
    if source == "ground-truth":
        if mask is None:
            return None
        return Region(np.asarray(mask, dtype=bool), source, {"annotation": "mask"})
    if source == "box":
        if not boxes:
            return None
        out = np.zeros(shape, dtype=bool)
        clipped = []
        for r0, c0, r1, c1 in boxes:
            r0, c0 = max(r0, 0), max(c0, 0)
            r1, c1 = min(r1, shape[0]), min(c1, shape[1])
            out[r0:r1, c0:c1] = True
            clipped.append([r0, c0, r1, c1])
        return Region(out, source, {"boxes": clipped})
    if source == "sam-box":
        if not boxes:
            return None
        clipped = [_clip_box(b, shape) for b in boxes]
        regions = segmenter.segment(
            image,
            boxes=np.array(clipped),
            context=context,
            window=window,
            source=source,
            key=key,
            preprocess=preprocess,
        )
        prompt = {"boxes": [list(b) for b in clipped], "context": context, **extra}
        return _union(regions, shape, source, prompt, segmenter.name)
    if source == "sam-trust":
        if not boxes:
            return None

        clipped = [_clip_box(b, shape) for b in boxes]
        return trusted_box_region(
            segmenter,
            image,
            np.array(clipped),
            context=context,
            window=window,
            key=key,
            preprocess=preprocess,
            source=source,
        )
    if source == "sam-text":
        if not text:
            return None
        options = dict(text_options or {})

        regions = segment_text(segmenter, image, text, clip=clip, window=window, **options)
        name = clip if clip is None or isinstance(clip, str) else getattr(clip, "name", "")
        prompt = {"text": text, "clip": name or type(clip).__name__, **options}
        if regions:
            prompt.update({k: v for k, v in regions[0].prompt.items() if k != "text"})
        return _union(regions, shape, source, prompt, segmenter.name)
    raise InputError(f"{source!r} is not an annotation-based region source.")


def _clip_box(box, shape) -> tuple[int, int, int, int]:
    r0, c0, r1, c1 = box
    r0, c0 = max(int(r0), 0), max(int(c0), 0)
    r1, c1 = min(int(r1), int(shape[0])), min(int(c1), int(shape[1]))
    if r1 <= r0 or c1 <= c0:
        raise InputError(
            f"box {list(box)} lies outside the image of shape {tuple(shape)}; check the "
            "manifest's box columns (row0, col0, row1, col1)."
        )
    return r0, c0, r1, c1


def half_maximum_box(saliency: np.ndarray, peak) -> np.ndarray:
    """Bounding box of the pixels ``>= saliency[peak] / 2`` connected to ``peak``."""
    from scipy import ndimage

    r, c = (int(v) for v in peak)
    blob = saliency >= 0.5 * float(saliency[r, c])
    labels, _ = ndimage.label(blob)
    component = labels == labels[r, c]
    rows = np.flatnonzero(component.any(1))
    cols = np.flatnonzero(component.any(0))
    return np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1])


def saliency_region(
    source: str,
    image: np.ndarray,
    saliency: np.ndarray,
    *,
    segmenter: Any,
    binarization: dict,
    context: float | None = 2.5,
    max_boxes: int = 1,
    window=None,
    key: str | None = None,
    preprocess: str | None = None,
    binary: np.ndarray | None = None,
) -> Region:
    """The region of a saliency-prompted source; an empty region when the map is flat.

    ``key``: the image's :func:`~napari_samcam.images.image_hash`, when known. ``preprocess``:
    SAM's contrast pre-processing (:mod:`napari_samcam.sam_preprocess`), recorded in the prompt.
    ``binary``: the map binarized with ``binarization`` when already computed (the metrics need
    it too).
    """
    extra = {} if preprocess is None else {"preprocess": preprocess}
    common = {"window": window, "source": source, "key": key, "preprocess": preprocess}
    shape = image.shape[:2]
    empty = Region(np.zeros(shape, dtype=bool), source, {}, float("nan"), segmenter.name)
    if float(saliency.max()) <= float(saliency.min()):
        empty.prompt = {"note": "constant saliency map: no prompt"}
        return empty
    if source == "sam-saliency-box":
        boxes = saliency_boxes(saliency, max_boxes=max_boxes, binary=binary, **binarization)
        prompt = {"boxes": boxes.tolist(), "context": context, "binarization": binarization}
        prompt.update(extra)
        if len(boxes) == 0:
            empty.prompt = prompt
            return empty
        regions = segmenter.segment(image, boxes=boxes, context=context, **common)
        return _union(regions, shape, source, prompt, segmenter.name)
    if source == "sam-saliency-peak":
        peaks = saliency_peak_points(saliency, n=1)
        if len(peaks) == 0:
            return empty
        peak = peaks[0]
        if segmenter.box_only:
            box = half_maximum_box(saliency, peak)
            regions = segmenter.segment(image, boxes=box[None], context=context, **common)
            prompt = {
                "point": peak.tolist(),
                "boxes": [box.tolist()],
                "box_rule": "half-maximum blob around the peak",
                "context": context,
                **extra,
            }
        else:
            regions = segmenter.segment(image, points=peak[None], **common)
            prompt = {"point": peak.tolist(), **extra}
        return _union(regions, shape, source, prompt, segmenter.name)
    raise InputError(f"{source!r} is not a saliency-based region source.")
