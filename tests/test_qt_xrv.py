"""A torchxrayvision model explained in the widget, typed in and chosen as a user would."""

from __future__ import annotations

import contextlib

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")
pytest.importorskip("torchxrayvision")

with contextlib.suppress(ImportError):
    import torch._dynamo

import torch
from qtpy.QtCore import Qt

from napari_samcam._napari._layers import META_KEY
from napari_samcam._napari._session import SamcamSession

pytestmark = pytest.mark.gui
SPEC = "xrv:densenet121-res224-all"


def test_xrv_model_explained_in_the_widget(make_napari_viewer, qtbot, tmp_path):
    from napari_samcam._qt._widget import SamcamWidget
    from napari_samcam.xrv_classifiers import build_xrv_model

    torch.manual_seed(0)
    model = build_xrv_model("densenet121-res224-all")
    with torch.no_grad():  # moderate, positive head: non-zero maps from random weights
        model.classifier.weight.abs_().mul_(1e-3)
    checkpoint = tmp_path / "xrv.pt"
    torch.save(model.state_dict(), checkpoint)

    viewer = make_napari_viewer()
    [image] = [
        lyr
        for lyr in viewer.open_sample("napari-samcam", "phantom-lesion")
        if lyr._type_string == "image"
    ]
    widget = SamcamWidget(viewer, session=SamcamSession(viewer, device="cpu"))
    viewer.window.add_dock_widget(widget, name="SAM-CAM")

    widget.classifier.clearEditText()
    qtbot.keyClicks(widget.classifier, SPEC)
    qtbot.keyClick(widget.classifier, Qt.Key.Key_Return)
    widget.checkpoint.value = str(checkpoint)
    widget.load_button.click()
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=120000)
    combo = widget.target.native
    names = [combo.itemText(i) for i in range(combo.count())]
    assert "Pleural Effusion" in names and "Airspace Opacity" in names
    combo.setCurrentIndex(names.index("Pleural Effusion"))

    widget.explain_button.click()
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=120000)
    saliency = next(
        lyr for lyr in viewer.layers if lyr.metadata.get(META_KEY, {}).get("kind") == "saliency"
    )
    provenance = saliency.metadata[META_KEY]["provenance"]
    assert provenance["classifier"] == SPEC
    assert provenance["class_name"] == "Pleural Effusion"
    assert provenance["layer"] == "features.norm5"
    assert saliency.data.shape == image.data.shape and saliency.data.max() == pytest.approx(1.0)
