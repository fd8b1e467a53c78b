"""Showing new layers in steps, one per turn of the event loop.

Building a layer, inserting it into the viewer (its canvas node, shaders and layer controls)
and its first draw (napari's slicing, the upload of the plane, the glyphs of its text) each
cost the GUI thread 0.1-0.3 s for a large plane. Code that shows a layer takes a
:data:`Later`, which runs each step at once (:func:`run_now`, for scripts and the console) or a
turn of the event loop after the step before it (the dock widget's job runner). napari only,
no Qt.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Runs a step of showing a result on the GUI thread: at once, or a turn of the event loop
#: after the step before it.
Later = Callable[[Callable[[], None]], None]


def run_now(step: Callable[[], None]) -> None:
    """The :data:`Later` of code that waits for its result: every step runs at once."""
    step()


def add_hidden(viewer, later: Later, data, kind: str, **kwargs):
    """A new layer of ``kind`` (``"image"``, ``"labels"``, ...) for ``viewer``, built now,
    inserted into the viewer hidden by one step of ``later``, made visible (unless ``kwargs``
    say ``visible=False``) by the next, and its text shown by a third.

    Building a layer, inserting it (its canvas node, shaders and layer controls) and its first
    draw (napari's slicing and the upload of the whole plane) each cost the GUI thread 0.1-0.3 s
    for an 8000² plane: a ``later`` that runs one step per turn of the event loop keeps them
    apart. Returns the layer (in the viewer once the steps ran).
    """
    from napari.layers import Layer

    visible = bool(kwargs.get("visible", True))
    layer = Layer.create(data, {**kwargs, "visible": False}, kind)
    text = getattr(layer, "text", None)
    # a layer's text (metrics on boxes) is shown a step after the layer: vispy rasterizes every
    # glyph on the first draw of text in a canvas (0.1-0.3 s)
    text_later = bool(getattr(text, "visible", False)) and has_text(text)
    if text_later:
        text.visible = False
    later(lambda: viewer.add_layer(layer))
    later(lambda: setattr(layer, "visible", visible))
    if text_later:
        later(lambda: setattr(layer.text, "visible", True))
    return layer


def has_text(text) -> bool:
    """Whether a layer's text manager has any text to draw (its values may be one string)."""
    values = np.asarray(getattr(text, "values", ()))
    return bool(values.size) and any(str(v) for v in values.ravel())
