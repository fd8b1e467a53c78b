"""One-time costs of a napari process paid in a background thread before the user needs them.

napari's first layer builds the unit registry of pint (about a second, pure Python) on the GUI
thread, its first Labels or Shapes layer imports pandas for the layer's features (0.5-0.7 s)
and its first Labels layer skimage's colour conversions for the label colours, and the phantom
samples are generated on it when first opened (seconds: the chest background is read and eight
phantoms rendered). The plugin's widgets start this thread when they open, so that the first
sample, image or evaluation item shown afterwards does not freeze the viewer for it. napari
only, no Qt.

Python's cyclic garbage collector also freezes it: a full collection walks every object of the
process (millions once napari, pandas and torch are imported) on whichever thread allocates at
that moment, 0.3-0.5 s on 2 busy cores, in the middle of adding a layer. After the warm-up and
after each long job (models loaded) the objects alive are moved out of the collector's reach
(:func:`gc.freeze`): they are long-lived (modules, models, caches), and a later collection walks
only what was created since.
"""

from __future__ import annotations

import gc
import logging
import threading

logger = logging.getLogger(__name__)

_started = threading.Event()
_done = threading.Event()


def warm_up_done(timeout: float | None = None) -> bool:
    """Whether the warm-up has finished (waits up to ``timeout`` seconds for it)."""
    return _done.wait(timeout)


def _warm() -> None:
    try:
        import pint

        pint.get_application_registry().pixel  # noqa: B018 (builds the registry)
        import pandas  # noqa: F401
        from napari.utils.colormaps import label_colormap

        label_colormap()  # the first Labels layer's colours import skimage.color (0.1-0.2 s)

        from ._sample_data import warm_samples

        warm_samples()
        freeze_survivors()
    except Exception as exc:  # only a head start: all of it is done anyway when needed
        logger.debug("warm-up skipped: %s", exc)
    finally:
        _done.set()


def freeze_survivors() -> None:
    """Keep the objects alive now out of the garbage collector's full collections (see the
    module's docstring): the next collection has only what is created later to walk."""
    gc.freeze()


def warm_up_in_background() -> bool:
    """Start the warm-up thread (once per process); return whether this call started it."""
    if _started.is_set():
        return False
    _started.set()
    freeze_survivors()  # napari's own start-up objects: out of the way of the widget's build
    threading.Thread(target=_warm, name="napari-samcam warm-up", daemon=True).start()
    return True
