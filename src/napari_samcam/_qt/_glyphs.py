"""Rasterize the canvas's text glyphs ahead of need, one per turn of the event loop.

napari's canvas draws text (the metrics written on boxes) from a font atlas that it fills on
first use: each new character is rendered and turned into a distance field on the GUI thread
(5-12 ms each here), inside the draw that first shows it. The first draw of a Shapes layer
also measures text with a set of tall characters. A Segment whose first metrics appeared, or a
sample whose first boxes were drawn, froze the viewer 60-120 ms longer for it. A dock widget
fills the atlas with these characters one at a time, a turn of the event loop apart, so that
no draw has to.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

#: napari measures a text's line height with the first ten; the rest are the characters of
#: the metrics written on boxes ("IoU 0.42, hit 1, energy 0.61", "score 0.93").
GLYPHS = "ÅÉÑŐjgpqy IoUhitenrgysca0123456789.,-"
#: Milliseconds between two glyphs.
GLYPH_PAUSE_MS = 30


def canvas_font(viewer):
    """The font atlas that ``viewer``'s canvas draws layer text with, or ``None`` where this
    napari keeps it elsewhere (the atlas lives in napari's private canvas objects)."""
    try:
        info = viewer.window._qt_viewer.canvas._font_info
        return info.font_manager.get_font(info.face)
    except AttributeError as exc:
        logger.debug("no canvas font to warm up: %s", exc)
        return None


def missing_glyphs(viewer, chars: str = GLYPHS) -> list[str]:
    """The characters of ``chars`` that ``viewer``'s canvas font has not rendered yet."""
    font = canvas_font(viewer)
    if font is None:
        return []
    return [char for char in dict.fromkeys(chars) if char not in font._glyphs]


def warm_up_glyphs(viewer, chars: str = GLYPHS, pause_ms: int = GLYPH_PAUSE_MS) -> None:
    """Render the glyphs of ``chars`` into ``viewer``'s canvas font, one per ``pause_ms``."""
    from qtpy.QtCore import QTimer

    def next_glyph() -> None:
        font = canvas_font(viewer)
        pending = missing_glyphs(viewer, chars)
        if font is None or not pending:
            return
        try:
            font[pending[0]]
        except Exception as exc:  # a closed canvas, a font without the glyph: nothing to gain
            logger.debug("glyph %r not warmed up: %s", pending[0], exc)
            return
        QTimer.singleShot(pause_ms, next_glyph)

    QTimer.singleShot(pause_ms, next_glyph)
