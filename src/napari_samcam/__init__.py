"""napari-samcam: does my classifier look at the right place?

Grad-CAM saliency (pytorch-grad-cam), regions from Segment Anything prompted by annotations,
points, boxes, the saliency itself or text (CLIP), and localization scores of the saliency in
those regions — per image and per dataset.

The public API is importable without napari or Qt; names load lazily so that ``import
napari_samcam`` stays fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "read_image": "images",
    "ImageData": "images",
    "to_unit_range": "images",
    "image_hash": "images",
    "load_classifier": "classifiers",
    "Classifier": "classifiers",
    "explain": "saliency",
    "predict": "saliency",
    "Saliency": "saliency",
    "CAM_METHODS": "saliency",
    "load_segmenter": "segment",
    "Segmenter": "segment",
    "Region": "segment",
    "load_sam_model": "sam_models",
    "SAM_MODELS": "sam_models",
    "saliency_boxes": "prompts",
    "saliency_peak_points": "prompts",
    "box_region": "prompts",
    "mask_region": "prompts",
    "mask_box": "prompts",
    "localization_metrics": "metrics",
    "prepare_map": "metrics",
    "binarize": "metrics",
    "METRIC_NAMES": "metrics",
    "generate_phantoms": "phantoms",
    "write_phantoms": "phantoms",
    "evaluate": "evaluation",
    "load_dataset": "datasets",
    "segment_text": "text",
    "load_clip": "text",
    "clip_available": "text",
    "SamcamError": "errors",
    "SamcamSession": "_napari",
    "InputError": "errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        module = importlib.import_module(f".{_API[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'napari_samcam' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
