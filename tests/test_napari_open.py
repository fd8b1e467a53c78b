"""Files the plugin writes open again as what they were, through ``viewer.open`` on a viewer."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari.layers import Image, Labels

from napari_samcam._napari._layers import META_KEY

pytestmark = pytest.mark.gui

PLUGIN = "napari-samcam"


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def reader_preferences(monkeypatch):
    """napari's reader preferences, changed for this test only (never saved to disk)."""
    from napari.settings import get_settings

    plugins = get_settings().plugins
    monkeypatch.setattr(get_settings(), "_save_on_change", False)
    saved = dict(plugins.extension2reader)
    yield plugins
    plugins.extension2reader = saved


def _mask(shape=(2, 30, 40)):
    data = np.zeros(shape, dtype=np.int32)
    data[..., 3:9, 4:12] = 1
    data[..., 15:25, 20:38] = 2
    data[..., 20:28, 1:5] = 300  # more than a uint8 holds
    if data.ndim == 3:
        data[0, 15:25, 20:38] = 0
    return data


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_saved_regions_mask_reopens_as_the_same_labels(viewer, tmp_path, suffix):
    meta = {"kind": "regions", "image_layer": "ct", "segmenter": "litemedsam"}
    layer = viewer.add_labels(
        _mask(), name="ct regions", scale=(2.5, 0.5, 0.75), metadata={META_KEY: meta}
    )
    path = tmp_path / f"mask{suffix}"
    layer.save(str(path), plugin=PLUGIN)
    viewer.layers.clear()

    (back,) = viewer.open(str(path), plugin=PLUGIN)
    assert isinstance(back, Labels)
    assert back.data.dtype == np.int32
    np.testing.assert_array_equal(back.data, _mask())
    assert back.name == "ct regions"
    np.testing.assert_allclose(back.scale, (2.5, 0.5, 0.75))
    assert back.metadata[META_KEY] == meta


def test_a_plain_labels_layer_reopens_as_labels_and_images_stay_images(viewer, tmp_path):
    viewer.add_labels(_mask((30, 40)), name="drawn")
    viewer.add_image(np.linspace(0, 1, 30 * 40, dtype=np.float32).reshape(30, 40), name="img")
    viewer.layers["drawn"].save(str(tmp_path / "drawn.nii.gz"), plugin=PLUGIN)
    viewer.layers["img"].save(str(tmp_path / "img.nii.gz"), plugin=PLUGIN)
    assert not (tmp_path / "drawn.json").exists()  # no provenance: nothing beside the file

    (drawn,) = viewer.open(str(tmp_path / "drawn.nii.gz"), plugin=PLUGIN)
    (img,) = viewer.open(str(tmp_path / "img.nii.gz"), plugin=PLUGIN)
    assert isinstance(drawn, Labels) and drawn.name == "drawn [1]"
    np.testing.assert_array_equal(drawn.data, _mask((30, 40)))
    assert isinstance(img, Image) and img.data.dtype == np.float32


def test_saved_saliency_map_reopens_as_an_overlay_with_its_provenance(viewer, tmp_path):
    provenance = {"classifier": "lesion-detector", "method": "gradcam", "class_name": "lesion"}
    data = np.random.default_rng(0).random((30, 40)).astype(np.float32)
    meta = {"kind": "saliency", "image_layer": "ct", "provenance": provenance}
    layer = viewer.add_image(
        data, name="lesion-detector gradcam [lesion]", metadata={META_KEY: meta}
    )
    layer.save(str(tmp_path / "saliency.nii.gz"), plugin=PLUGIN)
    viewer.layers.clear()

    (back,) = viewer.open(str(tmp_path / "saliency.nii.gz"), plugin=PLUGIN)
    assert isinstance(back, Image) and back.name == "lesion-detector gradcam [lesion]"
    np.testing.assert_array_equal(back.data, data)
    assert back.metadata[META_KEY]["provenance"] == provenance
    assert back.colormap.name == "inferno" and back.blending == "additive"


def test_a_json_of_another_tool_beside_a_nifti_is_left_alone(viewer, tmp_path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.ones((6, 5), np.float32), np.eye(4)), str(tmp_path / "t1.nii.gz"))
    (tmp_path / "t1.json").write_text('{"name": "x", "RepetitionTime": 2.0}', encoding="utf-8")
    (layer,) = viewer.open(str(tmp_path / "t1.nii.gz"), plugin=PLUGIN)
    assert layer.name == "t1" and META_KEY not in layer.metadata


def test_dicom_file_opens_that_file_and_the_reader_preference_is_honoured(
    viewer, reader_preferences
):
    import pydicom
    import pydicom.data
    from napari.errors import MultipleReaderError

    path = pydicom.data.get_testdata_file("CT_small.dcm", download=False)
    rows, cols = pydicom.dcmread(path).pixel_array.shape

    (layer,) = viewer.open(path, plugin=PLUGIN)
    assert layer.data.shape == (rows, cols) and layer.metadata["modality"] == "CT"

    # napari's own DICOM reader claims the file too: without a preference napari asks
    with pytest.raises(MultipleReaderError, match=PLUGIN):
        viewer.open(path, plugin=None)
    reader_preferences.extension2reader = {"*.dcm": PLUGIN}
    (again,) = viewer.open(path, plugin=None)
    assert again.data.shape == (rows, cols) and again.metadata["modality"] == "CT"
