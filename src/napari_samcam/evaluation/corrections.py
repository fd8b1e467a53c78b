"""Corrections of one evaluation item: a region segmented again from new prompts, its scores,
and the corrected region saved as ground truth for a later run.

:func:`resegment` prompts SAM with the boxes and clicks a person drew, :func:`rescore_item`
scores a region against the item's saliency maps the way ``samcam evaluate`` did (its
binarization, the ``samcam`` protocol), and :func:`save_ground_truth` writes the mask as a PNG
and a row of a CSV manifest (:mod:`~napari_samcam.evaluation.manifests`) that
``samcam evaluate`` reads. Nothing here imports napari or Qt.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._csv_cells import neutralise_cell, restore_cell
from .._files import open_regular
from .._folders import atomic_path, check_writable, create_new_file, refuse_link
from ..errors import InputError, OutputExistsError, OutputNotWritableError, SamcamError
from ..sam_models import SAM_MODELS

__all__ = [
    "GROUND_TRUTH_COLUMNS",
    "evaluation_segmenter",
    "rescore_item",
    "resegment",
    "save_ground_truth",
]

#: Columns of the manifest :func:`save_ground_truth` writes.
GROUND_TRUTH_COLUMNS = ("image", "label", "class", "mask")


def evaluation_segmenter(config: dict, *, device: Any = None):
    """The :class:`~napari_samcam.segment.Segmenter` of the SAM model an evaluation used.

    Raises
    ------
    InputError
        The evaluation used no SAM model, or one passed as an object (its ``config.json`` names
        only its class): it cannot be loaded again by name.
    """
    from ..segment import load_segmenter

    sam = config.get("config", config).get("sam")
    if not sam:
        raise InputError(
            "the evaluation used no SAM model; pick one to re-segment with (e.g. 'litemedsam')."
        )
    spec = sam["spec"]
    if spec not in SAM_MODELS:
        raise InputError(
            f"the evaluation's SAM model {spec!r} was passed as an object and cannot be loaded "
            "again by name; set the segmenter to re-segment with."
        )
    return load_segmenter(spec, checkpoint=sam.get("checkpoint"), device=device)


def resegment(
    segmenter: Any,
    image: np.ndarray,
    *,
    boxes: Any = None,
    points: Any = None,
    point_labels: Any = None,
    context: float | None = None,
    window: Any = None,
) -> np.ndarray:
    """The union of the regions SAM segments in ``image`` from new prompts.

    Parameters
    ----------
    segmenter : napari_samcam.segment.Segmenter
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, 3|4)``.
    boxes : array_like, optional
        ``(N, 4)`` ``(row0, col0, row1, col1)``, end exclusive.
    points, point_labels : array_like, optional
        ``(N, 2)`` ``(row, col)`` clicks and their polarity (1 positive, 0 negative).
    context, window
        As in :meth:`~napari_samcam.segment.Segmenter.segment`.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` bool mask.

    Raises
    ------
    InputError
        Neither a box nor a click was given.
    """
    boxes = None if boxes is None or len(boxes) == 0 else np.asarray(boxes, dtype=float)
    points = None if points is None or len(points) == 0 else np.asarray(points, dtype=float)
    if boxes is None and points is None:
        raise InputError(
            "no prompt to segment from: draw a box (Shapes layer) or click a point (Points "
            "layer) on the item first."
        )
    regions = segmenter.segment(
        image,
        boxes=boxes,
        points=points,
        point_labels=None if points is None else point_labels,
        context=context,
        window=window,
    )
    mask = np.zeros(image.shape[:2], dtype=bool)
    for region in regions:
        mask |= region.mask
    return mask


def rescore_item(
    config: dict, record: dict, mask: np.ndarray, saliencies: list[tuple[dict, np.ndarray]]
):
    """Scores of a (corrected) region against the item's saliency maps.

    Parameters
    ----------
    config : dict
        The evaluation's ``config.json``, or its ``"config"`` entry (the binarization and the
        protocol are used).
    record : dict
        The region's record: ``region_source``, and ``classifier`` and ``cam_method`` for a
        region made from one saliency map (empty for annotation-based regions).
    mask : (H, W) array_like of bool
        The region.
    saliencies : list of (dict, numpy.ndarray)
        Provenance (``classifier``, ``cam_method``) and map at the image's resolution, as
        :attr:`~napari_samcam.evaluation.stored.ItemView.saliencies`. A region made from one map
        is scored against that map only, an annotation-based one against every map.

    Returns
    -------
    pandas.DataFrame
        One row per map: ``classifier``, ``cam_method``, ``region_source``, then one column per
        metric of :func:`~napari_samcam.metrics.localization_metrics`, then ``nan_reasons``:
        ``{metric: why it is undefined}`` for the metrics that are NaN.

    Raises
    ------
    InputError
        The evaluation used the ``chexlocalize`` protocol (its maps are not kept at the
        resolution it scores), no map matches the region, or the shapes differ.
    """
    import pandas as pd

    from ..metrics import localization_results

    config = config.get("config", config)  # config.json nests the run's settings
    protocol = config.get("protocol", "samcam")
    if protocol != "samcam":
        raise InputError(
            f"the evaluation used the {protocol!r} protocol; re-scoring supports the 'samcam' "
            "protocol only. Run the evaluation with protocol='samcam' to correct regions."
        )
    binarization = {k: v for k, v in config.get("binarization", {}).items() if v is not None}
    mask = np.asarray(mask, dtype=bool)
    rows = []
    for provenance, saliency in saliencies:
        key = (provenance["classifier"], provenance["cam_method"])
        if record.get("classifier") and key != (record["classifier"], record["cam_method"]):
            continue
        if np.shape(saliency) != mask.shape:
            raise InputError(
                f"region of shape {mask.shape} and saliency map {key} of shape "
                f"{np.shape(saliency)}: both must have the image's shape."
            )
        results = localization_results(np.asarray(saliency), mask, **binarization)
        rows.append(
            {
                "classifier": key[0],
                "cam_method": key[1],
                "region_source": record["region_source"],
                **{metric: value for metric, (value, _) in results.items()},
                "nan_reasons": {metric: why for metric, (_, why) in results.items() if why},
            }
        )
    if not rows:
        raise InputError(
            f"no saliency map of this item matches region {record['region_source']!r} "
            f"({record.get('classifier', '')} {record.get('cam_method', '')})."
        )
    return pd.DataFrame(rows)


def save_ground_truth(
    mask: np.ndarray,
    mask_path: str | Path,
    image_path: str | Path,
    *,
    label: str = "",
    cls: str = "",
    manifest: str | Path | None = None,
) -> Path:
    """Write ``mask`` as a 0/255 PNG and add a row naming it to a CSV manifest.

    Parameters
    ----------
    mask : (H, W) array_like of bool
    mask_path : str or Path
        The PNG to write; it must not exist.
    image_path : str or Path
        The image the mask annotates.
    label, cls : str
        The row's ``label`` (``"1"`` when empty and the mask is not) and ``class``.
    manifest : str or Path, optional
        The CSV manifest (default: ``ground-truth.csv`` next to the PNG). A new one is created
        with the columns :data:`GROUND_TRUTH_COLUMNS`; an existing one written by this function
        gains a row. Paths in it are relative to its folder when possible.

    Returns
    -------
    Path
        The manifest.

    Raises
    ------
    OutputExistsError
        The PNG exists, or the manifest already has a row for this image and class.
    InputError
        The mask is not 2-D, or the manifest has other columns.
    """
    import imageio.v3 as iio

    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise InputError(f"a ground-truth mask is 2-D; got shape {mask.shape}.")
    mask_path = Path(mask_path)
    if mask_path.suffix.lower() != ".png":
        raise InputError(
            f"ground-truth mask {str(mask_path)!r}: masks are written as PNG; give the file a "
            ".png name."
        )
    manifest = mask_path.with_name("ground-truth.csv") if manifest is None else Path(manifest)
    if manifest.suffix.lower() != ".csv":
        raise InputError(f"manifest {str(manifest)!r}: a ground-truth manifest is a .csv file.")
    refuse_link(manifest, "manifest")
    refuse_link(mask_path, "ground-truth mask")
    if mask_path.exists():
        raise OutputExistsError(
            f"{str(mask_path)!r} exists; choose another file name (masks are never overwritten)."
        )
    root = manifest.parent
    row = {
        "image": _relative(Path(image_path), root),
        "label": label or ("1" if mask.any() else "0"),
        "class": cls,
        "mask": _relative(mask_path, root),
    }
    rows = _existing_rows(manifest)
    for old in rows:
        if (old["image"], old["class"]) == (row["image"], row["class"]):
            raise OutputExistsError(
                f"manifest {str(manifest)!r} already has a ground truth for {row['image']!r}"
                f"{' (' + cls + ')' if cls else ''}; choose another manifest or edit it."
            )
    for folder in {mask_path.parent, root}:
        folder.mkdir(parents=True, exist_ok=True)
        check_writable(folder, name="folder")  # before anything is written
    png = iio.imwrite("<bytes>", mask.astype(np.uint8) * 255, extension=".png")
    with create_new_file(mask_path, "ground-truth mask") as handle:
        handle.write(png)
    try:
        _write_rows(manifest, [*rows, row])
    except BaseException as exc:
        mask_path.unlink()  # nothing half-written: the mask goes with its row
        if isinstance(exc, OSError) and not isinstance(exc, SamcamError):
            raise OutputNotWritableError(
                f"manifest {str(manifest)!r} cannot be written ({exc.strerror or exc}); the mask "
                "was not kept. Choose a folder you can write to."
            ) from None
        raise
    return manifest


def _write_rows(manifest: Path, rows: list[dict]) -> None:
    """Write the whole manifest to a new file and move it into place (never through a link)."""
    with atomic_path(manifest) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=GROUND_TRUTH_COLUMNS)
        writer.writeheader()
        writer.writerows({k: neutralise_cell(v) for k, v in r.items()} for r in rows)


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(os.path.relpath(path.resolve(), root.resolve())).as_posix()
    except ValueError:  # another drive (Windows)
        return str(path.resolve())


def _existing_rows(manifest: Path) -> list[dict]:
    if not manifest.exists():
        return []
    with open_regular(manifest, "manifest") as raw:
        text = raw.read().decode("utf-8-sig", errors="replace")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if tuple(reader.fieldnames or ()) != GROUND_TRUTH_COLUMNS:
        raise InputError(
            f"manifest {str(manifest)!r} has columns {reader.fieldnames}, not "
            f"{list(GROUND_TRUTH_COLUMNS)}; save into a new manifest instead."
        )
    return [{k: restore_cell(v or "") for k, v in row.items()} for row in reader]
