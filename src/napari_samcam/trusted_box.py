"""The ``sam-trust`` region source: a box prompt whose mask is kept only when it can be trusted.

For each box: SAM's single-mask answer and its three multimask outputs are decoded on the box's
context crop (the embedding ``sam-box`` uses, so alongside ``sam-box`` this costs no encoder
run); :func:`napari_samcam.region_trust.decide` picks the best one that passes the checks of a
:class:`~napari_samcam.region_trust.TrustRule`. If none does, the box is prompted again with
another zoom factor (``reprompt_context``, one more encoder run) and its outputs judged the
same way; if still none passes, the region is the box itself. Each box's action, reason and
signals go into ``Region.prompt["trust"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .images import checked_image
from .point_prompts import mask_stability
from .region_trust import (
    Candidate,
    Decision,
    TrustRule,
    candidate_record,
    decide,
    mask_signals,
    rule_dict,
)
from .sam.types import context_crop

__all__ = ["box_candidates", "trusted_box_mask", "trusted_box_region"]

FALLBACK = "fell back to the box"


def box_candidates(
    segmenter,
    image: np.ndarray,
    box: np.ndarray,
    *,
    context: float,
    window=None,
    key: str | None = None,
    preprocess: str | None = None,
    delta: float = 1.0,
) -> list[Candidate]:
    """SAM's single-mask and multimask answers to one box, in a context crop, with signals.

    Uses the :class:`~napari_samcam.segment.Segmenter`'s public ``embed``, ``predict_logits``
    and ``mask_upsampler``. The first candidate is the mask ``Segmenter.segment(boxes=[box],
    context=context)`` returns.
    """
    import torch

    shape = image.shape[:2]
    box = np.asarray(box, dtype=np.float64)
    crop = context_crop(box, shape, context, segmenter.image_size // 4)
    embedding = segmenter.embed(image, window=window, crop=crop, key=key, preprocess=preprocess)
    local = (box - np.tile(np.asarray(crop[:2], dtype=np.float64), 2))[None]
    threshold = segmenter.mask_threshold
    found = []
    for multimask in (False, True):
        low_res, iou = segmenter.predict_logits(embedding, boxes=local, multimask=multimask)
        low_res = low_res.float()
        stability = mask_stability(low_res, embedding, segmenter, delta)
        upsampler = segmenter.mask_upsampler(embedding, low_res.shape[-1])
        for j in range(low_res.shape[1]):
            with torch.inference_mode():
                local_mask = upsampler.mask(low_res[0, j], threshold)
            mask = np.zeros(shape, dtype=bool)
            mask[crop[0] : crop[2], crop[1] : crop[3]] = local_mask
            found.append(
                Candidate(
                    mask=mask,
                    output=j + 1 if multimask else 0,
                    iou=float(iou[0, j]),
                    stability=float(stability[0, j]),
                    context=float(context),
                    signals=mask_signals(mask, box),
                )
            )
    return found


def _box_mask(box, shape) -> np.ndarray:
    r0, c0, r1, c1 = (int(v) for v in box)
    mask = np.zeros(shape, dtype=bool)
    mask[max(r0, 0) : r1, max(c0, 0) : c1] = True
    return mask


def trusted_box_mask(
    segmenter,
    image: np.ndarray,
    box,
    *,
    context: float = 2.5,
    rule: TrustRule | None = None,
    window=None,
    key: str | None = None,
    preprocess: str | None = None,
) -> tuple[np.ndarray, float, dict]:
    """The trusted mask of one box: SAM's best passing mask, a re-prompt's, or the box.

    Returns
    -------
    mask : numpy.ndarray
        bool ``(H, W)``.
    score : float
        The chosen mask's predicted IoU; NaN when the box was used.
    record : dict
        ``action`` (``"kept"``, ``"chose output k"``, ``"re-prompted (context c), ..."`` or
        ``"fell back to the box"``), ``reason`` and the chosen mask's signals.
    """
    rule = rule or TrustRule()
    common = {"window": window, "key": key, "preprocess": preprocess}
    candidates = box_candidates(segmenter, image, box, context=context, **common)
    decision = decide(candidates, rule)
    first_reason = decision.reason
    if decision.choice is None and rule.reprompt_context not in (None, context):
        candidates += box_candidates(
            segmenter, image, box, context=float(rule.reprompt_context), **common
        )
        decision = decide(candidates, rule)
        if decision.choice is not None:
            decision.reason = f"SAM's mask: {first_reason}"
    if decision.choice is None:
        decision = Decision(None, FALLBACK, first_reason)
        return _box_mask(box, image.shape[:2]), float("nan"), candidate_record(None, decision)
    chosen = candidates[decision.choice]
    return chosen.mask, chosen.iou, candidate_record(chosen, decision)


def trusted_box_region(
    segmenter,
    image: np.ndarray,
    boxes,
    *,
    context: float | None = 2.5,
    rule: TrustRule | None = None,
    window=None,
    key: str | None = None,
    preprocess: str | None = None,
    source: str = "sam-trust",
) -> Any:
    """One :class:`~napari_samcam.segment.Region` for the union of the boxes' trusted masks.

    ``context`` None zooms by 2.5 all the same (the rule's signals assume a context crop). The
    prompt holds the boxes, the context, the rule and per box its ``trust`` record.
    """
    from .segment import Region, embedding_key

    checked = checked_image(image)
    image = checked.array
    rule = rule or TrustRule()
    context = 2.5 if context is None else float(context)
    key = key or embedding_key(image)
    mask = np.zeros(image.shape[:2], dtype=bool)
    scores, records = [], []
    for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        one, score, record = trusted_box_mask(
            segmenter,
            checked,
            box,
            context=context,
            rule=rule,
            window=window,
            key=key,
            preprocess=preprocess,
        )
        mask |= one
        scores.append(score)
        records.append(record)
    finite = [s for s in scores if np.isfinite(s)]
    prompt = {
        "boxes": np.asarray(boxes).reshape(-1, 4).astype(int).tolist(),
        "context": context,
        "trust": records,
        "trust_rule": rule_dict(rule),
    }
    if preprocess is not None:
        prompt["preprocess"] = preprocess
    score = float(np.mean(finite)) if finite else float("nan")
    return Region(mask, source, prompt, score, segmenter.name)
