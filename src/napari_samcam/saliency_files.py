"""Saliency maps read from files: the second source of :class:`~napari_samcam.saliency.Saliency`.

People often have saliency maps already (CheXlocalize's published maps, Captum, zennit, their
own Grad-CAM). :func:`read_saliency` turns such a file into the same ``Saliency`` that
:func:`~napari_samcam.saliency.explain` returns, with ``method="file"`` and the file's path as
provenance, so evaluation, the widget and the metrics do not care where a map came from.

Formats
-------
``.npy`` / ``.npz``
    A 2-D array (``.npz``: the array named ``map`` or ``saliency``, else the only array).
    Read without pickles (``allow_pickle=False``).
``.tif`` / ``.tiff``, ``.png``, ``.nii`` / ``.nii.gz``
    Read like images (:func:`~napari_samcam.images.read_image`); a single-channel 2-D map.
``.pkl`` / ``.pickle``
    CheXlocalize's ``<img_id>_<task>_map.pkl``: a ``pickle.dump`` of a dict holding ``map`` (a
    torch tensor ``(1, 1, h, w)``), ``prob`` (a float, or CheXpert's 14 probabilities),
    ``task`` and ``cxr_dims`` (the image's ``(width, height)``). Pickles can run code, so they
    are read by a restricted unpickler that builds only what those files hold (torch tensors,
    whose storages are read with ``torch.load(weights_only=True)``, numpy arrays, ordered
    dicts) and refuses anything else with :class:`~napari_samcam.errors.UntrustedFileError`.
    Any other pickle needs ``trust=True``.

Maps at any resolution are resized to the image as CheXlocalize does (bilinear,
``align_corners=False``), then min-max normalised to ``[0, 1]`` (a constant map becomes all
zeros); ``Saliency.raw`` keeps the file's own array.
"""

from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._files import open_regular, read_npy, read_npz, require_regular_file
from ._pickle_data import Refused, allowed_globals
from .errors import InputError, UntrustedFileError
from .images import read_image
from .model_files import first_line
from .saliency import Saliency

__all__ = [
    "CHEXPERT_TASKS",
    "MAP_SUFFIXES",
    "MapFile",
    "SaliencyFolder",
    "load_map_file",
    "read_saliency",
    "resize_map",
]

#: File types :func:`read_saliency` reads.
MAP_SUFFIXES = (".pkl", ".pickle", ".npy", ".npz", ".tif", ".tiff", ".png", ".nii.gz", ".nii")

#: CheXpert's 14 labels, in the order of a 14-probability ``prob`` in CheXlocalize's pickles.
CHEXPERT_TASKS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Airspace Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)


@dataclass
class MapFile:
    """What a saliency file holds.

    Attributes
    ----------
    array : numpy.ndarray
        The map, float32 ``(h, w)``, at the file's own resolution.
    path : Path
    probability : float
        NaN when the file holds none.
    task : str
        The class the map explains, ``""`` when the file does not say.
    size : tuple of int or None
        The image's ``(height, width)`` when the file records it (CheXlocalize's ``cxr_dims``).
    """

    array: np.ndarray
    path: Path
    probability: float = math.nan
    task: str = ""
    size: tuple[int, int] | None = None


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


