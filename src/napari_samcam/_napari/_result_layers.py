"""Writing results into layers: the saliency Image layer, the regions Labels layer and its
``features`` table, and the metrics written on boxes. napari only, no Qt.

Each function takes the viewer and what a job computed, and creates or updates the layers on
the calling (GUI) thread.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._choices import PROMPT_KINDS
from ._labels_prep import LabelsPrep, LabelsScan, LabelsToScan, clear_label
from ._later import Later, add_hidden, run_now
from ._layers import (
    META_KEY,
    box_to_rectangle,
    display_levels,
    find_layer,
    full_resolution,
    geometry_kwargs,
    index_text,
    json_text,
    labels_dtype,
    leading_shape,
    metrics_summary,
    plane_shape,
    regions_name,
    saliency_name,
    samcam_meta,
    source_metadata,
)


def text_style(ndim: int, *, below: bool = False, bright: bool = False) -> dict:
    """How metrics are written on boxes: above the box's upper-left corner, or (``below``)
    under its lower-left corner, so that the labels of a prompt box and of a saliency box
    around the same finding do not overlap. Yellow / orange on a dark image, dark blue / dark
    red where the image under the labels is ``bright`` (napari's text has no outline or
    background box to make one colour readable on both)."""
    colours = ("darkred", "navy") if bright else ("orange", "yellow")
    return {
        "string": "{metrics}",
        "anchor": "lower_left" if below else "upper_left",
        "size": 10,
        "color": colours[0] if below else colours[1],
        "translation": (0.0,) * (ndim - 2) + ((4.0 if below else -4.0), 0.0),
    }


#: Rows (image pixels) of the band the labels of a box are written in.
LABEL_BAND = 16


def label_placement(image, rectangles, *, below: bool) -> dict:
    """The :func:`text_style` keywords that keep the labels of ``rectangles`` (Shapes vertices
    on ``image``'s grid) inside the image and readable on it: a label that would leave the
    image (a box at its top edge, or bottom edge for ``below``) goes to the box's other side;
    ``bright`` when the image under the labels is bright as displayed (its mean above half of
    the contrast range)."""
    rows = plane_shape(image)[0]
    boxes = [np.asarray(r) for r in rectangles if len(r)]
    if not boxes:
        return {"below": below, "bright": False}
    tops = [float(b[:, -2].min()) for b in boxes]
    bottoms = [float(b[:, -2].max()) for b in boxes]
    if below and any(bottom > rows - LABEL_BAND for bottom in bottoms):
        below = False
    elif not below and any(top < LABEL_BAND for top in tops):
        below = True
    return {"below": below, "bright": _bright_under_labels(image, boxes, below)}


def _bright_under_labels(image, boxes, below: bool) -> bool:
    if getattr(image, "rgb", False):
        return False
    low, high = (float(v) for v in image.contrast_limits)
    if not high > low:
        return False
    rows, cols = plane_shape(image)
    values = []
    for box in boxes:
        lead = tuple(int(round(v)) for v in box[0, :-2])
        plane = np.asarray(image.data[lead] if lead else image.data)
        top, bottom = int(box[:, -2].min()), int(box[:, -2].max())
        left, right = int(max(0, box[:, -1].min())), int(min(cols, box[:, -1].max() + 1))
        band = (bottom, bottom + LABEL_BAND) if below else (top - LABEL_BAND, top)
        band = (max(0, band[0]), min(rows, band[1]))
        if band[1] > band[0] and right > left:
            values.append(plane[band[0] : band[1], left:right].astype(np.float32).mean())
    if not values:
        return False
    return (float(np.mean(values)) - low) / (high - low) > 0.5


#: Saliency values (of the 0-1 map) drawn fully transparent.
SALIENCY_CLEAR_BELOW = 0.2


def saliency_colormap():
    """inferno, transparent where the map is low: the image stays readable under the overlay.

    Fully transparent up to 0.2 of the map's range, opaque from 0.7 on; drawn with
    ``translucent`` blending, so a bright radiograph is not washed out as with ``additive``.
    """
    from napari.utils.colormaps import Colormap, ensure_colormap

    values = np.linspace(0.0, 1.0, 21)
    colors = np.asarray(ensure_colormap("inferno").map(values), dtype=np.float32)
    colors[:, 3] = np.clip((values - SALIENCY_CLEAR_BELOW) / 0.5, 0.0, 1.0)
    return Colormap(colors=colors, controls=values, name="samcam saliency")


def write_saliency(
    viewer, image, results: list[tuple[tuple[int, ...], Any]], later: Later = run_now
):
    """Put saliency maps into their Image layer (created or updated) with their provenance.

    ``results`` are ``(plane index, Saliency)`` pairs of ``image``; the layer is named after the
    image and the last one's classifier, method and class (:func:`saliency_name`), so that each
    image keeps its own maps. A new layer is added by the steps of ``later`` (see
    :func:`add_hidden`). Returns the layer.
    """
    layers = viewer.layers
    last = results[-1][1]
    name = saliency_name(last, image.name)
    lead = leading_shape(image)
    shape = (*lead, *plane_shape(image))
    layer = _own_saliency_layer(layers, name, image)
    fresh = layer is None or tuple(layer.data.shape) != shape
    whole = np.asarray(last.map, dtype=np.float32)
    slices: dict[str, Any] = {}
    if not lead and whole.shape == shape:
        # the map itself, not a copy: a copy of a large map froze the GUI thread (0.4 s at
        # 8000²); a new array for the layer, never written into an earlier result's map
        data = whole
    elif fresh:
        data = np.zeros(shape, dtype=np.float32)
    else:
        data = np.asarray(full_resolution(layer))
        slices = dict(samcam_meta(layer).get("slices", {}))
    if data is not whole:
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
        },
        **source_metadata(image),
    }
    shown = display_levels(data)
    multiscale = isinstance(shown, list)
    if fresh or bool(layer.multiscale) != multiscale:
        if layer is not None:
            layers.remove(layer)
        layer = add_hidden(
            viewer,
            later,
            shown,
            "image",
            multiscale=multiscale,
            name=name,
            colormap=saliency_colormap(),
            blending="translucent",
            opacity=0.7,
            contrast_limits=(0.0, 1.0),
            metadata=metadata,
            **geometry_kwargs(image),
        )
    else:
        layer.metadata = {**layer.metadata, **metadata}
        if data is whole:
            layer.data = shown
        else:
            layer.refresh()
    return layer


def _own_saliency_layer(layers, name: str, image):
    """The saliency layer ``name`` made for ``image``; never a layer of another image."""
    for layer in layers:
        meta = samcam_meta(layer)
        if (
            layer.name == name
            and meta.get("kind") == "saliency"
            and meta.get("image_layer") == image.name
        ):
            return layer
    return None


def region_layers(layers, image, kind: str | None = None) -> list:
    """The regions Labels layers of ``image`` (of one prompt ``kind``, or all), in stack order.

    Each prompt kind has its own layers: ``"<image> box regions"`` holds the regions of box
    prompts, and a region that would overlap one already on its plane goes into the next layer
    of the stack (``"<image> box regions 2"``, ...), so that every region keeps all its pixels.
    """
    found = []
    for layer in layers:
        meta = samcam_meta(layer)
        if meta.get("kind") != "regions" or meta.get("image_layer") != image.name:
            continue
        layer_kind = meta.get("prompt", "")
        if kind is None or layer_kind == kind:
            order = PROMPT_KINDS.index(layer_kind) if layer_kind in PROMPT_KINDS else 99
            found.append((order, int(meta.get("stack", 1)), layer))
    return [layer for *_, layer in sorted(found, key=lambda item: item[:2])]


def write_regions(
    viewer,
    image,
    results: list[tuple],
    settings: dict,
    shapes_layer,
    later: Later = run_now,
    prep: LabelsPrep | None = None,
):
    """Put SAM regions into the image's regions Labels layers and their ``features`` tables.

    ``results`` are ``(PlaneRequest, boxes, regions, metric rows, region displays)`` of a
    segmentation job; ``prep``, what its worker prepared (see :mod:`._labels_prep`). The
    regions of one prompt kind go into that kind's layers (see :func:`region_layers`); no
    region covers another, so each layer's table and pixels agree. Labels are unique over all
    regions layers of the image. A new run on a plane replaces the regions of the same kind on
    that plane. The metrics are also written on the prompt rectangles of ``shapes_layer`` and,
    for saliency prompts, on the boxes derived from the saliency. New layers are added by the
    steps of ``later`` (see :func:`add_hidden`). Returns the layers that received a
    region (the kind's first layer when none did) and the number of new rows.
    """
    kind = settings["kind"]
    layers = viewer.layers
    lead = leading_shape(image)
    shape = (*lead, *plane_shape(image))
    stack = region_layers(layers, image, kind)
    for layer in [lyr for lyr in stack if tuple(lyr.data.shape) != shape]:
        layers.remove(layer)
        stack.remove(layer)
    prep = prep if prep is not None else LabelsPrep()
    replaced = {index_text(request.plane.index) for request, *_ in results}
    datas = [np.asarray(layer.data) for layer in stack]
    scans = [prep.scan_of(data) for data in datas]
    tables = [
        _without_planes(lyr, data, replaced, scan)
        for lyr, data, scan in zip(stack, datas, scans, strict=True)
    ]
    others = [lyr for lyr in region_layers(layers, image) if all(lyr is not s for s in stack)]
    largest = [
        _largest_label_of(data, _regions_table(lyr), prep.scan_of(data))
        for lyr, data in ((lyr, np.asarray(lyr.data)) for lyr in others)
    ]
    largest += [_largest_label_of(*args) for args in zip(datas, tables, scans, strict=True)]
    next_label = 1 + max(largest, default=0)
    dtype = labels_dtype(next_label - 1 + sum(len(result[2]) for result in results))
    datas = [data if data.dtype == dtype else data.astype(dtype) for data in datas]
    if not datas:  # the kind's first layer exists even when a run finds nothing
        spare = prep.buffer
        fits = spare is not None and spare.shape == shape and spare.dtype == dtype
        datas.append(spare if fits else np.zeros(shape, dtype=dtype))
        tables.append(None)
    rows: list[list[dict]] = [[] for _ in datas]
    summaries, saliency_boxes_layer = {}, []
    received: set[int] = set()
    for request, boxes, regions, metric_rows, displays in results:
        index = request.plane.index
        for k, (region, metrics, shown) in enumerate(
            zip(regions, metric_rows, displays, strict=True)
        ):
            where = (*index, *shown.where)
            place = _free_layer(datas, where, shown.mask)
            if place == len(datas):
                datas.append(np.zeros(shape, dtype=dtype))
                tables.append(None)
                rows.append([])
            datas[place][where][shown.mask] = next_label
            received.add(place)
            row = {
                "index": next_label,
                "label": next_label,
                "slice": index_text(index),
                "region_source": region.source,
                "prompt": json_text(region.prompt),
                "score": float(region.score),
                **shown.trust,
                "area": shown.area,
                "model": region.model,
                "saliency": settings["saliency_name"] or "",
                "class_name": settings["class_name"] or "",
                **{m: float(v) for m, v in metrics.items()},
            }
            rows[place].append(row)
            next_label += 1
            if request.shape_ids and k < len(request.shape_ids):
                summaries[request.shape_ids[k]] = metrics_summary(row)
            if kind == "saliency" and boxes is not None and k < len(boxes):
                saliency_boxes_layer.append((index, boxes[k], metrics_summary(row)))
    segmenter = _first(r.model for result in results for r in result[2])
    written = []
    for place, data in enumerate(datas):
        table = _table(tables[place], rows[place], bool(lead))
        layer = stack[place] if place < len(stack) else None
        if place > 0 and not len(table):  # an emptied overflow layer goes away
            if layer is not None:
                layers.remove(layer)
            continue
        metadata = {
            META_KEY: {
                "kind": "regions",
                "image_layer": image.name,
                "prompt": kind,
                "stack": place + 1,
                "segmenter": segmenter,
            },
            **source_metadata(image),
        }
        if layer is None:
            layer = add_hidden(
                viewer,
                later,
                data,
                "labels",
                name=regions_name(image, kind, place + 1),
                opacity=0.45,
                metadata=metadata,
                **geometry_kwargs(image),
            )
        else:
            # a turn of its own: napari slices the new data and uploads the plane (0.1-0.2 s
            # at 8000²)
            later(lambda layer=layer, data=data: setattr(layer, "data", data))
            layer.metadata = {**layer.metadata, **metadata}
        layer.features = table  # reassigning fires the features event (features table widget)
        written.append((place, layer))
    if shapes_layer is not None and summaries:
        label_shapes(shapes_layer, summaries, image)
    if saliency_boxes_layer:
        show_saliency_boxes(viewer, image, saliency_boxes_layer, replaced, later)
    chosen = [layer for place, layer in written if place in received] or [written[0][1]]
    later(lambda: setattr(layers.selection, "active", chosen[0]))  # once it is in the viewer
    return chosen, sum(len(r) for r in rows)


def _free_layer(datas: list[np.ndarray], where: tuple, mask: np.ndarray) -> int:
    """The first layer of the stack where ``mask`` (placed at ``where``) covers no region."""
    for place, data in enumerate(datas):
        if not data[where][mask].any():
            return place
    return len(datas)


def _without_planes(layer, data: np.ndarray, planes: set[str], scan: LabelsScan | None):
    """The layer's table without the rows of ``planes``, whose pixels are cleared in ``data``
    (inside the boxes that ``scan`` found, see :mod:`._labels_prep`)."""
    table = _regions_table(layer)
    if not len(table):
        return table
    drop = table["slice"].astype(str).isin(planes)
    for label in table.loc[drop, "label"]:
        clear_label(data, int(label), scan)
    return table.loc[~drop].reset_index(drop=True)


def labels_to_scan(layers, image, kind: str, indices) -> list[LabelsToScan]:
    """The regions arrays of ``image`` for a job's worker to scan (see :mod:`._labels_prep`),
    each with the labels of ``kind`` it holds on the planes ``indices`` (the labels a new
    run on those planes clears)."""
    planes = {index_text(tuple(index)): tuple(index) for index in indices}
    found = []
    for layer in region_layers(layers, image):
        labels = {}
        if samcam_meta(layer).get("prompt") == kind:
            table = _regions_table(layer)
            for label, where in zip(table.get("label", ()), table.get("slice", ()), strict=True):
                if str(where) in planes:
                    labels[int(label)] = planes[str(where)]
        found.append((np.asarray(layer.data), labels))
    return found


def _largest_label_of(data: np.ndarray, table, scan: LabelsScan | None) -> int:
    """The largest label of a regions layer: in its pixels (as ``scan`` found them, the
    labels to clear left out) or in its table."""
    in_table = int(table["label"].max()) if table is not None and len(table) else 0
    in_data = scan.largest if scan is not None else int(data.max(initial=0))
    return max(in_data, in_table)


def _table(old, rows: list[dict], volume: bool):
    import pandas as pd

    new = pd.DataFrame(rows)
    if old is None or not len(old):
        table = new
    elif rows:
        table = pd.concat([old, new], ignore_index=True)
    else:
        table = old
    return _order_columns(table, volume) if len(table.columns) else table


def show_saliency_boxes(
    viewer, image, boxes: list[tuple], replaced: set[str], later: Later = run_now
) -> None:
    """Show the boxes derived from the saliency, labelled with their metrics.

    Boxes of the slices segmented now replace earlier ones; other slices keep theirs. The new
    layer replaces the old one by the steps of ``later`` (see :func:`add_hidden`).
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
        later(lambda: layers.remove(old) if old in layers else None)
    add_hidden(
        viewer,
        later,
        shapes,
        "shapes",
        shape_type="rectangle",
        name=name,
        edge_color="orange",
        face_color="transparent",
        edge_width=2,
        features={"metrics": texts},
        text=text_style(
            len(shapes[0][0]) if shapes else 2, **label_placement(image, shapes, below=True)
        ),
        metadata={META_KEY: {"kind": "saliency-boxes", "image_layer": image.name}},
        **geometry_kwargs(image),
    )


def label_shapes(shapes_layer, summaries: dict[int, str], image=None) -> None:
    """Write metrics summaries into a Shapes layer's ``metrics`` feature and show them
    (inside ``image`` and readable on it, see :func:`label_placement`)."""
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
    placement = {} if image is None else label_placement(image, shapes_layer.data, below=False)
    shapes_layer.text = text_style(shapes_layer.ndim, **placement)


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
    """Where and what first, then the metrics, then the region's details and provenance.

    napari's features table shows the columns in this order: the metric columns come right
    after the label (and slice) so they are readable without scrolling; ``index`` (which napari
    needs to map label values to rows) goes last.
    """
    from ._layers import REGION_COLUMNS, REGION_DETAILS

    try:
        from ..metrics import METRIC_NAMES
    except ImportError:
        METRIC_NAMES = ()
    first = [c for c in REGION_COLUMNS if c in table and (volume or c != "slice")]
    metrics = [c for c in METRIC_NAMES if c in table]
    details = [c for c in REGION_DETAILS if c in table]
    placed = {*first, *metrics, *details, "index", "slice"}
    rest = [c for c in table.columns if c not in placed]
    last = ["index"] if "index" in table else []
    return table[first + metrics + details + rest + last].reset_index(drop=True)


def _first(values) -> str:
    for value in values:
        return value
    return ""


def unreliable_regions_note(results: list[tuple]) -> str:
    """A warning naming the new SAM regions that look unreliable and why ('' when none do).

    ``results`` are the ``(PlaneRequest, boxes, regions, metric rows, region displays)`` of a
    segmentation job; the flags are those of the region table's ``region_unreliable`` column.
    """
    trusts = [shown.trust for result in results for shown in result[4]]
    reasons = [t["region_reason"] for t in trusts if t["region_unreliable"]]
    if not reasons:
        return ""
    given = [reason for reason in reasons if reason]
    why = f" (the first: {given[0]})" if given else ""
    return (
        f"{len(reasons)} of {len(trusts)} SAM region(s) look unreliable{why}: their scores are "
        "flagged in the region table (region_unreliable). Check the mask, or draw a tighter box."
    )
