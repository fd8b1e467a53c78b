"""Adapters between napari layers and the core's arrays. napari only, no Qt.

Conventions (the project's): image coordinates are ``(row, col)`` pixel indices of the image
layer's data; boxes are ``(row0, col0, row1, col1)`` with the end exclusive. A rectangle drawn in
napari covers the pixels whose centres it encloses: its edges lie on pixel borders, half a pixel
from the centres, so a box ``(r0, c0, r1, c1)`` is drawn from ``(r0 - 0.5, c0 - 0.5)`` to
``(r1 - 0.5, c1 - 0.5)`` and converts back exactly.

Layers of different scale or translation are mapped through world coordinates, so prompts drawn on
a Shapes or Points layer that napari created with the default scale still land on the right
pixels of a DICOM image shown in millimetres.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError

#: Key under which the plugin keeps its own bookkeeping in ``layer.metadata``.
META_KEY = "samcam"

#: Colours of positive / negative prompt points.
POINT_COLORS = {True: "lime", False: "red"}

#: Columns every regions table starts with; the metrics follow, then :data:`REGION_DETAILS`,
#: and ``index`` (napari's link from label values to rows) comes last.
REGION_COLUMNS = ("label", "slice")

#: Columns after the metrics: the region, its source and provenance.
REGION_DETAILS = (
    "score",
    "region_unreliable",
    "region_reason",
    "area",
    "region_source",
    "prompt",
    "model",
    "saliency",
    "class_name",
)


@dataclass
class Plane:
    """One 2-D plane of an image layer, as the core takes it.

    Attributes
    ----------
    array : numpy.ndarray
        ``(H, W)`` or ``(H, W, 3|4)`` (a copy, safe to hand to a worker thread).
    index : tuple of int
        Indices along the leading (non-displayed) axes; ``()`` for a 2-D image.
    window : (float, float) or None
        The display window stored with the image (DICOM VOI window), passed to the models.
    """

    array: np.ndarray
    index: tuple[int, ...]
    window: tuple[float, float] | None


def spatial_ndim(layer) -> int:
    """Number of non-channel axes of an image layer's data."""
    return layer.data.ndim - (1 if getattr(layer, "rgb", False) else 0)


def leading_shape(layer) -> tuple[int, ...]:
    """Shape of the axes in front of the 2-D plane (``()`` for a 2-D image)."""
    return tuple(layer.data.shape[: spatial_ndim(layer) - 2])


def plane_shape(layer) -> tuple[int, int]:
    """``(H, W)`` of one plane of an image layer."""
    nd = spatial_ndim(layer)
    return tuple(int(s) for s in layer.data.shape[nd - 2 : nd])


def layer_window(layer) -> tuple[float, float] | None:
    """The intensity window recorded with the image (``metadata["window"]``), if any."""
    window = (layer.metadata or {}).get("window")
    if window is None:
        return None
    return float(window[0]), float(window[1])


def current_index(layer, dims_point: Sequence[float] | None) -> tuple[int, ...]:
    """Indices of the plane of ``layer`` displayed at the viewer's ``dims.point``."""
    lead = leading_shape(layer)
    if not lead:
        return ()
    if dims_point is None:
        return tuple(0 for _ in lead)
    data = np.asarray(layer.world_to_data(np.asarray(dims_point, dtype=float)), dtype=float)
    out = []
    for value, size in zip(data[: len(lead)], lead, strict=True):
        out.append(int(np.clip(np.floor(value + 0.5), 0, size - 1)))
    return tuple(out)


#: A 2-D map with a side longer than this is given to napari as a multiscale layer.
PYRAMID_MIN_SIDE = 4096
#: The coarsest level of such a layer has no side longer than this.
PYRAMID_TOP_SIDE = 2048


