"""What an evaluation keeps per image to draw its items again: saliency maps and regions.

One ``parts/<key>.arrays.npz`` per image (job), written next to its metric rows:

``meta``
    UTF-8 JSON: the image as the manifest names it, its file, shape and display window; per
    item its box annotations; per saliency map its provenance and the array's name; per region
    its item, source, classifier and CAM method (empty for annotation-based regions, which all
    maps of an item share), prompt and COCO RLE (:func:`~.manifests.encode_rle`).
``saliency_<i>``
    The un-normalised CAM at the network's resolution
    (:attr:`~napari_samcam.saliency.Saliency.raw`) as float16. :func:`saliency_at` upsamples
    it to any size the way :func:`~napari_samcam.saliency.explain` makes its map, so the map at
    image resolution comes back up to float16 rounding.

The image itself is not copied: it is read again from its file.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._files import read_npz
from ..errors import InputError, SamcamError
from .jobs import _plain
from .manifests import decode_rle, encode_rle

__all__ = ["JobArrays", "arrays_path", "pack_job_arrays", "read_job_arrays", "saliency_at"]

ARRAYS_SUFFIX = ".arrays.npz"


def arrays_path(out: Path, key: str) -> Path:
    """``out/parts/<key>.arrays.npz``."""
    return Path(out) / "parts" / f"{key}{ARRAYS_SUFFIX}"


def _number(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


#: Longest side a stored map keeps; CAMs are far smaller, maps read from files may not be.
MAX_MAP_SIDE = 512


def _small(raw: np.ndarray) -> np.ndarray:
    """``raw`` as float16, shrunk (area average) to at most :data:`MAX_MAP_SIDE` a side."""
    raw = np.asarray(raw, dtype=np.float32)
    if raw.ndim == 2 and max(raw.shape) > MAX_MAP_SIDE:
        from PIL import Image

        scale = MAX_MAP_SIDE / max(raw.shape)
        size = (max(1, round(raw.shape[1] * scale)), max(1, round(raw.shape[0] * scale)))
        raw = np.asarray(Image.fromarray(raw, mode="F").resize(size, Image.Resampling.BOX))
    return raw.astype(np.float16)


def pack_job_arrays(job, result) -> bytes:
    """The ``.npz`` bytes of one job's kept arrays (``run_image_job(..., keep_arrays=True)``).

    Parameters
    ----------
    job : ImageJob
    result : JobResult
        With ``image``, ``saliencies`` and ``regions`` kept.
    """
    arrays: dict[str, np.ndarray] = {}
    # which items each map was scored for: items of one image may explain different classes
    users: dict[tuple, list[int]] = {}
    for item, classifier, method, target, _source in result.regions:
        found = users.setdefault((classifier, method, target), [])
        if item not in found:
            found.append(int(item))
    saliencies = []
    for skey, saliency in result.saliencies.items():
        classifier, method, _target = skey
        name = f"saliency_{len(saliencies)}"
        arrays[name] = _small(saliency.raw)
        saliencies.append(
            {
                "classifier": classifier,
                "cam_method": method,
                "items": users.get(skey, []),
                "class_index": int(saliency.class_index),
                "target_class": saliency.class_name,
                "probability": float(saliency.probability),
                "layer": saliency.layer,
                "classifier_version": saliency.classifier_version,
                "array": name,
            }
        )
    regions = []
    seen: set[tuple] = set()
    for (item, classifier, method, _target, source), region in result.regions.items():
        shared = not region.source.startswith("sam-saliency")
        key = (item, source) if shared else (item, classifier, method, source)
        if key in seen:
            continue
        seen.add(key)
        regions.append(
            {
                "item": int(item),
                "region_source": source,
                "classifier": "" if shared else classifier,
                "cam_method": "" if shared else method,
                "prompt": json.loads(json.dumps(region.prompt, default=_plain)),
                "score": _number(region.score),
                "sam_model": region.model or "",
                "rle": encode_rle(region.mask),
            }
        )
    image = result.image
    window = result.window
    meta = {
        "image": job.image,
        "path": str(job.path),
        "shape": [] if image is None else [int(s) for s in image.shape[:2]],
        "window": None if window is None else [float(w) for w in window],
        "items": [
            {
                "item": item.index,
                "label": item.label,
                "class": item.cls,
                "boxes": [[int(v) for v in box] for box in item.boxes],
            }
            for item in job.items
        ],
        "saliencies": saliencies,
        "regions": regions,
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@dataclass
class JobArrays:
    """The kept arrays of one image, read back from its ``.arrays.npz``.

    Attributes
    ----------
    path : Path
        The ``.npz`` file.
    meta : dict
        See the module docstring.
    raws : dict
        Array name -> float32 CAM at the network's resolution (maps read from files: at most
        :data:`MAX_MAP_SIDE` pixels a side).
    """

    path: Path
    meta: dict
    raws: dict = field(default_factory=dict)

    @property
    def image_path(self) -> Path:
        return Path(self.meta["path"])

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.meta["shape"])

    @property
    def items(self) -> list[int]:
        return [entry["item"] for entry in self.meta["items"]]

    def item_info(self, item: int) -> dict:
        """Label, class and boxes of ``item``."""
        for entry in self.meta["items"]:
            if entry["item"] == item:
                return entry
        raise InputError(f"{str(self.path)!r} holds no item {item}.")

    def saliencies(self, item: int) -> list[tuple[dict, np.ndarray]]:
        """``(record, raw map)`` of every saliency map scored for ``item``."""
        return [
            (entry, self.raws[entry["array"]])
            for entry in self.meta["saliencies"]
            if item in entry["items"]
        ]

    def raw(self, item: int, classifier: str, method: str) -> np.ndarray | None:
        """The raw map of ``classifier`` and ``method`` scored for ``item``, if kept."""
        for entry, raw in self.saliencies(item):
            if (entry["classifier"], entry["cam_method"]) == (classifier, method):
                return raw
        return None

    def regions(self, item: int) -> list[dict]:
        """Region records of ``item`` (each with its ``rle``), in stored order."""
        return [r for r in self.meta["regions"] if r["item"] == item]

    def region(
        self, item: int, source: str, classifier: str = "", method: str = ""
    ) -> dict | None:
        """The record of one region: annotation-based ones ignore classifier and method."""
        for r in self.regions(item):
            if r["region_source"] != source:
                continue
            if r["classifier"] and (r["classifier"], r["cam_method"]) != (classifier, method):
                continue
            return r
        return None


def read_job_arrays(path: str | Path) -> JobArrays:
    """Read one ``.arrays.npz`` (plain arrays only: no pickles are loaded).

    Raises
    ------
    InputError
        The file is not such an archive.
    """
    path = Path(path)
    try:
        archive = read_npz(path, "arrays file", limit=MAX_ARRAYS_FILE_BYTES)
        meta = json.loads(bytes(archive["meta"]).decode("utf-8"))
        _check_meta(meta)
        raws = {s["array"]: archive[s["array"]].astype(np.float32) for s in meta["saliencies"]}
    except (SamcamError, ValueError, KeyError, TypeError, RecursionError) as exc:
        detail = str(exc) if isinstance(exc, SamcamError) else f"{type(exc).__name__}: {exc}"
        raise InputError(
            f"{str(path)!r} is not an evaluation's arrays file ({detail[:300]}); run the "
            "evaluation again with overwrite to rebuild it."
        ) from None
    return JobArrays(path, meta, raws)


#: The most bytes one ``.arrays.npz`` may declare: maps are at most 512 x 512 float16 each.
MAX_ARRAYS_FILE_BYTES = 256 << 20


def _check_meta(meta: Any) -> None:
    """The layout :func:`pack_job_arrays` writes, checked once so that readers meet no
    missing key or wrong type later."""
    if not isinstance(meta, dict):
        raise ValueError("its meta is not a JSON object")
    for key, kind in (("items", list), ("saliencies", list), ("regions", list), ("shape", list)):
        if not isinstance(meta.get(key), kind):
            raise ValueError(f"its meta has no list {key!r}")
    if not isinstance(meta.get("path"), str) or not isinstance(meta.get("image"), str):
        raise ValueError("its meta names no image")
    for entry in meta["items"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("item"), int):
            raise ValueError("an item entry without an item number")
        if not isinstance(entry.get("boxes", []), list):
            raise ValueError("an item's boxes are not a list")
    for entry in meta["saliencies"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("array"), str):
            raise ValueError("a saliency entry without its array")
        if not all(isinstance(entry.get(k), str) for k in ("classifier", "cam_method")):
            raise ValueError("a saliency entry without its classifier")
        if not isinstance(entry.get("items"), list):
            raise ValueError("a saliency entry without its items")
    for entry in meta["regions"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("rle"), dict):
            raise ValueError("a region entry without its RLE")
        if not isinstance(entry.get("item"), int) or not all(
            isinstance(entry.get(k), str) for k in ("region_source", "classifier", "cam_method")
        ):
            raise ValueError("a region entry without its source")


def saliency_at(raw: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A stored CAM as a float32 map of ``shape`` in ``[0, 1]`` (as ``explain`` makes it)."""
    from ..saliency import upsampled_map

    return upsampled_map(np.asarray(raw, dtype=np.float32), tuple(int(s) for s in shape))


def region_mask(record: dict, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The bool mask of a region record; with ``shape`` (the image's), an RLE of another size
    is refused before anything is built."""
    return decode_rle(record["rle"], shape=shape)
