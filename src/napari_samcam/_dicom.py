"""DICOM reading: modality rescale, VOI window, photometric interpretation, series stacking.

Readers return the array and its metadata; :func:`napari_samcam.images.read_image` wraps them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import ImageReadError

SUFFIXES = (".dcm", ".dicom", ".ima")


def is_dicom(path: Path) -> bool:
    """Whether ``path`` starts with the DICOM preamble (``DICM`` at byte 128)."""
    with open(path, "rb") as handle:
        head = handle.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def _dcmread(path: Path, *, stop_before_pixels: bool = False):
    import pydicom

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=stop_before_pixels)
    except Exception as exc:
        raise ImageReadError(
            f"image {str(path)!r} is not a readable DICOM file ({type(exc).__name__}: {exc})."
        ) from exc


def _window(ds) -> tuple[float, float] | None:
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None
    # Multi-valued windows list alternatives: the first is the default view.
    center = float(center[0] if hasattr(center, "__len__") and len(center) else center)
    width = float(width[0] if hasattr(width, "__len__") and len(width) else width)
    if width <= 0:
        return None
    return (center - width / 2.0, center + width / 2.0)


def _pixels(ds, path: Path) -> tuple[np.ndarray, dict]:
    from pydicom.pixels import apply_modality_lut

    if "PixelData" not in ds:
        raise ImageReadError(f"image {str(path)!r} is a DICOM file without pixel data.")
    try:
        raw = ds.pixel_array
    except Exception as exc:
        raise ImageReadError(
            f"image {str(path)!r}: its pixel data could not be decoded ({exc}). A compressed "
            "transfer syntax may need an extra decoder package (pylibjpeg, gdcm)."
        ) from exc
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    rgb = ds.get("SamplesPerPixel", 1) > 1
    meta: dict = {"photometric": photometric, "rgb": bool(rgb)}
    if rgb:
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            raw = convert_color_space(raw, photometric, "RGB")
        return np.asarray(raw), meta
    array = np.asarray(apply_modality_lut(raw, ds), dtype=np.float32)
    if "VOILUTSequence" in ds:
        from pydicom.pixels import apply_voi_lut

        # A VOI LUT maps stored values to display values; apply it and show its full range.
        array = np.asarray(apply_voi_lut(array, ds), dtype=np.float32)
        window = (float(array.min()), float(array.max()))
    else:
        window = _window(ds)
    if photometric == "MONOCHROME1":
        # Invert so that bright means dense, as every model and display expects.
        high = float(array.max())
        low = float(array.min())
        array = (high + low) - array
        if window is not None:
            window = ((high + low) - window[1], (high + low) - window[0])
        meta["inverted"] = True
    meta["window"] = window
    return array, meta


def _spacing(ds) -> tuple[float, float]:
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(key)
        if value is not None and len(value) == 2 and float(value[0]) > 0 and float(value[1]) > 0:
            return float(value[0]), float(value[1])
    return 1.0, 1.0


def read_dicom_file(path: Path) -> tuple[np.ndarray, dict]:
    """Read one DICOM file: the array and its metadata; multi-frame files become ``(Z, H, W)``."""
    ds = _dcmread(path)
    array, meta = _pixels(ds, path)
    row_spacing, col_spacing = _spacing(ds)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1 and not meta["rgb"]:
        slice_spacing = float(ds.get("SpacingBetweenSlices", ds.get("SliceThickness", 1.0)) or 1)
        spacing: tuple = (slice_spacing, row_spacing, col_spacing)
    else:
        spacing = (row_spacing, col_spacing)
    meta.update(
        format="dicom",
        spacing=spacing,
        modality=str(ds.get("Modality", "")) or None,
        study_uid=str(ds.get("StudyInstanceUID", "")) or None,
        series_uid=str(ds.get("SeriesInstanceUID", "")) or None,
    )
    return array, meta


def read_dicom_series(folder: Path) -> tuple[np.ndarray, dict]:
    """Read a folder of single-slice DICOM files of one series: a ``(Z, H, W)`` stack, metadata.

    Slices are ordered by their position along the slice normal (ImagePositionPatient projected
    on the orientation's normal), falling back to InstanceNumber.
    """
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    headers = []
    for file in files:
        try:
            headers.append((file, _dcmread(file, stop_before_pixels=True)))
        except ImageReadError:
            continue  # non-DICOM files beside a series (DICOMDIR readers, notes) are skipped
    headers = [(f, ds) for f, ds in headers if "SOPClassUID" in ds or "Modality" in ds]
    if not headers:
        raise ImageReadError(
            f"image folder {str(folder)!r} holds no DICOM files; point at a DICOM series folder "
            "or a single image file."
        )
    series = {str(ds.get("SeriesInstanceUID", "")) for _, ds in headers}
    if len(series) > 1:
        raise ImageReadError(
            f"image folder {str(folder)!r} mixes {len(series)} DICOM series; put each series in "
            "its own folder."
        )

    def position(item):
        _, ds = item
        pos, orient = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient")
        if pos is not None and orient is not None and len(orient) == 6:
            normal = np.cross(np.asarray(orient[:3], float), np.asarray(orient[3:], float))
            return float(np.dot(normal, np.asarray(pos, float)))
        return float(ds.get("InstanceNumber", 0) or 0)

    headers.sort(key=position)
    slices = [read_dicom_file(file) for file, _ in headers]
    shapes = {array.shape for array, _ in slices}
    if len(shapes) > 1:
        raise ImageReadError(
            f"image folder {str(folder)!r}: slices have different shapes {sorted(shapes)}; the "
            "folder must hold one series."
        )
    stack = np.stack([array for array, _ in slices])
    positions = [position(h) for h in headers]
    gaps = np.diff(positions)
    slice_spacing = float(np.median(np.abs(gaps))) if len(gaps) and np.any(gaps) else 1.0
    meta = dict(slices[0][1])
    meta.update(spacing=(slice_spacing, *meta["spacing"][-2:]), n_slices=len(slices))
    meta["source"] = str(folder)
    return stack, meta
