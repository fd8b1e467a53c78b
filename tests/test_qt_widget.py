"""The dock widget in a real napari viewer (under Xvfb): jobs in workers, layers, tables.

Most tests drive the widget with tiny random-weight models (fast, mechanics only); one runs the
built-in classifier and LiteMedSAM end to end on a phantom sample and checks the values.
"""

from __future__ import annotations

import contextlib
import time
import weakref

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

# triton (imported by torch._dynamo, which torchvision.ops and transformers' image processors
# import) crashes the process when it is first imported after Mesa's software OpenGL has loaded
# its own LLVM, i.e. after a viewer exists on a machine without GPU: import it up front.
with contextlib.suppress(ImportError):
    import torch._dynamo  # noqa: F401

from napari_samcam._napari._layers import META_KEY, box_to_rectangle
from napari_samcam._napari._session import SamcamSession

pytestmark = pytest.mark.gui

EXPECTED_COLUMNS = ["label", "region_source", "prompt", "score", "iou", "hit", "energy"]


def _widget(viewer, qtbot, **session_kwargs):
    from napari_samcam._qt._widget import SamcamWidget

    session = SamcamSession(viewer, **session_kwargs)
    widget = SamcamWidget(viewer, session=session)
    viewer.window.add_dock_widget(widget, name="SAM-CAM")
    return widget


def _wait(widget, qtbot, timeout=60000):
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=timeout)


def _saliency(viewer):
    return next(
        lyr for lyr in viewer.layers if lyr.metadata.get(META_KEY, {}).get("kind") == "saliency"
    )


def _phantom(viewer):
    layers = viewer.open_sample("napari-samcam", "phantom-lesion")
    image = next(lyr for lyr in layers if lyr._type_string == "image")
    boxes = next(lyr for lyr in layers if lyr._type_string == "shapes")
    return image, boxes


@pytest.fixture
def errors(monkeypatch):
    """Collect the error notifications of the widget instead of showing them."""
    shown: list[str] = []
    monkeypatch.setattr("napari_samcam._qt._runner.show_error", shown.append)
    monkeypatch.setattr("napari_samcam._qt._widget.show_error", shown.append)
    return shown


def test_explain_then_box_prompt_gives_a_metrics_table(
    make_napari_viewer, qtbot, tiny_classifier, tiny_segmenter, errors, tmp_path
):
    viewer = make_napari_viewer()
    image, boxes = _phantom(viewer)
    widget = _widget(viewer, qtbot, classifier=tiny_classifier, segmenter=tiny_segmenter)
    assert widget.image.value is image
    assert widget.shapes.value is boxes  # the sample's lesion box is the default prompt layer

    widget.explain_button.click()
    assert widget.cancel_button.isEnabled()
    _wait(widget, qtbot)
    assert errors == []
    saliency = _saliency(viewer)
    assert saliency.name in (
        "phantom lesion Sequential gradcam [cat]",
        "phantom lesion Sequential gradcam [dog]",
    )
    assert saliency.colormap.name == "samcam saliency"
    assert str(saliency.blending) == "translucent"
    assert saliency.colormap.map([0.1])[0, 3] == 0.0  # low saliency leaves the image clear
    assert 0.3 <= saliency.opacity <= 0.7
    assert saliency.data.shape == image.data.shape and saliency.data.dtype == np.float32
    provenance = saliency.metadata[META_KEY]["provenance"]
    assert provenance["method"] == "gradcam" and 0 <= provenance["probability"] <= 1
    assert "predicted:" in widget.predictions.text()

    widget.segment_button.click()
    _wait(widget, qtbot)
    assert errors == []
    regions = viewer.layers["phantom lesion box regions"]
    table = regions.features
    assert list(table.columns[:4]) == ["label", "iou", "dice", "hit"]  # metrics first
    assert table.columns[-1] == "index"
    for column in EXPECTED_COLUMNS:
        assert column in table.columns
    assert len(table) == 1
    row = table.iloc[0]
    assert row["region_source"] == "sam-box"
    assert '"box"' in row["prompt"]
    assert row["saliency"] == saliency.name
    for metric in ("iou", "dice", "energy", "precision", "recall"):
        value = row[metric]
        assert np.isnan(value) or 0.0 <= value <= 1.0
    assert (regions.data == row["label"]).sum() == row["area"]
    # the prompt layer stays active (the next click draws); Show metrics table selects regions
    assert viewer.layers.selection.active is boxes
    # metrics are written on the box
    assert boxes.features["metrics"].iloc[0] != ""
    assert boxes.text.string.format == "{metrics}"

    widget.show_table()
    dock = viewer.window._wrapped_dock_widgets
    qtbot.waitUntil(lambda: any("Features table" in name for name in dock))  # a turn later

    written = widget.export_csv(str(tmp_path / "metrics.csv"))
    assert pd.read_csv(written[0])["label"].tolist() == [row["label"]]

    # a second run on the same prompts replaces the regions instead of adding more
    widget.segment_button.click()
    _wait(widget, qtbot)
    assert len(regions.features) == 1
    assert set(np.unique(regions.data)) <= {0, int(regions.features["label"].iloc[0])}