def display_levels(plane: np.ndarray) -> np.ndarray | list[np.ndarray]:
    """What napari is given to show a 2-D float map: the map itself, or, for a map with a side
    longer than :data:`PYRAMID_MIN_SIDE`, the map and strided views of it (each level half the
    size of the one before, none copied) for a multiscale layer.

    napari uploads a whole plane to the graphics card when a plain layer is shown (0.25 s of
    the GUI thread for an 8000² float map with software OpenGL); of a multiscale layer only
    the part of the level the canvas needs (0.05 s). Saliency maps are smooth, so the strided
    levels show them as they are.
    """
    if plane.ndim != 2 or max(plane.shape) <= PYRAMID_MIN_SIDE:
        return plane
    levels, step = [plane], 2
    while max(plane.shape) / (step // 2) > PYRAMID_TOP_SIDE:
        levels.append(plane[::step, ::step])
        step *= 2
    return levels


def full_resolution(layer) -> np.ndarray:
    """A layer's data at full resolution: level 0 of a multiscale layer, else its data."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def image_plane(layer, index: tuple[int, ...] = ()) -> Plane:
    """The 2-D plane ``index`` of an image layer (see :func:`current_index`)."""
    if layer is None:
        raise InputError("no image layer: open an image (File > Open, or a sample) first.")
    data = full_resolution(layer)
    lead = leading_shape(layer)
    if len(index) != len(lead):
        raise InputError(
            f"layer {layer.name!r}: plane index {index} does not fit its leading axes {lead}."
        )
    array = np.asarray(data[tuple(index)]) if index else np.asarray(data)
    return Plane(array, tuple(int(i) for i in index), layer_window(layer))


def labels_dtype(largest_label: int) -> np.dtype:
    """The dtype of a regions layer whose labels go up to ``largest_label``: uint16 while they
    fit, else int32. napari shows uint8 and uint16 labels as they are, but maps wider integers
    to display colours on every refresh of the plane (1.6 s for an 8000² int32 plane)."""
    return np.dtype(np.uint16 if largest_label <= np.iinfo(np.uint16).max else np.int32)


def all_indices(layer) -> list[tuple[int, ...]]:
    """Every plane index of an image layer, in order."""
    return [tuple(int(i) for i in idx) for idx in np.ndindex(*leading_shape(layer))]


# --------------------------------------------------------------------------------------------
# coordinates


def _to_image_data(
    layer, coords: np.ndarray, image_layer, dims_point: Sequence[float] | None
) -> np.ndarray:
    """Map ``(N, layer.ndim)`` data coordinates of ``layer`` to ``image_layer``'s data coords."""
    coords = np.atleast_2d(np.asarray(coords, dtype=float))
    if layer is image_layer or (
        layer.ndim == image_layer.ndim
        and np.allclose(layer.scale, image_layer.scale)
        and np.allclose(layer.translate, image_layer.translate)
        and np.allclose(layer.affine.affine_matrix, image_layer.affine.affine_matrix)
        and np.allclose(layer.rotate, image_layer.rotate)
        and np.allclose(layer.shear, image_layer.shear)
    ):
        return coords.copy()
    base = None if dims_point is None else np.asarray(dims_point, dtype=float)
    out = []
    for row in coords:
        world = np.asarray(layer.data_to_world(row), dtype=float)
        if base is not None and len(base) > len(world):
            full = base.copy()
            full[-len(world) :] = world
            world = full
        out.append(np.asarray(image_layer.world_to_data(world), dtype=float))
    return np.asarray(out).reshape(len(coords), image_layer.ndim)


def _on_plane(coords: np.ndarray, index: tuple[int, ...]) -> np.ndarray:
    """Which rows of image-data coordinates lie on plane ``index``."""
    if not index:
        return np.ones(len(coords), dtype=bool)
    lead = np.floor(coords[:, : len(index)] + 0.5)
    return np.all(lead == np.asarray(index, dtype=float), axis=1)


def rectangle_to_box(vertices: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """The end-exclusive pixel box ``(r0, c0, r1, c1)`` a rectangle encloses, clipped to ``shape``.

    ``vertices`` are ``(4, 2)`` (or ``(n, 2)``) row/col coordinates in image data space.
    """
    vertices = np.asarray(vertices, dtype=float)[:, -2:]
    low = np.floor(vertices.min(0) + 0.5)
    high = np.floor(vertices.max(0) + 0.5)
    r0, c0 = (int(np.clip(v, 0, s)) for v, s in zip(low, shape, strict=True))
    r1, c1 = (int(np.clip(v, 0, s)) for v, s in zip(high, shape, strict=True))
    return r0, c0, r1, c1


def box_to_rectangle(box: Sequence[float], index: tuple[int, ...] = ()) -> np.ndarray:
    """The ``(4, len(index) + 2)`` rectangle vertices napari draws for a pixel box."""
    r0, c0, r1, c1 = (float(v) - 0.5 for v in box)
    corners = np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]])
    if index:
        lead = np.broadcast_to(np.asarray(index, dtype=float), (4, len(index)))
        corners = np.concatenate([lead, corners], axis=1)
    return corners


def shapes_to_boxes(
    shapes_layer,
    image_layer,
    index: tuple[int, ...] = (),
    dims_point: Sequence[float] | None = None,
) -> tuple[np.ndarray, list[int]]:
    """Boxes from the rectangles of a Shapes layer that lie on plane ``index`` of the image.

    Returns
    -------
    boxes : numpy.ndarray
        ``(M, 4)`` int ``(row0, col0, row1, col1)``, end exclusive, inside the image.
    shape_indices : list of int
        Which shape of the layer each box came from.
    """
    shape = plane_shape(image_layer)
    boxes, used = [], []
    kinds = list(shapes_layer.shape_type)
    for i, (vertices, kind) in enumerate(zip(shapes_layer.data, kinds, strict=True)):
        if kind != "rectangle":
            continue
        coords = _to_image_data(shapes_layer, vertices, image_layer, dims_point)
        on_other_plane = index and shapes_layer.ndim >= image_layer.ndim
        if on_other_plane and not _on_plane(coords, index).all():
            continue
        box = rectangle_to_box(coords, shape)
        if box[2] > box[0] and box[3] > box[1]:
            boxes.append(box)
            used.append(i)
    return np.asarray(boxes, dtype=np.int64).reshape(-1, 4), used


