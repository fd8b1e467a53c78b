"""An image array and its file's metadata as a napari Image layer data tuple."""

from __future__ import annotations

from typing import Any

import numpy as np

#: ``(data, layer keyword arguments, layer type)`` as npe2 readers return them.
LayerData = tuple[Any, dict, str]


def image_layer_data(array: np.ndarray, metadata: dict, name: str) -> LayerData:
    """An Image layer data tuple with the scale, contrast and metadata an image file records."""
    rgb = bool(metadata.get("rgb", False))
    spatial = array.ndim - (1 if rgb else 0)
    spacing = metadata.get("spacing")
    kwargs: dict[str, Any] = {"name": name, "rgb": rgb, "metadata": dict(metadata)}
    if spacing is not None and len(spacing) == spatial:
        kwargs["scale"] = tuple(float(s) for s in spacing)
        known = metadata.get("format") in ("dicom", "nifti") and any(
            float(s) != 1.0 for s in spacing
        )
        if known:  # DICOM and NIfTI spacings are millimetres; 1.0 everywhere means "unknown"
            kwargs["units"] = ("mm",) * spatial
    window = metadata.get("window")
    if window is not None and float(window[1]) > float(window[0]):
        kwargs["contrast_limits"] = (float(window[0]), float(window[1]))
    elif not rgb and array.size:
        low, high = float(np.min(array)), float(np.max(array))
        if high > low:
            kwargs["contrast_limits"] = (low, high)
    if not rgb:
        kwargs["colormap"] = "gray"
    return array, kwargs, "image"
