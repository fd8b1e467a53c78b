"""Any Image layer — a saliency map opened from disk — can be the map the widget scores."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

with contextlib.suppress(ImportError):
    import torch._dynamo  # noqa: F401  (before any viewer: see test_qt_widget.py)

from qtpy.QtCore import Qt

from napari_samcam._napari._session import SamcamSession
from napari_samcam.metrics import localization_metrics

pytestmark = pytest.mark.gui


def test_map_opened_from_disk_is_scored(make_napari_viewer, qtbot, tiny_segmenter, tmp_path):
    from napari_samcam._qt._widget import SamcamWidget

    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-samcam", "phantom-lesion")
    image = next(lyr for lyr in layers if lyr._type_string == "image")
    # a map made elsewhere, saved as .npy and opened with napari's own reader
    rows, cols = image.data.shape[-2:]
    ramp = np.add.outer(np.arange(rows), np.arange(cols)).astype(np.float32)
    path = tmp_path / "captum_map.npy"
    np.save(path, ramp)
    [opened] = viewer.open(str(path), plugin="napari")
    widget = SamcamWidget(viewer, session=SamcamSession(viewer, segmenter=tiny_segmenter))
    viewer.window.add_dock_widget(widget, name="SAM-CAM")

    combo = widget.saliency.native
    names = [combo.itemText(i) for i in range(combo.count())]
    assert opened.name in names and image.name not in names  # never the image as its own map
    combo.setCurrentIndex(names.index(opened.name))  # as a user picks it from the list
    assert widget.saliency.value is opened

    qtbot.mouseClick(widget.segment_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60000)
    regions = viewer.layers[f"{image.name} box regions"]
    row = regions.features.iloc[0]
    assert row["saliency"] == opened.name
    mask = regions.data == int(row["label"])
    expected = localization_metrics(ramp, mask)
    assert row["energy"] == pytest.approx(expected["energy"])
    assert row["iou"] == pytest.approx(expected["iou"], nan_ok=True)


def test_sam_contrast_choice_reaches_the_regions(make_napari_viewer, qtbot, tiny_segmenter):
    import json

    from napari_samcam._qt._widget import SamcamWidget

    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-samcam", "phantom-lesion")
    image = next(lyr for lyr in layers if lyr._type_string == "image")
    session = SamcamSession(viewer, segmenter=tiny_segmenter)
    widget = SamcamWidget(viewer, session=session)
    viewer.window.add_dock_widget(widget, name="SAM-CAM")
    combo = widget.sam_preprocess.native
    names = [combo.itemText(i) for i in range(combo.count())]
    combo.setCurrentIndex(names.index("clahe"))  # as a user picks it
    assert session.sam_preprocess == "clahe"
    qtbot.mouseClick(widget.segment_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60000)
    prompt = json.loads(viewer.layers[f"{image.name} box regions"].features["prompt"].iloc[0])
    assert prompt["preprocess"] == "clahe:0.01"
