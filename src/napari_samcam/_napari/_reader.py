"""npe2 reader: DICOM files and series folders, NIfTI, and saved napari-samcam sessions.

PNG, TIFF and other ordinary formats are left to napari's own reader.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._dicom import SUFFIXES as DICOM_SUFFIXES
from .._dicom import is_dicom
from .._nifti import SUFFIXES as NIFTI_SUFFIXES
from ._session_io import is_session, read_session

LayerData = tuple[Any, dict, str]


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _looks_like_dicom_folder(path: Path) -> bool:
    """A folder with at least one file that carries the DICOM preamble (or a DICOM suffix)."""
    try:
        entries = sorted(path.iterdir())
    except OSError:
        return False
    for entry in entries[:64]:
        if not entry.is_file() or entry.name.startswith("."):
            continue
        if entry.suffix.lower() in DICOM_SUFFIXES:
            return True
        try:
            if is_dicom(entry):
                return True
        except OSError:
            continue
    return False


def napari_get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """Return a reader for ``path`` when it is something this plugin reads, else ``None``.

    Parameters
    ----------
    path : str or list of str
        A DICOM file (``.dcm``, ``.dicom``, ``.ima``), a DICOM series folder, a NIfTI file
        (``.nii``, ``.nii.gz``) or a folder holding a saved session (``samcam-session.json``).
        A list is accepted when every entry is readable; each gives its own layer(s).
    """
    if isinstance(path, (list, tuple)):
        if not path or not all(napari_get_reader(p) for p in path):
            return None
        return read_paths
    target = Path(os.fspath(path))
    if target.is_dir():
        if is_session(target) or _looks_like_dicom_folder(target):
            return read_paths
        return None
    if _suffix(target) in DICOM_SUFFIXES + NIFTI_SUFFIXES:
        return read_paths
    return None


def read_paths(path: str | list[str]) -> list[LayerData]:
    """Read one path (or several) into napari layer data tuples."""
    paths = path if isinstance(path, (list, tuple)) else [path]
    out: list[LayerData] = []
    for item in paths:
        target = Path(os.fspath(item))
        if target.is_dir() and is_session(target):
            out.extend(read_session(target))
        else:
            out.append(read_image_layer(target))
    return out


def image_layer_data(array: np.ndarray, metadata: dict, name: str) -> LayerData:
    """An Image layer data tuple with the scale, contrast and metadata an image file records."""
    rgb = bool(metadata.get("rgb", False))
    spatial = array.ndim - (1 if rgb else 0)
    spacing = metadata.get("spacing")
    kwargs: dict[str, Any] = {"name": name, "rgb": rgb, "metadata": dict(metadata)}
    if spacing is not None and len(spacing) == spatial:
        kwargs["scale"] = tuple(float(s) for s in spacing)
        known = metadata.get("format") in ("dicom", "nifti") and any(
            float(s) != 1.0 for s in spacing
        )
        if known:  # DICOM and NIfTI spacings are millimetres; 1.0 everywhere means "unknown"
            kwargs["units"] = ("mm",) * spatial
    window = metadata.get("window")
    if window is not None and float(window[1]) > float(window[0]):
        kwargs["contrast_limits"] = (float(window[0]), float(window[1]))
    elif not rgb and array.size:
        low, high = float(np.min(array)), float(np.max(array))
        if high > low:
            kwargs["contrast_limits"] = (low, high)
    if not rgb:
        kwargs["colormap"] = "gray"
    return array, kwargs, "image"


def _layer_name(path: Path, metadata: dict) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".dcm", ".dicom", ".ima"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    modality = metadata.get("modality")
    return f"{name} ({modality})" if modality else name


def read_image_layer(path: Path) -> LayerData:
    """One image file or DICOM series folder as an Image layer data tuple."""
    from ..images import read_image

    data = read_image(path)
    metadata = dict(data.metadata)
    return image_layer_data(data.array, metadata, _layer_name(path, metadata))
