"""Reader, writers and saved sessions of the napari plugin (no viewer, no Qt needed)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

napari = pytest.importorskip("napari")

from napari.layers import Image, Labels, Layer, Points, Shapes  # noqa: E402

from napari_samcam._napari._layers import (  # noqa: E402
    META_KEY,
    box_to_rectangle,
    rectangle_to_box,
)
from napari_samcam._napari._reader import napari_get_reader  # noqa: E402
from napari_samcam._napari._session_io import (  # noqa: E402
    SESSION_FILE,
    decode,
    encode,
    read_session,
    write_session,
)
from napari_samcam._napari._writer import (  # noqa: E402
    write_features,
    write_image,
    write_labels,
)
from napari_samcam.errors import InputError, OutputExistsError  # noqa: E402


def _session_layers():
    rng = np.random.default_rng(0)
    image = Image(
        rng.random((2, 20, 30)).astype(np.float32),
        name="scan (CT)",
        scale=(2.5, 0.7, 0.7),
        translate=(0, 1.0, -3.0),
        contrast_limits=(0.1, 0.9),
        metadata={"spacing": (2.5, 0.7, 0.7), "window": (0.1, 0.9), "modality": "CT"},
    )
    saliency = Image(
        rng.random((2, 20, 30)).astype(np.float32),
        name="lesion-detector gradcam [lesion]",
        scale=(2.5, 0.7, 0.7),
        colormap="inferno",
        blending="additive",
        opacity=0.5,
        metadata={META_KEY: {"kind": "saliency", "provenance": {"method": "gradcam", "p": 0.9}}},
    )
    labels_data = np.zeros((2, 20, 30), dtype=np.int32)
    labels_data[1, 3:8, 4:9] = 1
    labels_data[0, 10:12, 10:20] = 2
    features = pd.DataFrame(
        {
            "index": [1, 2],
            "label": [1, 2],
            "slice": ["1", "0"],
            "region_source": ["sam-box", "sam-saliency-box"],
            "prompt": ['{"box": [3, 4, 8, 9]}', '{"box": [10, 10, 12, 20]}'],
            "score": [0.93, np.nan],
            "hit": [1.0, 0.0],
        }
    )
    labels = Labels(
        labels_data,
        name="scan (CT) regions",
        scale=(2.5, 0.7, 0.7),
        features=features,
        metadata={META_KEY: {"kind": "regions", "image_layer": "scan (CT)"}},
    )
    shapes = Shapes(
        [box_to_rectangle((3, 4, 8, 9), (1,))],
        shape_type="rectangle",
        name="scan (CT) boxes",
        scale=(2.5, 0.7, 0.7),
        edge_color="cyan",
        face_color="transparent",
        features={"metrics": ["IoU 0.50  hit"]},
        text={"string": "{metrics}", "anchor": "upper_left", "size": 10, "color": "yellow"},
    )
    points = Points(
        np.array([[1, 5.0, 6.0], [1, 2.0, 2.0]]),
        name="scan (CT) points",
        scale=(2.5, 0.7, 0.7),
        features={"positive": [True, False]},
        face_color="positive",
        face_color_cycle={True: "lime", False: "red"},
    )
    return [image, saliency, labels, shapes, points]


def _assert_same_layer(a: Layer, b: Layer):
    assert type(a) is type(b)
    assert a.name == b.name
    np.testing.assert_allclose(a.scale, b.scale)
    np.testing.assert_allclose(a.translate, b.translate)
    assert a.opacity == pytest.approx(b.opacity)
    assert str(a.blending) == str(b.blending)
    assert a.visible == b.visible
    assert a.metadata == b.metadata
    if isinstance(a, Shapes):
        assert len(a.data) == len(b.data)
        for va, vb in zip(a.data, b.data, strict=True):
            np.testing.assert_array_equal(va, vb)
        assert list(a.shape_type) == list(b.shape_type)
        np.testing.assert_allclose(a.edge_color, b.edge_color)
        assert a.text.string.format == b.text.string.format
    else:
        assert np.asarray(a.data).dtype == np.asarray(b.data).dtype
        np.testing.assert_array_equal(np.asarray(a.data), np.asarray(b.data))
    if isinstance(a, Image):
        assert a.colormap.name == b.colormap.name
        np.testing.assert_allclose(a.contrast_limits, b.contrast_limits)
    if isinstance(a, (Labels, Shapes, Points)):
        pd.testing.assert_frame_equal(a.features, b.features)
    if isinstance(a, Points):
        np.testing.assert_allclose(a.face_color, b.face_color)


def test_session_round_trip_is_exact(tmp_path):
    layers = _session_layers()
    written = write_session(tmp_path / "case1", [lyr.as_layer_data_tuple() for lyr in layers])
    assert written == [str(tmp_path / "case1")]
    folder = tmp_path / "case1"
    assert (folder / SESSION_FILE).is_file()
    metrics = pd.read_csv(folder / "metrics.csv")
    assert list(metrics["label"]) == [1, 2]
    document = json.loads((folder / SESSION_FILE).read_text())
    assert document["format"] == "napari-samcam-session"
    assert [p["kind"] for p in document["provenance"]] == ["saliency", "regions"]

    reader = napari_get_reader(str(folder))
    assert reader is not None
    reread = [Layer.create(*data) for data in reader(str(folder))]
    assert len(reread) == len(layers)
    for before, after in zip(layers, reread, strict=True):
        _assert_same_layer(before, after)
    # tuples in metadata stay tuples
    assert reread[0].metadata["window"] == (0.1, 0.9)


def test_session_write_replaces_a_session_but_not_other_folders(tmp_path):
    layers = _session_layers()[:1]
    target = tmp_path / "s"
    write_session(target, [lyr.as_layer_data_tuple() for lyr in layers])
    write_session(target, [lyr.as_layer_data_tuple() for lyr in layers])  # replaces
    assert len(read_session(target)) == 1
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="choose a new or empty folder"):
        write_session(other, [lyr.as_layer_data_tuple() for lyr in layers])
    assert (other / "notes.txt").read_text() == "keep me"
    # no temporary folders are left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "s"]


def test_tagged_json_keeps_python_types():
    value = {
        "t": (1, 2.5),
        1: [np.float32(0.5), np.arange(3, dtype=np.uint8)],
        "nan": float("nan"),
        "s": "x",
    }
    back = decode(json.loads(json.dumps(encode(value))))
    assert back["t"] == (1, 2.5)
    assert back[1][0] == np.float32(0.5) and back[1][0].dtype == np.float32
    assert back[1][1].dtype == np.uint8
    np.testing.assert_array_equal(back[1][1], [0, 1, 2])
    assert np.isnan(back["nan"])


@pytest.mark.parametrize("suffix", [".tif", ".nii.gz", ".nii", ".png"])
def test_labels_writer_round_trip(tmp_path, suffix):
    data = np.zeros((12, 17), dtype=np.int32)
    data[2:5, 3:9] = 1
    data[7:11, 10:15] = 2
    layer = Labels(data, name="m", metadata={META_KEY: {"kind": "regions"}})
    _, meta, _ = layer.as_layer_data_tuple()
    paths = write_labels(str(tmp_path / f"mask{suffix}"), data, meta)
    assert paths[0].endswith(suffix)
    assert paths[1].endswith("mask.json")  # provenance sidecar
    if suffix in (".nii", ".nii.gz"):
        from napari_samcam.images import read_image

        back = read_image(paths[0]).array
    elif suffix == ".png":
        import imageio.v3 as iio

        back = iio.imread(paths[0])
    else:
        import tifffile

        back = tifffile.imread(paths[0])
    np.testing.assert_array_equal(np.asarray(back).astype(np.int32), data)


def test_saliency_writer_tiff_keeps_values_and_provenance(tmp_path):
    import tifffile

    rng = np.random.default_rng(1)
    data = rng.random((9, 11)).astype(np.float32)
    layer = Image(data, name="s", metadata={META_KEY: {"kind": "saliency", "provenance": {}}})
    _, meta, _ = layer.as_layer_data_tuple()
    path = write_image(str(tmp_path / "s.tif"), data, meta)[0]
    with tifffile.TiffFile(path) as tif:
        np.testing.assert_array_equal(tif.asarray(), data)
        described = json.loads(tif.pages[0].description)
    assert described[META_KEY]["kind"] == "saliency"


def test_volume_nifti_round_trip_keeps_orientation_and_spacing(tmp_path):
    from napari_samcam.images import read_image

    data = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    layer = Image(data, name="v", scale=(2.0, 0.5, 0.25))
    _, meta, _ = layer.as_layer_data_tuple()
    path = write_image(str(tmp_path / "v.nii.gz"), data, meta)[0]
    back = read_image(path)
    np.testing.assert_array_equal(back.array, data)
    np.testing.assert_allclose(back.metadata["spacing"], (2.0, 0.5, 0.25))


def test_png_writer_refuses_volumes(tmp_path):
    data = np.zeros((2, 4, 4), dtype=np.int32)
    _, meta, _ = Labels(data).as_layer_data_tuple()
    with pytest.raises(InputError, match="PNG holds one 2-D image"):
        write_labels(str(tmp_path / "v.png"), data, meta)


def test_features_writer(tmp_path):
    data = np.zeros((4, 4), dtype=np.int32)
    layer = Labels(data, features=pd.DataFrame({"index": [1], "label": [1], "iou": [0.25]}))
    _, meta, _ = layer.as_layer_data_tuple()
    path = write_features(str(tmp_path / "t.csv"), data, meta)[0]
    table = pd.read_csv(path)
    assert list(table.columns) == ["index", "label", "iou"]
    assert table["iou"][0] == 0.25
    _, empty_meta, _ = Labels(data).as_layer_data_tuple()
    with pytest.raises(InputError, match="no features table"):
        write_features(str(tmp_path / "u.csv"), data, empty_meta)


def test_reader_claims_dicom_nifti_and_sessions_only(tmp_path):
    assert napari_get_reader(str(tmp_path / "a.dcm")) is not None
    assert napari_get_reader(str(tmp_path / "a.nii.gz")) is not None
    assert napari_get_reader(str(tmp_path / "a.NII")) is not None
    assert napari_get_reader(str(tmp_path / "a.png")) is None
    assert napari_get_reader(str(tmp_path / "a.tif")) is None
    assert napari_get_reader(str(tmp_path)) is None  # an empty folder is not ours


def test_reader_dicom_file_gives_window_scale_and_metadata():
    import pydicom.data

    path = pydicom.data.get_testdata_file("CT_small.dcm")
    reader = napari_get_reader(path)
    ((data, meta, kind),) = reader(path)
    assert kind == "image"
    assert data.shape == (128, 128)
    assert meta["name"] == "CT_small (CT)"
    assert meta["metadata"]["modality"] == "CT"
    np.testing.assert_allclose(meta["scale"], meta["metadata"]["spacing"])
    window = meta["metadata"]["window"]
    if window is not None:
        assert meta["contrast_limits"] == pytest.approx(window)


def test_reader_dicom_series_folder_stacks_in_slice_order(tmp_path):
    import pydicom
    import pydicom.data

    source = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    folder = tmp_path / "series"
    folder.mkdir()
    # written in reverse file order: the stack must follow the slice positions
    for i, z in enumerate([20.0, 10.0, 0.0]):
        ds = source.copy()
        ds.ImagePositionPatient = [0.0, 0.0, z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.InstanceNumber = 3 - i
        arr = ds.pixel_array.copy()
        arr[0, 0] = int(z)
        ds.PixelData = arr.tobytes()
        ds.save_as(folder / f"img{i}.dcm")
    reader = napari_get_reader(str(folder))
    assert reader is not None
    ((data, meta, _),) = reader(str(folder))
    assert data.shape == (3, 128, 128)
    assert meta["scale"][0] == pytest.approx(10.0)
    corner = [float(s[0, 0]) for s in data]
    assert corner == sorted(corner)


def test_rectangles_and_boxes_convert_exactly():
    box = (3, 4, 10, 12)
    rect = box_to_rectangle(box)
    assert rectangle_to_box(rect, (20, 20)) == box
    assert rectangle_to_box(box_to_rectangle((0, 0, 20, 20)), (20, 20)) == (0, 0, 20, 20)
    # rectangles reaching outside the image are clipped to it
    assert rectangle_to_box(np.array([[-5.0, -5.0], [30.0, 30.0]]), (20, 20)) == (0, 0, 20, 20)
    rect3 = box_to_rectangle(box, (2,))
    assert rect3.shape == (4, 3) and set(rect3[:, 0]) == {2.0}


def test_reader_nifti_volume_gets_slices_first_and_spacing_as_scale(tmp_path):
    import nibabel as nib

    xyz = np.arange(5 * 4 * 3, dtype=np.float32).reshape(5, 4, 3)  # NIfTI (x, y, z)
    image = nib.Nifti1Image(xyz, np.diag([0.5, 0.75, 2.0, 1.0]))
    path = tmp_path / "brain.nii.gz"
    nib.save(image, str(path))
    ((data, meta, kind),) = napari_get_reader(str(path))(str(path))
    assert kind == "image" and meta["name"] == "brain"
    assert data.shape == (3, 4, 5)  # (slice, row, col)
    np.testing.assert_array_equal(data, xyz.transpose(2, 1, 0))
    np.testing.assert_allclose(meta["scale"], (2.0, 0.75, 0.5))
    assert meta["units"] == ("mm", "mm", "mm")
    assert meta["contrast_limits"] == (0.0, float(xyz.max()))