# --------------------------------------------------------------------------------------------
# Pickles
# --------------------------------------------------------------------------------------------


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only tensors, numpy arrays and plain containers; refuses every other global."""

    def __init__(self, handle, path: Path):
        super().__init__(handle)
        self._path = path
        self._allowed = allowed_globals()

    def find_class(self, module: str, name: str):
        found = self._allowed.get((module, name))
        if found is None:
            raise UntrustedFileError(
                f"saliency file {str(self._path)!r} is a pickle that refers to {module}.{name}, "
                "which a saliency map (tensors, arrays, numbers) does not need; it was not "
                "opened, since unpickling it could run code. Save the map as .npy, or, only if "
                "you trust the file, pass trust=True (CLI: --trust-saliency)."
            )
        return found

    def persistent_load(self, pid):
        raise UntrustedFileError(
            f"saliency file {str(self._path)!r} is a torch.save archive, not a pickle.dump of "
            "a dict; save the map as .npy (numpy.save) instead."
        )


def _load_pickle(path: Path, trust: bool) -> Any:
    with open_regular(path, "saliency file") as handle:
        if trust:
            return pickle.load(handle)  # the caller trusts this file
        try:
            return _RestrictedUnpickler(handle, path).load()
        except UntrustedFileError:
            raise
        except Refused as exc:
            raise InputError(
                f"saliency file {str(path)!r} asks for {exc}, which was not built (nothing was "
                "allocated); a saliency map's pickle holds its data. Save the map as .npy."
            ) from None
        except Exception as exc:  # truncated, not a pickle at all, nested too deeply
            raise InputError(
                f"saliency file {str(path)!r} could not be read as a pickle "
                f"({type(exc).__name__}: {first_line(exc)[:200]}); check that the file is "
                "complete."
            ) from None


def _as_array(value: Any, path: Path, what: str) -> np.ndarray:
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.float()  # numpy has no bfloat16
        value = value.numpy()
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):  # a ragged list
        raise InputError(
            f"saliency file {str(path)!r}: {what} is not a rectangular array of numbers."
        ) from None
    if array.dtype == object or not np.issubdtype(array.dtype, np.number):
        raise InputError(f"saliency file {str(path)!r}: {what} is not numeric ({array.dtype}).")
    return array


def _probability(value: Any, task: str, path: Path) -> float:
    if value is None:
        return math.nan
    probs = _as_array(value, path, "'prob'").astype(np.float64).ravel()
    if probs.size == 1:
        return float(probs[0])
    if probs.size == len(CHEXPERT_TASKS) and task in CHEXPERT_TASKS:
        return float(probs[CHEXPERT_TASKS.index(task)])
    raise InputError(
        f"saliency file {str(path)!r}: 'prob' holds {probs.size} values; expected one, or "
        f"CheXpert's {len(CHEXPERT_TASKS)} with 'task' one of them."
    )


def _from_pickle(path: Path, trust: bool) -> MapFile:
    data = _load_pickle(path, trust)
    try:
        return _map_file(data, path)
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(
            f"saliency file {str(path)!r} does not hold a CheXlocalize map ({type(exc).__name__}: "
            f"{first_line(exc)[:200]}); it should be a dict of 'map', 'prob', 'task' and "
            "'cxr_dims'."
        ) from None


def _map_file(data: Any, path: Path) -> MapFile:
    if isinstance(data, dict):
        if "map" not in data:
            raise InputError(
                f"saliency file {str(path)!r}: a dict without a 'map' entry (keys: "
                f"{', '.join(map(str, data))}); CheXlocalize's maps hold 'map', 'prob', 'task' "
                "and 'cxr_dims'."
            )
        task = str(data.get("task", "") or "")
        size = None
        if data.get("cxr_dims") is not None:
            dims = [int(v) for v in _as_array(data["cxr_dims"], path, "'cxr_dims'").ravel()]
            if len(dims) != 2 or min(dims) < 1:
                raise InputError(
                    f"saliency file {str(path)!r}: 'cxr_dims' should be (width, height), "
                    f"got {data['cxr_dims']!r}."
                )
            size = (dims[1], dims[0])
        return MapFile(
            _map_2d(_as_array(data["map"], path, "'map'"), path),
            path,
            probability=_probability(data.get("prob"), task, path),
            task=task,
            size=size,
        )
    return MapFile(_map_2d(_as_array(data, path, "the pickled object"), path), path)


# --------------------------------------------------------------------------------------------
# Other formats
# --------------------------------------------------------------------------------------------


def _map_2d(array: np.ndarray, path: Path) -> np.ndarray:
    squeezed = np.squeeze(np.asarray(array))
    if squeezed.ndim != 2 or min(squeezed.shape) < 1:
        raise InputError(
            f"saliency file {str(path)!r} holds an array of shape {tuple(array.shape)}; a "
            "saliency map is one 2-D array (length-1 axes are dropped)."
        )
    squeezed = squeezed.astype(np.float32, copy=False)
    if not np.isfinite(squeezed).all():
        raise InputError(
            f"saliency file {str(path)!r} holds NaN or infinite values; replace them "
            "(e.g. numpy.nan_to_num) and save the map again."
        )
    return np.ascontiguousarray(squeezed)


def _from_numpy(path: Path) -> MapFile:
    if _suffix(path) == ".npy":
        return MapFile(_map_2d(read_npy(path, "saliency file"), path), path)
    arrays = read_npz(path, "saliency file")
    names = list(arrays)
    chosen = next((n for n in ("map", "saliency") if n in names), None)
    if chosen is None and len(names) == 1:
        chosen = names[0]
    if chosen is None:
        raise InputError(
            f"saliency file {str(path)!r} holds arrays {names}; name the map 'map' "
            "(numpy.savez(path, map=array))."
        )
    return MapFile(_map_2d(arrays[chosen], path), path)


def _from_image(path: Path) -> MapFile:
    data = read_image(path)
    array = data.array
    if data.rgb:
        raise InputError(
            f"saliency file {str(path)!r} is a colour image; a saliency map has one channel "
            "(save the values, not a colour-mapped picture)."
        )
    return MapFile(_map_2d(array, path), path)


def load_map_file(path: str | os.PathLike, *, trust: bool = False) -> MapFile:
    """Read a saliency file into a :class:`MapFile` (see the module docstring for formats).

    Parameters
    ----------
    path : path
    trust : bool
        Unpickle ``.pkl`` files without restriction (only for files you trust).

    Raises
    ------
    InputError
        Missing file, unknown format, not a 2-D numeric map.
    UntrustedFileError
        A pickle that needs more than tensors and arrays, without ``trust``.
    """
    path = require_regular_file(path, "saliency file")
    suffix = _suffix(path)
    if suffix in (".pkl", ".pickle"):
        return _from_pickle(path, trust)
    if suffix in (".npy", ".npz"):
        return _from_numpy(path)
    if suffix in (".tif", ".tiff", ".png", ".nii", ".nii.gz"):
        return _from_image(path)
    raise InputError(
        f"saliency file {str(path)!r}: unsupported type {suffix or '(none)'!r}; use one of "
        f"{', '.join(MAP_SUFFIXES)}."
    )


# --------------------------------------------------------------------------------------------
# Resizing and the Saliency
# --------------------------------------------------------------------------------------------


def resize_map(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D map to ``shape`` as CheXlocalize does: ``F.interpolate``, bilinear,
    ``align_corners=False``, in float32. Returns a float32 array (a copy)."""
    import torch
    import torch.nn.functional as F

    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
    if tuple(tensor.shape[-2:]) == tuple(int(s) for s in shape):
        return tensor[0, 0].numpy().copy()
    out = F.interpolate(
        tensor, size=tuple(int(s) for s in shape), mode="bilinear", align_corners=False
    )
    return out[0, 0].numpy()


