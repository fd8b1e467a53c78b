"""Candidate regions of an image from Segment Anything, for text prompts to choose among.

Modes: ``"points"`` (SAM's automatic mask generator), ``"boxes"`` (a multi-scale grid of box
prompts from one cached embedding, for box-only models such as LiteMedSAM), ``"saliency"`` (one
box per saliency blob) or masks given by the caller; ``"auto"`` picks ``"boxes"`` for box-only
models and ``"points"`` otherwise. Proposals are cached per image and settings, so a second
text on the same image reuses them (:mod:`napari_samcam.clip_regions` scores them).
"""

from __future__ import annotations

import itertools
import math
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .box_prompts import saliency_boxes
from .errors import InputError, PromptError
from .images import image_hash, to_unit_range, validate_image
from .model_caches import CACHE_LOCK, lru_get, lru_put, owner_lru
from .segment import Region, Segmenter

__all__ = [
    "PROPOSAL_MODES",
    "PROPOSAL_OPTIONS",
    "Proposal",
    "ProposalSet",
    "clear_proposal_cache",
    "propose_regions",
]


PROPOSAL_MODES = ("auto", "points", "boxes", "saliency")

#: Proposal options and their defaults (``None``: a per-mode default, see ``_MODE_DEFAULTS``).


PROPOSAL_OPTIONS: dict[str, Any] = {
    # "points": segment_anything.SamAutomaticMaskGenerator settings
    "points_per_side": 16,
    "points_per_batch": 16,
    "pred_iou_thresh": None,
    "stability_score_thresh": None,
    "stability_score_offset": 1.0,
    "box_nms_thresh": 0.7,
    "crop_n_layers": 0,
    "crop_n_points_downscale_factor": 1,
    "min_mask_region_area": 0,
    "max_side": 1024,
    # "boxes": the grid of box prompts (sizes are fractions of the image height and width)
    "box_scales": (0.25, 0.4, 0.55, 0.7),
    "box_aspects": (1.0, 2.0),
    "box_stride": 0.5,
    "box_fit_thresh": 0.5,
    "box_batch": 32,
    # "saliency": saliency_boxes settings and SAM's zoom mode
    "max_boxes": 5,
    "saliency_method": "otsu",
    "saliency_threshold": None,
    "saliency_percentile": None,
    "box_margin": 0.1,
    "context": None,
    # every automatic mode
    "min_area_fraction": 0.0005,
    "max_area_fraction": 0.95,
    "max_proposals": 64,
}


_MODE_DEFAULTS = {
    "points": {"pred_iou_thresh": 0.88, "stability_score_thresh": 0.95},
    "boxes": {"pred_iou_thresh": 0.7, "stability_score_thresh": 0.6},
}


_PROPOSAL_CACHE_SIZE = 8


@dataclass
class Proposal:
    """A proposal mask stored cropped to its bounding box (full masks of big images are big)."""

    box: tuple[int, int, int, int]
    mask: np.ndarray
    score: float
    prompt: dict

    def full(self, shape: tuple[int, int]) -> np.ndarray:
        out = np.zeros(shape, dtype=bool)
        r0, c0, r1, c1 = self.box
        out[r0:r1, c0:c1] = self.mask
        return out


@dataclass
class ProposalSet:
    token: int
    mode: str
    shape: tuple[int, int]
    proposals: list[Proposal]
    sam_name: str


_TOKENS = itertools.count()


_PROPOSALS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _options(mode: str, options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(PROPOSAL_OPTIONS))
    if unknown:
        raise InputError(
            f"unknown text-prompt option(s) {', '.join(unknown)}; known: "
            f"{', '.join(sorted(PROPOSAL_OPTIONS))}, and negatives, templates, threshold, top_k, "
            "proposals, saliency, background, margin, device, download."
        )
    merged = dict(PROPOSAL_OPTIONS)
    defaults = _MODE_DEFAULTS.get(mode, {})
    merged.update(defaults)
    merged.update({k: v for k, v in options.items() if v is not None or k not in defaults})
    for name in ("box_scales", "box_aspects"):
        merged[name] = tuple(float(v) for v in np.atleast_1d(merged[name]))
    return merged


