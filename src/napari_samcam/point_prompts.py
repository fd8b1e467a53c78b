"""Point prompts for box-only SAM models: clicks become the box that best explains them.

A model trained with box prompts only (LiteMedSAM) answers a bare click with an empty or
scattered mask. Here a click is turned into boxes instead:

1. **Scale search.** Square candidate boxes of several sizes are centred on every positive point
   (and, with several positives, boxes around all of them). They are prompted on one embedding
   of a crop around the clicks (its centre snapped to a grid, so that nearby clicks share it).
   A mask that holds a negative point is rejected, and one that misses a positive point is
   ranked below every one that holds them all. The rest are ranked by SAM's own IoU prediction
   times the mask's stability (the overlap of the mask at logit threshold ``+delta`` with the
   mask at ``-delta``) times its :func:`boundary_contrast`: a box-only model draws a confident,
   stable, box-shaped mask inside any box, so its own scores hardly tell sizes apart, while
   the boundary of the right mask lies on the object's edges. The boxes are then centred again
   on the winning mask's centroid (a click near an object's edge is not at its centre). When
   the winner is the largest box and touches the crop's border, the object is larger than the
   crop and the search is repeated on a crop twice the size (at most ``levels`` crops).
2. **Refinement.** The bounding box of the winning mask, with a margin, is prompted as a box in
   its own context crop: exactly the box prompt a user would have drawn. Its mask is kept if it
   passes the same point checks, else the scale-search mask is.

With a box and points, the box is prompted in context and the points choose among the model's
single and multimask outputs (negatives exclude, positives must be inside).

One click costs at most ``levels + 1`` encoder runs (usually 2); embeddings are cached by the
:class:`~napari_samcam.segment.Segmenter`, so clicking again near the same place costs less.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import PromptError
from .sam.types import Region, context_crop

__all__ = ["PointBoxSearch", "candidate_boxes", "point_regions", "segment_points_with_boxes"]


@dataclass(frozen=True)
class PointBoxSearch:
    """Settings of the click-to-box search.

    Attributes
    ----------
    scales : tuple of float
        Half-sides of the candidate boxes, as fractions of the crop's side.
    shifts : tuple of float
        Offsets of the candidate boxes' centres from a click, in half-sides (see
        :func:`candidate_boxes`).
    first_crop : float
        Side of the first crop as a fraction of the image's long side.
    min_crop : int
        Smallest crop side in pixels.
    recentre : int
        How many times the boxes are centred again on the winning mask's centroid (a click near
        an object's edge is not at its centre).
    levels : int
        Most crops tried in the scale search (each twice the side of the one before).
    margin : float
        Margin added on each side of the winning mask's bounding box, as a fraction of its
        side (at least one pixel).
    delta : float
        Logit offset of the stability score.
    """

    scales: tuple[float, ...] = (0.04, 0.06, 0.09, 0.135, 0.2, 0.3)
    shifts: tuple[float, ...] = (0.0,)
    recentre: int = 2
    first_crop: float = 0.25
    min_crop: int = 64
    levels: int = 2
    margin: float = 0.1
    delta: float = 1.0


@dataclass
class _Candidate:
    mask: np.ndarray  # bool, image resolution
    box: np.ndarray  # the prompt, image pixels
    crop: tuple  # the embedded crop
    iou: float
    stability: float
    holds_positives: bool
    holds_negative: bool
    touches_border: bool
    edge: float  # boundary_contrast of the mask in its crop
    output: int  # mask decoder output token

    @property
    def score(self) -> float:
        return self.iou * self.stability * self.edge

    def rank(self) -> tuple:
        return (not self.holds_negative, self.holds_positives, self.mask.any(), self.score)


def candidate_boxes(
    positives: np.ndarray,
    half_sides: np.ndarray,
    shape: tuple[int, int],
    shifts: tuple[float, ...] = (0.0,),
) -> np.ndarray:
    """Square boxes of the given half-sides around every positive point, and around all of them.

    Parameters
    ----------
    positives : numpy.ndarray
        ``(N, 2)`` ``(row, col)`` points.
    half_sides : array_like
        Half-sides in pixels.
    shape : (int, int)
        Image shape; boxes are clipped to it.
    shifts : tuple of float
        Offsets of the box centre from each point along each axis, in half-sides: a click need
        not be at the centre of what it points at, so ``(-0.5, 0, 0.5)`` gives 9 boxes per point
        and size.

    Returns
    -------
    numpy.ndarray
        float ``(M, 4)`` ``(row0, col0, row1, col1)`` boxes, end exclusive, sorted, without
        duplicates: up to ``N * len(half_sides) * len(shifts) ** 2`` boxes around single points,
        plus ``len(half_sides)`` boxes spanning all points (grown by each half-side) when
        ``N > 1``.
    """
    positives = np.asarray(positives, dtype=np.float64).reshape(-1, 2)
    half = np.asarray(half_sides, dtype=np.float64).reshape(-1, 1, 1)
    offsets = np.array([(dr, dc) for dr in shifts for dc in shifts], dtype=np.float64)
    centres = positives[:, None, None, :] + 0.5 + offsets[None, None] * half[None]
    lo, hi = centres - half[None], centres + half[None]
    boxes = [np.concatenate([lo, hi], -1).reshape(-1, 4)]
    if len(positives) > 1:
        span_lo, span_hi = positives.min(0), positives.max(0) + 1.0
        boxes.append(np.concatenate([span_lo - half[:, 0], span_hi + half[:, 0]], 1))
    out = np.concatenate(boxes).round()
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, shape[0])
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, shape[1])
    out = out[(out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])]
    return np.unique(out, axis=0)


def boundary_contrast(mask: np.ndarray, gradient: np.ndarray) -> float:
    """Mean ``gradient`` on the mask's boundary pixels over its mean in the whole array.

    Parameters
    ----------
    mask : numpy.ndarray
        bool, the shape of ``gradient``.
    gradient : numpy.ndarray
        Gradient magnitude of the image (or crop).

    Returns
    -------
    float
        > 1 when the boundary follows intensity edges; 0 for an empty mask or a flat image.
    """
    from scipy import ndimage

    if not mask.any():
        return 0.0
    boundary = mask & ~ndimage.binary_erosion(mask, border_value=1)
    if not boundary.any():
        return 0.0
    mean = float(gradient.mean())
    return float(gradient[boundary].mean()) / mean if mean > 0 else 0.0


def _mask_box(mask: np.ndarray, margin: float, shape: tuple[int, int]) -> np.ndarray:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    pad_r = max(1.0, margin * (r1 - r0))
    pad_c = max(1.0, margin * (c1 - c0))
    return np.array(
        [
            max(0.0, np.floor(r0 - pad_r)),
            max(0.0, np.floor(c0 - pad_c)),
            min(float(shape[0]), np.ceil(r1 + pad_r)),
            min(float(shape[1]), np.ceil(c1 + pad_c)),
        ]
    )


def _square_crop(centre, side: float, shape) -> tuple[int, int, int, int]:
    """A square crop around ``centre``, its centre snapped to a grid of ``side / 4``.

    Snapping lets clicks close to one another share one embedding (the cache's key is the
    crop); a click stays within ``side / 8`` of the crop's centre.
    """
    step = max(side / 4, 1.0)
    r, c = (np.round(np.asarray(centre, dtype=np.float64) / step) * step).tolist()
    half = side / 2
    return context_crop(np.array([r - half, c - half, r + half, c + half]), shape, 1.0, 1)


class _Prompter:
    """Prompts boxes on crop embeddings and turns every output into a scored candidate."""

    def __init__(self, segmenter, image, window, key, positives, negatives, delta, preprocess):
        self.segmenter, self.image, self.window, self.key = segmenter, image, window, key
        self.preprocess = preprocess
        self.positives = positives.astype(int)
        self.negatives = negatives.astype(int)
        self.delta = float(delta)
        self.encoder_runs = 0
        self._gradients: dict[tuple, np.ndarray] = {}

    def gradient(self, crop) -> np.ndarray:
        """Gradient magnitude of the crop, smoothed at about one encoder-input pixel."""
        from scipy import ndimage

        crop = tuple(int(v) for v in crop)
        if crop not in self._gradients:
            view = self.image[crop[0] : crop[2], crop[1] : crop[3]].astype(np.float32)
            if view.ndim == 3:
                view = view[..., :3].mean(-1)
            sigma = max(1.0, max(view.shape) / self.segmenter.image_size)
            self._gradients[crop] = ndimage.gaussian_gradient_magnitude(view, sigma)
        return self._gradients[crop]

    def candidates(self, boxes: np.ndarray, crop, outputs=(False,)) -> list[_Candidate]:
        import torch

        segmenter = self.segmenter
        before = segmenter.encoder_calls
        embedding = segmenter._embed(
            self.image, self.window, tuple(crop), self.key, None, self.preprocess
        )
        self.encoder_runs += segmenter.encoder_calls - before
        offset = np.array(crop[:2], dtype=np.float64)
        local = boxes - np.tile(offset, 2)
        # a box reaching past the crop is prompted as its part inside the crop
        local[:, [0, 2]] = local[:, [0, 2]].clip(0, crop[2] - crop[0])
        local[:, [1, 3]] = local[:, [1, 3]].clip(0, crop[3] - crop[1])
        shape = self.image.shape[:2]
        gradient = self.gradient(crop)
        found = []
        for multimask in outputs:
            low_res, iou = segmenter.predict_logits(embedding, boxes=local, multimask=multimask)
            low_res = low_res.float()
            stability = mask_stability(low_res, embedding, segmenter, self.delta)
            upsampler = segmenter.mask_upsampler(embedding, low_res.shape[-1])
            threshold = segmenter.mask_threshold
            for i, box in enumerate(boxes):
                for j in range(low_res.shape[1]):
                    with torch.inference_mode():
                        local_mask = upsampler.mask(low_res[i, j], threshold)
                    mask = np.zeros(shape, dtype=bool)
                    mask[crop[0] : crop[2], crop[1] : crop[3]] = local_mask
                    found.append(
                        _Candidate(
                            mask=mask,
                            box=box,
                            crop=tuple(int(v) for v in crop),
                            iou=float(iou[i, j]),
                            stability=float(stability[i, j]),
                            holds_positives=bool(self._inside(mask, self.positives).all()),
                            holds_negative=bool(self._inside(mask, self.negatives).any()),
                            touches_border=_touches_border(local_mask, crop, shape),
                            edge=boundary_contrast(local_mask, gradient),
                            output=j + 1 if multimask else 0,
                        )
                    )
        return found

    @staticmethod
    def _inside(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
        if len(points) == 0:
            return np.zeros(0, dtype=bool)
        return mask[points[:, 0], points[:, 1]]


def mask_stability(low_res, embedding, segmenter, delta: float):
    """Per low-res mask, in the unpadded input: IoU of its ``> +delta`` and ``> -delta`` parts."""
    import torch

    size = segmenter.image_size
    low = low_res.shape[-1]
    rows = int(np.ceil(embedding.input_size[0] * low / size))
    cols = int(np.ceil(embedding.input_size[1] * low / size))
    threshold = segmenter.mask_threshold
    with torch.inference_mode():
        valid = low_res[..., :rows, :cols]
        strict = (valid > threshold + delta).sum((-1, -2)).float()
        loose = (valid > threshold - delta).sum((-1, -2)).float()
        return (strict / loose.clamp(min=1)).cpu().numpy()


def _touches_border(local_mask: np.ndarray, crop, shape) -> bool:
    """Whether the mask reaches an edge of the crop that is not an edge of the image."""
    edges = (
        (crop[0] > 0, local_mask[0, :]),
        (crop[2] < shape[0], local_mask[-1, :]),
        (crop[1] > 0, local_mask[:, 0]),
        (crop[3] < shape[1], local_mask[:, -1]),
    )
    return any(inner and edge.any() for inner, edge in edges)


def _best(candidates: list[_Candidate]) -> _Candidate:
    return max(candidates, key=_Candidate.rank)


def _fmt_box(box) -> str:
    return ",".join(str(int(v)) for v in box)


def segment_points_with_boxes(
    segmenter,
    image: np.ndarray,
    points: np.ndarray,
    labels: np.ndarray,
    *,
    box: np.ndarray | None = None,
    context: float = 2.5,
    window=None,
    key: str | None = None,
    search: PointBoxSearch | None = None,
    preprocess: str | None = None,
) -> tuple[np.ndarray, float, dict[str, Any]]:
    """Segment what the clicks point at with a box-only SAM model.

    Parameters
    ----------
    segmenter : napari_samcam.segment.Segmenter
    image : numpy.ndarray
        A validated ``(H, W[, C])`` image.
    points : numpy.ndarray
        ``(N, 2)`` ``(row, col)`` clicks (may be empty when ``box`` is given).
    labels : numpy.ndarray
        ``(N,)``: 1 positive, 0 negative.
    box : numpy.ndarray, optional
        ``(row0, col0, row1, col1)``: prompt this box and let the points choose among its masks.
    context : float
        Zoom factor of the box prompts (crop side / box side), as ``Segmenter.segment``'s.
    window : (float, float), optional
        Intensity window.
    key : str, optional
        The image's embedding key.
    search : PointBoxSearch, optional
        Search settings (the defaults were chosen on phantom lesions).
    preprocess : str, optional
        Contrast pre-processing of the image SAM sees (``Segmenter.segment``'s).

    Returns
    -------
    mask : numpy.ndarray
        bool ``(H, W)``.
    score : float
        SAM's predicted IoU of the chosen mask.
    provenance : dict
        What was done: ``strategy`` (a one-line summary such as
        ``"points→box 120,80,160,130 scale 0.135 refined"``), ``box`` (the box prompted last),
        ``crop``, ``candidates`` (how many masks were compared), ``encoder_runs``,
        ``stability`` and ``fallback`` (true when no mask kept every negative point out).
    """
    search = search or PointBoxSearch()
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(labels).reshape(-1)
    positives, negatives = points[labels == 1], points[labels == 0]
    if box is None and len(positives) == 0:
        raise PromptError(
            f"points {points.tolist()} are all negative: a box-only SAM model needs at least one "
            "positive point (label 1) or a box to know where to look."
        )
    shape = image.shape[:2]
    prompter = _Prompter(
        segmenter, image, window, key, positives, negatives, search.delta, preprocess
    )
    min_crop = max(search.min_crop, segmenter.image_size // 4)
    if box is not None:
        box = np.asarray(box, dtype=np.float64)
        crop = context_crop(box, shape, context, min_crop)
        found = prompter.candidates(box[None], crop, outputs=(False, True))
        best = _best(found)
        strategy = f"box {_fmt_box(box)} + points chose output {best.output}"
        return _result(best, strategy, found, prompter)

    centre = (positives.min(0) + positives.max(0)) / 2
    spread = float(np.ptp(positives, axis=0).max()) if len(positives) > 1 else 0.0
    side = max(search.first_crop * max(shape), float(min_crop), 1.6 * spread)
    found: list[_Candidate] = []
    for _level in range(search.levels):
        crop = _square_crop(centre, side, shape)
        crop_side = max(crop[2] - crop[0], crop[3] - crop[1])
        half_sides = np.array(search.scales) * crop_side
        boxes = candidate_boxes(positives, half_sides, shape, search.shifts)
        level_found = prompter.candidates(boxes, crop)
        best = _best(level_found)
        for _ in range(search.recentre):
            if not best.mask.any():
                break
            middle = np.argwhere(best.mask).mean(0)[None]
            boxes = candidate_boxes(middle, half_sides, shape, search.shifts)
            level_found += prompter.candidates(boxes, crop)
            if _best(level_found) is best:
                break
            best = _best(level_found)
        found += level_found
        largest = best.box[2] - best.box[0] >= 2 * half_sides.max() - 1
        if crop_side >= max(shape) or not (largest and best.touches_border):
            break
        side *= 2
    best = _best(found)
    crop_side = max(best.crop[2] - best.crop[0], best.crop[3] - best.crop[1])
    scale = (best.box[2] - best.box[0]) / 2 / crop_side
    strategy = f"points→box {_fmt_box(best.box)} scale {scale:.3g} of a {crop_side} px crop"
    if not best.mask.any():
        return _result(best, strategy, found, prompter)
    refined_box = _mask_box(best.mask, search.margin, shape)
    refined_crop = context_crop(refined_box, shape, context, min_crop)
    (refined,) = prompter.candidates(refined_box[None], refined_crop)
    found.append(refined)
    if refined.rank()[:3] >= best.rank()[:3]:
        strategy += f", refined as box {_fmt_box(refined_box)}"
        return _result(refined, strategy, found, prompter)
    return _result(best, strategy, found, prompter)


def _result(best: _Candidate, strategy: str, found, prompter):
    provenance = {
        "strategy": strategy,
        "box": [int(v) for v in best.box],
        "crop": list(best.crop),
        "output": best.output,
        "candidates": len(found),
        "encoder_runs": prompter.encoder_runs,
        "stability": round(best.stability, 4),
        "fallback": best.holds_negative,
    }
    return best.mask, best.iou, provenance


def point_regions(
    segmenter,
    image: np.ndarray,
    points: np.ndarray,
    labels: np.ndarray,
    boxes: np.ndarray | None,
    *,
    context: float | None,
    window=None,
    key: str,
    source: str,
    progress=None,
    preprocess: str | None = None,
) -> list:
    """``Segmenter.segment``'s answer to points on a box-only model: one Region per box (or one).

    ``context`` ``None`` zooms by 2.5 all the same: without zoom a box-only model's masks of
    small objects are poor. The prompt records the points, the box given (if any) and what was
    done (``points_to_box``, see :func:`segment_points_with_boxes`).
    """
    context = 2.5 if context is None else float(context)
    base = {"points": points.tolist(), "point_labels": labels.tolist(), "context": context}
    if preprocess is not None:
        base["preprocess"] = preprocess
    regions = []
    for i, box in enumerate([None] if boxes is None else list(boxes)):
        mask, score, done = segment_points_with_boxes(
            segmenter,
            image,
            points,
            labels,
            box=box,
            context=context,
            window=window,
            key=key,
            preprocess=preprocess,
        )
        prompt = dict(base, points_to_box=done)
        if box is not None:
            prompt["box"] = box.tolist()
        regions.append(Region(mask, source, prompt, score, segmenter.name))
        if progress:
            progress(i + 1, 1 if boxes is None else len(boxes))
    return regions