def _unit_range(array: np.ndarray, source: np.ndarray) -> np.ndarray:
    """``array`` min-max normalised to [0, 1]; all zeros when ``source`` (the map before
    resizing) is constant, whatever rounding noise resizing added."""
    low, high = float(array.min()), float(array.max())
    if not high > low or float(source.min()) == float(source.max()):
        return np.zeros_like(array, dtype=np.float32)
    out = array - np.float32(low)
    out *= np.float32(1.0 / (high - low))
    return out


def read_saliency(
    path: str | os.PathLike,
    shape: tuple[int, int],
    *,
    task: str = "",
    name: str = "",
    trust: bool = False,
) -> Saliency:
    """Read a saliency map from a file as a :class:`~napari_samcam.saliency.Saliency`.

    Parameters
    ----------
    path : path
        ``.npy``, ``.npz``, ``.tif``, ``.png``, ``.nii[.gz]`` or CheXlocalize's ``.pkl``.
    shape : (int, int)
        The image's ``(height, width)``; the map is resized to it (bilinear,
        ``align_corners=False``).
    task : str
        The class the map is expected to explain; a file that names another class is refused.
    name : str
        What the ``classifier`` field says (default: the file's folder name).
    trust : bool
        Unpickle without restriction (only for files you trust).

    Returns
    -------
    Saliency
        ``map`` at ``shape`` in ``[0, 1]``, ``raw`` the file's own array, ``method="file"``,
        ``source`` the path, ``probability`` from the file or NaN.

    Raises
    ------
    InputError
        The file cannot be read, or it records an image size or task other than the given ones.
    UntrustedFileError
        A pickle that needs more than tensors and arrays, without ``trust``.
    """
    loaded = load_map_file(path, trust=trust)
    shape = (int(shape[0]), int(shape[1]))
    if loaded.size is not None and loaded.size != shape:
        raise InputError(
            f"saliency file {str(loaded.path)!r} was made for an image of {loaded.size[0]} x "
            f"{loaded.size[1]} pixels (cxr_dims), but the image is {shape[0]} x {shape[1]}; "
            "pair each map with its own image."
        )
    if task and loaded.task and loaded.task.lower() != task.lower():
        raise InputError(
            f"saliency file {str(loaded.path)!r} explains {loaded.task!r}, not {task!r}; check "
            "the file name (CheXlocalize: <img_id>_<task>_map.pkl)."
        )
    resized = resize_map(loaded.array, shape)
    class_name = loaded.task or task
    return Saliency(
        map=_unit_range(resized, loaded.array),
        raw=loaded.array,
        class_index=-1,
        class_name=class_name,
        probability=loaded.probability,
        method="file",
        layer="",
        classifier=name or loaded.path.parent.name,
        source=str(loaded.path),
    )