def test_points_and_saliency_prompts(
    make_napari_viewer, qtbot, tiny_classifier, tiny_segmenter, errors
):
    viewer = make_napari_viewer()
    _phantom(viewer)
    widget = _widget(viewer, qtbot, classifier=tiny_classifier, segmenter=tiny_segmenter)
    widget.add_prompt_layers()
    qtbot.waitUntil(
        lambda: "phantom lesion box prompts" in viewer.layers and not widget.runner.running
    )
    points = viewer.layers["phantom lesion point prompts"]
    assert widget.points.value is points
    points.add([[300.0, 400.0]])
    points.add([[100.0, 100.0]])
    points.selected_data = {1}
    from napari_samcam._napari._session import toggle_polarity

    toggle_polarity(points)
    assert points.features["positive"].tolist() == [True, False]
    np.testing.assert_allclose(points.face_color[1], [1, 0, 0, 1])  # negative is red

    widget.prompt_kind.value = "points"
    assert not widget.points.native.isHidden() and widget.shapes.native.isHidden()
    widget.segment_button.click()
    _wait(widget, qtbot)
    assert errors == []
    table = viewer.layers["phantom lesion point regions"].features
    assert table["region_source"].tolist() == ["sam-points"]
    assert "point_labels" in table["prompt"].iloc[0]

    widget.explain_button.click()
    _wait(widget, qtbot)
    widget.prompt_kind.value = "saliency"
    widget.segment_button.click()
    _wait(widget, qtbot)
    assert errors == []
    table = widget.session.metrics()
    assert sorted(table["region_source"]) == ["sam-points", "sam-saliency-box"]
    derived = viewer.layers["phantom lesion saliency boxes"]
    # inserted hidden, then shown, then its metrics text, a turn of the event loop apart
    assert derived.visible and derived.text.visible
    assert derived.features["metrics"].iloc[0].startswith("IoU")


