"""An evaluation output folder read back: its scores per item and each item's pictures.

:func:`open_evaluation` reads the metric rows and indexes the kept arrays
(:mod:`~napari_samcam.evaluation.arrays`); :meth:`StoredEvaluation.item_view` gives one item's
image, saliency maps (upsampled to the image) and regions with their scores. napari's reader and
the results table are built on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._files import require_regular_file
from ..errors import InputError
from ..images import read_image
from .arrays import ARRAYS_SUFFIX, JobArrays, read_job_arrays, region_mask, saliency_at
from .jobs import COLUMNS, rows_frame, with_optional_columns

__all__ = ["ItemView", "StoredEvaluation", "is_evaluation_folder", "open_evaluation"]

#: Columns that identify one scored (item, saliency map, region) in
#: :attr:`StoredEvaluation.scores`.
SCORE_KEYS = ("item", "image", "image_key", "classifier", "cam_method", "region_source")


def is_evaluation_folder(path: str | Path) -> bool:
    """Whether ``path`` is an evaluate output folder (``config.json`` and ``parts/``)."""
    path = Path(path)
    return (path / "config.json").is_file() and (path / "parts").is_dir()


@dataclass
class ItemView:
    """One item of an evaluation, ready to draw.

    Attributes
    ----------
    item : int
        The item's index in the manifest.
    image_name : str
        The image as the manifest names it.
    image_key : str
        Content hash of the image (as in the metric rows).
    image : numpy.ndarray
    metadata : dict
        The image file's metadata (``images.read_image``).
    window : tuple or None
    boxes : list of (int, int, int, int)
    saliencies : list of (dict, numpy.ndarray)
        Provenance (classifier, cam_method, target_class, probability, layer) and the map at
        the image's resolution.
    regions : list of (dict, numpy.ndarray, pandas.DataFrame)
        Region record (region_source, classifier, cam_method, prompt, score, sam_model), its
        mask and its scores: one row per saliency map it was scored against, one column per
        metric.
    """

    item: int
    image_name: str
    image_key: str
    image: np.ndarray
    metadata: dict
    window: Any
    boxes: list
    saliencies: list = field(default_factory=list)
    regions: list = field(default_factory=list)


@dataclass
class StoredEvaluation:
    """An evaluate output folder, read back.

    Attributes
    ----------
    folder : Path
    config : dict
        ``config.json``.
    metrics : pandas.DataFrame
        The tidy metric rows.
    arrays : dict
        Item index -> path of the ``.arrays.npz`` holding it (items without kept arrays are
        missing).
    """

    folder: Path
    config: dict
    metrics: Any
    arrays: dict
    _scores: Any = field(default=None, repr=False)
    _reasons: Any = field(default=None, repr=False)

    @property
    def scores(self):
        """One row per item x classifier x method x region source, one column per metric."""
        if self._scores is None:
            self._scores = score_table(self.metrics)
        return self._scores

    @property
    def nan_reasons(self):
        """:attr:`scores`' shape, rows and columns, holding why each NaN score is undefined
        (empty text where the score is a number, or where an older run did not record it)."""
        if self._reasons is None:
            self._reasons = score_table(self.metrics, "nan_reason").fillna("")
        return self._reasons

    def items(self, metric: str = "iou", *, ascending: bool = True) -> list[int]:
        """Items that can be drawn, by their mean ``metric`` (worst first by default)."""
        frame = self.metrics[self.metrics["metric"] == metric]
        order = frame.groupby("item")["value"].mean().sort_values(ascending=ascending)
        ranked = [int(i) for i in order.index if int(i) in self.arrays]
        rest = sorted(set(self.arrays) - set(ranked))
        return ranked + rest

    def job_arrays(self, item: int) -> JobArrays:
        if item not in self.arrays:
            raise InputError(
                f"evaluation {str(self.folder)!r} kept no arrays for item {item}; run it with "
                "keep_arrays=True (the default; CLI: without --no-keep-arrays) to draw items."
            )
        return read_job_arrays(self.arrays[item])

    def item_view(self, item: int) -> ItemView:
        """Image, saliency maps at image resolution and regions with scores of one item."""
        stored = self.job_arrays(item)
        path = stored.image_path
        if not path.exists():
            raise InputError(
                f"image {str(path)!r} of item {item} (evaluation {str(self.folder)!r}) is "
                "missing; put it back where the evaluation read it."
            )
        data = read_image(path)
        image = np.asarray(data.array)
        shape = image.shape[:2]
        info = stored.item_info(item)
        rows = self.metrics[self.metrics["item"] == item]
        image_key = str(rows["image_key"].iloc[0]) if len(rows) else ""
        saliencies = []
        for entry, raw in stored.saliencies(item):
            provenance = {k: v for k, v in entry.items() if k not in ("array", "items")}
            saliencies.append((provenance, saliency_at(raw, shape)))
        wide = self.scores
        wide = wide[wide["item"] == item]
        regions = []
        for record in stored.regions(item):
            chosen = wide["region_source"] == record["region_source"]
            if record["classifier"]:
                chosen &= (wide["classifier"] == record["classifier"]) & (
                    wide["cam_method"] == record["cam_method"]
                )
            meta = {k: v for k, v in record.items() if k != "rle"}
            try:
                mask = region_mask(record, shape)
            except InputError as exc:
                raise InputError(f"{str(stored.path)!r}, item {item}: {exc}") from None
            regions.append((meta, mask, wide[chosen].reset_index(drop=True)))
        boxes = [tuple(b) for b in info["boxes"]]
        if not boxes:
            truth = stored.region(item, "ground-truth")
            if truth is not None:
                boxes = mask_boxes(region_mask(truth, shape))
        return ItemView(
            item=item,
            image_name=stored.meta["image"],
            image_key=image_key,
            image=image,
            metadata=dict(data.metadata),
            window=stored.meta.get("window"),
            boxes=boxes,
            saliencies=saliencies,
            regions=regions,
        )


def score_table(metrics, column: str = "value"):
    """Tidy metric rows as one row per item x classifier x method x region source, with each
    metric's ``column`` (the score, or its ``nan_reason``)."""
    wide = metrics.groupby([*SCORE_KEYS, "metric"], sort=False)[column].first().unstack()
    order = list(dict.fromkeys(metrics["metric"]))
    wide = wide[order]
    wide.columns = [str(c) for c in wide.columns]
    return wide.reset_index()


