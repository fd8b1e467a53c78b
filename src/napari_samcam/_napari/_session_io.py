"""Saved sessions: a folder that holds layers exactly as they were, and reopens identically.

Layout of a session folder::

    samcam-session.json      layer list, each layer's state (tagged JSON), provenance
    layers/NN-<name>.tif     image and labels data (exact dtype, lossless)
    layers/NN-<name>.parquet features tables (exact dtypes); a .csv copy beside it for people
    metrics.csv              every regions table of the session, one row per region

The JSON keeps Python types that plain JSON would lose (tuples, numpy arrays and scalars), so
metadata, scales and prompts come back as they were saved.

A session folder may come from someone else: the reader opens only files inside the folder
(no absolute paths, no ``..``, no links that lead out) and reads no pickles. Saving over a
session replaces only the files an earlier save wrote; anything else a user keeps in the folder
stays.
"""

from __future__ import annotations

import enum
import json
import os
import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .._files import open_regular
from .._folders import check_writable
from .._raster import read_tiff
from ..errors import ImageReadError, OutputExistsError
from ._layers import META_KEY, display_levels

SESSION_FILE = "samcam-session.json"
SESSION_FORMAT = "napari-samcam-session"
SESSION_VERSION = 1

_COMMON_KEYS = (
    "name",
    "scale",
    "translate",
    "rotate",
    "shear",
    "affine",
    "opacity",
    "blending",
    "visible",
    "metadata",
    "axis_labels",
    "units",
)
_TYPE_KEYS = {
    "image": (
        "rgb",
        "colormap",
        "contrast_limits",
        "gamma",
        "interpolation2d",
        "interpolation3d",
        "rendering",
        "depiction",
        "iso_threshold",
        "attenuation",
    ),
    "labels": ("rendering", "depiction"),
    "shapes": (
        "ndim",
        "shape_type",
        "edge_width",
        "edge_color",
        "face_color",
        "z_index",
        "text",
    ),
    "points": (
        "ndim",
        "symbol",
        "size",
        "border_width",
        "border_width_is_relative",
        "face_color",
        "border_color",
        "text",
        "shown",
    ),
}
_ARRAY_TYPES = ("image", "labels")
SUPPORTED_TYPES = tuple(_TYPE_KEYS)


# --------------------------------------------------------------------------------------------
# tagged JSON


