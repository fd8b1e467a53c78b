"""Text prompts, under the name the documentation used first.

The code lives in :mod:`napari_samcam.clip_regions` (CLIP scoring of proposals) and
:mod:`napari_samcam.region_proposals` (SAM's candidate regions); this module re-exports it.
"""

from .clip_regions import (
    BACKGROUNDS,
    DEFAULT_NEGATIVES,
    DEFAULT_TEMPLATES,
    PROPOSAL_MODES,
    PROPOSAL_OPTIONS,
    ClipEncoder,
    clear_clip_cache,
    clear_text_cache,
    clip_available,
    crop_for_clip,
    load_clip,
    propose_regions,
    segment_text,
    text_regions,
)

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
