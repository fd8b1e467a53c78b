"""Type stub of the public API: read by lazy_loader to load each name on first use."""

from ._napari import SamcamSession
from .box_prompts import (
    box_region,
    mask_box,
    mask_region,
    saliency_boxes,
    saliency_peak_points,
)
from .classifiers import Classifier, load_classifier
from .clip_regions import (
    clip_available,
    load_clip,
    segment_text,
)
from .datasets import load_dataset
from .errors import InputError, SamcamError
from .evaluation import evaluate
from .images import (
    ImageData,
    image_hash,
    read_image,
    to_unit_range,
)
from .metrics import (
    METRIC_NAMES,
    binarize,
    localization_metrics,
    prepare_map,
)
from .phantoms import generate_phantoms, write_phantoms
from .saliency import (
    CAM_METHODS,
    Saliency,
    explain,
    predict,
)
from .sam_models import SAM_MODELS, load_sam_model
from .segment import Region, Segmenter, load_segmenter

__version__: str

__all__ = [
    "CAM_METHODS",
    "METRIC_NAMES",
    "SAM_MODELS",
    "Classifier",
    "ImageData",
    "InputError",
    "Region",
    "Saliency",
    "SamcamError",
    "SamcamSession",
    "Segmenter",
    "__version__",
    "binarize",
    "box_region",
    "clip_available",
    "evaluate",
    "explain",
    "generate_phantoms",
    "image_hash",
    "load_classifier",
    "load_clip",
    "load_dataset",
    "load_sam_model",
    "load_segmenter",
    "localization_metrics",
    "mask_box",
    "mask_region",
    "predict",
    "prepare_map",
    "read_image",
    "saliency_boxes",
    "saliency_peak_points",
    "segment_text",
    "to_unit_range",
    "write_phantoms",
]