def _relevant(mode: str, opts: dict[str, Any]) -> tuple:
    """The options that change the proposals of ``mode`` (the cache key)."""
    common = ("min_area_fraction", "max_area_fraction", "max_proposals")
    names = {
        "points": (
            "points_per_side",
            "pred_iou_thresh",
            "stability_score_thresh",
            "stability_score_offset",
            "box_nms_thresh",
            "crop_n_layers",
            "crop_n_points_downscale_factor",
            "min_mask_region_area",
            "max_side",
            *common,
        ),
        "boxes": (
            "box_scales",
            "box_aspects",
            "box_stride",
            "box_fit_thresh",
            "pred_iou_thresh",
            "stability_score_thresh",
            "stability_score_offset",
            "box_nms_thresh",
            *common,
        ),
        "saliency": (
            "max_boxes",
            "saliency_method",
            "saliency_threshold",
            "saliency_percentile",
            "box_margin",
            "context",
        ),
    }.get(mode, ())
    return tuple((n, opts[n]) for n in names)


def mask_bounds(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows = np.flatnonzero(mask.any(1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _proposal(mask: np.ndarray, score: float, prompt: dict) -> Proposal | None:
    box = mask_bounds(mask)
    if box is None:
        return None
    r0, c0, r1, c1 = box
    return Proposal(box, np.ascontiguousarray(mask[r0:r1, c0:c1]), float(score), prompt)


def resize_array(array: np.ndarray, shape: tuple[int, int], *, antialias: bool) -> np.ndarray:
    """Bilinear resize of ``(H, W)`` or ``(H, W, C)`` float data."""
    import torch
    import torch.nn.functional as F

    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    tensor = tensor.permute(2, 0, 1)[None] if tensor.ndim == 3 else tensor[None, None]
    out = F.interpolate(
        tensor, size=tuple(shape), mode="bilinear", antialias=antialias, align_corners=False
    )
    out = out[0].permute(1, 2, 0) if array.ndim == 3 else out[0, 0]
    return out.numpy()


def _area_ok(area: float, total: float, opts: dict[str, Any]) -> bool:
    return opts["min_area_fraction"] * total <= area <= opts["max_area_fraction"] * total


def _point_proposals(segmenter: Segmenter, unit: np.ndarray, opts) -> list[Proposal]:
    """SAM's automatic mask generator on the image (downscaled to ``max_side``)."""
    height, width = unit.shape[:2]
    scale = min(1.0, float(opts["max_side"]) / max(height, width))
    small = unit
    if scale < 1.0:
        small = resize_array(unit, (round(height * scale), round(width * scale)), antialias=True)
    rgb = small if small.ndim == 3 else np.repeat(small[..., None], 3, axis=-1)
    uint8 = np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
    generator = segmenter.backend.mask_generator(
        points_per_side=int(opts["points_per_side"]),
        points_per_batch=int(opts["points_per_batch"]),
        pred_iou_thresh=float(opts["pred_iou_thresh"]),
        stability_score_thresh=float(opts["stability_score_thresh"]),
        stability_score_offset=float(opts["stability_score_offset"]),
        box_nms_thresh=float(opts["box_nms_thresh"]),
        crop_n_layers=int(opts["crop_n_layers"]),
        crop_n_points_downscale_factor=int(opts["crop_n_points_downscale_factor"]),
        min_mask_region_area=int(opts["min_mask_region_area"]),
    )
    records = generator.generate(uint8)
    # One encoder run per crop layer tile: keep the segmenter's counter truthful.
    segmenter.encoder_calls += sum(4**i for i in range(int(opts["crop_n_layers"]) + 1))
    records.sort(key=lambda r: -r["predicted_iou"])
    out = []
    sy, sx = height / uint8.shape[0], width / uint8.shape[1]
    for record in records:
        mask = np.asarray(record["segmentation"], dtype=bool)
        if scale < 1.0:
            mask = resize_array(mask.astype(np.float32), (height, width), antialias=False) > 0.5
        if not _area_ok(np.count_nonzero(mask), height * width, opts):
            continue
        x, y = record["point_coords"][0]
        prompt = {
            "sam_prompt": "point-grid",
            "point": [round(y * sy, 1), round(x * sx, 1)],
            "stability_score": round(float(record["stability_score"]), 4),
        }
        proposal = _proposal(mask, record["predicted_iou"], prompt)
        if proposal is not None:
            out.append(proposal)
        if len(out) >= int(opts["max_proposals"]):
            break
    return out


def _grid_boxes(shape: tuple[int, int], opts) -> np.ndarray:
    """A multi-scale grid of ``(row0, col0, row1, col1)`` boxes over the image."""
    height, width = shape
    stride = float(opts["box_stride"])
    if not stride > 0:
        raise InputError(f"box_stride={stride!r}: pass a positive fraction of the box size.")
    boxes = []
    for scale in opts["box_scales"]:
        for aspect in opts["box_aspects"]:
            if not (scale > 0 and aspect > 0):
                raise InputError(
                    f"box_scales / box_aspects: {scale}, {aspect}; pass positive numbers."
                )
            bh = min(height, max(2.0, scale * height * math.sqrt(aspect)))
            bw = min(width, max(2.0, scale * width / math.sqrt(aspect)))
            n_r = max(1, math.ceil((height - bh) / max(stride * bh, 1.0)) + 1)
            n_c = max(1, math.ceil((width - bw) / max(stride * bw, 1.0)) + 1)
            for r in np.linspace(0.0, height - bh, n_r):
                for c in np.linspace(0.0, width - bw, n_c):
                    boxes.append((r, c, r + bh, c + bw))
    grid = np.round(np.array(boxes, dtype=np.float64)).reshape(-1, 4)
    grid[:, 2] = np.maximum(grid[:, 2], grid[:, 0] + 1)
    grid[:, 3] = np.maximum(grid[:, 3], grid[:, 1] + 1)
    return np.unique(grid, axis=0)


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of two ``(N, 4)`` box arrays."""
    inter_h = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    inter_w = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = inter_h * inter_w
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def _box_proposals(
    segmenter: Segmenter, image: np.ndarray, key: str, window, opts
) -> list[Proposal]:
    """A grid of box prompts decoded from one (cached) embedding, filtered like SAM's AMG."""
    import torch
    from segment_anything.utils.amg import batched_mask_to_box, calculate_stability_score
    from torchvision.ops import nms

    embedding = segmenter.embed(image, window=window, key=key)
    height, width = embedding.original_size
    grid = _grid_boxes((height, width), opts)
    threshold = segmenter.mask_threshold
    kept_logits, kept_scores, kept_boxes, kept_prompts = [], [], [], []
    low_size = None
    with torch.inference_mode():
        for start in range(0, len(grid), int(opts["box_batch"])):
            boxes = grid[start : start + int(opts["box_batch"])]
            low, iou = segmenter.predict_logits(embedding, boxes=boxes)
            low_size = low.shape[-1]
            valid_h, valid_w = segmenter.backend.low_res_extent(low_size, embedding.input_size)
            logits = low[:, 0, :valid_h, :valid_w].float()
            iou = iou[:, 0].float()
            stability = calculate_stability_score(
                logits, threshold, float(opts["stability_score_offset"])
            )
            binary = logits > threshold
            area = binary.flatten(1).sum(1).float() / float(valid_h * valid_w)
            # mask boxes (x0, y0, x1, y1 inclusive, low-res) -> (row0, col0, row1, col1) pixels
            xyxy = batched_mask_to_box(binary).float().cpu().numpy()
            fy, fx = height / (valid_h), width / (valid_w)
            mask_boxes = np.stack(
                [xyxy[:, 1] * fy, xyxy[:, 0] * fx, (xyxy[:, 3] + 1) * fy, (xyxy[:, 2] + 1) * fx],
                1,
            )
            fit = _box_iou(mask_boxes, boxes)
            keep = (
                (iou >= float(opts["pred_iou_thresh"]))
                & (stability >= float(opts["stability_score_thresh"]))
                & (area >= float(opts["min_area_fraction"]))
                & (area <= float(opts["max_area_fraction"]))
            ).cpu().numpy() & (fit >= float(opts["box_fit_thresh"]))
            for i in np.flatnonzero(keep):
                kept_logits.append(low[i, 0].float())
                kept_scores.append(float(iou[i]))
                kept_boxes.append(mask_boxes[i])
                kept_prompts.append(
                    {
                        "sam_prompt": "box-grid",
                        "sam_box": [int(v) for v in boxes[i]],
                        "stability_score": round(float(stability[i]), 4),
                    }
                )
    if not kept_logits:
        return []
    xyxy = torch.as_tensor(np.array(kept_boxes)[:, [1, 0, 3, 2]], dtype=torch.float32)
    order = nms(xyxy, torch.as_tensor(kept_scores), float(opts["box_nms_thresh"])).tolist()
    out = []
    upsampler = segmenter.mask_upsampler(embedding, low_size)
    for i in order[: int(opts["max_proposals"])]:
        mask = upsampler.mask(kept_logits[i], threshold)
        proposal = _proposal(mask, kept_scores[i], kept_prompts[i])
        if proposal is not None:
            out.append(proposal)
    return out


def _saliency_proposals(
    segmenter: Segmenter, image: np.ndarray, window, saliency: np.ndarray, opts
) -> list[Proposal]:
    boxes = saliency_boxes(
        saliency,
        method=opts["saliency_method"],
        threshold=opts["saliency_threshold"],
        percentile=opts["saliency_percentile"],
        max_boxes=int(opts["max_boxes"]),
        margin=float(opts["box_margin"]),
    )
    if len(boxes) == 0:
        return []
    regions = segmenter.segment(
        image, boxes=boxes, window=window, context=opts["context"], source="sam-saliency"
    )
    out = []
    for box, region in zip(boxes, regions, strict=True):
        prompt = {"sam_prompt": "saliency-box", "sam_box": [int(v) for v in box]}
        if opts["context"] is not None:
            prompt["context"] = float(opts["context"])
        proposal = _proposal(region.mask, region.score, prompt)
        if proposal is not None:
            out.append(proposal)
    return out


def _given_proposals(masks: Sequence, shape: tuple[int, int]) -> list[Proposal]:
    out = []
    for i, item in enumerate(masks):
        mask = np.asarray(item.mask if isinstance(item, Region) else item)
        if mask.shape != tuple(shape):
            raise PromptError(
                f"proposals[{i}]: mask shape {mask.shape} differs from the image's {tuple(shape)};"
                " pass masks at image resolution."
            )
        score = item.score if isinstance(item, Region) else float("nan")
        prompt = {"sam_prompt": "given", "index": i}
        if isinstance(item, Region):
            prompt["region_source"] = item.source
        proposal = _proposal(mask.astype(bool), score, prompt)
        if proposal is not None:
            out.append(proposal)
    return out


def _resolve_mode(proposals: Any, segmenter: Segmenter) -> str:
    if not isinstance(proposals, str):
        return "given"
    if proposals not in PROPOSAL_MODES:
        raise InputError(
            f"proposals={proposals!r}: choose one of {', '.join(PROPOSAL_MODES)} or pass a list "
            "of masks."
        )
    if proposals == "auto":
        return "boxes" if segmenter.box_only else "points"
    if proposals == "points" and segmenter.box_only:
        warnings.warn(
            f"SAM model {segmenter.backend.name!r} was trained with box prompts only; the point "
            "grid of proposals='points' gives empty or poor masks. Use proposals='boxes' "
            "(the default for this model) or 'saliency'.",
            UserWarning,
            stacklevel=3,
        )
    return proposals


def proposal_set(
    segmenter: Segmenter,
    image: np.ndarray,
    unit: np.ndarray,
    key: str,
    window,
    proposals: Any,
    saliency: np.ndarray | None,
    options: dict[str, Any],
) -> ProposalSet:
    mode = _resolve_mode(proposals, segmenter)
    opts = _options(mode, options)
    shape = tuple(image.shape[:2])
    extra: Any = None
    if mode == "saliency":
        if saliency is None:
            raise PromptError(
                "proposals='saliency' needs the saliency map: pass saliency=MAP (H, W), e.g. "
                "explain(...).map."
            )
        saliency = np.asarray(saliency, dtype=np.float32)
        if saliency.shape != shape:
            raise PromptError(
                f"saliency: shape {saliency.shape} differs from the image's {shape}; pass the "
                "map at image resolution."
            )
        extra = image_hash(saliency)
    elif mode == "given":
        if isinstance(proposals, np.ndarray) and proposals.ndim == 2:
            proposals = [proposals]
        proposals = list(proposals)
        stack = [np.asarray(p.mask if isinstance(p, Region) else p) for p in proposals]
        extra = image_hash(np.packbits(np.stack([s.astype(bool).ravel() for s in stack])))
    window_key = None if window is None else tuple(float(v) for v in window)
    cache_key = (key, segmenter.name, window_key, mode, _relevant(mode, opts), extra)
    cache = owner_lru(_PROPOSALS, segmenter)
    found = lru_get(cache, cache_key)
    if found is not None:
        return found
    if mode == "points":
        items = _point_proposals(segmenter, unit, opts)
    elif mode == "boxes":
        items = _box_proposals(segmenter, image, key, window, opts)
    elif mode == "saliency":
        items = _saliency_proposals(segmenter, image, window, saliency, opts)
    else:
        items = _given_proposals(proposals, shape)
    result = ProposalSet(next(_TOKENS), mode, shape, items, segmenter.name)
    lru_put(cache, cache_key, result, _PROPOSAL_CACHE_SIZE)
    return result


def propose_regions(
    segmenter: Segmenter,
    image: np.ndarray,
    *,
    proposals: str | Sequence = "auto",
    window: tuple[float, float] | None = None,
    saliency: np.ndarray | None = None,
    **options: Any,
) -> list[Region]:
    """SAM's candidate regions for text prompts (cached), best predicted IoU first.

    Parameters
    ----------
    segmenter : Segmenter
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, 3|4)``.
    proposals : str or list of masks
        ``"auto"``, ``"points"``, ``"boxes"``, ``"saliency"`` or masks (see the module notes).
    window : (float, float), optional
        Intensity window.
    saliency : numpy.ndarray, optional
        ``(H, W)`` map, for ``proposals="saliency"``.
    **options
        :data:`PROPOSAL_OPTIONS`.

    Returns
    -------
    list of Region
        Source ``"sam-proposal"``; ``score`` is SAM's predicted IoU; ``prompt`` says how SAM was
        prompted. The list index is the ``"proposal"`` number text regions record.
    """
    image = validate_image(image)
    unit = to_unit_range(image, window)
    found = proposal_set(
        segmenter, image, unit, image_hash(image), window, proposals, saliency, options
    )
    return [
        Region(p.full(found.shape), "sam-proposal", dict(p.prompt), p.score, found.sam_name)
        for p in found.proposals
    ]


# -- crops and CLIP scores -----------------------------------------------------------------------


def clear_proposal_cache() -> None:
    """Forget cached proposals (loaded models stay)."""
    with CACHE_LOCK:
        _PROPOSALS.clear()
