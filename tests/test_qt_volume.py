""" "Segment volume from this box": the widget's button, clicked as a user clicks it.

The SAM 2 model is a seeded random-weight SAM 2.1 tiny at a 256 px input (no weights can be
downloaded here); what is checked is the wiring: the box drawn on the displayed slice, one region
per slice equal to the API's, the GUI thread free while SAM 2 runs in the worker.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

with contextlib.suppress(ImportError):
    import torch._dynamo  # noqa: F401  (before any viewer: see test_qt_clicks)

from napari_samcam._napari._layers import box_to_rectangle
from test_qt_clicks import click, dock_widget, errors_in, notes, wait_for_job  # noqa: F401
from test_qt_responsiveness import MAX_STALL, StallMeter

pytestmark = [pytest.mark.gui]

BOX = (6, 8, 30, 28)  # (row0, col0, row1, col1) on the key slice


def _volume() -> np.ndarray:
    rng = np.random.default_rng(0)
    volume = rng.random((3, 40, 36)).astype(np.float32)
    volume[:, 8:28, 10:26] += 1.5
    return volume


def _viewer_with_box(make_napari_viewer, key: int):
    viewer = make_napari_viewer(show=True)
    image = viewer.add_image(_volume(), name="volume")
    viewer.add_shapes(
        [box_to_rectangle(BOX, (key,))], shape_type="rectangle", name="volume boxes", ndim=3
    )
    viewer.dims.set_current_step(0, key)
    return viewer, image


def test_volume_button_says_which_models_can(make_napari_viewer, qtbot, tiny_segmenter, notes):  # noqa: F811
    viewer, _ = _viewer_with_box(make_napari_viewer, 1)
    widget = dock_widget(viewer, qtbot, tiny_segmenter)
    widget.shapes.value = viewer.layers["volume boxes"]
    click(qtbot, widget.segment_volume_button)
    wait_for_job(widget, qtbot)
    assert any("cannot carry a box through a volume" in e for e in errors_in(notes))
    assert "volume box regions" not in viewer.layers


@pytest.mark.slow
def test_volume_button_gives_one_region_per_slice(make_napari_viewer, qtbot, notes):  # noqa: F811
    sam2 = pytest.importorskip("sam2")
    assert sam2
    import torch

    from napari_samcam.sam.sam2_backend import build_sam2_model
    from napari_samcam.sam_models import load_sam_model
    from napari_samcam.segment import Segmenter

    torch.manual_seed(0)
    model = build_sam2_model("sam2.1_hiera_tiny", overrides=("++model.image_size=256",))
    segmenter = Segmenter(load_sam_model(model, device="cpu"))
    key = 1
    viewer, image = _viewer_with_box(make_napari_viewer, key)
    widget = dock_widget(viewer, qtbot, segmenter)
    widget.shapes.value = viewer.layers["volume boxes"]

    steps: list[tuple[float, str]] = []
    widget.runner.step.connect(lambda text: steps.append((time.perf_counter(), text)))
    meter = StallMeter()
    meter.start()
    click(qtbot, widget.segment_volume_button)
    wait_for_job(widget, qtbot)
    meter.stop()
    assert errors_in(notes) == []
    # while SAM 2 carries the box through the slices (seconds), the GUI thread stays free
    begin = next(t for t, text in steps if text.endswith("SAM volume from the box"))
    end = next(t for t, text in steps if text.endswith("metrics"))
    during = meter.gaps(begin, end)
    assert end - begin > 1.0 and len(during) > 20
    print(f"propagation {end - begin:.1f} s, longest stall {1000 * during.max():.0f} ms")
    assert float(during.max()) < MAX_STALL

    layer = viewer.layers["volume box regions"]
    table = layer.features
    assert sorted(table["slice"].astype(int)) == [0, 1, 2]
    window = tuple(float(v) for v in image.contrast_limits)
    expected = segmenter.segment_volume(_volume(), BOX, key_slice=key, window=window)
    data = np.asarray(layer.data)
    for label, plane in zip(table["label"], table["slice"].astype(int), strict=True):
        np.testing.assert_array_equal(data[plane] == label, expected[plane].mask)
