"""Text prompts, under the name the documentation used first.

The code lives in :mod:`napari_samcam.clip_regions` (CLIP scoring of proposals) and
:mod:`napari_samcam.region_proposals` (SAM's candidate regions); this module re-exports it.
"""

from . import clip_regions
from .clip_regions import *  # noqa: F403 - the public names of clip_regions, and only those

__all__ = list(clip_regions.__all__)
