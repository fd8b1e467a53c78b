"""Read medical and ordinary images into arrays, and convert them for models.

Reading: DICOM (single files, multi-frame files, series folders), NIfTI, PNG / JPEG / TIFF / BMP.
One reader module per format (``_dicom``, ``_nifti``, ``_raster``) returns a plain array and its
metadata; :func:`read_image` picks the reader and returns an :class:`ImageData`: the array plus
metadata (spacing, modality, display window, source path; for NIfTI the source orientation).

Conversion: :func:`to_unit_range` is the single documented conversion from a stored array to the
float32 ``[0, 1]`` intensities both model families take. Classifiers and SAM models then apply
their own normalisation (:func:`napari_samcam.classifiers.classifier_tensor`,
:class:`napari_samcam.segment.Segmenter`), so call sites never improvise intensity handling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _dicom, _nifti, _raster
from ._files import require_regular_file
from .errors import ImageReadError, InputError
from .hashing import image_hash

__all__ = [
    "CheckedImage",
    "ImageData",
    "checked_image",
    "image_hash",
    "intensity_range",
    "read_image",
    "to_unit_range",
    "unit_range_limits",
    "validate_image",
    "window_map",
]

DICOM_SUFFIXES = _dicom.SUFFIXES
NIFTI_SUFFIXES = _nifti.SUFFIXES
RASTER_SUFFIXES = _raster.SUFFIXES
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
    #: The array as :func:`read_image` checked it (volumes allowed); None for other arrays.
    checked: CheckedImage | None = field(default=None, repr=False, compare=False)

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
        NIfTI volumes come in RAS+ orientation, slices first, whatever the file's orientation;
        ``metadata["nifti"]`` keeps the file's affine and the reorientation (see
        :mod:`napari_samcam._nifti`), so results can be written back aligned with the file.

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
        array, metadata = _dicom.read_dicom_series(path)
    else:
        require_regular_file(path, "image", ImageReadError)  # not a FIFO or a device
        array, metadata = _read_file(path)
    checked = CheckedImage(array, name=str(path), allow_volume=True)
    metadata.setdefault("source", str(path))
    return ImageData(checked.array, metadata, checked)


def _read_file(path: Path) -> tuple[np.ndarray, dict]:
    """The reader that fits the file's type, with parser failures as ``ImageReadError``."""
    suffix = _suffix(path)
    try:
        if suffix in DICOM_SUFFIXES or (
            suffix not in SUPPORTED_SUFFIXES and _dicom.is_dicom(path)
        ):
            return _dicom.read_dicom_file(path)
        if suffix in NIFTI_SUFFIXES:
            return _nifti.read_nifti(path)
        if suffix in RASTER_SUFFIXES:
            return _raster.read_raster(path, suffix)
    except ImageReadError:
        raise
    except Exception as exc:  # any parser failure means a corrupt or mislabelled file
        raise ImageReadError(
            f"image {str(path)!r} could not be read as {suffix or 'DICOM'} "
            f"({type(exc).__name__}: {exc}). Check that the file is complete and that its "
            "extension matches its content."
        ) from exc
    raise ImageReadError(
        f"image {str(path)!r}: unsupported file type {suffix or '(none)'!r}. "
        f"Supported: {', '.join(SUPPORTED_SUFFIXES)} or a DICOM series folder."
    )


