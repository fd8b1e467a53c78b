"""npe2 writers: masks and saliency maps to TIFF / NIfTI / PNG, metrics tables to CSV, sessions.

Every writer takes napari's layer data (``data`` and the layer's state ``meta``) and returns the
paths it wrote. Array writers also write ``<name>.json`` beside the file with the layer's name,
scale and the plugin's provenance (classifier, method, class, region sources, ...), since only
TIFF can carry it inside the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._csv_cells import neutralised_frame
from .._folders import atomic_path
from ..errors import InputError, OutputNotWritableError, SamcamError
from ._layers import META_KEY, json_text
from ._session_io import write_session as _write_session

ARRAY_SUFFIXES = (".tif", ".tiff", ".nii", ".nii.gz", ".png")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _sidecar(path: Path) -> Path:
    """``name.json`` beside ``name.tif`` / ``name.nii.gz`` / ``name.png``."""
    suffix = _suffix(path)
    return path.with_name(path.name[: -len(suffix)] + ".json")


def _description(meta: dict) -> dict[str, Any]:
    metadata = meta.get("metadata") or {}
    info: dict[str, Any] = {
        "name": meta.get("name"),
        "scale": [float(s) for s in meta.get("scale", ())],
        "translate": [float(s) for s in meta.get("translate", ())],
    }
    if META_KEY in metadata:
        info[META_KEY] = metadata[META_KEY]
    for key in ("source", "modality", "spacing", "window"):
        if key in metadata:
            info[key] = metadata[key]
    return info


def _spatial(array: np.ndarray, meta: dict) -> int:
    return array.ndim - (1 if meta.get("rgb") else 0)


def _write_tiff(
    path: Path, array: np.ndarray, meta: dict, description: str, *, target: Path
) -> None:
    import tifffile

    photometric = "rgb" if meta.get("rgb") and array.shape[-1] in (3, 4) else "minisblack"
    tifffile.imwrite(
        target, array, photometric=photometric, description=description, metadata=None
    )


def _write_nifti(path: Path, array: np.ndarray, meta: dict, kind: str, *, target: Path) -> None:
    """Write a NIfTI file; aligned with the source file when the layer records one.

    Layers of an image read from NIfTI (the image, its saliency maps and regions) carry the
    source's affine and reorientation (``metadata["nifti"]``): the array is put back in the
    source's voxel order and written with its affine, so it lines up voxel for voxel with the
    source. Other layers get the layer's scale as voxel size. Masks keep integer labels and are
    marked as label maps (NIfTI intent ``NIFTI_INTENT_LABEL``), which the reader opens as
    Labels again.
    """
    import nibabel as nib

    from .._nifti import to_source

    if meta.get("rgb"):
        raise InputError(
            f"{path.name}: NIfTI holds grayscale volumes; save an RGB layer as .tif or .png."
        )
    scale = [float(s) for s in meta.get("scale", [1.0] * array.ndim)][-array.ndim :]
    if array.ndim > 3:
        raise InputError(
            f"{path.name}: layer data has {array.ndim} axes; NIfTI export takes 2-D images "
            "and 3-D (slice, row, col) volumes. Save as .tif instead."
        )
    if array.dtype == bool:
        array = array.astype(np.uint8)
    elif array.dtype in (np.int64, np.uint64, np.uint32):
        array = array.astype(np.int32)
    source = (meta.get("metadata") or {}).get("nifti")
    placed = to_source(array, source) if isinstance(source, dict) else None
    if placed is not None:
        image = nib.Nifti1Image(*placed)
    else:
        if source is not None:
            warnings.warn(
                f"{path.name}: the layer's shape {array.shape} is not that of its source "
                "volume, so it is written on its own grid (its scale), not the source's.",
                UserWarning,
                stacklevel=4,
            )
        # napari (slice, row, col) -> NIfTI (x, y, z) = (col, row, slice): the reader's inverse.
        zooms = scale[::-1]
        affine = np.diag([*zooms, *[1.0] * (4 - len(zooms))])
        image = nib.Nifti1Image(np.ascontiguousarray(array.T), affine)
        image.header.set_zooms(tuple(zooms))
    if kind == "labels":
        image.header.set_intent("label")
    nib.save(image, str(target))


def _write_png(path: Path, array: np.ndarray, meta: dict, kind: str, *, target: Path) -> None:
    import imageio.v3 as iio

    if _spatial(array, meta) != 2:
        raise InputError(
            f"{path.name}: PNG holds one 2-D image but the layer has shape {array.shape}; save "
            "volumes as .tif or .nii.gz."
        )
    if kind == "labels":
        high = int(array.max()) if array.size else 0
        if array.min() < 0 or high > 65535:
            raise InputError(
                f"{path.name}: label values outside 0..65535 do not fit a PNG; save as .tif."
            )
        out = array.astype(np.uint8 if high <= 255 else np.uint16)
    elif array.dtype in (np.uint8, np.uint16):
        out = array
    else:
        # Float maps (saliency in [0, 1]) become 16-bit over the layer's contrast limits.
        low, high = meta.get("contrast_limits") or _finite_range(array, path)
        scaled = (array.astype(np.float64) - low) / ((high - low) or 1.0)
        nan = np.isnan(scaled)
        if nan.any():
            warnings.warn(
                f"{str(path)!r}: PNG has no NaN; {int(nan.sum())} NaN pixel(s) are written as 0 "
                "and left out of the intensity scaling. Save as .tif to keep them.",
                UserWarning,
                stacklevel=4,
            )
            scaled[nan] = 0.0
        out = np.round(np.clip(scaled, 0, 1) * 65535).astype(np.uint16)
    iio.imwrite(target, out)


def _finite_range(array: np.ndarray, path: Path) -> tuple[float, float]:
    """The smallest and largest finite value (NaN and infinities are left out)."""
    finite = np.isfinite(array)
    if finite.all():
        return float(array.min()), float(array.max())
    if not finite.any():
        raise InputError(
            f"{str(path)!r}: the layer holds no finite value, so there is nothing to save as "
            "PNG; save it as .tif to keep the values."
        )
    values = array[finite]
    return float(values.min()), float(values.max())


def write_array(path: str | os.PathLike, data: Any, meta: dict, kind: str) -> list[str]:
    """Write an image or labels layer's data to TIFF, NIfTI (``.nii``, ``.nii.gz``) or PNG."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix not in ARRAY_SUFFIXES:
        raise InputError(
            f"{path.name}: choose one of {', '.join(ARRAY_SUFFIXES)} to save a {kind} layer."
        )
    if meta.get("multiscale"):
        data = data[0]
    array = np.asarray(data)
    if kind == "labels" and array.dtype.kind not in "biu":
        array = array.astype(np.int32)
    if kind == "labels" and array.dtype.kind in "iu" and array.size:
        low, high = int(array.min()), int(array.max())
        if suffix in (".nii", ".nii.gz") and (low < -(2**31) or high >= 2**31):
            raise InputError(
                f"{path.name}: label values {low}..{high} do not fit NIfTI's 32-bit labels; "
                "save as .tif."
            )
    description = _description(meta)
    text = json.dumps(description, default=_plain)
    with _output(path) as tmp:
        if suffix in (".tif", ".tiff"):
            _write_tiff(path, array, meta, text, target=tmp)
        elif suffix in (".nii", ".nii.gz"):
            _write_nifti(path, array, meta, kind, target=tmp)
        else:
            _write_png(path, array, meta, kind, target=tmp)
    written = [str(path)]
    if META_KEY in description:
        sidecar = _sidecar(path)
        with _output(sidecar) as tmp:
            tmp.write_text(json.dumps(description, indent=1, default=_plain), encoding="utf-8")
        written.append(str(sidecar))
    return written


