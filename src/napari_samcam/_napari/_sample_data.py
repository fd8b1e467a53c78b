"""Sample data (File > Open Sample > SAM-CAM): phantom lesions and a real chest radiograph.

The phantoms come from :mod:`napari_samcam.phantoms` (synthetic lesions of known extent on real
radiograph backgrounds). Each comes with its human-style lesion box as a Shapes layer, ready to
prompt SAM with, and the exact lesion mask as a hidden Labels layer. Everything is generated once
per process and then served from memory.

napari selects the last layer a sample adds. That is the box layer (on top of the image, where
boxes must be drawn), so its rectangle tool is at hand; the hidden mask sits under it and is never
the selected layer, so no paint tool can change it unseen.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from ._image_layers import image_layer_data
from ._layers import META_KEY, box_to_rectangle

LayerData = tuple[Any, dict, str]

#: Seed of the phantom series the samples are drawn from.
PHANTOM_SEED = 3
#: The case of that series shown as "Phantom lesion": a mid-lung irregular opacity that
#: LiteMedSAM outlines well from its box (Dice 0.88 against its mask with 2.5x box context).
LESION_CASE = 1
_SERIES = 8


@lru_cache(maxsize=4)
def _series(marker: str | None) -> tuple:
    from ..phantoms import generate_phantoms

    return tuple(
        generate_phantoms(_SERIES, seed=PHANTOM_SEED, backgrounds=["chest"], marker=marker)
    )


def warm_samples() -> None:
    """Generate the phantom series the samples show (cached for the process)."""
    _series(None)
    _series("always")


def _case_info(case) -> dict:
    return {
        "seed": int(case.seed),
        "index": int(case.index),
        "label": int(case.label),
        "box": None if case.box is None else tuple(int(v) for v in case.box),
        "marker_box": None if case.marker_box is None else tuple(int(v) for v in case.marker_box),
        "background": case.background,
        "lesion_kind": case.lesion_kind,
        "lesion_radius": case.lesion_radius,
        "lesion_contrast": case.lesion_contrast,
    }


def _image(array: np.ndarray, name: str, info: dict) -> LayerData:
    metadata = {
        "source": "napari-samcam phantom",
        "format": "phantom",
        "spacing": (1.0,) * array.ndim,
        "modality": None,
        "window": None,
        "rgb": False,
        "phantom": info,
    }
    kwargs = {
        "name": name,
        "colormap": "gray",
        "contrast_limits": (0.0, 255.0),
        "metadata": metadata,
    }
    return array, kwargs, "image"


def _boxes(rectangles: list[np.ndarray], name: str, image_name: str, labels: list[str]):
    kwargs = {
        "name": name,
        "shape_type": "rectangle",
        "edge_color": "cyan",
        "face_color": "transparent",
        "edge_width": 2,
        "features": {"annotation": labels},
        "metadata": {META_KEY: {"kind": "box-prompts", "image_layer": image_name}},
    }
    return rectangles, kwargs, "shapes"


def _mask(mask: np.ndarray, name: str, image_name: str) -> LayerData:
    kwargs = {
        "name": name,
        "visible": False,
        "opacity": 0.5,
        "metadata": {META_KEY: {"kind": "ground-truth", "image_layer": image_name}},
    }
    return mask.astype(np.int32), kwargs, "labels"


def _single(case, name: str) -> list[LayerData]:
    info = _case_info(case)
    out = [_image(case.image.copy(), name, info)]
    if case.box is not None:
        out.append(_mask(case.mask, f"{name} mask", name))
        out.append(_boxes([box_to_rectangle(case.box)], f"{name} box", name, ["lesion"]))
    return out


def phantom_nodule() -> list[LayerData]:
    """A chest phantom with a clearly visible synthetic lesion, its box and its mask."""
    series = _series(None)
    case = series[LESION_CASE]
    if not case.label:  # a changed generator: fall back to the most visible lesion
        positives = [c for c in series if c.label]
        case = max(positives, key=lambda c: (c.lesion_radius or 0) * (c.lesion_contrast or 0))
    return _single(case, "phantom lesion")


def phantom_marker() -> list[LayerData]:
    """A chest phantom with a lesion and a burned-in corner marker (the shortcut case)."""
    case = next(c for c in _series("always") if c.label)
    return _single(case, "phantom lesion + marker")


def _lesions_in_the_middle(cases) -> list:
    """The cases with a lesion between the negatives, so that the slice napari shows first (the
    middle one) has a box to prompt."""
    negatives = [c for c in cases if c.box is None]
    half = len(negatives) // 2
    return [*negatives[:half], *(c for c in cases if c.box is not None), *negatives[half:]]


def phantom_stack() -> list[LayerData]:
    """Eight chest phantoms stacked as a 3-D volume (the middle half with lesions), with their
    boxes."""
    cases = _lesions_in_the_middle(_series(None))
    name = "phantom stack"
    volume = np.stack([c.image for c in cases])
    info = {"cases": [_case_info(c) for c in cases]}
    rectangles = [box_to_rectangle(c.box, (k,)) for k, c in enumerate(cases) if c.box is not None]
    masks = np.stack([c.mask for c in cases])
    return [
        _image(volume, name, info),
        _mask(masks, f"{name} masks", name),
        _boxes(rectangles, f"{name} boxes", name, ["lesion"] * len(rectangles)),
    ]


@lru_cache(maxsize=1)
def _chest():
    import pydicom.data

    from ..images import read_image

    path = pydicom.data.get_testdata_file("RG1_UNCI.dcm", download=False)
    if path is None:
        from ..errors import ModelNotAvailableError

        raise ModelNotAvailableError(
            "the chest radiograph RG1_UNCI.dcm ships with the pydicom-data package; install it "
            "with: pip install pydicom-data"
        )
    return read_image(path)


def chest_radiograph() -> list[LayerData]:
    """The real PA chest radiograph RG1_UNCI (CR, MONOCHROME1 shown inverted, DICOM window)."""
    data = _chest()
    return [image_layer_data(data.array, dict(data.metadata), "RG1_UNCI chest (CR)")]