# --------------------------------------------------------------------------------------------
# Finding the map of an item in a folder
# --------------------------------------------------------------------------------------------


class SaliencyFolder:
    """A folder of saliency files, looked up by image and class.

    For an image ``ID`` (CheXlocalize's ``img_id``, the manifest's image path without its
    extension, or its file name without extension) and class ``TASK``, the first file found of
    ``ID_TASK_map.pkl`` (CheXlocalize), ``ID_TASK.<ext>`` and ``ID.<ext>`` is the map, for
    ``<ext>`` in :data:`MAP_SUFFIXES`; names are looked up in the folder and its sub-folders.

    Raises
    ------
    InputError
        The folder does not exist, or holds two files of one name in different sub-folders.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputError(
                f"saliency folder {str(self.folder)!r} does not exist or is not a folder; pass "
                "the folder that holds the map files."
            )
        self._by_relative: dict[str, Path] = {}
        self._by_name: dict[str, list[Path]] = {}
        for path in sorted(self.folder.rglob("*")):
            if path.is_file() and _suffix(path) in MAP_SUFFIXES:
                relative = path.relative_to(self.folder).as_posix()
                self._by_relative[relative] = path
                self._by_name.setdefault(path.name, []).append(path)

    def __len__(self) -> int:
        return len(self._by_relative)

    def _lookup(self, name: str) -> Path | None:
        if name in self._by_relative:
            return self._by_relative[name]
        found = self._by_name.get(Path(name).name, [])
        if len(found) > 1 and "/" not in name:
            raise InputError(
                f"saliency folder {str(self.folder)!r}: {len(found)} files are named {name!r} "
                f"({', '.join(str(p) for p in found[:3])}); keep one map per image and class."
            )
        return found[0] if len(found) == 1 and "/" not in name else None

    def find(self, ids: list[str], task: str) -> Path | None:
        """The map file of an image (any of ``ids``) and class ``task``, or ``None``."""
        for image_id in dict.fromkeys(i for i in ids if i):
            names = []
            if task:
                names.append(f"{image_id}_{task}_map.pkl")
                names += [f"{image_id}_{task}{s}" for s in MAP_SUFFIXES]
            names += [f"{image_id}{s}" for s in MAP_SUFFIXES]
            for name in names:
                found = self._lookup(name)
                if found is not None:
                    return found
        return None
