"""What the dock widget says when a prompt or an action cannot work, before anything runs.

Driven with real clicks (buttons, drop-downs picked as a user picks them, text typed, file
dialogs answered by patching ``QFileDialog``); SAM is a tiny random-weight model.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

with contextlib.suppress(ImportError):
    import torch._dynamo  # noqa: F401

from qtpy.QtWidgets import QFileDialog

from napari_samcam._napari._layers import box_to_rectangle
from test_qt_clicks import (
    click,
    dock_widget,
    errors_in,
    notes,
    open_sample,
    type_into,
    wait_for_job,
)

__all__ = ["notes"]  # the fixture, imported for its use below

pytestmark = pytest.mark.gui


def pick(combo, data) -> None:
    """Pick the drop-down item whose value is ``data``, as a user picks it."""
    native = combo.native
    index = next(i for i in range(native.count()) if native.itemData(i) == data)
    native.setCurrentIndex(index)


def test_text_prompt_without_clip_disables_segment_and_names_the_model(
    make_napari_viewer, qtbot, tiny_segmenter, tiny_clip_folder
):
    viewer = make_napari_viewer()
    open_sample(viewer, "phantom-lesion")
    widget = dock_widget(viewer, qtbot, tiny_segmenter)
    assert widget.segment_button.isEnabled()
    pick(widget.prompt_kind, "text")
    assert not widget.segment_button.isEnabled()
    assert not widget.segment_all_button.isEnabled()
    tip = widget.segment_button.toolTip()
    assert "CLIP" in tip and "No CLIP weights ship" in tip  # which model, and how to get one
    type_into(qtbot, widget.clip, str(tiny_clip_folder))
    assert widget.segment_button.isEnabled()
    pick(widget.prompt_kind, "boxes")
    assert widget.segment_button.isEnabled()


def test_saliency_drop_down_never_offers_the_image_itself(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    image = open_sample(viewer, "phantom-lesion")
    by_hand = viewer.add_image(np.zeros(image.data.shape, np.float32), name="map from disk")
    widget = dock_widget(viewer, qtbot)
    assert widget.image.value is image
    assert image not in widget.saliency.choices
    assert by_hand in widget.saliency.choices
    widget.image.native.setCurrentIndex(widget.image.native.findText("map from disk"))
    assert widget.image.value is by_hand
    assert by_hand not in widget.saliency.choices and image in widget.saliency.choices


def test_a_box_off_the_image_says_what_is_wrong_and_clears_the_status(
    make_napari_viewer, qtbot, tiny_segmenter, notes
):
    viewer = make_napari_viewer()
    image = open_sample(viewer, "phantom-lesion")
    widget = dock_widget(viewer, qtbot, tiny_segmenter)
    click(qtbot, widget.segment_button)
    wait_for_job(widget, qtbot)
    assert widget.status.text().startswith("Segment: done")
    boxes = viewer.layers["phantom lesion box"]
    height, width = image.data.shape
    boxes.data = [box_to_rectangle((height + 10, width + 10, height + 50, width + 60))]
    click(qtbot, widget.segment_button)
    assert not widget.runner.running  # refused at once
    (error,) = errors_in(notes)
    assert "give no usable box" in error and f"{height} x {width}" in error
    assert "not started" in widget.status.text()


def test_negative_only_clicks_are_refused_at_once(
    make_napari_viewer, qtbot, tiny_segmenter, notes
):
    viewer = make_napari_viewer()
    open_sample(viewer, "phantom-lesion")
    widget = dock_widget(viewer, qtbot, tiny_segmenter)
    click(qtbot, widget.prompt_layers_button)
    qtbot.waitUntil(
        lambda: "phantom lesion box prompts" in viewer.layers and not widget.runner.running
    )
    points = widget.points.value
    points.add([[100.0, 120.0]])
    points.features = points.features.assign(positive=[False])
    pick(widget.prompt_kind, "points")
    click(qtbot, widget.segment_button)
    assert not widget.runner.running
    (error,) = errors_in(notes)
    assert "only negative points" in error


def test_segment_keeps_the_prompt_layer_active(make_napari_viewer, qtbot, tiny_segmenter, notes):
    viewer = make_napari_viewer()
    open_sample(viewer, "phantom-lesion")
    widget = dock_widget(viewer, qtbot, tiny_segmenter)
    boxes = widget.shapes.value
    click(qtbot, widget.segment_button)
    wait_for_job(widget, qtbot)
    assert errors_in(notes) == []
    assert viewer.layers.selection.active is boxes
    click(qtbot, widget.table_button)  # the table selects the regions
    assert viewer.layers.selection.active.name == "phantom lesion box regions"


def test_export_and_save_with_nothing_to_write_say_so_without_a_dialog(
    make_napari_viewer, qtbot, notes, monkeypatch
):
    asked = []
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: asked.append(a) or ("", ""))
    )
    viewer = make_napari_viewer()
    widget = dock_widget(viewer, qtbot)
    click(qtbot, widget.save_button)
    open_sample(viewer, "phantom-lesion")
    click(qtbot, widget.export_button)
    assert asked == []
    save_error, export_error = errors_in(notes)
    assert "no layers to save" in save_error
    assert "no regions yet" in export_error


def test_a_reopened_session_offers_its_saliency_map(
    make_napari_viewer, qtbot, tiny_classifier, notes, tmp_path, monkeypatch
):
    viewer = make_napari_viewer()
    open_sample(viewer, "phantom-lesion")
    widget = dock_widget(viewer, qtbot)
    widget.session.classifier_spec = tiny_classifier
    click(qtbot, widget.explain_button)
    wait_for_job(widget, qtbot)
    saved_map = widget.saliency.value
    assert saved_map is not None
    folder = tmp_path / "case.samcam"
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(folder), ""))
    )
    click(qtbot, widget.save_button)
    assert errors_in(notes) == []

    # the session opened first, the widget afterwards
    other = make_napari_viewer()
    other.open(str(folder), plugin="napari-samcam")
    reopened = dock_widget(other, qtbot)
    assert reopened.saliency.value is other.layers[saved_map.name]
    # the widget open first, the session opened into it
    third = make_napari_viewer()
    late = dock_widget(third, qtbot)
    third.open(str(folder), plugin="napari-samcam")
    assert late.saliency.value is third.layers[saved_map.name]


def test_results_table_sorts_undefined_scores_last_both_ways(make_napari_viewer, qtbot):
    import pandas as pd
    from qtpy.QtCore import QPoint, Qt

    from napari_samcam._qt._results import ResultsWidget

    viewer = make_napari_viewer()
    widget = ResultsWidget(viewer)
    viewer.window.add_dock_widget(widget)
    scores = pd.DataFrame(
        {
            "item": [0, 1, 2, 3],
            "image": [f"images/p{i}.png" for i in range(4)],
            "classifier": ["c"] * 4,
            "cam_method": ["gradcam"] * 4,
            "region_source": ["box"] * 4,
            "iou": [0.5, float("nan"), 0.1, 0.9],
        }
    )
    widget._fill_table("evaluation", scores)  # the table as a read folder fills it
    table = widget.table
    header = table.horizontalHeader()
    column = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())].index(
        "iou"
    )
    x = header.sectionViewportPosition(column) + header.sectionSize(column) // 2

    def click_header():
        qtbot.mouseClick(
            header.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(x, header.height() // 2)
        )
        return [table.item(r, column).text() for r in range(table.rowCount())]

    orders = {tuple(click_header()), tuple(click_header())}
    assert orders == {("0.100", "0.500", "0.900", "–"), ("0.900", "0.500", "0.100", "–")}
    assert table.item(0, 1).text() == table.item(0, 1).toolTip().split("/")[-1]
