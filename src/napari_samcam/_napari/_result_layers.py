"""Writing results into layers: the saliency Image layer, the regions Labels layer and its
``features`` table, and the metrics written on boxes. napari only, no Qt.

Each function takes the viewer and what a job computed, and creates or updates the layers on
the calling (GUI) thread.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._choices import REGION_SOURCES
from ._layers import (
    META_KEY,
    box_to_rectangle,
    find_layer,
    geometry_kwargs,
    index_text,
    json_text,
    leading_shape,
    metrics_summary,
    plane_shape,
    regions_name,
    saliency_name,
    samcam_meta,
)


def text_style(ndim: int) -> dict:
    """How metrics are written on boxes: yellow text above the box's upper-left corner."""
    return {
        "string": "{metrics}",
        "anchor": "upper_left",
        "size": 10,
        "color": "yellow",
        "translation": (0.0,) * (ndim - 2) + (-4.0, 0.0),
    }


def write_saliency(viewer, image, results: list[tuple[tuple[int, ...], Any]]):
    """Put saliency maps into their Image layer (created or updated) with their provenance.

    ``results`` are ``(plane index, Saliency)`` pairs of ``image``; the layer is named after the
    last one's classifier, method and class. Returns the layer.
    """
    layers = viewer.layers
    last = results[-1][1]
    name = saliency_name(last)
    lead = leading_shape(image)
    shape = (*lead, *plane_shape(image))
    layer = find_layer(layers, name)
    meta = samcam_meta(layer) if layer is not None else {}
    fresh = (
        layer is None
        or meta.get("kind") != "saliency"
        or meta.get("image_layer") != image.name
        or tuple(layer.data.shape) != shape
    )
    if fresh:
        data = np.zeros(shape, dtype=np.float32)
        slices: dict[str, Any] = {}
    else:
        data = np.asarray(layer.data)
        slices = dict(meta.get("slices", {}))
    for index, saliency in results:
        data[index] = saliency.map
        if index:
            slices[index_text(index)] = saliency.provenance()
    metadata = {
        META_KEY: {
            "kind": "saliency",
            "image_layer": image.name,
            "provenance": last.provenance(),
            **({"slices": slices} if lead else {}),
        }
    }
    if fresh:
        if layer is not None:
            layers.remove(layer)
        layer = viewer.add_image(
            data,
            name=name,
            colormap="inferno",
            blending="additive",
            opacity=0.5,
            contrast_limits=(0.0, 1.0),
            metadata=metadata,
            **geometry_kwargs(image),
        )
    else:
        layer.metadata = {**layer.metadata, **metadata}
        layer.refresh()
    return layer


def write_regions(viewer, image, results: list[tuple], settings: dict, shapes_layer):
    """Put SAM regions into the image's regions Labels layer and its ``features`` table.

    ``results`` are ``(PlaneRequest, boxes, regions, metric rows)`` of a segmentation job. A new
    run on a plane replaces the regions of the same source on that plane. The metrics are also
    written on the prompt rectangles of ``shapes_layer`` and, for saliency prompts, on the boxes
    derived from the saliency. Returns the layer and the number of new rows.
    """
    import pandas as pd

    layers = viewer.layers
    lead = leading_shape(image)
    shape = (*lead, *plane_shape(image))
    name = regions_name(image)
    layer = find_layer(layers, name)
    if layer is not None and tuple(layer.data.shape) != shape:
        layers.remove(layer)
        layer = None
    data = np.zeros(shape, dtype=np.int32) if layer is None else np.asarray(layer.data)
    old = _regions_table(layer)
    source = REGION_SOURCES[settings["kind"]]
    replaced = set()
    for request, *_ in results:
        replaced.add(index_text(request.plane.index))
    if len(old):
        drop = (old["region_source"] == source) & old["slice"].astype(str).isin(replaced)
        for label in old.loc[drop, "label"]:
            data[data == int(label)] = 0
        old = old.loc[~drop].reset_index(drop=True)
    next_label = int(max(data.max(initial=0), old["label"].max() if len(old) else 0)) + 1
    rows, summaries = [], {}
    saliency_boxes_layer = []
    for request, boxes, regions, metric_rows in results:
        index = request.plane.index
        plane = data[index] if index else data
        order = np.argsort([-r.area for r in regions])  # small regions painted last, on top
        labels_for = {}
        for k in order:
            plane[regions[k].mask] = next_label + k
            labels_for[k] = next_label + k
        for k, (region, metrics) in enumerate(zip(regions, metric_rows, strict=True)):
            row = {
                "index": labels_for[k],
                "label": labels_for[k],
                "slice": index_text(index),
                "region_source": region.source,
                "prompt": json_text(region.prompt),
                "score": float(region.score),
                "area": int(region.area),
                "model": region.model,
                "saliency": settings["saliency_name"] or "",
                "class_name": settings["class_name"] or "",
                **{m: float(v) for m, v in metrics.items()},
            }
            rows.append(row)
            if request.shape_ids and k < len(request.shape_ids):
                summaries[request.shape_ids[k]] = metrics_summary(row)
            if settings["kind"] == "saliency" and boxes is not None and k < len(boxes):
                saliency_boxes_layer.append((index, boxes[k], metrics_summary(row)))
        next_label += len(regions)
    table = pd.concat([old, pd.DataFrame(rows)], ignore_index=True) if rows else old
    table = _order_columns(table, bool(lead))
    metadata = {
        META_KEY: {
            "kind": "regions",
            "image_layer": image.name,
            "segmenter": _first(r.model for _, _, regs, _ in results for r in regs),
        }
    }
    if layer is None:
        layer = viewer.add_labels(
            data, name=name, opacity=0.45, metadata=metadata, **geometry_kwargs(image)
        )
    else:
        layer.data = data
        layer.metadata = {**layer.metadata, **metadata}
    layer.features = table  # reassigning fires the features event (features table widget)
    if shapes_layer is not None and summaries:
        label_shapes(shapes_layer, summaries)
    if saliency_boxes_layer:
        show_saliency_boxes(viewer, image, saliency_boxes_layer, replaced)
    layers.selection.active = layer
    return layer, len(rows)


