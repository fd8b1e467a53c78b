"""Read medical and ordinary images into arrays, and convert them for models.

Reading: DICOM (single files, multi-frame files, series folders), NIfTI, PNG / JPEG / TIFF / BMP.
Every reader returns an :class:`ImageData`: the array plus metadata (spacing, modality, display
window, source path).

Conversion: :func:`to_unit_range` is the single documented conversion from a stored array to the
float32 ``[0, 1]`` intensities both model families take. Classifiers and SAM models then apply
their own normalisation (:func:`napari_samcam.classifiers.classifier_tensor`,
:class:`napari_samcam.segment.Segmenter`), so call sites never improvise intensity handling.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ImageReadError, InputError

__all__ = [
    "ImageData",
    "image_hash",
    "intensity_range",
    "read_image",
    "to_unit_range",
    "unit_range_limits",
    "validate_image",
]

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
SUPPORTED_SUFFIXES = DICOM_SUFFIXES + NIFTI_SUFFIXES + RASTER_SUFFIXES


@dataclass
class ImageData:
    """An image array with its metadata.

    Attributes
    ----------
    array : numpy.ndarray
        ``(H, W)`` grayscale, ``(H, W, C)`` colour (C = 3 or 4), or ``(Z, H, W)`` for volumes.
        DICOM data are float32 in modality units (rescale slope / intercept applied) with
        MONOCHROME1 inverted so that bright means dense.
    metadata : dict
        ``source`` (path), ``format``, ``spacing`` (per array axis, in mm where known, else 1.0),
        ``modality``, ``window`` (``(low, high)`` display range or ``None``), ``rgb`` (bool),
        plus format-specific keys.
    """

    array: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def rgb(self) -> bool:
        """Whether the last axis holds colour channels."""
        return bool(self.metadata.get("rgb", False))

    @property
    def window(self) -> tuple[float, float] | None:
        """The display window ``(low, high)``, or ``None`` when the file names none."""
        window = self.metadata.get("window")
        return None if window is None else (float(window[0]), float(window[1]))


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def read_image(path: str | Path) -> ImageData:
    """Read an image file (or a DICOM series folder) into an :class:`ImageData`.

    Parameters
    ----------
    path : str or Path
        A DICOM file (``.dcm`` or any file with a DICOM preamble), a folder of DICOM slices of one
        series, a NIfTI file (``.nii``, ``.nii.gz``) or a PNG / JPEG / TIFF / BMP file.

    Returns
    -------
    ImageData

    Raises
    ------
    ImageReadError
        The path does not exist, the format is not supported, or the file is corrupt.
    InputError
        The file holds an empty image or non-finite values.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"image {str(path)!r} does not exist: check the path.")
    if path.is_dir():
        from ._dicom import read_dicom_series

        data = read_dicom_series(path)
    else:
        suffix = _suffix(path)
        try:
            if suffix in DICOM_SUFFIXES or (suffix not in SUPPORTED_SUFFIXES and _is_dicom(path)):
                from ._dicom import read_dicom_file

                data = read_dicom_file(path)
            elif suffix in NIFTI_SUFFIXES:
                data = _read_nifti(path)
            elif suffix in RASTER_SUFFIXES:
                data = _read_raster(path)
            else:
                raise ImageReadError(
                    f"image {str(path)!r}: unsupported file type {suffix or '(none)'!r}. "
                    f"Supported: {', '.join(SUPPORTED_SUFFIXES)} or a DICOM series folder."
                )
        except ImageReadError:
            raise
        except Exception as exc:  # any parser failure means a corrupt or mislabelled file
            raise ImageReadError(
                f"image {str(path)!r} could not be read as {suffix or 'DICOM'} "
                f"({type(exc).__name__}: {exc}). Check that the file is complete and that its "
                "extension matches its content."
            ) from exc
    validate_image(data.array, name=str(path), allow_volume=True)
    data.metadata.setdefault("source", str(path))
    return data