def points_to_prompts(
    points_layer,
    image_layer,
    index: tuple[int, ...] = (),
    dims_point: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Point prompts ``(N, 2)`` (row, col) and labels (1 positive, 0 negative) on plane ``index``.

    The polarity comes from the Points layer's ``positive`` feature (all positive without it).
    Points outside the image are dropped.
    """
    data = np.asarray(points_layer.data, dtype=float)
    if len(data) == 0:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    coords = _to_image_data(points_layer, data, image_layer, dims_point)
    keep = np.ones(len(coords), dtype=bool)
    if index and points_layer.ndim >= image_layer.ndim:
        keep &= _on_plane(coords, index)
    features = points_layer.features
    if "positive" in features:
        labels = np.asarray(features["positive"], dtype=bool).astype(np.int64)
    else:
        labels = np.ones(len(coords), dtype=np.int64)
    rc = coords[:, -2:]
    height, width = plane_shape(image_layer)
    keep &= (rc[:, 0] > -0.5) & (rc[:, 0] < height - 0.5) & (rc[:, 1] > -0.5)
    keep &= rc[:, 1] < width - 0.5
    rc = np.clip(rc, 0, [height - 1, width - 1])
    return rc[keep], labels[keep]


# --------------------------------------------------------------------------------------------
# layer factories and updates


def samcam_meta(layer) -> dict:
    """The plugin's bookkeeping dict of a layer (empty if it is not one of ours)."""
    meta = (layer.metadata or {}).get(META_KEY)
    return meta if isinstance(meta, dict) else {}


def geometry_kwargs(image_layer) -> dict:
    """Keyword arguments that give a new layer the same placement as the image layer."""
    nd = spatial_ndim(image_layer)
    return {
        "scale": tuple(float(s) for s in image_layer.scale[:nd]),
        "translate": tuple(float(t) for t in image_layer.translate[:nd]),
    }


def source_metadata(image_layer) -> dict:
    """Metadata that layers derived from an image inherit: the NIfTI source geometry (affine and
    reorientation), so that their masks and maps are written back aligned with the source."""
    nifti = (image_layer.metadata or {}).get("nifti")
    return {"nifti": nifti} if nifti is not None else {}


def saliency_name(saliency, image_name: str) -> str:
    """Layer name of a saliency map: its image, classifier, method and class.

    The image is part of the name so that the maps of two images explained with the same
    settings are two layers, and a table's ``saliency`` column names exactly one of them.
    """
    return f"{image_name} {saliency.classifier} {saliency.method} [{saliency.class_name}]"


#: How the regions layers of each prompt kind are named: ``"<image> box regions"``.
REGION_LAYER_WORDS = {"boxes": "box", "points": "point", "text": "text", "saliency": "saliency"}


def regions_name(image_layer, kind: str = "boxes", stack: int = 1) -> str:
    """Name of a Labels layer that holds the regions of one prompt kind of an image.

    ``stack`` > 1 names the further layers that take regions overlapping earlier ones.
    """
    name = f"{image_layer.name} {REGION_LAYER_WORDS.get(kind, kind)} regions"
    return name if stack == 1 else f"{name} {stack}"


def json_text(value: Any) -> str:
    """Compact JSON of a prompt or provenance (numpy values converted)."""
    return json.dumps(value, default=_json_default, separators=(", ", ": "))


def _json_default(value: Any):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return str(value)


def metrics_summary(row: dict) -> str:
    """A short text of the main metrics of a region, for the label on its box.

    ``"IoU 0.42, hit 1, energy 0.61"``: the values as in the table (``hit`` is 1 when the
    saliency peak lies in the region, 0 when not); the SAM score when there are no metrics.
    """
    parts = []
    if _finite(row.get("iou")):
        parts.append(f"IoU {row['iou']:.2f}")
    if _finite(row.get("hit")):
        parts.append(f"hit {float(row['hit']):.0f}")
    if _finite(row.get("energy")):
        parts.append(f"energy {row['energy']:.2f}")
    if not parts and _finite(row.get("score")):
        parts.append(f"score {row['score']:.2f}")
    return ", ".join(parts)


def _finite(value) -> bool:
    try:
        return value is not None and bool(np.isfinite(float(value)))
    except (TypeError, ValueError):
        return False


def index_text(index: tuple[int, ...]) -> str:
    """How a plane index is written in tables and messages (``""`` for a 2-D image)."""
    if not index:
        return ""
    return str(index[0]) if len(index) == 1 else ",".join(str(i) for i in index)


def find_layer(layers, name: str):
    """The layer called ``name``, or ``None`` (napari's LayerList has no ``get``)."""
    for layer in layers:
        if layer.name == name:
            return layer
    return None