def mask_boxes(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Bounding boxes ``(row0, col0, row1, col1)`` of a mask's connected components."""
    from scipy import ndimage

    if not mask.any():
        return []
    labels, _ = ndimage.label(mask)
    return [(r.start, c.start, r.stop, c.stop) for r, c in ndimage.find_objects(labels)]


def _read_metrics(folder: Path):
    import pandas as pd

    table = folder / "metrics.parquet"
    paths = [table] if table.is_file() else sorted((folder / "parts").glob("*.metrics.parquet"))
    frames = []
    for path in paths:
        try:
            frame = pd.read_parquet(require_regular_file(path, "metrics table"))
        except InputError:
            raise
        except Exception as exc:  # pyarrow raises several types for damaged files
            raise InputError(
                f"metrics table {str(path)!r} cannot be read ({type(exc).__name__}); run the "
                "evaluation again into this folder to redo damaged parts."
            ) from None
        missing = {"item", "metric", "value", "region_source"} - set(frame.columns)
        if missing or not set(frame.columns) <= set(COLUMNS):
            raise InputError(
                f"metrics table {str(path)!r} lacks the columns {sorted(missing)} (or has "
                "others); it was not written by `samcam evaluate`."
            )
        if len(frame):
            frames.append(with_optional_columns(frame))
    return pd.concat(frames, ignore_index=True) if frames else rows_frame([])


def _index_arrays(folder: Path) -> dict[int, Path]:
    index: dict[int, Path] = {}
    for path in sorted((folder / "parts").glob(f"*{ARRAYS_SUFFIX}")):
        if path.name.startswith("."):
            continue
        for item in read_job_arrays(path).items:
            index[int(item)] = path
    return index


def open_evaluation(folder: str | Path) -> StoredEvaluation:
    """Read an evaluate output folder.

    Raises
    ------
    InputError
        ``folder`` is not an evaluate output folder, or holds no results yet.
    """
    folder = Path(folder)
    if not is_evaluation_folder(folder):
        raise InputError(
            f"{str(folder)!r} is not an evaluation output folder (it needs config.json and "
            "parts/); pass the folder `samcam evaluate` wrote."
        )
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise InputError(f"{str(folder / 'config.json')!r} cannot be read: {exc}.") from None
    if not isinstance(config, dict):
        raise InputError(f"{str(folder / 'config.json')!r} is not an evaluation's settings.")
    metrics = _read_metrics(folder)
    if not len(metrics):
        raise InputError(
            f"evaluation {str(folder)!r} holds no scored image yet; run `samcam evaluate` into "
            "it first."
        )
    return StoredEvaluation(folder, config, metrics, _index_arrays(folder))