def _is_dicom(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def read_nifti_labels(path: str | Path) -> ImageData | None:
    """A NIfTI label map (intent ``NIFTI_INTENT_LABEL``) with its integer labels, else ``None``.

    Oriented like :func:`read_image` (slices first, then rows and columns); labels are int32.

    Raises
    ------
    ImageReadError
        The file is not a readable NIfTI file, or its labels are not whole numbers.
    """
    import nibabel as nib

    path = Path(path)
    try:
        image = nib.load(str(path))
        if image.header.get_intent()[0] != "label":
            return None
        data = _orient_nifti(image)
    except Exception as exc:  # any parser failure means a corrupt or mislabelled file
        raise ImageReadError(
            f"label map {str(path)!r} could not be read as NIfTI ({type(exc).__name__}: {exc})."
        ) from exc
    array = data.array
    whole = array.dtype.kind in "biu" or (
        bool(np.all(np.isfinite(array))) and bool(np.all(np.rint(array) == array))
    )
    if not whole:
        raise ImageReadError(
            f"label map {str(path)!r} holds values that are not whole numbers; a label map "
            "holds integer labels (0 = background)."
        )
    data.array = np.ascontiguousarray(array.astype(np.int32))
    data.metadata.setdefault("source", str(path))
    return data


def _read_nifti(path: Path) -> ImageData:
    import nibabel as nib

    data = _orient_nifti(nib.load(str(path)))
    array = data.array
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
    data.array = np.ascontiguousarray(array, dtype=np.float32)
    return data


def _orient_nifti(image) -> ImageData:
    """A loaded NIfTI image as (slice, row, col) data in its stored dtype, spacing recorded."""
    array = np.asanyarray(image.dataobj)
    zooms = tuple(float(z) for z in image.header.get_zooms()[: array.ndim])
    array = np.squeeze(array)
    spacing = zooms[: array.ndim] if array.ndim == len(zooms) else (1.0,) * array.ndim
    if array.ndim == 3:
        # NIfTI stores (x, y, z); napari and numpy want slices first: (z, y, x) -> (z, row, col).
        array = np.transpose(array, (2, 1, 0))
        spacing = (spacing[2], spacing[1], spacing[0])
    elif array.ndim == 2:
        array = array.T
        spacing = (spacing[1], spacing[0])
    return ImageData(
        np.ascontiguousarray(array),
        {"format": "nifti", "spacing": spacing, "modality": None, "window": None, "rgb": False},
    )


def _read_raster(path: Path) -> ImageData:
    if _suffix(path) in (".tif", ".tiff"):
        import tifffile

        array = tifffile.imread(str(path))
    else:
        import imageio.v3 as iio

        array = iio.imread(str(path))
    array = np.asarray(array)
    rgb = array.ndim == 3 and array.shape[-1] in (3, 4)
    if rgb and array.shape[-1] == 4:
        alpha = array[..., 3]
        if np.all(alpha == alpha.flat[0]):
            array = array[..., :3]
    spacing = (1.0,) * (array.ndim - (1 if rgb else 0))
    return ImageData(
        array,
        {
            "format": _suffix(path).lstrip("."),
            "spacing": spacing,
            "modality": None,
            "window": None,
            "rgb": bool(rgb),
        },
    )


def validate_image(
    array: np.ndarray, *, name: str = "image", allow_volume: bool = False, finite: bool = True
) -> np.ndarray:
    """Check that ``array`` is an image the project can work on, and return it as an array.

    Parameters
    ----------
    array : array_like
        ``(H, W)`` or ``(H, W, 3|4)``; ``(Z, H, W)`` too when ``allow_volume``.
    name : str
        How the error messages refer to the input.
    allow_volume : bool
        Accept 3-D grayscale volumes.
    finite : bool
        Also check that every value is finite (one pass over the data). Callers that go on to
        :func:`intensity_range` anyway pass False: it checks the same thing.

    Raises
    ------
    InputError
        Empty or 1-pixel images, too many dimensions, non-numeric data, NaN or inf values.
    """
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if not (np.issubdtype(array.dtype, np.number)):
        raise InputError(f"{name}: dtype {array.dtype} is not numeric; pass a numeric array.")
    rgb = array.ndim == 3 and array.shape[-1] in (3, 4)
    spatial = array.shape[:-1] if rgb else array.shape
    if len(spatial) < 2 or len(spatial) > (3 if allow_volume else 2):
        expected = "(H, W), (H, W, 3|4)" + (" or (Z, H, W)" if allow_volume else "")
        raise InputError(
            f"{name}: shape {array.shape} is not an image of shape {expected}. "
            "Select one slice or channel first."
        )
    if min(spatial[-2:]) < 2:
        raise InputError(
            f"{name}: shape {array.shape} is empty or one pixel wide; an image needs at least "
            "2x2 pixels."
        )
    if finite and np.issubdtype(array.dtype, np.floating):  # integers are always finite
        intensity_range(array, name=name)
    return array


def intensity_range(array: np.ndarray, *, name: str = "image") -> tuple[float, float]:
    """The smallest and largest value of ``array``, which must all be finite.

    Parameters
    ----------
    array : numpy.ndarray
    name : str
        How the error message refers to the input.

    Returns
    -------
    (float, float)

    Raises
    ------
    InputError
        Some values are NaN or infinite.
    """
    # NaN propagates through min and max, and an infinity is one of them: two passes that
    # also check finiteness, without a boolean copy of the image
    low, high = float(array.min()), float(array.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise InputError(
            f"{name}: {bad} pixel(s) are NaN or infinite. Replace them (e.g. numpy.nan_to_num) "
            "before computing saliency or masks."
        )
    return low, high


def to_unit_range(
    array: np.ndarray,
    window: tuple[float, float] | None = None,
    *,
    rgb: bool | None = None,
) -> np.ndarray:
    """Map stored intensities to float32 in ``[0, 1]``: the one conversion all models start from.

    Parameters
    ----------
    array : numpy.ndarray
        ``(H, W)`` or ``(H, W, 3|4)``.
    window : (float, float), optional
        Display window ``(low, high)``; values are clipped to it and scaled linearly. Without a
        window, integer arrays of 8 bits are divided by 255 and other arrays are min-max scaled
        (a constant image maps to all zeros).
    rgb : bool, optional
        Whether the last axis holds colours (alpha is dropped). Guessed from the shape if omitted.

    Returns
    -------
    numpy.ndarray
        float32, same spatial shape, values in ``[0, 1]``.
    """
    array = validate_image(array, finite=False)
    if rgb is None:
        rgb = array.ndim == 3
    if rgb and array.shape[-1] == 4:
        array = array[..., :3]
    low, high = unit_range_limits(array)
    if window is not None:
        low, high = float(window[0]), float(window[1])
        if not high > low:
            raise InputError(f"window {window!r}: high must exceed low; pass (low, high).")
        array, low, high = float32_safe(array, low, high)
        with np.errstate(over="ignore"):  # beyond float32 means beyond the window: clipped
            out = (array.astype(np.float32) - low) / (high - low)
        return np.clip(out, 0.0, 1.0, out=out)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    array, low, high = float32_safe(array, low, high)
    out = array.astype(np.float32)
    if high > low:
        out -= low
        out /= high - low
    else:
        out[...] = 0.0
    return out


#: Intensity magnitude above which :func:`float32_safe` scales values down (float32 overflows
#: at 3.4e38; the margin keeps ``high - low`` finite too).
FLOAT32_SAFE_MAGNITUDE = 1e30


def float32_safe(array: np.ndarray, low: float, high: float) -> tuple[np.ndarray, float, float]:
    """``array``, ``low`` and ``high`` divided by one factor when float32 would overflow on them.

    ``(x - low) / (high - low)`` is unchanged by the common factor, so the map to ``[0, 1]`` is
    the same; only values beyond :data:`FLOAT32_SAFE_MAGNITUDE` (float64 data near 1e308, say)
    are scaled, in float64, before anything is subtracted. Other arrays come back as they are.
    """
    scale = max(abs(low), abs(high))
    if scale <= FLOAT32_SAFE_MAGNITUDE:
        return array, low, high
    return array / scale, low / scale, high / scale


def unit_range_limits(array: np.ndarray, *, name: str = "image") -> tuple[float, float]:
    """The values :func:`to_unit_range` maps to 0 and 1 when no window is given.

    ``(0, 255)`` for 8-bit integers, else the range of the values (checked finite). Without a
    window, ``to_unit_range`` is the affine map ``(x - low) / (high - low)`` (all zeros when
    ``high == low``), which commutes with linear resizing: resize first, map the few pixels left.
    """
    if array.dtype == np.uint8:
        return 0.0, 255.0
    return intensity_range(array, name=name)


def image_hash(array: np.ndarray) -> str:
    """A content hash of an array (shape, dtype and bytes): the key of every cache.

    Parameters
    ----------
    array : numpy.ndarray

    Returns
    -------
    str
        A 32-character hexadecimal BLAKE2b digest.
    """
    array = np.ascontiguousarray(array)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str((array.shape, array.dtype.str)).encode())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()
