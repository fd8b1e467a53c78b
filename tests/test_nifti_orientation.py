"""NIfTI volumes read into one orientation (RAS+, slices first) and written back aligned with
their source file, voxel for voxel in world coordinates."""

from __future__ import annotations

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")
from nibabel import orientations  # noqa: E402

from napari_samcam.images import read_image  # noqa: E402

AFFINE = np.array(
    [[2.0, 0.0, 0.0, -40.0], [0.0, 3.0, 0.0, 12.5], [0.0, 0.0, 4.0, 7.0], [0.0, 0.0, 0.0, 1.0]]
)


def _volume() -> np.ndarray:
    """A (x, y, z) volume whose every voxel value is different."""
    rng = np.random.default_rng(3)
    return rng.permutation(5 * 6 * 7).reshape(5, 6, 7).astype(np.float32)


def _save(folder, codes: str) -> object:
    """The volume saved in the orientation ``codes`` (data and affine reoriented together)."""
    ras = nib.Nifti1Image(_volume(), AFFINE)
    transform = orientations.ornt_transform(
        orientations.io_orientation(AFFINE), orientations.axcodes2ornt(tuple(codes))
    )
    image = ras.as_reoriented(transform)
    assert "".join(orientations.aff2axcodes(image.affine)) == codes
    path = folder / f"{codes}.nii.gz"
    nib.save(image, str(path))
    return path


def _world_values(path) -> dict[tuple, float]:
    """Every voxel of a NIfTI file keyed by its world coordinate (rounded)."""
    image = nib.load(str(path))
    data = np.asarray(image.dataobj)
    ijk = np.stack(np.meshgrid(*map(np.arange, data.shape), indexing="ij"), -1).reshape(-1, 3)
    xyz = nib.affines.apply_affine(image.affine, ijk)
    return {tuple(np.round(p, 3)): float(data[tuple(v)]) for p, v in zip(xyz, ijk, strict=True)}


def test_ras_lps_and_permuted_copies_read_as_one_array(tmp_path):
    paths = {codes: _save(tmp_path, codes) for codes in ("RAS", "LPS", "PSL", "ILA")}
    raw = {codes: np.asarray(nib.load(str(p)).dataobj) for codes, p in paths.items()}
    assert not np.array_equal(raw["RAS"], raw["LPS"])  # the files differ on disk
    read = {codes: read_image(p) for codes, p in paths.items()}
    reference = read["RAS"]
    # RAS+ read slices first: (z, y, x)
    np.testing.assert_array_equal(reference.array, _volume().transpose(2, 1, 0))
    assert reference.metadata["spacing"] == pytest.approx((4.0, 3.0, 2.0))
    for codes, data in read.items():
        np.testing.assert_array_equal(data.array, reference.array, err_msg=codes)
        assert data.metadata["spacing"] == pytest.approx((4.0, 3.0, 2.0)), codes
        nifti = data.metadata["nifti"]
        assert nifti["orientation"] == codes
        np.testing.assert_allclose(nifti["affine"], nib.load(str(paths[codes])).affine)
        np.testing.assert_allclose(nifti["canonical_affine"], AFFINE)
        assert nifti["shape"] == list(raw[codes].shape)


def _write_mask(tmp_path, data, name: str):
    from napari.layers import Labels

    from napari_samcam._napari._writer import write_labels

    mask = data.array > np.median(data.array)
    layer = Labels(mask.astype(np.int32), metadata={"nifti": data.metadata["nifti"]})
    _, meta, _ = layer.as_layer_data_tuple()
    (path,) = write_labels(str(tmp_path / f"{name}.nii.gz"), layer.data, meta)
    return path


@pytest.mark.parametrize("codes", ["LPS", "PSL"])
def test_mask_written_back_lines_up_with_the_source_in_world_coordinates(tmp_path, codes):
    pytest.importorskip("napari")
    source = _save(tmp_path, codes)
    data = read_image(source)
    path = _write_mask(tmp_path, data, f"mask-{codes}")
    written, original = nib.load(path), nib.load(str(source))
    np.testing.assert_allclose(written.affine, original.affine)
    assert written.shape == original.shape
    # voxel for voxel: the mask is the threshold of the source voxel at the same place
    expected = np.asarray(original.dataobj) > np.median(data.array)
    np.testing.assert_array_equal(np.asarray(written.dataobj).astype(bool), expected)
    # and in world coordinates, whatever the voxel order
    values, mask = _world_values(source), _world_values(path)
    assert values.keys() == mask.keys()
    threshold = np.median(data.array)
    assert all(bool(mask[p]) == (values[p] > threshold) for p in values)
    # reading the mask back gives the mask as it was computed on the canonical array
    np.testing.assert_array_equal(read_image(path).array > 0, data.array > threshold)