def test_text_prompt_is_disabled_without_clip_weights(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    widget = _widget(viewer, qtbot)
    widget.prompt_kind.value = "text"
    assert not widget.text.enabled
    message = widget.clip_message.text()
    assert "CLIP" in message or "clip" in message


def test_errors_become_notifications(make_napari_viewer, qtbot, tiny_segmenter, errors):
    viewer = make_napari_viewer()
    _phantom(viewer)
    widget = _widget(viewer, qtbot, classifier="no-such-classifier", segmenter=tiny_segmenter)
    widget.explain_button.click()
    _wait(widget, qtbot)
    assert len(errors) == 1
    assert "no-such-classifier" in errors[0] and "Traceback" not in errors[0]

    # no prompt on the boxes layer: said before any work starts
    boxes = viewer.layers["phantom lesion box"]
    boxes.data = []
    widget.segment_button.click()
    assert not widget.runner.running
    assert "draw a rectangle" in errors[-1]
    assert all(b.isEnabled() for b in widget._buttons)


def test_a_pt2_classifier_loads_only_after_the_trust_box_is_ticked(
    make_napari_viewer, qtbot, tiny_segmenter, errors, tmp_path, monkeypatch
):
    import torch
    from qtpy.QtCore import QPoint, Qt
    from qtpy.QtWidgets import QFileDialog

    from conftest import TinyCNN

    path = tmp_path / "shared.pt2"
    program = torch.export.export(TinyCNN.build(), (torch.zeros(1, 3, 32, 32),))
    torch.export.save(program, str(path))
    viewer = make_napari_viewer()
    _phantom(viewer)
    widget = _widget(viewer, qtbot, segmenter=tiny_segmenter, device="cpu")
    chosen = [str(path), str(tmp_path / "other.pt2")]
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (chosen.pop(0), ""))
    )
    qtbot.mouseClick(widget.browse_button, Qt.MouseButton.LeftButton)
    assert widget.classifier.currentText() == str(path)
    assert not widget.trust.isChecked()

    qtbot.mouseClick(widget.load_button, Qt.MouseButton.LeftButton)
    _wait(widget, qtbot)
    assert len(errors) == 1
    assert str(path) in errors[0] and "trust this file" in errors[0]
    assert "predicted:" not in widget.predictions.text()

    box = widget.trust  # click the tick box itself, at its left end
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(6, box.height() // 2))
    assert widget.trust.isChecked() and widget.session.trust_checkpoint
    qtbot.mouseClick(widget.load_button, Qt.MouseButton.LeftButton)
    _wait(widget, qtbot)
    assert len(errors) == 1
    assert "predicted:" in widget.predictions.text()

    # trust belongs to the chosen file: choosing another one clears the box
    qtbot.mouseClick(widget.browse_button, Qt.MouseButton.LeftButton)
    assert not widget.trust.isChecked() and not widget.session.trust_checkpoint


def test_cancel_stops_a_job_and_applies_nothing(
    make_napari_viewer, qtbot, tiny_classifier, tiny_segmenter
):
    import torch

    class Slow(torch.nn.Module):
        """Wraps a model; each forward pass takes a while."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            time.sleep(0.5)
            return self.inner(x)

    from napari_samcam.classifiers import load_classifier

    slow = load_classifier(
        Slow(tiny_classifier.model),
        class_names=["cat", "dog"],
        input_size=(32, 32),
        target_layer="inner.3",
        device="cpu",
    )
    viewer = make_napari_viewer()
    viewer.open_sample("napari-samcam", "phantom-stack")
    widget = _widget(viewer, qtbot, classifier=slow, segmenter=tiny_segmenter)
    n_layers = len(viewer.layers)
    widget.explain_all_button.click()  # 8 slices, >= 4 s
    qtbot.wait(700)
    assert widget.runner.running
    started = time.perf_counter()
    widget.cancel_button.click()
    _wait(widget, qtbot, timeout=10000)
    assert time.perf_counter() - started < 3.0  # stops at the next step, not at the end
    assert len(viewer.layers) == n_layers  # nothing applied
    assert "cancel" in widget.status.text()
    assert all(b.isEnabled() for b in widget._buttons)
    assert not widget.cancel_button.isEnabled()


def test_volume_slices_and_all_slices(
    make_napari_viewer, qtbot, tiny_classifier, tiny_segmenter, errors
):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-samcam", "phantom-stack")
    image = layers[0]
    boxes = viewer.layers["phantom stack boxes"]
    widget = _widget(viewer, qtbot, classifier=tiny_classifier, segmenter=tiny_segmenter)
    box_slices = sorted({int(v[0, 0]) for v in boxes.data})
    assert viewer.dims.current_step[0] in box_slices  # it opens on a slice with a box
    viewer.dims.set_current_step(0, box_slices[0])
    assert f"slice {box_slices[0]} / 7" in widget.slice_label.text()  # as napari's slider

    widget.explain_button.click()
    _wait(widget, qtbot)
    saliency = _saliency(viewer)
    assert saliency.data.shape == image.data.shape
    filled = [i for i in range(8) if saliency.data[i].any()]
    assert filled == [box_slices[0]]

    widget.explain_all_button.click()
    _wait(widget, qtbot)
    assert all(saliency.data[i].any() for i in range(8))
    assert len(saliency.metadata[META_KEY]["slices"]) == 8
    assert widget.predictions.text().startswith("predicted (slice 7): ")  # the last one run

    widget.segment_button.click()  # displayed slice only
    _wait(widget, qtbot)
    table = viewer.layers["phantom stack box regions"].features
    assert table["slice"].tolist() == [str(box_slices[0])]

    widget.segment_all_button.click()
    _wait(widget, qtbot)
    assert errors == []
    regions = viewer.layers["phantom stack box regions"]
    table = regions.features
    assert sorted(table["slice"].astype(int)) == box_slices
    for _, row in table.iterrows():
        plane = regions.data[int(row["slice"])]
        assert (plane == row["label"]).any()


def test_console_gets_the_api_and_the_session(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = _widget(viewer, qtbot)
    pushed = {}
    for entry in viewer.window._qt_viewer.console_backlog:
        pushed.update({k: v() if isinstance(v, weakref.ref) else v for k, v in entry.items()})
    assert {"samcam", "samcam_session", "explain", "load_segmenter"} <= set(pushed)
    session = pushed["samcam_session"]
    session = session() if callable(session) and not hasattr(session, "explain") else session
    assert session is widget.session
    # the functions are stand-ins that import the real one when used
    import inspect

    import napari_samcam

    explain = pushed["explain"]
    assert "imported on first use" in repr(explain)
    assert explain.__wrapped__ is napari_samcam.explain
    assert inspect.signature(explain) == inspect.signature(napari_samcam.explain)
    assert explain.__doc__ == napari_samcam.explain.__doc__
    image = np.zeros((8, 8), np.float32)
    image[2:5, 3:6] = 1.0
    from_console = pushed["localization_metrics"](image, image > 0.5)
    assert from_console == napari_samcam.localization_metrics(image, image > 0.5)
    assert from_console["iou"] == 1.0


def test_saved_session_reopens_identically(
    make_napari_viewer, qtbot, tiny_classifier, tiny_segmenter, tmp_path
):
    viewer = make_napari_viewer()
    _phantom(viewer)
    widget = _widget(viewer, qtbot, classifier=tiny_classifier, segmenter=tiny_segmenter)
    widget.explain_button.click()
    _wait(widget, qtbot)
    widget.segment_button.click()
    _wait(widget, qtbot)
    folder = widget.save_session(str(tmp_path / "case.samcam"))[0]

    other = make_napari_viewer()
    reopened = other.open(folder, plugin="napari-samcam")
    assert [lyr.name for lyr in reopened] == [lyr.name for lyr in viewer.layers]
    for before, after in zip(viewer.layers, reopened, strict=True):
        assert type(before) is type(after)
        np.testing.assert_allclose(before.scale, after.scale)
        assert before.metadata == after.metadata
        if before._type_string == "shapes":
            for a, b in zip(before.data, after.data, strict=True):
                np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_array_equal(np.asarray(before.data), np.asarray(after.data))
        if hasattr(before, "features"):
            pd.testing.assert_frame_equal(before.features, after.features)


def test_prompt_geometry_follows_layer_scale(make_napari_viewer, qtbot):
    """A box drawn on a Shapes layer with another scale lands on the right pixels."""
    from napari_samcam._napari._layers import shapes_to_boxes

    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((40, 60), dtype=np.float32), scale=(0.5, 0.5))
    # drawn in world units (millimetres) on a layer of scale 1
    rect = box_to_rectangle((10, 20, 30, 40)) * 0.5
    shapes = viewer.add_shapes([rect], shape_type="rectangle")
    boxes, ids = shapes_to_boxes(shapes, image, (), tuple(viewer.dims.point))
    assert boxes.tolist() == [[10, 20, 30, 40]] and ids == [0]


def test_text_prompt_with_a_local_clip_folder(
    make_napari_viewer, qtbot, tiny_segmenter, tiny_clip_folder, errors
):
    viewer = make_napari_viewer()
    _phantom(viewer)
    permissive = {
        "pred_iou_thresh": 0.0,
        "stability_score_thresh": 0.0,
        "box_fit_thresh": 0.0,
        "min_area_fraction": 0.0,
        "max_area_fraction": 1.0,
    }
    widget = _widget(viewer, qtbot, segmenter=tiny_segmenter, text_options=permissive)
    widget.prompt_kind.value = "text"
    widget.clip.value = str(tiny_clip_folder)
    assert widget.text.enabled, widget.clip_message.text()
    widget.text.value = "nodule"
    widget.segment_button.click()
    _wait(widget, qtbot)
    assert errors == []
    table = viewer.layers["phantom lesion text regions"].features
    assert table["region_source"].tolist() == ["sam-text"]
    assert '"text": "nodule"' in table["prompt"].iloc[0]


@pytest.fixture(scope="module")
def lesion_detector():
    from napari_samcam.classifiers import load_classifier

    try:
        return load_classifier("lesion-detector", device="cpu")
    except Exception as exc:  # the shipped weights are not in this checkout
        pytest.skip(f"built-in classifier not available: {exc}")


@pytest.mark.slow
def test_builtin_models_end_to_end_on_the_phantom_sample(
    make_napari_viewer, qtbot, lesion_detector, litemedsam, errors
):
    """Open sample -> load classifier -> explain -> SAM box prompt -> metrics table."""
    viewer = make_napari_viewer()
    _phantom(viewer)
    truth = viewer.layers["phantom lesion mask"].data.astype(bool)
    widget = _widget(viewer, qtbot, segmenter=litemedsam)
    assert widget.classifier.currentText() == "lesion-detector"

    widget.load_button.click()
    _wait(widget, qtbot)
    assert errors == []
    assert "lesion" in widget.target.choices or len(widget.target.choices) > 1
    assert widget.predictions.text().startswith("predicted:")

    widget.explain_button.click()
    _wait(widget, qtbot)
    saliency = _saliency(viewer)
    provenance = saliency.metadata[META_KEY]["provenance"]
    assert provenance["classifier"] == "lesion-detector"
    assert saliency.name == f"phantom lesion lesion-detector gradcam [{provenance['class_name']}]"

    widget.segment_button.click()
    _wait(widget, qtbot, timeout=120000)
    assert errors == []
    regions = viewer.layers["phantom lesion box regions"]
    row = regions.features.iloc[0]
    mask = regions.data == row["label"]
    dice = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
    assert dice > 0.7, dice  # LiteMedSAM finds the lesion from its box
    assert row["score"] > 0.5
    assert row["hit"] == 1.0  # the lesion detector's peak is on the lesion
    assert 0.0 < row["energy"] <= 1.0 and 0.0 <= row["iou"] <= 1.0
    assert row["auroc"] > 0.5