def encode(value: Any) -> Any:
    """A JSON-ready form of ``value`` that :func:`decode` turns back into the same value."""
    if isinstance(value, enum.Enum):
        return encode(value.value)
    if isinstance(value, dict):
        return {"__dict__": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return {"__objarray__": [encode(v) for v in value.tolist()], "shape": value.shape}
        return {
            "__ndarray__": value.tolist(),
            "dtype": value.dtype.str,
            "shape": list(value.shape),
        }
    if isinstance(value, np.generic):
        return {"__npscalar__": value.item(), "dtype": value.dtype.str}
    if isinstance(value, float) and not np.isfinite(value):
        return {"__float__": repr(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot save a value of type {type(value).__name__} in a session")


def decode(value: Any) -> Any:
    """Inverse of :func:`encode`."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__dict__" in value:
        return {decode(k): decode(v) for k, v in value["__dict__"]}
    if "__tuple__" in value:
        return tuple(decode(v) for v in value["__tuple__"])
    if "__ndarray__" in value:
        array = np.array(value["__ndarray__"], dtype=np.dtype(value["dtype"]))
        return array.reshape(value["shape"])
    if "__objarray__" in value:
        out = np.empty(len(value["__objarray__"]), dtype=object)
        out[:] = [decode(v) for v in value["__objarray__"]]
        return out.reshape(decode(value["shape"]))
    if "__npscalar__" in value:
        return np.dtype(value["dtype"]).type(value["__npscalar__"])
    if "__float__" in value:
        return float(value["__float__"])
    return {k: decode(v) for k, v in value.items()}


def _jsonable_metadata(metadata: dict, layer_name: str) -> dict:
    """Metadata entries that can be saved; the others are dropped with a warning."""
    import warnings

    kept = {}
    for key, value in (metadata or {}).items():
        try:
            encode(value)
        except TypeError as exc:
            warnings.warn(
                f"layer {layer_name!r}: metadata entry {key!r} is not saved ({exc}); store "
                "numbers, strings, lists, dicts or numpy arrays in layer.metadata.",
                UserWarning,
                stacklevel=3,
            )
            continue
        kept[key] = value
    return kept


# --------------------------------------------------------------------------------------------
# state of one layer


def _colormap_state(colormap: Any) -> Any:
    """A colormap as a name (napari's registered ones) or a small dict."""
    from napari.utils.colormaps import AVAILABLE_COLORMAPS

    if isinstance(colormap, str):
        return colormap
    if isinstance(colormap, dict):
        name = colormap.get("name")
        colors = np.asarray(colormap.get("colors"))
        controls = np.asarray(colormap.get("controls"))
        interpolation = colormap.get("interpolation", "linear")
    else:
        name, colors = getattr(colormap, "name", None), np.asarray(colormap.colors)
        controls = np.asarray(colormap.controls)
        interpolation = getattr(colormap, "interpolation", "linear")
    if name in AVAILABLE_COLORMAPS:
        registered = AVAILABLE_COLORMAPS[name]
        if np.allclose(np.asarray(registered.colors), colors):
            return name
    interpolation = getattr(interpolation, "value", interpolation)
    return {
        "name": name,
        "colors": colors.astype(np.float32),
        "controls": controls.astype(np.float32),
        "interpolation": str(interpolation),
    }


def _colormap_value(state: Any) -> Any:
    if isinstance(state, dict):
        from napari.utils.colormaps import Colormap

        return Colormap(
            colors=state["colors"],
            controls=state["controls"],
            name=state["name"],
            interpolation=state["interpolation"],
        )
    return state


def layer_state(meta: dict, layer_type: str) -> dict:
    """The saved subset of a layer's state (as given by ``layer.as_layer_data_tuple()``)."""
    keys = _COMMON_KEYS + _TYPE_KEYS[layer_type]
    state = {k: meta[k] for k in keys if k in meta}
    state["metadata"] = _jsonable_metadata(state.get("metadata", {}), str(meta.get("name")))
    if "colormap" in state:
        state["colormap"] = _colormap_state(state["colormap"])
    for key in ("contrast_limits", "scale", "translate"):
        if key in state and state[key] is not None:
            state[key] = [float(v) for v in state[key]]
    if "units" in state and state["units"] is not None:
        state["units"] = tuple(str(u) for u in state["units"])
    if "affine" in state:
        affine = np.asarray(getattr(state["affine"], "affine_matrix", state["affine"]))
        if np.allclose(affine, np.eye(affine.shape[0])):
            del state["affine"]
        else:
            state["affine"] = affine
    return state


def _is_saliency(state: dict) -> bool:
    samcam = (state.get("metadata") or {}).get(META_KEY)
    return isinstance(samcam, dict) and samcam.get("kind") == "saliency"


def _features(meta: dict):
    features = meta.get("features")
    if features is None or len(getattr(features, "columns", ())) == 0:
        return None
    return features


# --------------------------------------------------------------------------------------------
# write


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return slug[:60] or "layer"


def is_session(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a saved session."""
    return (Path(path) / SESSION_FILE).is_file()


#: Names the writer gives layer files: ``layers/NN-<slug>.<ext>``.
_LAYER_FILE = re.compile(r"^layers/\d{2,}-[A-Za-z0-9._-]+\.(tif|parquet|csv)$")


def _own_files(path: Path) -> set[str]:
    """Files (relative, POSIX) an earlier save wrote into the session folder ``path``.

    Judged from its session file, and only for names the writer gives: a session file edited
    to list someone's notes does not make them ours.
    """
    own = {SESSION_FILE, "metrics.csv"}
    try:
        document = json.loads((path / SESSION_FILE).read_text(encoding="utf-8"))
        records = [decode(raw) for raw in document.get("layers", [])]
    except (OSError, ValueError, TypeError, AttributeError):
        return own
    for record in records:
        if not isinstance(record, dict):
            continue
        for key in ("data_file", "features_file"):
            name = record.get(key)
            if isinstance(name, str) and _LAYER_FILE.match(name):
                own.add(name)
                if name.endswith(".parquet"):
                    own.add(name[: -len(".parquet")] + ".csv")
    return own


def _user_entries(path: Path, own: set[str]) -> list[str]:
    """Entries of ``path`` (relative, POSIX) that napari-samcam did not write: whole top-level
    entries, and single files inside ``layers/``."""
    out = []
    for entry in sorted(path.iterdir()):
        if entry.name == "layers" and entry.is_dir() and not entry.is_symlink():
            out += [
                f"layers/{item.name}"
                for item in sorted(entry.iterdir())
                if f"layers/{item.name}" not in own
            ]
        elif entry.name not in own:
            out.append(entry.name)
    return out


def _replace_keeping(path: Path, new: Path) -> None:
    """Put the session built in ``new`` at ``path``, keeping what a user added to ``path``.

    The user's entries move into ``new`` first; the old folder is then swapped out in one
    rename and deleted. Any failure before the swap puts the user's entries back.
    """
    own = _own_files(path)
    kept = _user_entries(path, own)
    clashes = [name for name in kept if (new / name).exists() or os.path.lexists(new / name)]
    if clashes:
        raise OutputExistsError(
            f"session folder {str(path)!r} holds {', '.join(clashes)}, which napari-samcam did "
            "not write and would now replace; move it out of the folder or save elsewhere."
        )
    moved: list[str] = []
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
    try:
        for name in kept:
            os.replace(path / name, new / name)
            moved.append(name)
        os.replace(path, old / "session")
    except BaseException:
        for name in reversed(moved):
            os.replace(new / name, path / name)
        shutil.rmtree(old, ignore_errors=True)
        raise
    try:
        os.replace(new, path)
    except BaseException:
        os.replace(old / "session", path)
        for name in reversed(moved):
            os.replace(new / name, path / name)
        shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _check_target(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise OutputExistsError(
            f"session folder {str(path)!r} is an existing file; choose a new folder name."
        )
    if path.is_dir() and any(path.iterdir()) and not is_session(path):
        raise OutputExistsError(
            f"session folder {str(path)!r} exists and holds other files; choose a new or empty "
            "folder (an earlier session folder is replaced)."
        )


def write_session(path: str | os.PathLike, layer_data: list[tuple]) -> list[str]:
    """Write layers (``(data, meta, layer_type)`` tuples) as a session folder.

    The folder is built beside the target and moved into place at the end, so a failure leaves
    no half-written session. An existing session folder at ``path`` is replaced; files in it
    that napari-samcam did not write (a user's notes) are kept, and a clash with one of them
    is an error.

    Returns
    -------
    list of str
        The session folder.
    """
    import pandas as pd
    import tifffile

    path = Path(path)
    _check_target(path)
    parent = path.parent if str(path.parent) else Path(".")
    check_writable(parent, name="session folder")  # one clear error, before anything is written
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=parent))
    try:
        (tmp / "layers").mkdir()
        records, tables = [], []
        for i, (data, meta, layer_type) in enumerate(layer_data):
            if layer_type not in SUPPORTED_TYPES:
                import warnings

                warnings.warn(
                    f"layer {meta.get('name')!r}: {layer_type} layers are not saved in sessions.",
                    UserWarning,
                    stacklevel=2,
                )
                continue
            stem = f"layers/{i:02d}-{_slug(str(meta.get('name', layer_type)))}"
            record: dict[str, Any] = {"type": layer_type, "state": layer_state(meta, layer_type)}
            if layer_type in _ARRAY_TYPES:
                if meta.get("multiscale"):
                    data = data[0]
                array = np.asarray(data)
                tifffile.imwrite(tmp / f"{stem}.tif", array, photometric=_photometric(array, meta))
                record["data_file"] = f"{stem}.tif"
                record["dtype"] = array.dtype.str
            elif layer_type == "shapes":
                record["data"] = [np.asarray(v) for v in data]
            else:
                record["data"] = np.asarray(data)
            features = _features(meta)
            if features is not None:
                features.to_parquet(tmp / f"{stem}.parquet")
                features.to_csv(tmp / f"{stem}.csv", index=False)
                record["features_file"] = f"{stem}.parquet"
                if layer_type == "labels" and "label" in features:
                    table = features.copy()
                    table.insert(0, "layer", meta.get("name"))
                    tables.append(table)
            records.append(record)
        if tables:
            pd.concat(tables, ignore_index=True).to_csv(tmp / "metrics.csv", index=False)
        document = {
            "format": SESSION_FORMAT,
            "version": SESSION_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "napari_samcam_version": _version(),
            "provenance": _provenance(records),
            "layers": [encode(r) for r in records],
        }
        (tmp / SESSION_FILE).write_text(json.dumps(document, indent=1), encoding="utf-8")
        if path.exists():
            _replace_keeping(path, tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [str(path)]


def _photometric(array: np.ndarray, meta: dict) -> str:
    return "rgb" if meta.get("rgb") and array.shape[-1] in (3, 4) else "minisblack"


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("napari-samcam")
    except Exception:  # not installed (running from a source tree)
        return ""


def _provenance(records: list[dict]) -> list[dict]:
    """The plugin's bookkeeping of every layer, for readers of the JSON."""
    out = []
    for record in records:
        meta = record["state"].get("metadata", {}).get("samcam")
        if meta:
            out.append({"layer": record["state"].get("name"), **meta})
    return out


# --------------------------------------------------------------------------------------------
# read


def _inside(folder: Path, name: Any, where: str) -> Path:
    """``folder / name`` for a relative name that stays inside ``folder`` (links resolved)."""
    if not isinstance(name, str) or not name:
        raise ImageReadError(f"{where} is not a file name ({name!r}).")
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts or "\\" in name:
        raise ImageReadError(
            f"{where} {name!r} points outside the session folder; a session refers only to "
            "files inside its own folder."
        )
    target = folder / relative
    if not target.resolve().is_relative_to(folder.resolve()):
        raise ImageReadError(
            f"{where} {name!r} is a link that leads outside the session folder; a session "
            "refers only to files inside its own folder."
        )
    if not target.exists():  # a pipe or device is refused where the file is opened
        raise ImageReadError(
            f"{where} {name!r} is missing from the session folder; copy the whole folder, "
            "with its layers/ subfolder."
        )
    return target


def _layer_record(raw: Any, index: int, where: str) -> tuple[dict, str, dict]:
    """The decoded record, its type and its state, or an error naming what is missing."""
    try:
        record = decode(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise ImageReadError(f"{where}: layer {index} cannot be decoded ({exc}).") from exc
    if not isinstance(record, dict):
        raise ImageReadError(f"{where}: layer {index} is not a JSON object.")
    state = record.get("state")
    name = state.get("name", "") if isinstance(state, dict) else ""
    label = f"layer {index}" + (f" ({name!r})" if name else "")
    if not isinstance(state, dict):
        raise ImageReadError(
            f"{where}: {label} has no 'state' (its name, scale, colours ...); the file was "
            "edited or cut short: save the session again."
        )
    layer_type = record.get("type")
    if layer_type not in SUPPORTED_TYPES:
        raise ImageReadError(
            f"{where}: {label} has type {layer_type!r}; sessions hold "
            f"{', '.join(SUPPORTED_TYPES)} layers."
        )
    if layer_type in _ARRAY_TYPES and "data_file" not in record:
        raise ImageReadError(f"{where}: {label} has no 'data_file'.")
    if layer_type not in _ARRAY_TYPES and "data" not in record:
        raise ImageReadError(f"{where}: {label} has no 'data'.")
    return record, layer_type, dict(state)


def read_session(path: str | os.PathLike) -> list[tuple]:
    """Layer data tuples of a session folder, in the saved order.

    Raises
    ------
    ImageReadError
        The session file is missing, unreadable or incomplete (a layer without its state), a
        layer file is missing or unreadable, or a file name leads outside the folder. The
        message names the session file and the item.
    """
    import pandas as pd

    path = Path(path)
    session_file = path / SESSION_FILE
    try:
        with open_regular(session_file, "session file", ImageReadError) as handle:
            document = json.loads(handle.read().decode("utf-8"))
    except ImageReadError:
        raise
    except (OSError, ValueError) as exc:
        raise ImageReadError(
            f"session {str(path)!r}: {SESSION_FILE} could not be read ({exc}). The folder must "
            "be one written by napari-samcam's session writer."
        ) from exc
    if not isinstance(document, dict):
        raise ImageReadError(f"session file {str(session_file)!r} is not a JSON object.")
    if document.get("format") != SESSION_FORMAT:
        raise ImageReadError(
            f"session {str(path)!r}: {SESSION_FILE} is not a napari-samcam session file."
        )
    if int(document.get("version", 0)) > SESSION_VERSION:
        raise ImageReadError(
            f"session {str(path)!r} was written by a newer napari-samcam (format version "
            f"{document['version']}); update napari-samcam to open it."
        )
    where = f"session file {str(session_file)!r}"
    layers = document.get("layers", [])
    if not isinstance(layers, list):
        raise ImageReadError(f"{where}: 'layers' is not a list.")
    out = []
    for index, raw in enumerate(layers):
        record, layer_type, state = _layer_record(raw, index, where)
        if "colormap" in state:
            state["colormap"] = _colormap_value(state["colormap"])
        if layer_type in _ARRAY_TYPES:
            data_file = _inside(path, record["data_file"], f"{where}: layer {index} data_file")
            data = read_tiff(data_file, f"{where}: layer {index} data_file")
            try:
                data = data.astype(np.dtype(record.get("dtype", data.dtype)), copy=False)
            except (OSError, ValueError, TypeError) as exc:
                raise ImageReadError(
                    f"{where}: layer {index} data_file {str(data_file)!r} could not be read "
                    f"({exc})."
                ) from exc
            if layer_type == "image" and _is_saliency(state):
                data = display_levels(data)
                state["multiscale"] = isinstance(data, list)
        elif layer_type == "shapes":
            data = list(record["data"])
        else:
            data = record["data"]
        if "features_file" in record:
            features = _inside(
                path, record["features_file"], f"{where}: layer {index} features_file"
            )
            try:
                with open_regular(features, f"{where}: layer {index} features_file") as handle:
                    state["features"] = pd.read_parquet(handle)
            except (OSError, ValueError) as exc:
                raise ImageReadError(
                    f"{where}: layer {index} features_file {str(features)!r} could not be read "
                    f"({exc})."
                ) from exc
        out.append((data, state, layer_type))
    return out
