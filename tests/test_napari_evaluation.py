"""An evaluate output folder opened in napari: the reader's layers and the results table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_EVALUATION_METHODS, build_tiny_sam

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

METHODS = TINY_EVALUATION_METHODS
KEY = "samcam_evaluation"
PROMPTS = ("prompt-boxes", "prompt-points")


@pytest.fixture
def evaluation(tiny_evaluation):
    return tiny_evaluation


def _tags(viewer) -> dict:
    return {layer.name: layer.metadata.get(KEY) for layer in viewer.layers}


def _check_item_layers(viewer, result, item: int) -> None:
    """Every layer belongs to ``item``: image key, saliency provenance, region scores."""
    metrics = result.metrics[result.metrics["item"] == item]
    image_key = metrics["image_key"].iloc[0]
    image_layers = [
        lay for lay in viewer.layers if lay.metadata.get(KEY, {}).get("kind") == "image"
    ]
    assert len(image_layers) == 1
    assert image_layers[0].metadata[KEY]["image_key"] == image_key
    assert image_layers[0].metadata[KEY]["item"] == item
    saliency = [
        lay for lay in viewer.layers if lay.metadata.get(KEY, {}).get("kind") == "saliency"
    ]
    assert sorted(lay.metadata[KEY]["cam_method"] for lay in saliency) == sorted(METHODS)
    for layer in saliency:
        tag = layer.metadata[KEY]
        assert tag["item"] == item and tag["image_key"] == image_key
        rows = metrics[metrics["cam_method"] == tag["cam_method"]]
        assert tag["probability"] == pytest.approx(rows["probability"].iloc[0])
        assert tag["target_class"] == rows["target_class"].iloc[0]
        assert layer.data.shape == image_layers[0].data.shape[:2]
        assert float(layer.data.max()) == pytest.approx(1.0, abs=1e-3)
    regions = [lay for lay in viewer.layers if lay.metadata.get(KEY, {}).get("kind") == "region"]
    expected = {s for s in metrics["region_source"].unique()}
    assert {lay.metadata[KEY]["region_source"] for lay in regions} == expected
    for layer in regions:
        tag = layer.metadata[KEY]
        assert tag["item"] == item
        features = layer.features
        assert (features["item"] == item).all()
        assert (features["region_source"] == tag["region_source"]).all()
        for _, row in features.iterrows():
            value = metrics[
                (metrics["region_source"] == row["region_source"])
                & (metrics["cam_method"] == row["cam_method"])
                & (metrics["metric"] == "iou")
            ]["value"].iloc[0]
            assert row["iou"] == pytest.approx(value, nan_ok=True)
        area = metrics[metrics["region_source"] == tag["region_source"]]["region_area"]
        assert int(np.count_nonzero(layer.data)) == int(area.iloc[0])


def test_reader_opens_the_worst_item(make_napari_viewer, evaluation):
    from napari_samcam._napari._reader import napari_get_reader, read_paths

    assert napari_get_reader(str(evaluation.out)) is read_paths
    assert napari_get_reader(str(evaluation.out / "parts")) is None
    viewer = make_napari_viewer()
    viewer.open(str(evaluation.out), plugin="napari-samcam")
    iou = evaluation.metrics[evaluation.metrics["metric"] == "iou"]
    worst = int(iou.groupby("item")["value"].mean().idxmin())
    _check_item_layers(viewer, evaluation, worst)
    labels = [lay for lay in viewer.layers if lay.metadata[KEY]["kind"] == "region"]
    # annotation regions: one layer, one features row per saliency map it was scored against
    truth = next(lay for lay in labels if lay.metadata[KEY]["region_source"] == "ground-truth")
    assert sorted(truth.features["cam_method"]) == sorted(METHODS)
    assert (truth.features["index"] == 1).all()
    # saliency-based regions: one layer per map
    assert sum(lay.metadata[KEY]["region_source"] == "sam-saliency-box" for lay in labels) == 2


def _click_row(qtbot, table, row: int) -> None:
    from qtpy.QtCore import Qt

    table.scrollToItem(table.item(row, 0))
    rect = table.visualItemRect(table.item(row, 0))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    _wait_until_read(qtbot, table.parent())


def _wait_until_read(qtbot, widget) -> None:
    """The results widget reads folders and items off the GUI thread: wait for the result."""
    qtbot.waitUntil(lambda: not widget.loading, timeout=60000)


def _click_header(qtbot, table, column: int) -> None:
    from qtpy.QtCore import QPoint, Qt

    header = table.horizontalHeader()
    x = header.sectionViewportPosition(column) + header.sectionSize(column) // 2
    qtbot.mouseClick(
        header.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(x, header.height() // 2)
    )


def test_results_table_sorts_and_a_row_click_shows_its_item(make_napari_viewer, qtbot, evaluation):
    from napari_samcam._qt._results import ResultsWidget

    viewer = make_napari_viewer()
    viewer.open(str(evaluation.out), plugin="napari-samcam")
    widget = ResultsWidget(viewer)
    viewer.window.add_dock_widget(widget)
    _wait_until_read(qtbot, widget)
    table = widget.table
    # the table follows the evaluation the reader opened: one row per item x map x source
    scores = evaluation.metrics.groupby(
        ["item", "classifier", "cam_method", "region_source"]
    ).ngroups
    assert table.rowCount() == scores
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    energy = headers.index("energy")
    _click_header(qtbot, table, energy)
    from napari_samcam._qt._results import SORT_ROLE

    shown = [table.item(r, energy).data(SORT_ROLE) for r in range(table.rowCount())]
    assert shown == sorted(shown) or shown == sorted(shown, reverse=True)
    assert len(set(shown)) > 2

    first_item = widget.shown_item
    for row in range(table.rowCount()):  # a row of another item and a saliency-based source
        key = widget.row_key(row)
        if key["item"] != first_item and key["region_source"] == "sam-saliency-box":
            break
    if key["cam_method"] != "hirescam":  # prefer the second method: not the default one
        row = next(
            r
            for r in range(table.rowCount())
            if widget.row_key(r)["item"] == key["item"]
            and widget.row_key(r)["region_source"] == "sam-saliency-box"
            and widget.row_key(r)["cam_method"] == "hirescam"
        )
        key = widget.row_key(row)
    _click_row(qtbot, table, row)
    item = int(key["item"])
    assert widget.shown_item == item != first_item
    _check_item_layers(viewer, evaluation, item)
    # only the row's saliency map and region are visible; the region layer is selected
    visible = [lay.metadata[KEY] for lay in viewer.layers if lay.visible]
    shown = [t for t in visible if t["kind"] not in ("image", *PROMPTS)]
    assert [(t["kind"], t.get("cam_method")) for t in shown] == [
        ("saliency", "hirescam"),
        ("region", "hirescam"),
    ]
    active = viewer.layers.selection.active.metadata[KEY]
    assert active["region_source"] == "sam-saliency-box" and active["cam_method"] == "hirescam"
    row_iou = table.item(row, headers.index("iou")).data(SORT_ROLE)
    selected = viewer.layers.selection.active.features
    assert selected["iou"].iloc[0] == pytest.approx(row_iou, abs=1e-4) or np.isnan(
        selected["iou"].iloc[0]
    )


def test_open_button_asks_for_a_folder(make_napari_viewer, qtbot, evaluation, monkeypatch):
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QFileDialog

    from napari_samcam._qt._results import ResultsWidget

    viewer = make_napari_viewer()
    widget = ResultsWidget(viewer)
    assert widget.table.rowCount() == 0
    monkeypatch.setattr(
        QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(evaluation.out))
    )
    qtbot.mouseClick(widget.open_button, Qt.MouseButton.LeftButton)
    _wait_until_read(qtbot, widget)
    assert widget.table.rowCount() > 0
    assert {t["kind"] for t in _tags(viewer).values()} == {"image", "saliency", "region", *PROMPTS}


def _layer(viewer, kind: str):
    return next(lay for lay in viewer.layers if lay.metadata.get(KEY, {}).get("kind") == kind)


def test_resegment_a_row_then_save_it_as_ground_truth(
    make_napari_viewer, qtbot, evaluation, monkeypatch, tmp_path
):
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QFileDialog

    from napari_samcam._napari._layers import box_to_rectangle
    from napari_samcam._qt._results import EDITED_ROLE, SORT_ROLE, ResultsWidget
    from napari_samcam.evaluation.manifests import load_manifest
    from napari_samcam.images import read_image
    from napari_samcam.metrics import localization_metrics
    from napari_samcam.segment import load_segmenter

    viewer = make_napari_viewer()
    viewer.open(str(evaluation.out), plugin="napari-samcam")
    widget = ResultsWidget(viewer)
    viewer.window.add_dock_widget(widget)
    _wait_until_read(qtbot, widget)
    segmenter = load_segmenter(build_tiny_sam())
    widget.segmenter = segmenter  # the evaluation's SAM was an object: it has no name to load
    table = widget.table
    row = next(
        r for r in range(table.rowCount()) if widget.row_key(r)["region_source"] == "sam-box"
    )
    item = widget.row_key(row)["item"]
    _click_row(qtbot, table, row)
    region = viewer.layers.selection.active
    assert region.metadata[KEY]["region_source"] == "sam-box"
    assert region.metadata[KEY]["item"] == item
    before = region.data.copy()
    image = _layer(viewer, "image")
    box = (6, 10, 40, 52)
    _layer(viewer, "prompt-boxes").add_rectangles(box_to_rectangle(box))
    qtbot.mouseClick(widget.resegment_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: widget.worker is None and "edited" in region.features, timeout=60000)

    expected = segmenter.segment(
        np.asarray(image.data), boxes=np.array([box]), context=2.5, window=None
    )[0].mask
    assert expected.any() and not np.array_equal(expected, before != 0)
    np.testing.assert_array_equal(region.data != 0, expected)
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    for saliency in (lay for lay in viewer.layers if lay.metadata[KEY]["kind"] == "saliency"):
        method = saliency.metadata[KEY]["cam_method"]
        want = localization_metrics(saliency.data, expected, method="otsu")
        features = region.features[region.features["cam_method"] == method].iloc[0]
        assert features["edited"]
        assert features["iou"] == pytest.approx(want["iou"], nan_ok=True)
        assert features["energy"] == pytest.approx(want["energy"], nan_ok=True)
        edited = [
            r
            for r in range(table.rowCount())
            if widget.row_key(r)
            == {
                "item": item,
                "image": widget.row_key(r)["image"],
                "classifier": saliency.metadata[KEY]["classifier"],
                "cam_method": method,
                "region_source": "sam-box",
            }
        ]
        assert len(edited) == 1
        assert table.item(edited[0], 0).data(EDITED_ROLE)
        cell = table.item(edited[0], headers.index("energy")).data(SORT_ROLE)
        assert cell == pytest.approx(want["energy"])
    others = [r for r in range(table.rowCount()) if widget.row_key(r)["item"] != item]
    assert not any(table.item(r, 0).data(EDITED_ROLE) for r in others)

    mask_path = tmp_path / "corrected.png"
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(mask_path), "PNG"))
    )
    qtbot.mouseClick(widget.save_button, Qt.MouseButton.LeftButton)
    np.testing.assert_array_equal(np.asarray(read_image(mask_path).array) != 0, expected)
    manifest = tmp_path / "ground-truth.csv"
    (entry,) = load_manifest(manifest)
    assert entry.path.name == Path(evaluation.metrics.query("item == @item")["image"].iloc[0]).name
    np.testing.assert_array_equal(entry.load_mask(expected.shape), expected)
    # saving again never overwrites: the mask and the manifest stay as they were
    written = mask_path.read_bytes(), manifest.read_bytes()
    region.data = np.zeros_like(region.data)
    qtbot.mouseClick(widget.save_button, Qt.MouseButton.LeftButton)
    assert (mask_path.read_bytes(), manifest.read_bytes()) == written


def test_undefined_score_tooltip_says_why(make_napari_viewer, qtbot, evaluation, monkeypatch):
    from qtpy.QtCore import QEvent, Qt
    from qtpy.QtGui import QHelpEvent
    from qtpy.QtWidgets import QApplication, QFileDialog, QToolTip

    from napari_samcam._qt._results import ResultsWidget

    viewer = make_napari_viewer()
    widget = ResultsWidget(viewer)
    viewer.window.add_dock_widget(widget)
    monkeypatch.setattr(
        QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(evaluation.out))
    )
    qtbot.mouseClick(widget.open_button, Qt.MouseButton.LeftButton)
    _wait_until_read(qtbot, widget)
    table = widget.table
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    hit, iou = headers.index("hit"), headers.index("iou")
    # the item without a finding: its ground-truth region is empty, so no hit is possible
    metrics = evaluation.metrics
    reasons = metrics[(metrics["metric"] == "hit") & (metrics["nan_reason"] != "")]
    assert set(reasons["nan_reason"]) == {"the region is empty"}
    negative = set(reasons["item"])
    rows = [
        r
        for r in range(table.rowCount())
        if widget.row_key(r)["item"] in negative
        and widget.row_key(r)["region_source"] == "ground-truth"
    ]
    assert rows
    for row in rows:
        cell = table.item(row, hit)
        assert cell.text() == "–"
        index = table.model().index(row, hit)
        assert index.data(Qt.ItemDataRole.ToolTipRole) == "undefined: the region is empty"
        # IoU is defined there (0, as in CheXlocalize): no reason in its tooltip
        assert "undefined" not in (table.item(row, iou).toolTip() or "")
    # hovering the cell shows the reason
    row = rows[0]
    table.scrollToItem(table.item(row, hit))
    pos = table.visualItemRect(table.item(row, hit)).center()
    qtbot.mouseMove(table.viewport(), pos)
    event = QHelpEvent(QEvent.Type.ToolTip, pos, table.viewport().mapToGlobal(pos))
    QApplication.sendEvent(table.viewport(), event)
    qtbot.waitUntil(lambda: QToolTip.isVisible(), timeout=5000)
    assert QToolTip.text() == "undefined: the region is empty"
    # a scored hit's cell gives no reason
    scored = [r for r in range(table.rowCount()) if table.item(r, hit).text() in ("0", "1")]
    assert scored and not any("undefined" in table.item(r, hit).toolTip() for r in scored)
