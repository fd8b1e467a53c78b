"""NIfTI reading into one orientation, and writing arrays back in the source file's orientation.

A NIfTI file stores voxels ``(i, j, k)`` in any axis order and direction; its affine maps them
to world (scanner) coordinates. Two files of one volume (say RAS and LPS) hold different arrays
with different affines. :func:`read_nifti` reorients every volume to the closest canonical
orientation, RAS+ (voxel axes pointing to the patient's Right, Anterior, Superior; what
nibabel's ``as_closest_canonical`` gives), by axis flips and permutations only (no resampling),
and then lays it out slices first: ``(z, y, x)`` = ``(slice, row, col)``. So both files read as
the same array. The source affine and the transform applied are kept in the metadata under
``"nifti"``; :func:`to_source` undoes the transform so that masks computed on the array are
written with the source affine and line up voxel for voxel with the source file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SUFFIXES = (".nii", ".nii.gz")

#: The orientation volumes are read into (nibabel axis codes of the array's x, y, z).
CANONICAL = ("R", "A", "S")


def read_nifti(path: Path) -> tuple[np.ndarray, dict]:
    """Read a NIfTI file in RAS+ orientation, slices first: float32 ``(Z, H, W)`` or ``(H, W)``.

    Returns
    -------
    array : numpy.ndarray
    metadata : dict
        ``format``, ``spacing`` (per array axis, from the header's voxel sizes), and ``nifti``:
        ``affine`` (the file's 4x4 voxel-to-world affine, as lists), ``orientation`` (the file's
        axis codes, e.g. ``"LPS"``), ``shape`` (the file's first three axes),
        ``to_canonical`` (nibabel orientation ``[[axis, flip], ...]`` taking the file's axes to
        RAS+) and ``canonical_affine`` (the affine of the reoriented ``(x, y, z)`` voxels).
    """
    import nibabel as nib

    array, metadata = oriented(nib.load(str(path)))
    return np.ascontiguousarray(array, dtype=np.float32), metadata


def oriented(image) -> tuple[np.ndarray, dict]:
    """A loaded nibabel image as :func:`read_nifti` lays it out, in its stored dtype (a view
    where the layout allows)."""
    from nibabel import orientations

    affine = np.asarray(image.affine, dtype=np.float64)
    array = np.asanyarray(image.dataobj)
    # 2-D files and higher dimensions: orient the three spatial axes, keep the rest
    if array.ndim < 3:
        array = array.reshape(array.shape + (1,) * (3 - array.ndim))
    shape = tuple(int(n) for n in array.shape[:3])
    zooms = [float(z) for z in image.header.get_zooms()[:3]]
    zooms += [1.0] * (3 - len(zooms))
    transform = orientations.ornt_transform(
        orientations.io_orientation(affine), orientations.axcodes2ornt(CANONICAL)
    )
    array = orientations.apply_orientation(array, transform)  # flips and transposes: a view
    canonical_zooms = [1.0, 1.0, 1.0]
    for axis, (new_axis, _) in enumerate(transform):
        canonical_zooms[int(new_axis)] = zooms[axis]
    canonical_affine = affine @ orientations.inv_ornt_aff(transform, shape)
    # (x, y, z, ...) -> (z, y, x, ...): slices first, rows, columns
    array = np.transpose(array, (2, 1, 0, *range(3, array.ndim)))
    spacing = [canonical_zooms[2], canonical_zooms[1], canonical_zooms[0]]
    spacing += [1.0] * (array.ndim - 3)
    keep = [axis for axis, n in enumerate(array.shape) if n != 1]
    array = array.reshape([array.shape[axis] for axis in keep])
    spacing = tuple(spacing[axis] for axis in keep)
    metadata = {
        "format": "nifti",
        "spacing": spacing,
        "modality": None,
        "window": None,
        "rgb": False,
        "nifti": {
            "affine": affine.tolist(),
            "orientation": "".join(orientations.aff2axcodes(affine)),
            "shape": list(shape),
            "to_canonical": transform.tolist(),
            "canonical_affine": canonical_affine.tolist(),
        },
    }
    return array, metadata


def to_source(array: np.ndarray, nifti: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """An array laid out as :func:`read_nifti` returns it, back in the source file's voxel order.

    Parameters
    ----------
    array : numpy.ndarray
        ``(Z, H, W)`` or ``(H, W)`` (a mask or map of the volume read), any dtype.
    nifti : dict
        The ``"nifti"`` metadata of the volume read.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray) or None
        The data in the file's ``(i, j, k)`` order and the file's affine, or ``None`` when the
        array does not have the volume's shape (it cannot be placed in the source's voxels).
    """
    from nibabel import orientations

    transform = np.asarray(nifti["to_canonical"], dtype=np.float64)
    shape = [int(n) for n in nifti["shape"]]
    canonical_shape = [1, 1, 1]
    for axis, (new_axis, _) in enumerate(transform):
        canonical_shape[int(new_axis)] = shape[axis]
    if int(np.prod(canonical_shape)) != array.size or array.ndim > 3:
        return None
    squeezed = [n for n in canonical_shape[::-1] if n != 1]
    if list(np.squeeze(array).shape) != squeezed:
        return None
    # (z, y, x) -> (x, y, z) in RAS+, then undo the reorientation
    xyz = np.transpose(array.reshape(canonical_shape[::-1]), (2, 1, 0))
    back = orientations.ornt_transform(
        orientations.axcodes2ornt(CANONICAL),
        orientations.io_orientation(np.asarray(nifti["affine"])),
    )
    data = orientations.apply_orientation(xyz, back)
    return np.ascontiguousarray(data), np.asarray(nifti["affine"], dtype=np.float64)
