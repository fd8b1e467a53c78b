"""npe2 reader: DICOM files and series folders, NIfTI, saved napari-samcam sessions and
evaluation output folders.

PNG, TIFF and other ordinary formats are left to napari's own reader.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._dicom import SUFFIXES as DICOM_SUFFIXES
from .._dicom import is_dicom
from .._nifti import SUFFIXES as NIFTI_SUFFIXES
from ._evaluation import looks_like_evaluation, read_evaluation
from ._image_layers import LayerData, image_layer_data
from ._layers import META_KEY
from ._session_io import is_session, read_session


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
        (``.nii``, ``.nii.gz``), a folder holding a saved session (``samcam-session.json``) or
        an evaluate output folder (``config.json`` and ``parts/``: its lowest-IoU item opens).
        A list is accepted when every entry is readable; each gives its own layer(s).
    """
    if isinstance(path, (list, tuple)):
        if not path or not all(napari_get_reader(p) for p in path):
            return None
        return read_paths
    target = Path(os.fspath(path))
    if target.is_dir():
        if is_session(target) or looks_like_evaluation(target) or _looks_like_dicom_folder(target):
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
        elif target.is_dir() and looks_like_evaluation(target):
            out.extend(read_evaluation(target))
        else:
            out.append(read_image_layer(target))
    return out


def _layer_name(path: Path, metadata: dict) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".dcm", ".dicom", ".ima"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    modality = metadata.get("modality")
    return f"{name} ({modality})" if modality else name


def read_image_layer(path: Path) -> LayerData:
    """One image file or DICOM series folder as a layer data tuple.

    NIfTI label maps (intent ``NIFTI_INTENT_LABEL``, as the masks writer saves them) open as a
    Labels layer. The ``<name>.json`` sidecar the writers save beside a NIfTI file gives the
    layer its name, offset and provenance back; a saliency map gets its overlay look again.
    """
    from ..images import read_image, read_nifti_labels

    is_nifti = not path.is_dir() and _suffix(path) in NIFTI_SUFFIXES
    labels = read_nifti_labels(path) if is_nifti else None
    data = labels if labels is not None else read_image(path)
    metadata = dict(data.metadata)
    sidecar = _read_sidecar(path) if is_nifti else {}
    name = str(sidecar.get("name") or _layer_name(path, metadata))
    if META_KEY in sidecar:
        metadata[META_KEY] = sidecar[META_KEY]
    if labels is not None:
        return labels_layer_data(labels.array, metadata, name, sidecar)
    array, kwargs, kind = image_layer_data(data.array, metadata, name)
    _apply_sidecar(kwargs, sidecar, array.ndim)
    if sidecar.get(META_KEY, {}).get("kind") == "saliency":
        kwargs.update(SALIENCY_LOOK)
    return array, kwargs, kind


#: How a saliency map is shown over its image (as the session adds it).
SALIENCY_LOOK = {
    "colormap": "inferno",
    "blending": "additive",
    "opacity": 0.5,
    "contrast_limits": (0.0, 1.0),
}


def labels_layer_data(array: np.ndarray, metadata: dict, name: str, sidecar: dict) -> LayerData:
    """A Labels layer data tuple of an integer label map, with its spacing as the scale."""
    spacing = metadata.get("spacing")
    kwargs: dict[str, Any] = {"name": name, "metadata": dict(metadata)}
    if spacing is not None and len(spacing) == array.ndim:
        kwargs["scale"] = tuple(float(s) for s in spacing)
    _apply_sidecar(kwargs, sidecar, array.ndim)
    return array, kwargs, "labels"


def _sidecar_path(path: Path) -> Path:
    return path.with_name(path.name[: -len(_suffix(path))] + ".json")


def _read_sidecar(path: Path) -> dict:
    """The writers' ``<name>.json`` beside ``path`` (empty when absent or not ours)."""
    sidecar = _sidecar_path(path)
    if not sidecar.is_file():
        return {}
    try:
        info = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # not ours, or damaged: the image itself is still read
    # Only ours: other tools keep their own JSON beside NIfTI files (BIDS sidecars, ...).
    if not isinstance(info, dict) or not isinstance(info.get(META_KEY), dict):
        return {}
    return info


def _apply_sidecar(kwargs: dict, sidecar: dict, ndim: int) -> None:
    translate = sidecar.get("translate")
    numbers = isinstance(translate, list) and all(isinstance(t, (int, float)) for t in translate)
    if numbers and len(translate) == ndim:
        kwargs["translate"] = tuple(float(t) for t in translate)