def read_nifti_labels(path: str | Path) -> ImageData | None:
    """A NIfTI label map (intent ``NIFTI_INTENT_LABEL``) with its integer labels, else ``None``.

    Oriented like :func:`read_image` (RAS+, slices first, the source orientation kept in
    ``metadata["nifti"]``); labels are int32.

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
        array, metadata = _nifti.oriented(image)
    except Exception as exc:  # any parser failure means a corrupt or mislabelled file
        raise ImageReadError(
            f"label map {str(path)!r} could not be read as NIfTI ({type(exc).__name__}: {exc})."
        ) from exc
    whole = array.dtype.kind in "biu" or (
        bool(np.all(np.isfinite(array))) and bool(np.all(np.rint(array) == array))
    )
    if not whole:
        raise ImageReadError(
            f"label map {str(path)!r} holds values that are not whole numbers; a label map "
            "holds integer labels (0 = background)."
        )
    metadata.setdefault("source", str(path))
    return ImageData(np.ascontiguousarray(array.astype(np.int32)), metadata)


@dataclass(frozen=True, eq=False)
class CheckedImage:
    """An image array that :func:`validate_image` has passed, so that it is checked only once.

    Constructing one is the check: ``CheckedImage(array)`` validates ``array`` (shape, dtype,
    and, with ``finite``, that every value is finite) and keeps the array it returns. Functions
    that take an image accept a ``CheckedImage`` besides an array and then skip the checks
    (:func:`checked_image`), so a job validates its image where it enters (reading the file)
    and passes this type inward.

    Attributes
    ----------
    array : numpy.ndarray
        The checked array (booleans become uint8).
    name : str
        How error messages refer to the image.
    allow_volume : bool
        Whether a ``(Z, H, W)`` volume was accepted.
    finite : bool
        Whether the values were checked to be finite.
    """

    array: np.ndarray = field(repr=False)
    name: str = "image"
    allow_volume: bool = False
    finite: bool = True

    #: ``array.shape``, ``array.ndim``, ``array.dtype`` (plain attributes: reading them is free)
    shape: tuple[int, ...] = field(init=False)
    ndim: int = field(init=False)
    dtype: np.dtype = field(init=False)
    #: Whether this is a ``(Z, H, W)`` volume rather than a 2-D (colour) image.
    volume: bool = field(init=False)

    def __post_init__(self) -> None:
        array = validate_image(
            self.array, name=self.name, allow_volume=self.allow_volume, finite=self.finite
        )
        object.__setattr__(self, "array", array)
        object.__setattr__(self, "shape", array.shape)
        object.__setattr__(self, "ndim", array.ndim)
        object.__setattr__(self, "dtype", array.dtype)
        object.__setattr__(self, "volume", array.ndim == 3 and array.shape[-1] not in (3, 4))


def checked_image(image: Any, *, name: str = "image", finite: bool = True) -> CheckedImage:
    """``image`` as a 2-D :class:`CheckedImage`: as it is when it is one already (checked for
    finite values too, where ``finite``), else checked now.

    Raises
    ------
    InputError
        As :func:`validate_image`; also for a checked volume, where a 2-D image is needed.
    """
    if isinstance(image, CheckedImage):
        if image.volume:
            raise InputError(
                f"{image.name}: shape {image.shape} is a volume; pass one slice (H, W) or "
                "(H, W, 3|4)."
            )
        if image.finite or not finite:
            return image
        image = image.array
    return CheckedImage(image, name=name, finite=finite)


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
    if isinstance(array, CheckedImage):  # checked at least as strictly: nothing to do again
        if (array.finite or not finite) and (allow_volume or not array.volume):
            return array.array
        array = array.array
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
    if array.size == 0 or min(spatial[-2:]) < 2:  # a (0, H, W) volume is empty too
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
    low, high = unit_range_limits(array)  # also checks that the values are finite
    if window is not None:
        scale = float32_scale(*window)
        with np.errstate(over="ignore"):  # beyond float32 means beyond the window: clipped
            block = (array / scale if scale != 1.0 else array).astype(np.float32)
        return window_map(window, scale=scale)(block)
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


def window_map(window: tuple[float, float], *, scale: float = 1.0):
    """The pointwise map :func:`to_unit_range` applies with a ``window``, for float32 arrays.

    Returns a function that maps a float32 array in place (clipped to the window, scaled
    linearly to ``[0, 1]``) and returns it: callers that resize large images apply it a block
    at a time. ``scale``: the values were divided by it (:func:`float32_scale`) before they
    became float32; the window is divided by it too.

    Raises
    ------
    InputError
        ``high`` does not exceed ``low``.
    """
    low, high = float(window[0]), float(window[1])
    if not high > low:
        raise InputError(f"window {window!r}: high must exceed low; pass (low, high).")
    low, high = low / scale, high / scale

    def apply(block: np.ndarray) -> np.ndarray:
        block -= low
        block /= high - low
        return np.clip(block, 0.0, 1.0, out=block)

    return apply


#: Intensity magnitude above which :func:`float32_safe` scales values down (float32 overflows
#: at 3.4e38; the margin keeps ``high - low`` finite too).
FLOAT32_SAFE_MAGNITUDE = 1e30


def float32_scale(low: float, high: float) -> float:
    """The factor :func:`float32_safe` divides by for values in ``[low, high]`` (1.0: none)."""
    scale = max(abs(float(low)), abs(float(high)))
    return scale if scale > FLOAT32_SAFE_MAGNITUDE else 1.0


def float32_safe(array: np.ndarray, low: float, high: float) -> tuple[np.ndarray, float, float]:
    """``array``, ``low`` and ``high`` divided by one factor when float32 would overflow on them.

    ``(x - low) / (high - low)`` is unchanged by the common factor, so the map to ``[0, 1]`` is
    the same; only values beyond :data:`FLOAT32_SAFE_MAGNITUDE` (float64 data near 1e308, say)
    are scaled, in float64, before anything is subtracted. Other arrays come back as they are.
    """
    scale = float32_scale(low, high)
    if scale == 1.0:
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
