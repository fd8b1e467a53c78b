"""Prompt layers: a Shapes layer for box prompts and a Points layer for point prompts with a
polarity (positive/negative) per point. napari only, no Qt."""

from __future__ import annotations

import numpy as np

from ._later import Later, add_hidden, run_now
from ._layers import META_KEY, POINT_COLORS, geometry_kwargs, leading_shape, plane_shape

#: Key that toggles the polarity of the selected prompt points.
POLARITY_KEY = "t"


def add_prompt_layers(viewer, image, later: Later = run_now):
    """Add a Shapes layer for box prompts and a Points layer for point prompts over ``image``.

    Both sit on the image's grid; existing ones (by name) are kept. Points carry a ``positive``
    feature (green positive, red negative); press T in the Points layer to toggle the selected
    points. The Shapes layer is selected, in rectangle mode. New layers are inserted and shown
    by the steps of ``later`` (see :func:`._later.add_hidden`). Returns both layers.
    """
    shapes = add_box_prompt_layer(viewer, image, later)
    points = add_point_prompt_layer(viewer, image, later)
    later(lambda: select_box_prompts(viewer, shapes))
    return shapes, points


def prompt_layer_names(image) -> tuple[str, str]:
    """The names of the box and point prompt layers of ``image``: apart from a sample's or a
    dataset's own annotation layers ("<image> box(es)")."""
    return f"{image.name} box prompts", f"{image.name} point prompts"


def add_box_prompt_layer(viewer, image, later: Later = run_now):
    """The Shapes layer for box prompts over ``image`` (added by the steps of ``later`` unless
    it is there)."""
    name = prompt_layer_names(image)[0]
    if name in viewer.layers:
        return viewer.layers[name]
    return add_hidden(
        viewer,
        later,
        None,
        "shapes",
        ndim=len(leading_shape(image)) + 2,
        name=name,
        edge_color="cyan",
        face_color="transparent",
        edge_width=2,
        metadata={META_KEY: {"kind": "box-prompts", "image_layer": image.name}},
        **geometry_kwargs(image),
    )


def add_point_prompt_layer(viewer, image, later: Later = run_now):
    """The Points layer for point prompts over ``image`` (added by the steps of ``later``
    unless it is there)."""
    name = prompt_layer_names(image)[1]
    if name in viewer.layers:
        return viewer.layers[name]
    ndim = len(leading_shape(image)) + 2
    points = add_hidden(
        viewer,
        later,
        np.zeros((0, ndim)),
        "points",
        ndim=ndim,
        name=name,
        features={"positive": np.zeros(0, dtype=bool)},
        face_color="positive",
        face_color_cycle=POINT_COLORS,
        size=max(6.0, min(plane_shape(image)) / 60.0),
        metadata={META_KEY: {"kind": "point-prompts", "image_layer": image.name}},
        **geometry_kwargs(image),
    )
    points.feature_defaults = {"positive": True}
    bind_polarity_key(points)
    return points


def select_box_prompts(viewer, shapes):
    """Select the box prompt layer ``shapes``, in rectangle mode; returns it."""
    shapes.mode = "add_rectangle"
    viewer.layers.selection.active = shapes
    return shapes


def toggle_polarity(points_layer) -> None:
    """Flip the ``positive`` feature of the selected points (or of new points if none)."""
    features = points_layer.features.copy()
    if "positive" not in features:
        features["positive"] = np.ones(len(features), dtype=bool)
    selected = sorted(points_layer.selected_data)
    if selected:
        column = features["positive"].to_numpy(dtype=bool).copy()
        column[selected] = ~column[selected]
        features["positive"] = column
        points_layer.features = features
        points_layer.refresh_colors()
    else:
        defaults = points_layer.feature_defaults
        now = bool(defaults["positive"].iloc[0]) if "positive" in defaults else True
        points_layer.feature_defaults = {**defaults.iloc[0].to_dict(), "positive": not now}


def bind_polarity_key(points_layer) -> None:
    """Bind :data:`POLARITY_KEY` in a Points layer to :func:`toggle_polarity`."""
    points_layer.bind_key(POLARITY_KEY, toggle_polarity, overwrite=True)
    if "positive" not in points_layer.features:
        points_layer.features = {"positive": np.ones(len(points_layer.data), dtype=bool)}
        points_layer.feature_defaults = {"positive": True}
