"""The dock widgets fill the canvas font with the glyphs of the metrics ahead of need, so that
the first draw of metrics on boxes renders no glyph on the GUI thread."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_samcam._qt._glyphs import GLYPHS, canvas_font, missing_glyphs
from napari_samcam._qt._heartbeat import process_events_for

pytestmark = pytest.mark.gui


def _menu_entry(viewer, text: str):
    def actions(action):
        menu = action.menu()
        return [action] if menu is None else [a for sub in menu.actions() for a in actions(sub)]

    window = viewer.window._qt_window
    found = [a for m in window.menuBar().actions() for a in actions(m) if text in a.text()]
    assert found, text
    return found[0]


@pytest.mark.parametrize("entry", ["Saliency localization", "Evaluation results"])
def test_opening_a_dock_widget_renders_the_metrics_glyphs_one_per_turn(
    make_napari_viewer, monkeypatch, entry
):
    viewer = make_napari_viewer(show=True)
    font = canvas_font(viewer)
    assert font is not None  # this napari keeps the canvas font where the warm-up looks
    assert missing_glyphs(viewer) == list(dict.fromkeys(GLYPHS))  # a fresh canvas has none

    loaded = []
    original = type(font)._load_char

    def spy(self, char):
        loaded.append(char)
        assert len(loaded) == len(set(loaded))
        original(self, char)

    monkeypatch.setattr(type(font), "_load_char", spy)
    _menu_entry(viewer, entry).trigger()
    assert process_events_for(30, lambda: not missing_glyphs(viewer))
    assert set(GLYPHS) <= set(loaded)

    # metrics written on a box now draw without rendering a glyph
    loaded.clear()
    viewer.add_shapes(
        [np.array([[10.0, 10.0], [40.0, 60.0]])],
        shape_type="rectangle",
        features={"metrics": ["IoU 0.42, hit 1, energy 0.61"]},
        text={"string": "{metrics}", "size": 10},
    )
    process_events_for(1.0)
    assert loaded == []