@contextlib.contextmanager
def _output(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` moved onto it when written: never half a file, never
    through a link; a folder that cannot be written is an :class:`OutputNotWritableError`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=_suffix(path)) as tmp:
            yield tmp
    except OSError as exc:
        if isinstance(exc, SamcamError):
            raise
        raise OutputNotWritableError(
            f"{str(path)!r} cannot be written ({exc.strerror or exc}); choose a folder you can "
            "write to."
        ) from None


def _plain(value: Any):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 writer: a Labels layer (masks) to TIFF, NIfTI or PNG."""
    return write_array(path, data, meta, "labels")


def write_image(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 writer: an Image layer (a saliency map, an image) to TIFF, NIfTI or PNG."""
    return write_array(path, data, meta, "image")


def write_features(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 writer: a layer's features table (the metrics table of a regions layer) to CSV."""
    features = meta.get("features")
    if features is None or len(getattr(features, "columns", ())) == 0:
        raise InputError(
            f"layer {meta.get('name')!r} has no features table to save; segment regions first "
            "(their metrics table is the regions layer's features)."
        )
    return write_table(path, features)


def write_table(path: str | os.PathLike, table) -> list[str]:
    """Write a features table to CSV (dict-like cells become JSON text)."""
    path = Path(path)
    table = table.copy()
    for column in table.columns:
        if table[column].dtype == object:
            table[column] = [
                json_text(v) if isinstance(v, (dict, list, tuple)) else v for v in table[column]
            ]
    with _output(path) as tmp:
        neutralised_frame(table).to_csv(tmp, index=False)
    return [str(path)]


def write_session(path: str, layer_data: list[tuple]) -> list[str]:
    """npe2 writer: layers (image, saliency maps, masks, prompts, metrics) to a session folder."""
    return _write_session(path, layer_data)