def test_mask_of_another_shape_is_written_on_its_own_grid_with_a_warning(tmp_path):
    pytest.importorskip("napari")
    from napari.layers import Labels

    from napari_samcam._napari._writer import write_labels

    data = read_image(_save(tmp_path, "LPS"))
    layer = Labels(np.ones((6, 5), np.int32), metadata={"nifti": data.metadata["nifti"]})
    _, meta, _ = layer.as_layer_data_tuple()
    with pytest.warns(UserWarning, match="not that of its source"):
        (path,) = write_labels(str(tmp_path / "slice.nii.gz"), layer.data, meta)
    assert nib.load(path).shape == (5, 6)


def test_two_dimensional_nifti_keeps_its_orientation_too(tmp_path):
    pytest.importorskip("napari")
    plane = np.arange(20, dtype=np.float32).reshape(4, 5, 1)  # (x, y, 1)
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = 3.0  # x runs the other way: the same world points
    nib.save(nib.Nifti1Image(plane, np.eye(4)), str(tmp_path / "a.nii"))
    nib.save(nib.Nifti1Image(plane[::-1].copy(), flip), str(tmp_path / "b.nii"))
    a, b = read_image(tmp_path / "a.nii"), read_image(tmp_path / "b.nii")
    assert a.array.shape == (5, 4)
    np.testing.assert_array_equal(a.array, b.array)
    path = _write_mask(tmp_path, b, "mask-b")
    np.testing.assert_array_equal(
        np.asarray(nib.load(path).dataobj)[..., 0] > 0, plane[::-1, :, 0] > np.median(plane)
    )


def test_regions_of_a_nifti_volume_are_saved_aligned_with_it(tmp_path, tiny_segmenter):
    """Open an LPS volume in napari, segment a box on one slice, save the regions as NIfTI."""
    pytest.importorskip("napari")
    from napari.components import ViewerModel
    from napari.layers import Layer

    from napari_samcam._napari._layers import box_to_rectangle
    from napari_samcam._napari._reader import napari_get_reader
    from napari_samcam._napari._session import SamcamSession
    from napari_samcam._napari._writer import write_labels

    rng = np.random.default_rng(0)
    volume = rng.integers(0, 255, (40, 32, 3)).astype(np.float32)  # (x, y, z), RAS
    lps = orientations.ornt_transform(
        orientations.io_orientation(AFFINE), orientations.axcodes2ornt(("L", "P", "S"))
    )
    source = tmp_path / "lps.nii.gz"
    nib.save(nib.Nifti1Image(volume, AFFINE).as_reoriented(lps), str(source))
    viewer = ViewerModel()
    for data in napari_get_reader(str(source))(str(source)):
        viewer.add_layer(Layer.create(*data))
    image = viewer.layers[0]
    assert image.data.shape == (3, 32, 40)
    rectangle = box_to_rectangle((4, 6, 20, 30), (1,))
    viewer.add_shapes([rectangle], shape_type="rectangle", scale=image.scale)
    session = SamcamSession(viewer, segmenter=tiny_segmenter, context=None)
    regions = session.segment(shapes=viewer.layers[-1], index=1)
    assert regions.metadata["nifti"] == image.metadata["nifti"]
    assert regions.data[1].any() and not regions.data[[0, 2]].any()
    _, meta, _ = regions.as_layer_data_tuple()
    path = write_labels(str(tmp_path / "regions.nii.gz"), regions.data, meta)[0]
    written = nib.load(path)
    np.testing.assert_allclose(written.affine, nib.load(str(source)).affine)
    # back in the RAS frame the volume was made in, the labels sit on slice z = 1
    to_ras = orientations.ornt_transform(
        orientations.axcodes2ornt(("L", "P", "S")), orientations.axcodes2ornt(("R", "A", "S"))
    )
    ras = orientations.apply_orientation(np.asarray(written.dataobj), to_ras)
    np.testing.assert_array_equal(ras.transpose(2, 1, 0), regions.data)
