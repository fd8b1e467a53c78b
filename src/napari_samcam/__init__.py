"""napari-samcam: does my classifier look at the right place?

Grad-CAM saliency (pytorch-grad-cam), regions from Segment Anything prompted by annotations,
points, boxes, the saliency itself or text (CLIP), and localization scores of the saliency in
those regions — per image and per dataset.

The public API is importable without napari or Qt; names load lazily so that ``import
napari_samcam`` stays fast.
"""

from __future__ import annotations

import lazy_loader

__version__ = "0.1.0"

# The names and the modules that hold them are listed once, in __init__.pyi.
__getattr__, _lazy_dir, _lazy_all = lazy_loader.attach_stub(__name__, __file__)

__all__ = ["__version__", *_lazy_all]


def __dir__():
    return sorted(__all__)
