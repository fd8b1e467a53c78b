"""Text prompts ("nodule", "left lung"): SAM region proposals scored against the text by CLIP.

Proposals come from :mod:`napari_samcam.region_proposals`; this module crops, embeds and scores
them.

The pipeline (CLIP-SAM):

1. **Proposals.** Candidate regions of the image from Segment Anything:

   * ``"points"``: SAM's automatic mask generator (a grid of point prompts, filtered by
     predicted IoU, stability and non-maximum suppression);
   * ``"boxes"``: a multi-scale grid of box prompts decoded from one cached image embedding,
     filtered the same way — for models trained with box prompts only (LiteMedSAM), which give
     empty masks for point prompts;
   * ``"saliency"``: one box per saliency blob (:func:`~napari_samcam.box_prompts.saliency_boxes`),
     each prompted to SAM — far fewer proposals, so much cheaper;
   * a list of masks (or :class:`~napari_samcam.segment.Region`) given by the caller.

   ``"auto"`` (default) is ``"boxes"`` for box-only models and ``"points"`` otherwise.
2. **Crops.** Each proposal is cut out of the image: its bounding box grown by ``margin`` on
   every side and padded to a square (black outside the image); pixels outside the mask are
   dimmed (``background``) so that CLIP sees the proposal with some context.
3. **Scores.** CLIP embeds every crop and the texts ``[text, *negatives]`` (each put into the
   ``templates``); a proposal's score is the softmax over the texts of ``logit_scale x cosine
   similarity``, taken at ``text``: the probability that the crop shows ``text`` rather than a
   negative. Without negatives the score is the plain cosine similarity.
4. **Choice.** Proposals are ranked by score; the ``top_k`` at or above ``threshold`` are
   returned as regions with source ``"sam-text"``.

Proposals and CLIP crop embeddings are cached per image (content hash, SAM model, window,
proposal settings, CLIP model and crop settings), so a second text on the same image only
costs encoding the text.
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._clip import ClipEncoder, clear_clip_cache, clip_available, load_clip
from .errors import InputError, PromptError
from .images import image_hash, to_unit_range, validate_image
from .model_caches import CACHE_LOCK, lru_get, lru_put, owner_lru
from .region_proposals import (
    PROPOSAL_MODES,
    PROPOSAL_OPTIONS,
    ProposalSet,
    clear_proposal_cache,
    mask_bounds,
    proposal_set,
    propose_regions,
    resize_array,
)
from .segment import Region, Segmenter

__all__ = [
    "BACKGROUNDS",
    "DEFAULT_NEGATIVES",
    "DEFAULT_TEMPLATES",
    "PROPOSAL_MODES",
    "PROPOSAL_OPTIONS",
    "ClipEncoder",
    "clear_clip_cache",
    "clear_text_cache",
    "clip_available",
    "crop_for_clip",
    "load_clip",
    "propose_regions",
    "segment_text",
    "text_regions",
]

#: Texts a proposal competes against by default.

DEFAULT_NEGATIVES = ("background",)
#: Prompt templates; the text embedding is the mean over them.


DEFAULT_TEMPLATES = ("a photo of {}.",)
#: ``background`` names: the brightness factor applied to crop pixels outside the mask.


BACKGROUNDS = {"keep": 1.0, "dim": 0.3, "black": 0.0}


_EMBEDDING_CACHE_SIZE = 16


_TEXT_CACHE_SIZE = 256


_EMBEDDINGS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


_TEXTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def clear_text_cache() -> None:
    """Forget cached proposals, crop embeddings and text embeddings (loaded models stay)."""
    with CACHE_LOCK:
        clear_proposal_cache()
        _EMBEDDINGS.clear()
        _TEXTS.clear()


def _background_factor(background: str | float) -> float:
    if isinstance(background, str):
        if background not in BACKGROUNDS:
            raise InputError(
                f"background={background!r}: choose one of {', '.join(BACKGROUNDS)} or a "
                "brightness factor in [0, 1]."
            )
        return BACKGROUNDS[background]
    factor = float(background)
    if not 0.0 <= factor <= 1.0:
        raise InputError(f"background={background!r}: a brightness factor must lie in [0, 1].")
    return factor


# -- proposals -----------------------------------------------------------------------------------


def _crop(
    unit: np.ndarray,
    box: tuple[int, int, int, int],
    local_mask: np.ndarray,
    factor: float,
    margin: float,
    size: int | None,
) -> np.ndarray:
    height, width = unit.shape[:2]
    r0, c0, r1, c1 = box
    side = max(4, math.ceil(max(r1 - r0, c1 - c0) * (1.0 + 2.0 * margin)))
    top = math.floor((r0 + r1) / 2 - side / 2)
    left = math.floor((c0 + c1) / 2 - side / 2)
    canvas = np.zeros((side, side, 3), dtype=np.float32)
    ir0, ic0 = max(top, 0), max(left, 0)
    ir1, ic1 = min(top + side, height), min(left + side, width)
    view = unit[ir0:ir1, ic0:ic1]
    canvas[ir0 - top : ir1 - top, ic0 - left : ic1 - left] = (
        view[..., :3] if view.ndim == 3 else view[..., None]
    )
    if factor != 1.0:
        inside = np.zeros((side, side), dtype=bool)
        inside[r0 - top : r1 - top, c0 - left : c1 - left] = local_mask
        canvas[~inside] *= factor
    if size is not None and side != size:
        canvas = np.clip(resize_array(canvas, (size, size), antialias=True), 0.0, 1.0)
    return canvas


def crop_for_clip(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    window: tuple[float, float] | None = None,
    background: str | float = "dim",
    margin: float = 0.1,
    size: int | None = None,
) -> np.ndarray:
    """The square RGB crop CLIP sees for a region.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, 3|4)``.
    mask : numpy.ndarray
        bool ``(H, W)`` region.
    window : (float, float), optional
        Intensity window.
    background : {"keep", "dim", "black"} or float
        Brightness factor for pixels outside the mask: 1 keeps the context, 0 blacks it out;
        ``"dim"`` (0.3) keeps a faint context.
    margin : float
        Grow the mask's bounding box by this fraction of its long side on every side before
        padding it to a square (pixels beyond the image are black).
    size : int, optional
        Resize the crop to ``size x size`` (CLIP's input side).

    Returns
    -------
    numpy.ndarray
        float32 ``(S, S, 3)`` in ``[0, 1]``.
    """
    image = validate_image(image)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != image.shape[:2]:
        raise PromptError(f"mask shape {mask.shape} differs from the image's {image.shape[:2]}.")
    box = mask_bounds(mask)
    if box is None:
        raise PromptError("mask is empty: there is nothing to crop.")
    local = mask[box[0] : box[2], box[1] : box[3]]
    unit = to_unit_range(image, window)
    return _crop(unit, box, local, _background_factor(background), float(margin), size)


def _crop_embeddings(
    found: ProposalSet, clip: Any, unit: np.ndarray, factor: float, margin: float
) -> np.ndarray:
    key = (found.token, str(getattr(clip, "name", "")), factor, margin)
    cache = owner_lru(_EMBEDDINGS, clip)
    cached = lru_get(cache, key)
    if cached is not None:
        return cached
    size = int(getattr(clip, "image_size", 224))
    crops = [_crop(unit, p.box, p.mask, factor, margin, size) for p in found.proposals]
    embeddings = np.asarray(clip.encode_images(crops), dtype=np.float32)
    lru_put(cache, key, embeddings, _EMBEDDING_CACHE_SIZE)
    return embeddings


def _text_embeddings(clip: Any, texts: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    cache = owner_lru(_TEXTS, clip)
    out = []
    for text in texts:
        key = (text, tuple(templates))
        cached = lru_get(cache, key)
        if cached is None:
            prompts = [t.format(text) for t in templates]
            vectors = np.asarray(clip.encode_texts(prompts), dtype=np.float32)
            mean = vectors.mean(0)
            cached = mean / max(float(np.linalg.norm(mean)), 1e-12)
            lru_put(cache, key, cached, _TEXT_CACHE_SIZE)
        out.append(cached)
    return np.stack(out)


def _check_texts(text: Any, negatives: Any, templates: Any) -> tuple[str, list[str], list[str]]:
    if not isinstance(text, str) or not text.strip():
        raise PromptError(f"text={text!r}: pass a non-empty string such as 'nodule'.")
    text = text.strip()
    if isinstance(negatives, str):
        negatives = [negatives]
    negatives = [str(n).strip() for n in (negatives or ())]
    if any(not n for n in negatives):
        raise PromptError(f"negatives={negatives!r}: empty negative texts are not allowed.")
    if text in negatives:
        raise PromptError(
            f"text {text!r} is also among the negatives {negatives}; remove it from negatives."
        )
    if isinstance(templates, str):
        templates = [templates]
    templates = list(templates or ("{}",))
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise PromptError(
            f"templates {bad}: every template needs a '{{}}' where the text goes, e.g. "
            "'a photo of {}.'."
        )
    return text, negatives, templates


def segment_text(
    segmenter: Segmenter,
    image: np.ndarray,
    text: str,
    *,
    clip: Any = None,
    window: tuple[float, float] | None = None,
    progress: Callable[[int, int], None] | None = None,
    negatives: Sequence[str] = DEFAULT_NEGATIVES,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    threshold: float | None = None,
    top_k: int | None = 1,
    proposals: str | Sequence = "auto",
    saliency: np.ndarray | None = None,
    background: str | float = "dim",
    margin: float = 0.1,
    device: Any = None,
    download: bool = False,
    **options: Any,
) -> list[Region]:
    """Regions matching a text prompt: SAM proposals ranked by CLIP.

    Parameters
    ----------
    segmenter : Segmenter
        The SAM model that proposes regions.
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, 3|4)``.
    text : str
        What to find, e.g. ``"nodule"`` or ``"left lung"``.
    clip : str, Path or ClipEncoder
        The CLIP model (see :func:`~napari_samcam.clip_regions.load_clip`); required: there is no
        default model and no weights ship with the package.
    window : (float, float), optional
        Intensity window, for the proposals and the crops.
    progress : callable, optional
        ``progress(done, 3)`` after proposals, crop embeddings and scoring.
    negatives : sequence of str
        Texts the prompt competes against (default ``["background"]``); empty: score is the
        cosine similarity instead of a probability.
    templates : sequence of str
        Sentences with ``{}`` for the text; the text embedding is their mean.
    threshold : float, optional
        Keep only proposals scoring at least this.
    top_k : int or None
        Return at most this many regions (best first); ``None`` returns every proposal that
        passes ``threshold``.
    proposals : str or list of masks
        ``"auto"`` (default), ``"points"``, ``"boxes"``, ``"saliency"`` or candidate masks.
    saliency : numpy.ndarray, optional
        ``(H, W)`` map for ``proposals="saliency"``.
    background : {"keep", "dim", "black"} or float
        How crop pixels outside the proposal look (see :func:`crop_for_clip`).
    margin : float
        Context around each proposal's box in the crop, as a fraction of its long side.
    device : optional
        For the CLIP model; default: the SAM model's device.
    download : bool
        Let :func:`load_clip` fetch a hub id from the internet.
    **options
        Proposal settings, :data:`PROPOSAL_OPTIONS`.

    Returns
    -------
    list of Region
        Source ``"sam-text"``, best first; ``score`` is the CLIP probability of ``text`` (or the
        similarity); ``prompt`` records the text, negatives, templates, the proposal number
        and box, and how SAM was prompted. Empty (with a warning) when no proposal qualifies.

    Raises
    ------
    ModelNotAvailableError
        No CLIP model given, or its weights are not on this machine.
    PromptError
        Empty text, malformed negatives or templates, missing saliency map.
    """
    if not isinstance(segmenter, Segmenter):
        raise InputError(
            f"segment_text: the first argument is a Segmenter (Segmenter(load_sam_model())), "
            f"not a {type(segmenter).__name__}; call segment_text(segmenter, image, text, "
            "clip=...)."
        )
    if not isinstance(text, str):
        raise InputError(f"segment_text: text={text!r} is not a string; pass e.g. 'nodule'.")
    text, negatives, templates = _check_texts(text, negatives, templates)
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or int(top_k) < 1):
        raise InputError(f"top_k={top_k!r}: pass a positive number, or None for every region.")
    factor = _background_factor(background)
    try:
        margin = float(margin)
    except (TypeError, ValueError):
        margin = math.nan
    if not margin >= 0.0:
        raise InputError(f"margin={margin!r}: pass a fraction >= 0 (e.g. 0.1).")
    encoder = load_clip(
        clip, device=segmenter.device if device is None else device, download=download
    )
    image = validate_image(image)
    key = image_hash(image)
    unit = to_unit_range(image, window)
    if progress:
        progress(0, 3)
    found = proposal_set(segmenter, image, unit, key, window, proposals, saliency, options)
    if progress:
        progress(1, 3)
    if not found.proposals:
        warnings.warn(
            f"text prompt {text!r}: SAM gave no proposals (mode {found.mode!r}); lower "
            "pred_iou_thresh / stability_score_thresh, or try proposals='saliency'.",
            UserWarning,
            stacklevel=2,
        )
        if progress:
            progress(3, 3)
        return []
    image_embeddings = _crop_embeddings(found, encoder, unit, factor, margin)
    if progress:
        progress(2, 3)
    text_embeddings = _text_embeddings(encoder, [text, *negatives], templates)
    similarity = image_embeddings @ text_embeddings.T
    if negatives:
        logits = float(encoder.logit_scale) * similarity
        logits -= logits.max(1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(1, keepdims=True)
        scores = probabilities[:, 0]
    else:
        scores = similarity[:, 0]
    order = np.argsort(-scores, kind="stable")
    if threshold is not None:
        order = order[scores[order] >= float(threshold)]
    if top_k is not None:
        order = order[: int(top_k)]
    if len(order) == 0:
        warnings.warn(
            f"text prompt {text!r}: no proposal scored >= threshold {threshold} (best "
            f"{float(scores.max()):.3f} of {len(scores)} proposals).",
            UserWarning,
            stacklevel=2,
        )
    model = f"{segmenter.name} + {getattr(encoder, 'name', type(encoder).__name__)}"
    regions = []
    for rank, i in enumerate(order):
        proposal = found.proposals[int(i)]
        prompt = {
            "text": text,
            "negatives": list(negatives),
            "templates": list(templates),
            "proposals": found.mode,
            "proposal": int(i),
            "box": list(proposal.box),
            "rank": rank,
            "similarity": round(float(similarity[i, 0]), 6),
            "sam_score": round(float(proposal.score), 6),
            "background": factor,
            "margin": margin,
            **proposal.prompt,
        }
        regions.append(
            Region(proposal.full(found.shape), "sam-text", prompt, float(scores[i]), model)
        )
    if progress:
        progress(3, 3)
    return regions


def text_regions(
    segmenter: Segmenter, image: np.ndarray, text: str, clip: Any, **options: Any
) -> list[Region]:
    """Region source ``"sam-text"`` for the evaluate engine: same as :func:`segment_text`."""
    return segment_text(segmenter, image, text, clip=clip, **options)
