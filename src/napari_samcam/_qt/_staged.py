"""Layers that napari adds for a menu action, one per turn of the event loop.

napari adds every layer a sample or a reader returns in one go on the GUI thread, and each new
layer costs it a canvas node, shaders and layer controls (0.1-0.3 s each): a sample with its box
and mask, or a saved session with ten layers, froze the viewer for a second or more. When the
user opens them from napari's menus (File > Open Sample, File > Open, drag and drop), napari
is given the first layer only and the others follow, one per turn of the event loop, so that
the canvas draws and answers in between; an image of a new size is shown whole. Called from
code (``viewer.open_sample``, ``viewer.open``), everything is returned at once, as napari
documents.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from .._napari import _reader, _sample_data

LayerData = tuple[Any, dict, str]

#: napari's functions that open samples and files for its menus, drag and drop
#: (module, function). A call from anywhere else gets every layer at once.
GUI_OPENERS = frozenset(
    {
        ("napari._qt._qplugins._qnpe2", "_add_sample"),
        ("napari._qt.qt_viewer", "_qt_open"),
    }
)
#: Milliseconds between two staged layers: long enough for the canvas to draw in between.
STAGE_PAUSE_MS = 30


#: napari's function that builds a plugin's dock widget for its Plugins menu.
WIDGET_OPENERS = frozenset({("napari._qt._qplugins._qnpe2", "_toggle_or_get_widget")})


def opened_from_the_gui(openers: frozenset = GUI_OPENERS) -> bool:
    """Whether the running call comes from one of napari's ``openers`` (its menus, drag and
    drop) rather than from code."""
    frame = sys._getframe(1)
    while frame is not None:
        if (frame.f_globals.get("__name__"), frame.f_code.co_name) in openers:
            return True
        frame = frame.f_back
    return False


def staged(layer_data: list[LayerData]) -> list[LayerData]:
    """What napari should add now: ``layer_data`` whole when code asked for it; for a menu
    action its first layer, the others being added to the viewer that shows it one per turn
    of the event loop."""
    layer_data = list(layer_data)
    if not layer_data or not opened_from_the_gui():
        return layer_data
    from qtpy.QtCore import QTimer

    first, rest = layer_data[0], layer_data[1:]
    QTimer.singleShot(STAGE_PAUSE_MS, lambda: _add_later(first[0], rest))
    return [first]


def _viewer_showing(data) -> Any:
    """The open viewer with a layer whose data is ``data`` (the active one first)."""
    import napari
    from qtpy.QtWidgets import QApplication

    viewers = [napari.current_viewer()]
    for window in QApplication.topLevelWidgets():
        qt_viewer = getattr(window, "_qt_viewer", None)
        viewers.append(getattr(qt_viewer, "viewer", None))
    for viewer in viewers:
        if viewer is not None and any(layer.data is data for layer in viewer.layers):
            return viewer
    return None


def _add_later(first_data, rest: list[LayerData]) -> None:
    from .._napari._later import add_hidden
    from ._glyphs import warm_up_glyphs
    from ._turns import TurnQueue

    viewer = _viewer_showing(first_data)
    if viewer is None:  # the first layer is gone (the viewer closed): nothing to add to
        return
    show_whole_if_new_extent(viewer, next(lay for lay in viewer.layers if lay.data is first_data))
    # the glyphs of box text (napari measures the text of every Shapes layer; a session's
    # metrics) rendered in between the layers, not in the first draw of the text
    warm_up_glyphs(viewer)
    later = TurnQueue(STAGE_PAUSE_MS, lambda: "opening layers")

    def add_next() -> None:
        if not rest or not any(layer.data is first_data for layer in viewer.layers):
            return
        data, kwargs, kind = rest.pop(0)
        # built now; inserted hidden, shown and given its text by the next steps
        add_hidden(viewer, later, data, kind, **kwargs)
        later(add_next)

    later(add_next)


def show_whole_if_new_extent(viewer, layer) -> bool:
    """Reset the camera to show ``layer`` whole when no other layer of the viewer has its
    extent (napari resets it for a viewer's first layer only: a second image of another size
    opened in the same viewer showed a zoomed-in corner). Returns whether it did."""
    import numpy as np

    extent = np.asarray(layer.extent.world)
    others = [lay for lay in viewer.layers if lay is not layer]
    if not others or any(_same_extent(extent, lay) for lay in others):
        return False
    viewer.reset_view()
    return True


def _same_extent(extent, layer) -> bool:
    import numpy as np

    other = np.asarray(layer.extent.world)
    return other.shape == extent.shape and bool(np.allclose(other, extent))


#: Milliseconds from a dock widget's build to the start of the warm-up thread.
WARM_UP_DELAY_MS = 300


def warm_up_soon(viewer=None) -> None:
    """Start the warm-up thread a moment after a dock widget was built and drawn, and fill
    ``viewer``'s canvas font with the glyphs of the metrics (:mod:`._glyphs`).

    The warm-up's imports take turns with the GUI thread for Python's GIL: started with the
    widget, they doubled its build stages and first paint (0.3-0.7 s stalls).
    """
    from qtpy.QtCore import QTimer

    from .._napari._warmup import warm_up_in_background
    from ._glyphs import warm_up_glyphs

    def start() -> None:
        warm_up_in_background()
        if viewer is not None:
            warm_up_glyphs(viewer)

    QTimer.singleShot(WARM_UP_DELAY_MS, start)


def wait_for_warm_up() -> None:
    """Let the event loop run (the viewer answers) until the warm-up thread has generated the
    phantoms: on the GUI thread they froze it for seconds when a phantom sample was opened
    before the warm-up was done."""
    from qtpy.QtCore import QEventLoop, QTimer

    from .._napari._warmup import warm_up_done, warm_up_in_background

    warm_up_in_background()
    if warm_up_done(0):
        return
    loop = QEventLoop()
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: warm_up_done(0) and loop.quit())
    timer.start()
    loop.exec()
    timer.stop()


def _staged_sample(
    make: Callable[[], list[LayerData]], *, phantoms: bool = True
) -> Callable[[], list[LayerData]]:
    def sample() -> list[LayerData]:
        if phantoms and opened_from_the_gui():
            wait_for_warm_up()
        return staged(make())

    sample.__name__ = make.__name__
    sample.__doc__ = make.__doc__
    return sample


phantom_nodule = _staged_sample(_sample_data.phantom_nodule)
phantom_marker = _staged_sample(_sample_data.phantom_marker)
phantom_stack = _staged_sample(_sample_data.phantom_stack)
chest_radiograph = _staged_sample(_sample_data.chest_radiograph, phantoms=False)


def napari_get_reader(path: str | list[str]):
    """The plugin's reader for ``path`` (see :func:`.._napari._reader.napari_get_reader`),
    its layers staged when a menu action or drag and drop opens it."""
    read = _reader.napari_get_reader(path)
    if read is None:
        return None

    def read_staged(target):
        return staged(read(target))

    return read_staged
