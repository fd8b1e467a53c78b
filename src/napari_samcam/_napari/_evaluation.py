"""An evaluate output folder as napari layers, one item at a time.

The item's image, its saliency map per classifier and CAM method (upsampled to the image), and
its regions per source as Labels whose ``features`` hold the item's scores: one row per saliency
map the region was scored against (annotation-based regions are shared by every map; the
``index`` column ties each row to label 1). Every layer's ``metadata["samcam_evaluation"]``
names the folder, the item, the image key and what the layer shows (``kind``: ``"image"``,
``"saliency"`` or ``"region"``, with the map's or the region's provenance).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._image_layers import LayerData, image_layer_data

#: The metadata key that marks a layer as part of an opened evaluation.
EVALUATION_KEY = "samcam_evaluation"


def looks_like_evaluation(path: Path) -> bool:
    """``config.json`` and ``parts/`` side by side (cheap: nothing is read)."""
    return (path / "config.json").is_file() and (path / "parts").is_dir()


def read_evaluation(folder: str | Path, item: int | None = None) -> list[LayerData]:
    """Layers of one item of an evaluation: by default the one with the lowest mean IoU."""
    from ..errors import InputError
    from ..evaluation.stored import open_evaluation

    stored = open_evaluation(folder)
    if item is None:
        items = stored.items()
        if not items:
            raise InputError(
                f"evaluation {str(folder)!r} kept no arrays to draw its items (it ran with "
                "keep_arrays=False); run it again into a new folder without --no-keep-arrays "
                "to open it in napari."
            )
        item = items[0]
    return item_layers(stored, item)


def _saliency_name(classifier: str, method: str) -> str:
    return f"saliency {classifier} {method}"


def _region_name(record: dict) -> str:
    if record["classifier"]:
        return f"region {record['region_source']} ({record['classifier']} {record['cam_method']})"
    return f"region {record['region_source']}"


def item_layers(stored, item: int) -> list[LayerData]:
    """Image, saliency and region layer data of ``item`` of a
    :class:`~napari_samcam.evaluation.stored.StoredEvaluation`."""
    view = stored.item_view(item)
    tag = {
        "folder": str(stored.folder),
        "item": int(item),
        "image": view.image_name,
        "image_key": view.image_key,
    }
    data, kwargs, kind = image_layer_data(
        view.image, view.metadata, f"#{item} {Path(view.image_name).name}"
    )
    window = None if view.window is None else [float(v) for v in view.window]
    kwargs["metadata"][EVALUATION_KEY] = dict(tag, kind="image", window=window)
    if view.window is not None and float(view.window[1]) > float(view.window[0]):
        kwargs["contrast_limits"] = (float(view.window[0]), float(view.window[1]))
    common = {"scale": kwargs["scale"]} if "scale" in kwargs else {}
    layers: list[LayerData] = [(data, kwargs, kind)]
    for provenance, saliency_map in view.saliencies:
        name = _saliency_name(provenance["classifier"], provenance["cam_method"])
        meta = {EVALUATION_KEY: dict(tag, kind="saliency", **provenance)}
        options = dict(common, name=name, colormap="inferno", blending="additive")
        options.update(opacity=0.5, contrast_limits=(0.0, 1.0), metadata=meta)
        layers.append((saliency_map, options, "image"))
    for record, mask, scores in view.regions:
        features = scores.copy()
        features.insert(0, "index", np.ones(len(features), dtype=np.int64))
        meta = {EVALUATION_KEY: dict(tag, kind="region", **record)}
        options = dict(common, name=_region_name(record), features=features, metadata=meta)
        options.update(opacity=0.5)
        layers.append((mask.astype(np.uint8), options, "labels"))
    return layers


#: ``kind`` of the prompt layers added over a shown item.
PROMPT_KINDS = ("prompt-boxes", "prompt-points")


def add_item_prompts(viewer, image_layer) -> tuple:
    """Box and click prompt layers over an item's image, tagged as part of the item (so they
    go when another item is shown). Returns ``(shapes, points)``."""
    for step in item_prompt_steps(viewer, image_layer):
        step()
    from ._prompt_layers import prompt_layer_names

    return tuple(viewer.layers[name] for name in prompt_layer_names(image_layer))


def item_prompt_steps(viewer, image_layer) -> list:
    """The steps of :func:`add_item_prompts`, one layer each (to run one per event-loop
    turn): add the box prompt layer, show it, add the point prompt layer, show it, select the
    first. A layer added hidden and shown a step later draws (and compiles its shaders) apart
    from being built."""
    from ._prompt_layers import (
        add_box_prompt_layer,
        add_point_prompt_layer,
        prompt_layer_names,
        select_box_prompts,
    )

    tag = image_layer.metadata[EVALUATION_KEY]

    names = dict(
        zip(
            (add_box_prompt_layer, add_point_prompt_layer),
            prompt_layer_names(image_layer),
            strict=True,
        )
    )

    def adding(add, kind):
        def step():
            new = names[add] not in viewer.layers
            layer = add(viewer, image_layer)
            layer.metadata[EVALUATION_KEY] = dict(tag, kind=kind)
            if new:
                layer.visible = False

        return step

    def showing(add):
        def step():
            add(viewer, image_layer).visible = True

        return step

    box_kind, point_kind = PROMPT_KINDS

    def select():
        select_box_prompts(viewer, add_box_prompt_layer(viewer, image_layer))

    return [
        adding(add_box_prompt_layer, box_kind),
        showing(add_box_prompt_layer),
        adding(add_point_prompt_layer, point_kind),
        showing(add_point_prompt_layer),
        select,
    ]


def clear_prompts(layer, item: int) -> None:
    """Empty a prompt layer of the shown item for ``item`` (kept, not re-added: fast)."""
    if len(layer.data):
        if layer._type_string == "shapes":
            layer.data = []
        else:
            layer.data = np.empty((0, layer.ndim))
    layer.metadata[EVALUATION_KEY] = dict(layer.metadata[EVALUATION_KEY], item=int(item))


def item_prompts(image_layer, shapes_layer, points_layer) -> dict:
    """Boxes and clicks drawn on an item: ``boxes``, ``points`` and ``point_labels``."""
    from ._layers import points_to_prompts, shapes_to_boxes

    boxes, _ = shapes_to_boxes(shapes_layer, image_layer)
    points, labels = points_to_prompts(points_layer, image_layer)
    return {"boxes": boxes, "points": points, "point_labels": labels}
