"""Show new layer data in layers that are already in the viewer, instead of new layers.

Removing a layer and adding another costs napari a new canvas node, shaders and thumbnails on
the GUI thread (tens to hundreds of milliseconds each); giving an existing layer new ``data``,
``features`` and metadata costs a texture upload. napari only, no Qt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

LayerData = tuple[Any, dict, str]

#: Keyword arguments of a layer data tuple that an existing layer takes as attributes.
_ASSIGNABLE = (
    "name",
    "scale",
    "translate",
    "contrast_limits",
    "colormap",
    "opacity",
    "blending",
    "features",
)


def assign_layer_data(layer, data: Any, kwargs: dict) -> None:
    """Give ``layer`` the data and settings of a layer data tuple ``(data, kwargs, kind)``."""
    scale = kwargs.get("scale")
    if scale is not None:
        layer.scale = scale
    layer.data = data
    layer.metadata = dict(kwargs.get("metadata", {}))
    layer.visible = bool(kwargs.get("visible", True))
    for name in _ASSIGNABLE:
        if name in kwargs and name != "scale":
            setattr(layer, name, kwargs[name])


def in_place_steps(
    viewer,
    old: Sequence,
    new: Sequence[LayerData],
    key: Callable[[Any, dict], Any],
    retire: Callable[[Any], None] | None = None,
) -> tuple[list[Callable[[], None]], list]:
    """The steps that show ``new`` layer data in the layers ``old``, one layer per step.

    A layer of ``old`` of the same type and ``key`` takes each data; ``key(layer_type,
    metadata)`` says which layers may take which data (for example the kind of result a layer
    shows). Layers of ``old`` that nothing reuses are given to ``retire`` (which may empty and
    hide them for later reuse: napari runs a full garbage collection for every removed layer, a
    second or more in a large process), or removed without it; data that no layer takes gets a
    new layer. Running the steps apart (one per turn of the event loop) keeps each GUI-thread
    stall to one layer's update. Returns the steps and the list that holds, once they ran, the
    layers showing ``new`` in its order.
    """
    from napari.layers import Layer

    free = list(old)
    shown: list = [None] * len(new)
    steps: list[Callable[[], None]] = []
    for place, (data, kwargs, kind) in enumerate(new):
        wanted = key(kind, kwargs.get("metadata", {}))
        same_type = [lay for lay in free if lay._type_string == kind]
        match = next((lay for lay in same_type if key(kind, lay.metadata) == wanted), None)
        if match is not None and _compatible(match, data, kwargs):
            free.remove(match)

            def update(layer=match, data=data, kwargs=kwargs, place=place):
                assign_layer_data(layer, data, kwargs)
                shown[place] = layer

            steps.append(update)
        else:
            # built, inserted hidden, then shown, a step each: building the layer, inserting it
            # (its canvas node and layer controls) and its first draw (napari's slicing, the
            # shaders of a new kind of layer) come apart

            def build(data=data, kwargs=kwargs, kind=kind, place=place):
                shown[place] = Layer.create(data, {**kwargs, "visible": False}, kind)

            def insert(place=place):
                viewer.add_layer(shown[place])

            def show(kwargs=kwargs, place=place):
                shown[place].visible = bool(kwargs.get("visible", True))

            steps.extend([build, insert, show])
    for layer in free:
        if retire is not None:
            steps.append(lambda layer=layer: retire(layer))
        else:
            steps.append(lambda layer=layer: viewer.layers.remove(layer))
    return steps, shown


def _compatible(layer, data: Any, kwargs: dict) -> bool:
    """Whether the layer can show ``data`` as it is (same dimensionality, same colour mode)."""
    if getattr(data, "ndim", None) != layer.data.ndim:
        return False
    return bool(kwargs.get("rgb", getattr(layer, "rgb", False))) == bool(
        getattr(layer, "rgb", False)
    )
