"""One-time costs of a napari process paid in a background thread before the user needs them.

napari's first layer builds the unit registry of pint (about a second, pure Python) on the GUI
thread. The plugin's widgets start this thread when they open, so that the first sample, image
or evaluation item they show does not freeze the viewer for it. napari only, no Qt.
"""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger(__name__)

_started = threading.Event()


def _warm() -> None:
    try:
        import pint

        pint.get_application_registry().pixel  # noqa: B018 (builds the registry)
    except Exception as exc:  # only a head start: napari builds it anyway when needed
        logger.debug("warm-up skipped: %s", exc)


def warm_up_in_background() -> bool:
    """Start the warm-up thread (once per process); return whether this call started it."""
    if _started.is_set():
        return False
    _started.set()
    threading.Thread(target=_warm, name="napari-samcam warm-up", daemon=True).start()
    return True
