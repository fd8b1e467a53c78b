"""One image's results never touch another's: two images explained in one viewer keep their maps.

Driven with real clicks on the dock widget (drop-downs picked as a user picks them, the save
dialog answered by patching ``QFileDialog``). The classifier is the built-in ``lesion-detector``
(both phantoms get a map of the same classifier, method and class); SAM is a tiny random-weight
model, as only the bookkeeping matters here.
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

from napari_samcam._napari._layers import samcam_meta
from napari_samcam._napari._session_io import read_session
from test_qt_clicks import click, dock_widget, errors_in, notes, open_sample, wait_for_job

__all__ = ["notes"]  # the fixture, imported for its use below

pytestmark = pytest.mark.gui


def pick_exact(combo, text: str) -> None:
    """Pick the drop-down item whose text is exactly ``text``, as a user picks it."""
    native = getattr(combo, "native", combo)
    items = [native.itemText(i) for i in range(native.count())]
    assert text in items, f"no item {text!r} in {items}"
    native.setCurrentIndex(items.index(text))


def saliency_layers_of(viewer, image_name: str) -> list:
    return [
        layer
        for layer in viewer.layers
        if samcam_meta(layer).get("kind") == "saliency"
        and samcam_meta(layer).get("image_layer") == image_name
    ]


def test_second_image_keeps_the_first_images_map_segment_and_session(
    make_napari_viewer, qtbot, tiny_segmenter, notes, tmp_path, monkeypatch
):
    viewer = make_napari_viewer()
    first = open_sample(viewer, "phantom-lesion")
    second = open_sample(viewer, "phantom-marker")
    widget = dock_widget(viewer, qtbot, tiny_segmenter)

    pick_exact(widget.image, first.name)
    click(qtbot, widget.explain_button)
    wait_for_job(widget, qtbot)
    (first_map,) = saliency_layers_of(viewer, first.name)
    first_data = np.array(first_map.data)

    pick_exact(widget.image, second.name)
    click(qtbot, widget.explain_button)
    wait_for_job(widget, qtbot)
    (second_map,) = saliency_layers_of(viewer, second.name)
    # the first image still has its own map, unchanged, under a name of its own
    (kept,) = saliency_layers_of(viewer, first.name)
    np.testing.assert_array_equal(kept.data, first_data)
    assert kept.name != second_map.name
    assert first.name in kept.name and second.name in second_map.name
    assert not np.array_equal(np.asarray(second_map.data), first_data)

    pick_exact(widget.image, first.name)
    assert widget.saliency.value is kept  # the metrics score the first image's map
    click(qtbot, widget.segment_button)
    wait_for_job(widget, qtbot)
    assert errors_in(notes) == []
    assert not [text for _, text in notes if "no saliency" in text]
    table = widget.session.metrics(first)
    assert len(table) == 1
    assert table["saliency"].tolist() == [kept.name]  # names exactly the first image's map
    assert samcam_meta(viewer.layers[table["saliency"].iloc[0]])["image_layer"] == first.name
    assert np.isfinite(table["energy"].iloc[0])  # scored against a map, not "no saliency"

    folder = tmp_path / "two images.samcam"
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(folder), ""))
    )
    click(qtbot, widget.save_button)
    assert errors_in(notes) == []
    saved = {kwargs["name"]: (data, kwargs) for data, kwargs, _ in read_session(folder)}
    for name, data in ((kept.name, first_data), (second_map.name, second_map.data)):
        assert name in saved, f"the session lost {name!r}: {sorted(saved)}"
        np.testing.assert_array_equal(saved[name][0], data)
