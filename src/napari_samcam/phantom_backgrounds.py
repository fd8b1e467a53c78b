"""Backgrounds of the phantom benchmark: public test images, their body and lung masks, and the
random crop, flip and rotation that makes each case's background different."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .errors import ImageReadError
from .images import read_image

__all__ = ["BACKGROUNDS", "augment_geometry", "background", "source_image", "warp"]

#: Background name -> (pydicom-data file, description).
BACKGROUNDS: dict[str, tuple[str, str]] = {
    "chest": ("RG1_UNCI.dcm", "PA chest radiograph (CR, MONOCHROME1)"),
    "extremity": ("RG3_UNCI.dcm", "lower-leg radiograph (CR, MONOCHROME1)"),
    "head-ct": ("693_UNCI.dcm", "axial head CT slice"),
}


# --------------------------------------------------------------------------------------------
# Backgrounds


@lru_cache(maxsize=8)
def source_image(name: str) -> np.ndarray:
    """The background at full resolution, float32 in [0, 1], bright = dense."""
    import pydicom.data

    filename = BACKGROUNDS[name][0]
    path = pydicom.data.get_testdata_file(filename, download=False)
    if path is None:
        raise ImageReadError(
            f"background {name!r} needs {filename}, which is not installed; install the "
            "pydicom-data package (pip install pydicom-data)."
        )
    array = np.asarray(read_image(path).array, dtype=np.float32)
    if name == "head-ct":
        low, high = -300.0, 500.0  # Hounsfield units: air black, brain mid-grey, bone white
    else:
        low, high = (float(v) for v in np.percentile(array, (0.5, 99.5)))
    out = (array - low) / (high - low)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _largest_component(mask: np.ndarray) -> np.ndarray:

    from scipy import ndimage as ndi

    labels, count = ndi.label(mask)
    if count == 0:
        return mask
    sizes = ndi.sum(mask, labels, index=np.arange(1, count + 1))
    return labels == (1 + int(np.argmax(sizes)))


def _disk(radius: int) -> np.ndarray:
    r = max(int(radius), 1)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (yy * yy + xx * xx) <= r * r


@lru_cache(maxsize=16)
def background(name: str, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Working-resolution background, its body mask and its lesion-placement mask."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu
    from skimage.transform import rescale

    source = source_image(name)
    scale = min(1.0, 1.25 * size / min(source.shape))
    image = source if scale == 1.0 else rescale(source, scale, order=1, anti_aliasing=True)
    image = np.ascontiguousarray(image, dtype=np.float32)
    m = min(image.shape)
    smooth = ndi.gaussian_filter(image, 0.004 * m)
    if name == "chest":
        body = _largest_component(smooth > threshold_otsu(smooth))
        body = ndi.binary_fill_holes(body)
        inner = ndi.binary_erosion(body, _disk(0.02 * m))
        wide = ndi.gaussian_filter(image, 0.012 * m)
        lungs = (wide < threshold_otsu(wide[inner])) & inner
        labels, count = ndi.label(lungs)
        sizes = ndi.sum(lungs, labels, index=np.arange(1, count + 1))
        keep = 1 + np.flatnonzero(sizes >= 0.02 * lungs.size)
        lungs = ndi.binary_fill_holes(np.isin(labels, keep))
        place = ndi.binary_opening(lungs, _disk(0.01 * m))
    elif name == "extremity":
        # Exposed field (not the white collimator border), then tissue inside it (not air).
        field = _largest_component(smooth < 0.97)
        body = field & (smooth > threshold_otsu(smooth[field]))
        body = ndi.binary_fill_holes(_largest_component(body))
        body = ndi.binary_erosion(body, _disk(0.005 * m))
        place = ndi.binary_erosion(body, _disk(0.03 * m))
    else:
        body = ndi.binary_fill_holes(_largest_component(smooth > 0.2))
        place = ndi.binary_erosion(body, _disk(0.06 * m))
    return image, body.astype(bool), place.astype(bool)


# --------------------------------------------------------------------------------------------
# Geometry


def augment_geometry(rng: np.random.Generator, name: str, shape, size: int) -> np.ndarray:
    """A 3x3 matrix mapping output (row, col, 1) to working-resolution source coordinates."""
    h, w = shape
    m = min(h, w)
    if name == "chest":
        frac = rng.uniform(0.72, 1.0)
        # centre of the chest: columns around the middle, rows a bit above the middle
        centre = (h * rng.uniform(0.44, 0.56), w * rng.uniform(0.45, 0.55))
    elif name == "extremity":
        frac = rng.uniform(0.5, 0.8)
        centre = (h * rng.uniform(0.35, 0.75), w * rng.uniform(0.4, 0.52))
    else:
        frac = rng.uniform(0.7, 0.95)
        centre = (h * rng.uniform(0.45, 0.55), w * rng.uniform(0.45, 0.55))
    side = frac * m
    angle = np.deg2rad(rng.uniform(-8.0, 8.0))
    flip = rng.random() < 0.5
    s = side / size
    cos, sin = np.cos(angle) * s, np.sin(angle) * s
    lin = np.array([[cos, -sin], [sin, cos]])
    if flip:
        lin = lin @ np.diag([1.0, -1.0])
    # keep the crop inside the source where possible
    half = 0.5 * size * (np.abs(lin).sum(axis=1))
    cr = float(np.clip(centre[0], half[0], max(half[0], h - half[0])))
    cc = float(np.clip(centre[1], half[1], max(half[1], w - half[1])))
    offset = np.array([cr, cc]) - lin @ np.array([(size - 1) / 2, (size - 1) / 2])
    matrix = np.eye(3)
    matrix[:2, :2] = lin
    matrix[:2, 2] = offset
    return matrix


def warp(array: np.ndarray, matrix: np.ndarray, size: int, order: int, mode: str) -> np.ndarray:

    from scipy import ndimage as ndi

    return ndi.affine_transform(
        array, matrix, output_shape=(size, size), order=order, mode=mode, cval=0.0
    )
