"""The dock widget driven only as a user drives it: real clicks and key presses on its controls.

Buttons get ``qtbot.mouseClick``, drop-downs are set the way a user picks an item, text fields are
typed into and file dialogs are answered by patching ``QFileDialog``. Nothing here calls a slot
of the widget. The classifier is the built-in ``lesion-detector``; SAM is a tiny random-weight
model for the mechanics and the built-in LiteMedSAM where the masks matter (marked ``slow``).
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

# torch._dynamo pulls in triton, whose LLVM clashes with the one software OpenGL loads for a
# napari canvas: import it before any viewer exists.
with contextlib.suppress(ImportError):
    import torch._dynamo  # noqa: F401

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QDockWidget, QFileDialog, QPushButton

from napari_samcam._napari._layers import META_KEY

pytestmark = pytest.mark.gui

JOB_TIMEOUT_MS = 120_000


# -- how a user works the controls --------------------------------------------------------------
def click(qtbot, button) -> None:
    """A left click on a button (it must be enabled and shown, as for a user)."""
    assert button.isEnabled(), f"{button.text()!r} is disabled"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def choose(combo, text: str) -> None:
    """Pick the item of a drop-down whose text starts with ``text``, as a user picks it."""
    native = getattr(combo, "native", combo)
    items = [native.itemText(i) for i in range(native.count())]
    matches = [i for i, item in enumerate(items) if item.startswith(text)]
    assert matches, f"no item {text!r} in {items}"
    native.setCurrentIndex(matches[0])


def type_into(qtbot, field, text: str) -> None:
    """Select all of a text field and type ``text`` over it."""
    native = getattr(field, "native", field)
    edit = native.lineEdit() if hasattr(native, "lineEdit") else native
    edit.selectAll()
    qtbot.keyClick(edit, Qt.Key.Key_Delete)
    qtbot.keyClicks(edit, text)


def wait_for_job(widget, qtbot, timeout: int = JOB_TIMEOUT_MS) -> None:
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=timeout)


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture
def notes(monkeypatch):
    """Every notification the plugin shows, as ``(severity, text)``."""
    shown: list[tuple[str, str]] = []
    for module in ("napari_samcam._qt._widget", "napari_samcam._qt._runner"):
        for severity in ("error", "warning", "info"):
            name = f"show_{severity}"
            with contextlib.suppress(AttributeError):
                monkeypatch.setattr(
                    f"{module}.{name}", lambda text, s=severity: shown.append((s, str(text)))
                )
    return shown


def errors_in(notes) -> list[str]:
    return [text for severity, text in notes if severity == "error"]


def dock_widget(viewer, qtbot, segmenter=None):
    """Open the dock widget from the plugin menu entry (as napari does); optionally give its
    session a tiny SAM so that the mechanics run in milliseconds."""
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-samcam", "Saliency localization")
    if segmenter is not None:
        widget.session.segmenter_spec = segmenter
    return widget


def open_sample(viewer, key: str):
    layers = viewer.open_sample("napari-samcam", key)
    return next(lyr for lyr in layers if lyr._type_string == "image")


# -- defect 1: Export CSV… and Save session… -----------------------------------------------------
def test_export_and_save_ask_for_a_file_and_write_it(
    make_napari_viewer, qtbot, tiny_segmenter, notes, tmp_path, monkeypatch
):
    viewer = make_napari_viewer()
    open_sample(viewer, "phantom-lesion")
    widget = dock_widget(viewer, qtbot, tiny_segmenter)
    click(qtbot, widget.explain_button)
    wait_for_job(widget, qtbot)
    click(qtbot, widget.segment_button)
    wait_for_job(widget, qtbot)

    asked: list[str] = []

    def answer(path):
        def dialog(*args, **kwargs):
            asked.append(args[1] if len(args) > 1 else kwargs.get("caption", ""))
            return str(path), ""

        return staticmethod(dialog)

    csv = tmp_path / "metrics.csv"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", answer(csv))
    click(qtbot, widget.export_button)
    assert errors_in(notes) == []
    assert len(asked) == 1 and csv.is_file()
    import pandas as pd

    table = pd.read_csv(csv)
    assert table["region_source"].tolist() == ["sam-box"]

    folder = tmp_path / "case.samcam"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", answer(folder))
    click(qtbot, widget.save_button)
    assert errors_in(notes) == []
    assert (folder / "samcam-session.json").is_file()

    # a dialog closed without a name writes nothing and says nothing
    monkeypatch.setattr(QFileDialog, "getSaveFileName", answer(""))
    n_notes = len(notes)
    click(qtbot, widget.export_button)
    click(qtbot, widget.save_button)
    assert len(notes) == n_notes


# -- defect 3: the status line ends on the final state -------------------------------------------
def shown_texts(label) -> list[str]:
    """Record every text a QLabel is given (the status line the user reads)."""
    texts: list[str] = []
    set_text = label.setText

    def recording(text):
        texts.append(text)
        set_text(text)

    label.setText = recording
    return texts


def test_status_ends_on_the_final_state_of_each_job(
    make_napari_viewer, qtbot, tiny_segmenter, notes
):
    # a shown window: napari's progress bars then process events while they update, which
    # delivered the job's later signals inside an earlier step's handler
    viewer = make_napari_viewer(show=True)
    open_sample(viewer, "phantom-lesion")
    widget = dock_widget(viewer, qtbot, tiny_segmenter)
    texts = shown_texts(widget.status)
    steps = ["loading classifier", "classifier loaded", "loading classifier", "predicting"]
    for button, title, expected in (
        *[(widget.load_button, "Load classifier", steps)] * 4,  # cached: the fastest jobs
        (widget.explain_button, "Explain", ["loading classifier", "gradcam"]),
        (widget.segment_button, "Segment", ["loading SAM", "image embedding", "SAM boxes"]),
    ):
        texts.clear()
        click(qtbot, button)
        wait_for_job(widget, qtbot)
        qtbot.wait(100)  # any late signal would arrive now
        final = texts[-1]
        assert final.startswith(f"{title}: done"), texts
        shown_steps = [t.removeprefix(f"{title}: ") for t in texts if t.startswith(title)][:-1]
        assert [s for s in shown_steps if s in expected] == expected, texts  # in job order
        assert widget.status.text() == final
    assert "region(s)" in widget.status.text()  # the final state says what came out
    assert errors_in(notes) == []


# -- defect 4: Cancel ----------------------------------------------------------------------------
def test_cancel_ends_with_cancelled_and_a_notification(
    make_napari_viewer, qtbot, tiny_segmenter, notes
):
    viewer = make_napari_viewer()
    open_sample(viewer, "phantom-stack")
    widget = dock_widget(viewer, qtbot, tiny_segmenter)
    click(qtbot, widget.load_button)
    wait_for_job(widget, qtbot)
    n_layers = len(viewer.layers)
    click(qtbot, widget.explain_all_button)
    qtbot.waitUntil(lambda: "gradcam (slice" in widget.status.text(), timeout=JOB_TIMEOUT_MS)
    click(qtbot, widget.cancel_button)
    wait_for_job(widget, qtbot)
    qtbot.wait(50)
    assert widget.status.text() == "Explain all slices: cancelled"
    assert ("info", "Explain all slices cancelled.") in notes
    assert len(viewer.layers) == n_layers  # nothing applied
    assert not widget.cancel_button.isEnabled() and widget.explain_all_button.isEnabled()


# -- defect 5: overlapping regions ----------------------------------------------------------------
def region_layers(viewer) -> list:
    return [
        lyr for lyr in viewer.layers if lyr.metadata.get(META_KEY, {}).get("kind") == "regions"
    ]


def assert_tables_match_pixels(viewer) -> int:
    """Every region of every regions layer shows all its pixels, and only listed labels show.

    Returns the number of regions.
    """
    n = 0
    for layer in region_layers(viewer):
        table = layer.features
        for label, area in zip(table["label"], table["area"], strict=True):
            assert (np.asarray(layer.data) == label).sum() == area, (layer.name, label)
        assert set(np.unique(layer.data)) - {0} == set(table["label"]), layer.name
        n += len(table)
    return n


def test_overlapping_box_regions_each_show_all_their_pixels(
    make_napari_viewer, qtbot, tiny_segmenter, notes
):
    viewer = make_napari_viewer()
    open_sample(viewer, "phantom-lesion")
    boxes = viewer.layers["phantom lesion box"]
    boxes.add_rectangles(boxes.data[0].copy())  # the user draws the same box again
    widget = dock_widget(viewer, qtbot, tiny_segmenter)
    click(qtbot, widget.segment_button)
    wait_for_job(widget, qtbot)
    assert errors_in(notes) == []
    assert assert_tables_match_pixels(viewer) == 2
    assert [lyr.name for lyr in region_layers(viewer)] == [
        "phantom lesion box regions",
        "phantom lesion box regions 2",
    ]
    for layer in region_layers(viewer):  # the flag column says whether to trust each region
        features = layer.features
        assert (features["region_unreliable"] == (features["region_reason"] != "")).all()


# -- every control, every prompt kind -------------------------------------------------------------
def test_plugin_menu_sample_and_dock_title(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    open_sample(viewer, "phantom-lesion")
    # the sample selects its box layer: never the hidden mask (whose paint tools would show)
    assert viewer.layers.selection.active is viewer.layers["phantom lesion box"]
    window = viewer.window._qt_window
    actions = [a for menu in window.menuBar().actions() for a in _menu_actions(menu)]
    entry = next(a for a in actions if "Saliency localization" in a.text())
    entry.trigger()  # Plugins > SAM-CAM > Saliency localization
    docks = [d for d in window.findChildren(QDockWidget) if "Saliency" in d.windowTitle()]
    assert [d.windowTitle() for d in docks] == ["Saliency localization (SAM-CAM)"]


def _menu_actions(action):
    menu = action.menu()
    if menu is None:
        return [action]
    return [a for sub in menu.actions() for a in _menu_actions(sub)]


def test_browse_puts_the_chosen_classifier_file_in_the_field(
    make_napari_viewer, qtbot, monkeypatch, tmp_path
):
    viewer = make_napari_viewer()
    widget = dock_widget(viewer, qtbot)
    browse = next(b for b in widget.findChildren(QPushButton) if b.text() == "…")
    chosen = tmp_path / "model.pt"
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(chosen), ""))
    )
    click(qtbot, browse)
    assert widget.classifier.currentText() == str(chosen)
    assert widget.session.classifier_spec == str(chosen)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: ("", "")))
    click(qtbot, browse)  # dialog closed: the field keeps its value
    assert widget.classifier.currentText() == str(chosen)


def test_every_prompt_kind_on_the_2d_sample(
    make_napari_viewer, qtbot, tiny_segmenter, tiny_clip_folder, notes, tmp_path, monkeypatch
):
    viewer = make_napari_viewer()
    open_sample(viewer, "phantom-lesion")
    widget = dock_widget(viewer, qtbot, tiny_segmenter)
    widget.session.text_options = PERMISSIVE_TEXT
    assert widget.image.value is viewer.layers["phantom lesion"]

    # classifier: the built-in, loaded; the finding class is the default target
    assert widget.classifier.currentText() == "lesion-detector"
    click(qtbot, widget.load_button)
    wait_for_job(widget, qtbot)
    assert widget.target.native.currentText() == "lesion (finding class)"
    assert widget.predictions.text().startswith("predicted:")
    choose(widget.method, "gradcam")
    click(qtbot, widget.explain_button)
    wait_for_job(widget, qtbot)
    saliency = viewer.layers["phantom lesion lesion-detector gradcam [lesion]"]
    assert widget.saliency.value is saliency  # the new map is chosen, not "-----"
    assert widget.target.native.currentText() == "lesion (finding class)"  # kept

    # boxes: the sample's lesion box
    choose(widget.prompt_kind, "boxes")
    click(qtbot, widget.segment_button)
    wait_for_job(widget, qtbot)
    box_label = viewer.layers["phantom lesion box"].features["metrics"].iloc[0]
    assert box_label.startswith("IoU ") and ", hit " in box_label  # hit has its value

    # points: the prompt layers, a positive and a negative point (T flips the selected one)
    click(qtbot, widget.prompt_layers_button)
    # the box layer comes a turn of the event loop after the point layer
    qtbot.waitUntil(
        lambda: "phantom lesion box prompts" in viewer.layers and not widget.runner.running
    )
    points = viewer.layers["phantom lesion point prompts"]
    assert widget.points.value is points
    points.add([[300.0, 400.0], [60.0, 60.0]])
    points.selected_data = {1}
    viewer.layers.selection.active = points
    qtbot.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key.Key_T)
    assert points.features["positive"].tolist() == [True, False]
    choose(widget.prompt_kind, "points")
    assert not widget.points.native.isHidden() and widget.shapes.native.isHidden()
    click(qtbot, widget.segment_button)
    wait_for_job(widget, qtbot)
    prompt = viewer.layers["phantom lesion point regions"].features["prompt"].iloc[0]
    assert '"point_labels": [1, 0]' in prompt

    # text: a short message until a CLIP folder is typed, then the text field opens
    choose(widget.prompt_kind, "text")
    assert not widget.text.enabled
    message = widget.clip_message.text()
    assert len(message) < 120 and len(widget.clip_message.toolTip()) > len(message)
    type_into(qtbot, widget.clip, str(tiny_clip_folder))
    assert widget.text.enabled, widget.clip_message.toolTip()
    type_into(qtbot, widget.text, "nodule")
    click(qtbot, widget.segment_button)
    wait_for_job(widget, qtbot)
    assert '"text": "nodule"' in viewer.layers["phantom lesion text regions"].features["prompt"][0]

    # from saliency: boxes around the map's hot region, labelled under the box
    choose(widget.prompt_kind, "from saliency")
    click(qtbot, widget.segment_button)
    wait_for_job(widget, qtbot)
    derived = viewer.layers["phantom lesion saliency boxes"]
    assert derived.text.anchor == "lower_left" and derived.features["metrics"].iloc[0]
    assert errors_in(notes) == []

    # every region in the table, each with all its pixels
    n_regions = assert_tables_match_pixels(viewer)
    assert n_regions >= 4
    click(qtbot, widget.table_button)

    def table_dock():
        docks = viewer.window._qt_window.findChildren(QDockWidget)
        return next((d for d in docks if "Features table" in d.windowTitle()), None)

    # the other regions layers are selected and the table docked a turn of the event loop apart
    qtbot.waitUntil(lambda: table_dock() is not None)
    table_dock = table_dock()
    assert (
        viewer.window._qt_window.dockWidgetArea(table_dock)
        == Qt.DockWidgetArea.BottomDockWidgetArea
    )
    selected = set(viewer.layers.selection)
    assert selected == {lyr for lyr in region_layers(viewer) if len(lyr.features)}
    csv = tmp_path / "all.csv"
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(csv), ""))
    )
    click(qtbot, widget.export_button)
    import pandas as pd

    exported = pd.read_csv(csv)
    assert len(exported) == n_regions and exported["label"].is_unique
    assert list(exported.columns[:3]) == ["label", "iou", "dice"]  # the metrics come first
    assert set(exported["region_source"]) == {
        "sam-box",
        "sam-points",
        "sam-text",
        "sam-saliency-box",
    }


#: Text prompts keep every proposal of the random tiny CLIP (mechanics, not quality).
PERMISSIVE_TEXT = {
    "pred_iou_thresh": 0.0,
    "stability_score_thresh": 0.0,
    "box_fit_thresh": 0.0,
    "min_area_fraction": 0.0,
    "max_area_fraction": 1.0,
}


def test_every_prompt_kind_on_the_3d_stack(
    make_napari_viewer, qtbot, tiny_segmenter, tiny_clip_folder, notes
):
    viewer = make_napari_viewer(show=True)
    image = open_sample(viewer, "phantom-stack")
    boxes = viewer.layers["phantom stack boxes"]
    box_slices = sorted({int(v[0, 0]) for v in boxes.data})
    widget = dock_widget(viewer, qtbot, tiny_segmenter)
    widget.session.text_options = PERMISSIVE_TEXT
    shown = box_slices[1]
    viewer.dims.set_current_step(0, shown)
    qtbot.wait(50)
    # the widget, napari's slider and the table number slices alike (from 0)
    slider = viewer.window._qt_viewer.dims.slider_widgets[0]
    assert slider.curslice_label.text() == str(shown)
    assert f"slice {shown} / {slider.totslice_label.text()}" in widget.slice_label.text()

    click(qtbot, widget.explain_button)
    wait_for_job(widget, qtbot)
    saliency = widget.saliency.value
    assert [i for i in range(8) if saliency.data[i].any()] == [shown]
    click(qtbot, widget.explain_all_button)
    wait_for_job(widget, qtbot)
    assert all(saliency.data[i].any() for i in range(8))

    click(qtbot, widget.segment_button)  # boxes, displayed slice
    wait_for_job(widget, qtbot)
    table = viewer.layers["phantom stack box regions"].features
    assert table["slice"].tolist() == [str(shown)]
    click(qtbot, widget.segment_all_button)
    wait_for_job(widget, qtbot)
    table = viewer.layers["phantom stack box regions"].features
    assert sorted(table["slice"].astype(int)) == box_slices

    n_sample_boxes = len(boxes.data)
    click(qtbot, widget.prompt_layers_button)
    qtbot.waitUntil(
        lambda: f"{image.name} box prompts" in viewer.layers and not widget.runner.running
    )
    # new, empty prompt layers beside the sample's own boxes, which stay as they were
    drawn = viewer.layers[f"{image.name} box prompts"]
    assert drawn is not boxes and len(drawn.data) == 0 and len(boxes.data) == n_sample_boxes
    points = viewer.layers[f"{image.name} point prompts"]
    points.add([[shown, 300.0, 250.0]])
    choose(widget.prompt_kind, "points")
    click(qtbot, widget.segment_button)
    wait_for_job(widget, qtbot)
    assert viewer.layers["phantom stack point regions"].features["slice"].tolist() == [str(shown)]

    choose(widget.prompt_kind, "text")
    type_into(qtbot, widget.clip, str(tiny_clip_folder))
    type_into(qtbot, widget.text, "nodule")
    click(qtbot, widget.segment_button)
    wait_for_job(widget, qtbot)
    assert set(viewer.layers["phantom stack text regions"].features["slice"]) == {str(shown)}

    choose(widget.prompt_kind, "from saliency")
    click(qtbot, widget.segment_all_button)
    wait_for_job(widget, qtbot)
    table = viewer.layers["phantom stack saliency regions"].features
    assert len(set(table["slice"])) > 1
    assert errors_in(notes) == []
    assert_tables_match_pixels(viewer)
    for layer in region_layers(viewer):  # each row's pixels lie on its own slice
        for label, plane in zip(layer.features["label"], layer.features["slice"], strict=True):
            assert (np.asarray(layer.data[int(plane)]) == label).any()


# -- the built-in models, where the values matter -------------------------------------------------
def test_radiograph_explains_the_finding_class_and_stays_readable(
    make_napari_viewer, qtbot, notes
):
    viewer = make_napari_viewer()
    image = open_sample(viewer, "chest-radiograph")
    widget = dock_widget(viewer, qtbot)
    click(qtbot, widget.explain_button)  # no classifier loaded first: the default target
    wait_for_job(widget, qtbot)
    assert errors_in(notes) == []
    saliency = widget.saliency.value
    provenance = saliency.metadata[META_KEY]["provenance"]
    assert provenance["class_name"] == "lesion"  # the finding, not the top class "no lesion"
    assert widget.predictions.text().startswith("predicted: no lesion")
    # the overlay covers only where the map is high: most of the radiograph is left untinted
    alpha = saliency.colormap.map(np.asarray(saliency.data, dtype=np.float32).ravel()[::97])[:, 3]
    assert str(saliency.blending) == "translucent" and np.mean(alpha > 0) < 0.5
    assert image.name in saliency.metadata[META_KEY]["image_layer"]
    # "top class" is still one choice away
    choose(widget.target, "top class")
    click(qtbot, widget.explain_button)
    wait_for_job(widget, qtbot)
    assert widget.saliency.value.metadata[META_KEY]["provenance"]["class_name"] == "no lesion"


@pytest.mark.slow
def test_litemedsam_box_and_saliency_regions_overlap_and_both_show(
    make_napari_viewer, qtbot, litemedsam, notes
):
    """The case of the report: a box region and a saliency region on the same lesion."""
    viewer = make_napari_viewer()
    open_sample(viewer, "phantom-lesion")
    truth = np.asarray(viewer.layers["phantom lesion mask"].data) > 0
    widget = dock_widget(viewer, qtbot, litemedsam)
    click(qtbot, widget.explain_button)
    wait_for_job(widget, qtbot)
    click(qtbot, widget.segment_button)  # the sample's lesion box
    wait_for_job(widget, qtbot)
    choose(widget.prompt_kind, "from saliency")
    click(qtbot, widget.segment_button)
    wait_for_job(widget, qtbot)
    assert errors_in(notes) == []

    box = viewer.layers["phantom lesion box regions"]
    derived = viewer.layers["phantom lesion saliency regions"]
    box_mask = np.asarray(box.data) == box.features["label"].iloc[0]
    derived_mask = np.asarray(derived.data) > 0
    assert (box_mask & derived_mask).sum() > 0.5 * box_mask.sum()  # they do overlap
    assert assert_tables_match_pixels(viewer) == len(box.features) + len(derived.features)
    dice = 2 * (box_mask & truth).sum() / (box_mask.sum() + truth.sum())
    assert dice > 0.7, dice  # LiteMedSAM outlines the lesion from its box
    row = box.features.iloc[0]
    assert row["hit"] == 1.0 and 0.0 < row["energy"] <= 1.0
    # a good mask passes every check of the trust rule: the flag column says so
    assert not row["region_unreliable"] and row["region_reason"] == ""
    label = viewer.layers["phantom lesion box"].features["metrics"].iloc[0]
    assert label == f"IoU {row['iou']:.2f}, hit 1, energy {row['energy']:.2f}"
