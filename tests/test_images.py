import numpy as np
import pydicom
import pydicom.data
import pytest

from napari_samcam.errors import ImageReadError, InputError
from napari_samcam.images import image_hash, read_image, to_unit_range, validate_image


def _testfile(name):
    return pydicom.data.get_testdata_file(name, download=False)


def test_dicom_monochrome1_is_inverted_and_rescaled():
    path = _testfile("RG1_UNCI.dcm")
    ds = pydicom.dcmread(path)
    raw = ds.pixel_array.astype(np.float32)
    data = read_image(path)
    assert data.array.shape == (1955, 1841)
    assert data.metadata["modality"] == "CR"
    assert data.metadata["photometric"] == "MONOCHROME1"
    # Inversion maps the raw maximum to the minimum and vice versa (slope 1, intercept 0 here).
    assert data.array.max() == pytest.approx(raw.max())
    assert data.array[0, 0] == pytest.approx(raw.max() + raw.min() - raw[0, 0])
    low, high = data.window
    assert high > low


def test_dicom_ct_modality_lut_gives_hounsfield_units():
    path = _testfile("CT_small.dcm")
    ds = pydicom.dcmread(path)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    data = read_image(path)
    np.testing.assert_allclose(data.array, expected)
    assert data.metadata["spacing"] == pytest.approx(tuple(float(v) for v in ds.PixelSpacing))


def test_multiframe_dicom_is_a_stack():
    data = read_image(_testfile("emri_small.dcm"))
    assert data.array.shape == (10, 64, 64)
    assert len(data.metadata["spacing"]) == 3


def test_rgb_dicom():
    data = read_image(_testfile("US1_UNCI.dcm"))
    assert data.array.shape == (480, 640, 3)
    assert data.rgb


def test_dicom_series_folder_sorted_by_position(tmp_path):
    ds = pydicom.dcmread(_testfile("CT_small.dcm"))
    for i, z in enumerate([20.0, 0.0, 10.0]):  # written out of order
        ds.ImagePositionPatient = [0.0, 0.0, z]
        ds.InstanceNumber = i
        arr = ds.pixel_array.copy()
        arr[0, 0] = int(z)  # tag each slice with its position
        ds.PixelData = arr.tobytes()
        ds.save_as(tmp_path / f"slice{i}.dcm")
    data = read_image(tmp_path)
    assert data.array.shape == (3, 128, 128)
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    tags = (data.array[:, 0, 0] - intercept) / slope
    np.testing.assert_allclose(tags, [0, 10, 20])
    assert data.metadata["spacing"][0] == pytest.approx(10.0)


def test_nifti_is_read_slices_first(tmp_path):
    import nibabel as nib

    volume = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)  # (x, y, z)
    nib.save(nib.Nifti1Image(volume, np.diag([2.0, 3.0, 4.0, 1.0])), tmp_path / "v.nii.gz")
    data = read_image(tmp_path / "v.nii.gz")
    assert data.array.shape == (6, 5, 4)
    assert data.array[2, 3, 1] == volume[1, 3, 2]
    assert data.metadata["spacing"] == pytest.approx((4.0, 3.0, 2.0))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_png_tiff_round_trip(tmp_path, dtype):
    import imageio.v3 as iio
    import tifffile

    array = (np.arange(30 * 20).reshape(30, 20) % 200).astype(dtype)
    tifffile.imwrite(tmp_path / "a.tif", array)
    np.testing.assert_array_equal(read_image(tmp_path / "a.tif").array, array)
    if dtype != np.float32:
        iio.imwrite(tmp_path / "a.png", array)
        np.testing.assert_array_equal(read_image(tmp_path / "a.png").array, array)


def test_rgba_with_constant_alpha_drops_alpha(tmp_path):
    import imageio.v3 as iio

    rgba = np.zeros((8, 9, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 255
    iio.imwrite(tmp_path / "c.png", rgba)
    data = read_image(tmp_path / "c.png")
    assert data.array.shape == (8, 9, 3) and data.rgb


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(ImageReadError, match="does not exist"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "x.xyz").write_text("hello")
    with pytest.raises(ImageReadError, match="unsupported file type"):
        read_image(tmp_path / "x.xyz")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ImageReadError, match=r"broken\.png"):
        read_image(tmp_path / "broken.png")
    (tmp_path / "broken.dcm").write_bytes(b"\x00" * 200)
    with pytest.raises(ImageReadError, match=r"broken\.dcm"):
        read_image(tmp_path / "broken.dcm")


def test_validate_image_rejects_bad_arrays():
    with pytest.raises(InputError, match="one pixel"):
        validate_image(np.zeros((1, 5)))
    with pytest.raises(InputError, match="shape"):
        validate_image(np.zeros((2, 3, 4, 5)))
    bad = np.ones((4, 4), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(InputError, match="1 pixel"):
        validate_image(bad, name="my image")


def test_to_unit_range():
    u8 = np.array([[0, 51], [255, 102]], np.uint8)
    np.testing.assert_allclose(to_unit_range(u8), u8 / 255.0)
    u16 = np.array([[100, 300], [200, 500]], np.uint16)
    np.testing.assert_allclose(to_unit_range(u16), [[0, 0.5], [0.25, 1]])
    np.testing.assert_allclose(to_unit_range(u16, (200, 400)), [[0, 0.5], [0, 1]])
    assert not to_unit_range(np.full((3, 3), 7.0)).any()
    with pytest.raises(InputError, match="window"):
        to_unit_range(u16, (5, 5))


def test_image_hash_depends_on_content_shape_and_dtype():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert image_hash(a) == image_hash(a.copy())
    assert image_hash(a) != image_hash(a.reshape(4, 3))
    assert image_hash(a) != image_hash(a.astype(np.uint16))
    b = a.copy()
    b[0, 0] = 1
    assert image_hash(a) != image_hash(b)