def show_saliency_boxes(viewer, image, boxes: list[tuple], replaced: set[str]) -> None:
    """Show the boxes derived from the saliency, labelled with their metrics.

    Boxes of the slices segmented now replace earlier ones; other slices keep theirs.
    """
    layers = viewer.layers
    name = f"{image.name} saliency boxes"
    lead = bool(leading_shape(image))
    shapes = [box_to_rectangle(box, index if lead else ()) for index, box, _ in boxes]
    texts = [text for _, _, text in boxes]
    old = find_layer(layers, name)
    if old is not None:
        if lead and "metrics" in old.features:
            for vertices, text in zip(old.data, old.features["metrics"], strict=True):
                if index_text((int(round(vertices[0, 0])),)) not in replaced:
                    shapes.append(np.asarray(vertices))
                    texts.append(str(text))
        layers.remove(old)
    viewer.add_shapes(
        shapes,
        shape_type="rectangle",
        name=name,
        edge_color="orange",
        face_color="transparent",
        edge_width=2,
        features={"metrics": texts},
        text=text_style(len(shapes[0][0]) if shapes else 2),
        metadata={META_KEY: {"kind": "saliency-boxes", "image_layer": image.name}},
        **geometry_kwargs(image),
    )


def label_shapes(shapes_layer, summaries: dict[int, str]) -> None:
    """Write metrics summaries into a Shapes layer's ``metrics`` feature and show them."""
    features = shapes_layer.features.copy()
    n = len(shapes_layer.data)
    if len(features) != n:
        features = features.reindex(range(n))
    if "metrics" not in features:
        features["metrics"] = [""] * n
    column = features["metrics"].astype(object).where(features["metrics"].notna(), "")
    for i, text in summaries.items():
        if i < n:
            column.iloc[i] = text
    features["metrics"] = column.astype(str)
    shapes_layer.features = features
    defaults = shapes_layer.feature_defaults
    base = defaults.iloc[0].to_dict() if len(defaults) else {}
    shapes_layer.feature_defaults = {**base, "metrics": ""}
    shapes_layer.text = text_style(shapes_layer.ndim)


def _regions_table(layer):
    import pandas as pd

    if layer is None:
        return pd.DataFrame()
    features = layer.features
    if "label" not in features or "region_source" not in features:
        return pd.DataFrame()
    table = features.copy()
    if "slice" not in table:
        table["slice"] = ""
    return table


def _order_columns(table, volume: bool):
    """Identity and score first, then the metrics, then provenance details, then the rest."""
    from ._layers import REGION_COLUMNS, REGION_DETAILS

    try:
        from ..metrics import METRIC_NAMES
    except ImportError:
        METRIC_NAMES = ()
    first = [c for c in REGION_COLUMNS if c in table and (volume or c != "slice")]
    metrics = [c for c in METRIC_NAMES if c in table]
    details = [c for c in REGION_DETAILS if c in table]
    placed = set(first) | set(metrics) | set(details) | ({"slice"} if not volume else set())
    rest = [c for c in table.columns if c not in placed]
    return table[first + metrics + details + rest].reset_index(drop=True)


def _first(values) -> str:
    for value in values:
        return value
    return ""
