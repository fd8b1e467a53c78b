"""The region sources an evaluation can score a saliency map in: names and what each is.

Kept apart from :mod:`napari_samcam.evaluation.regions`, which computes them (and loads torch), so
that ``samcam evaluate --help`` and argument checks list them without importing a model.
"""

from __future__ import annotations

#: Region source name -> what it is.
REGION_SOURCES = {
    "ground-truth": "the annotated mask",
    "box": "the box annotation as a filled rectangle",
    "sam-box": "SAM prompted by the box annotation (zoom mode)",
    "sam-trust": "SAM prompted by the box, its mask checked; another output, a re-prompt or "
    "the box where it fails",
    "sam-saliency-box": "SAM prompted by boxes of the binarized saliency's components",
    "sam-saliency-peak": "SAM prompted at the saliency peak (half-maximum box for box-only SAM)",
    "sam-text": "SAM prompted by text through CLIP (needs CLIP weights)",
    "readers": "each reader's boxes as a region source of its own (reader:<id>)",
}

#: Sources that depend on the image and its annotation only (computed once per item).
ANNOTATION_SOURCES = ("ground-truth", "box", "sam-box", "sam-trust", "sam-text", "readers")
#: Sources that depend on a saliency map (computed once per classifier x method x target).
SALIENCY_SOURCES = ("sam-saliency-box", "sam-saliency-peak")
#: Sources that run a SAM model.
SAM_SOURCES = ("sam-box", "sam-trust", "sam-saliency-box", "sam-saliency-peak", "sam-text")

DEFAULT_REGION_SOURCES = ("ground-truth", "box", "sam-box", "sam-saliency-box")
