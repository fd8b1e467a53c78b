"""A second sample opened in the same viewer is shown whole and chosen with its own layers.

Driven as a user does it: File > Open Sample > SAM-CAM entries triggered in a viewer whose dock
widget was opened from the Plugins menu.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_samcam._qt._heartbeat import process_events_for
from test_qt_heartbeat import SAMPLES, menu_entry, open_widget

pytestmark = pytest.mark.gui


def _open_sample(viewer, key: str, count: int) -> None:
    menu_entry(viewer, SAMPLES[key]).trigger()
    assert process_events_for(60, lambda: len(viewer.layers) == count), len(viewer.layers)


def _centre(layer) -> np.ndarray:
    extent = np.asarray(layer.extent.world)[:, -2:]
    return extent.mean(axis=0)


def test_a_second_sample_with_boxes_gets_its_own_boxes_chosen(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    widget = open_widget(viewer)
    _open_sample(viewer, "phantom-lesion", 3)
    assert widget.shapes.value.name == "phantom lesion box"
    _open_sample(viewer, "phantom-marker", 6)
    assert widget.image.value.name == "phantom lesion + marker"
    assert widget.shapes.value.name == "phantom lesion + marker box"


def test_a_second_sample_of_another_size_is_shown_whole(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    widget = open_widget(viewer)
    _open_sample(viewer, "phantom-lesion", 3)
    camera = viewer.scene.camera
    camera.zoom *= 4  # the user zooms into the lesion
    _open_sample(viewer, "chest-radiograph", 4)
    chest = viewer.layers[-1]
    assert chest.data.shape[-2:] != viewer.layers[0].data.shape[-2:]

    def centred():
        return np.allclose(camera.center[-2:], _centre(chest), atol=1.0)

    assert process_events_for(5, centred), (camera.center, _centre(chest))
    # the radiograph has no boxes: the phantom's are not offered as its prompts
    assert widget.image.value is chest
    assert widget.shapes.value is None
