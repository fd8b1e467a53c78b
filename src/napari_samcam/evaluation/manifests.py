"""Dataset manifests: which images to evaluate and their annotations.

Three formats are read into the same list of :class:`Item` objects:

* **CSV** (the phantom generator's format): one row per annotated image with the columns
  ``image`` (required), ``label`` and/or ``class`` (optional), ``mask`` (optional path of a
  0/non-zero mask image) and ``box_r0, box_c0, box_r1, box_c1`` (optional, all four or none;
  end exclusive). Paths are relative to the manifest's folder. An empty ``mask`` cell means an
  empty ground truth when the label is negative (``0``, ``false``, ``no``, ``negative`` or
  empty) and "no ground truth" otherwise. An optional ``readers`` column holds several readers'
  boxes as JSON (``{"R1": [[r0, c0, r1, c1]], "R2": []}``; region source ``readers``).
  Several rows may name the same image (different
  classes: several findings). A row that repeats an earlier one (same image, class and
  annotation) is dropped with a warning; rows of one image and class that differ are an error.
* **COCO JSON** (``images``, ``annotations``, ``categories``): one item per image and category
  holding the union of that category's masks (polygons, or RLE — compressed or not) and its
  boxes (``bbox`` ``[x, y, w, h]`` converted to ``(row0, col0, row1, col1)``). An image without
  annotations becomes one negative item with an empty ground truth. ``file_name`` is relative
  to ``image_root`` (default: the JSON's folder).
* **CheXlocalize ground truth** (``{img_id: {task: {"size": [h, w], "counts": RLE}}}``):
  one item per image and task; the label is 1 when the mask is non-empty. Boxes are derived
  from the mask, one per connected component. Images are looked up under ``image_root`` as
  ``<img_id>.<ext>`` or as CheXpert's ``patientX/studyY/viewZ_frontal.<ext>``.

The annotation files of NIH ChestX-ray14, RSNA Pneumonia, SIIM-ACR and VinDr-CXR, as
distributed (plain, gzip or zip), are told from their columns and read by
:mod:`napari_samcam.datasets`.

COCO run-length encoding is decoded (and encoded, for tests and exports) in NumPy here; no
``pycocotools`` is needed.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import numpy as np

from .._csv_cells import restore_cell
from ..coco_masks import (
    decode_rle,
    encode_rle,
    rle_from_string,
    rle_runs,
    rle_to_string,
)
from ..dataset_items import NEGATIVE_LABELS, Item, clip_to_image
from ..datasets import detect_dataset, load_dataset
from ..errors import InputError
from .readers import parse_readers_cell

__all__ = [
    "Item",
    "decode_rle",
    "encode_rle",
    "load_manifest",
    "rle_from_string",
    "rle_runs",
    "rle_to_string",
]

BOX_COLUMNS = ("box_r0", "box_c0", "box_r1", "box_c1")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".dcm", ".tif", ".tiff", ".nii.gz", ".nii", ".bmp")


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------


def load_manifest(path: str | Path, *, image_root: str | Path | None = None) -> list[Item]:
    """Read a manifest (CSV, COCO JSON, CheXlocalize JSON, or a public dataset's annotation
    file: :mod:`napari_samcam.datasets`) into a list of :class:`Item`.

    Parameters
    ----------
    path : str or Path
        The manifest file.
    image_root : str or Path, optional
        Folder that image paths are relative to (default: the manifest's folder).

    Raises
    ------
    InputError
        The file is missing, of an unknown format, or a row / entry is malformed (the message
        names the file, the row or entry and the column or key).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest {str(path)!r} does not exist or is not a file.")
    root = Path(image_root) if image_root is not None else path.parent

    if detect_dataset(path) is not None:  # NIH, RSNA, SIIM, VinDr files as distributed
        items = load_dataset(path, image_root=root)
    elif path.suffix.lower() == ".csv":
        try:
            items = _read_csv(path, root)
        except UnicodeDecodeError as exc:
            line = path.read_bytes()[: exc.start].count(b"\n") + 1
            raise InputError(
                f"manifest {str(path)!r}: line {line} holds bytes that are not UTF-8 text "
                f"({exc.object[exc.start : exc.start + 1]!r}); save the file as UTF-8 (e.g. "
                "'CSV UTF-8' in a spreadsheet program)."
            ) from None
        except csv.Error as exc:
            raise InputError(
                f"manifest {str(path)!r} is not a readable CSV file ({exc})."
            ) from None
    elif path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"manifest {str(path)!r} is not valid JSON ({exc}).") from exc
        except RecursionError:
            raise InputError(
                f"manifest {str(path)!r} nests its JSON too deeply to be a manifest."
            ) from None
        if isinstance(data, dict) and "images" in data and "annotations" in data:
            items = _read_coco(path, data, root)
        elif isinstance(data, dict) and _looks_chexlocalize(data):
            items = _read_chexlocalize(path, data, root)
        else:
            raise InputError(
                f"manifest {str(path)!r}: JSON is neither COCO (with 'images' and "
                "'annotations') nor CheXlocalize ground truth ({img_id: {task: {'size', "
                "'counts'}}})."
            )
    else:
        raise InputError(
            f"manifest {str(path)!r}: unknown format {path.suffix or '(no suffix)'!r}; pass a "
            ".csv manifest, a COCO .json or a CheXlocalize ground-truth .json."
        )
    if not items:
        raise InputError(f"manifest {str(path)!r} lists no image.")
    return _without_repeats(items, path)


def _without_repeats(items: list[Item], path: Path) -> list[Item]:
    """Drop items that repeat an earlier one (same image, class and annotation), with a warning.

    Scoring a repeated item again would only count the image twice in every mean. Items of
    one image and class that differ only in their boxes are several lesions of one finding (a
    CSV row holds one box) and are all kept; items that disagree on the label or the mask
    contradict each other: an error.
    """
    prefix = f"manifest {str(path)!r}, "
    first: dict[tuple[str, str], Item] = {}
    resolved: dict[Path, str] = {}  # one resolve per distinct path: rows repeat images
    described: dict[int, tuple[str, str]] = {}

    def annotations(item: Item) -> tuple[str, str]:  # each item described once: linear time
        if id(item) not in described:
            described[id(item)] = (_annotation(item, boxes=False), _annotation(item))
        return described[id(item)]

    kept, repeats, n_repeats = [], [], 0
    for item in items:
        if item.path not in resolved:
            resolved[item.path] = str(item.path.resolve())
        earlier = first.setdefault((resolved[item.path], item.cls), item)
        if earlier is item:
            kept.append(item)
            continue
        here, there = item.where.removeprefix(prefix), earlier.where.removeprefix(prefix)
        (earlier_finding, earlier_whole), (finding, whole) = (
            annotations(earlier),
            annotations(item),
        )
        if earlier_finding == finding and earlier_whole != whole:
            kept.append(item)  # another lesion of the same finding
            continue
        if earlier_whole != whole:
            what = f"class {item.cls!r} of image" if item.cls else "image"
            raise InputError(
                f"{earlier.where} and {here} annotate the same {what} {item.image!r} "
                "differently (label or mask); keep one label and mask per image and class "
                "(several findings of one image need different classes)."
            )
        n_repeats += 1
        if len(repeats) < 5:  # the first few by name: the message stays short
            repeats.append(f"{here} repeats {there}")
        described.pop(id(item), None)
    if n_repeats:
        more = f"; and {n_repeats - len(repeats)} more" if n_repeats > len(repeats) else ""
        warnings.warn(
            f"manifest {str(path)!r}: {n_repeats} entries repeat an earlier one and are "
            f"scored once ({'; '.join(repeats)}{more}).",
            UserWarning,
            stacklevel=3,
        )
    return kept


def _annotation(item: Item, *, boxes: bool = True) -> str:
    """Everything that defines an item's annotation (without its boxes: ``boxes=False``),
    comparable across items."""
    mask = item.mask
    if mask is not None and "path" in mask:
        mask = {"path": str(Path(mask["path"]).resolve())}
    box_list = [list(map(int, b)) for b in item.boxes] if boxes else []
    return json.dumps(
        [item.positive, mask, box_list, item.boxes_from_mask],
        sort_keys=True,
        default=str,
    )


def _cell(row: dict, column: str) -> str:
    value = row.get(column)
    return "" if value is None else restore_cell(str(value).strip())


def _read_csv(path: Path, root: Path) -> list[Item]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        if "image" not in columns:
            raise InputError(
                f"manifest {str(path)!r}: no 'image' column (columns: {columns}); the first "
                "line must name the columns, e.g. image,label,mask,box_r0,box_c0,box_r1,box_c1."
            )
        present = [c for c in BOX_COLUMNS if c in columns]
        if present and len(present) != 4:
            missing = [c for c in BOX_COLUMNS if c not in columns]
            raise InputError(
                f"manifest {str(path)!r}: box columns {missing} are missing; give all of "
                f"{', '.join(BOX_COLUMNS)} or none."
            )
        items = []
        for n, raw in enumerate(reader):
            row = {(k or "").strip(): v for k, v in raw.items()}
            line = reader.line_num
            where = f"manifest {str(path)!r}, row {n + 1} (line {line})"
            image = _cell(row, "image")
            if not image:
                raise InputError(f"{where}, column 'image': empty; name an image file.")
            label = _cell(row, "label")
            cls = _cell(row, "class")
            mask = None
            if "mask" in columns:
                cell = _cell(row, "mask")
                if cell:
                    mask_path = root / cell
                    if not mask_path.exists():
                        raise InputError(
                            f"{where}, column 'mask': {str(mask_path)!r} does not exist."
                        )
                    mask = {"path": str(mask_path)}
                elif label.lower() in NEGATIVE_LABELS:
                    mask = {"empty": True}
            boxes = []
            if present:
                cells = [_cell(row, c) for c in BOX_COLUMNS]
                if any(cells):
                    boxes.append(_csv_box(cells, where))
            image_path = root / image
            if not image_path.exists():
                raise InputError(f"{where}, column 'image': {str(image_path)!r} does not exist.")
            items.append(
                Item(
                    image=image,
                    path=image_path,
                    index=n,
                    label=label,
                    cls=cls,
                    mask=mask,
                    boxes=boxes,
                    where=where,
                    readers=parse_readers_cell(_cell(row, "readers"), where),
                )
            )
    return items


def _csv_box(cells: list[str], where: str) -> tuple[int, int, int, int]:
    values = []
    for column, cell in zip(BOX_COLUMNS, cells, strict=True):
        try:
            value = float(cell)
        except ValueError:
            raise InputError(
                f"{where}, column {column!r}: {cell!r} is not a number; box cells are pixel "
                "coordinates (all four filled, or all four empty)."
            ) from None
        if not np.isfinite(value):
            raise InputError(f"{where}, column {column!r}: {cell!r} is not finite.")
        values.append(int(round(value)))
    r0, c0, r1, c1 = values
    if r1 <= r0 or c1 <= c0:
        raise InputError(
            f"{where}, columns box_r0..box_c1: box {values} is empty; boxes are (row0, col0, "
            "row1, col1) with row1 > row0 and col1 > col0 (end exclusive)."
        )
    return r0, c0, r1, c1


def _read_coco(path: Path, data: dict, root: Path) -> list[Item]:
    name = str(path)
    for key in ("images", "annotations"):
        if not isinstance(data[key], list):
            raise InputError(
                f"manifest {name!r}, key {key!r}: {type(data[key]).__name__} instead of a list; "
                f"COCO manifests hold a list of {key} (use [] for none)."
            )
    categories = {}
    for i, cat in enumerate(data.get("categories") or []):
        try:
            categories[cat["id"]] = str(cat.get("name", cat["id"]))
        except (TypeError, KeyError):
            raise InputError(f"manifest {name!r}, categories[{i}]: needs an 'id'.") from None
    images = {}
    order = []
    for i, image in enumerate(data["images"]):
        where = f"manifest {name!r}, images[{i}]"
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise InputError(f"{where}: needs 'id' and 'file_name'.")
        size = (image.get("height"), image.get("width"))
        images[image["id"]] = (image, where, size)
        order.append(image["id"])
    grouped: dict[tuple, dict] = {}
    for i, ann in enumerate(data["annotations"]):
        where = f"manifest {name!r}, annotations[{i}]"
        if not isinstance(ann, dict) or ann.get("image_id") not in images:
            image_id = ann.get("image_id") if isinstance(ann, dict) else None
            raise InputError(
                f"{where}, key 'image_id': {image_id!r} is not the id of an entry of 'images'."
            )
        image, _, size = images[ann["image_id"]]
        where = f"{where} (id {ann.get('id')!r}, image {str(image['file_name'])!r})"
        category = ann.get("category_id")
        cls = categories.get(category, "" if category is None else str(category))
        entry = grouped.setdefault(
            (ann["image_id"], cls), {"boxes": [], "rle": [], "polygons": [], "where": where}
        )
        if "bbox" in ann and ann["bbox"] is not None:
            entry["boxes"].append(_coco_box(ann["bbox"], where, size))
        segmentation = ann.get("segmentation")
        if isinstance(segmentation, list) and segmentation:
            for j, poly in enumerate(segmentation):
                _check_polygon(poly, f"{where}, key 'segmentation'[{j}]")
            entry["polygons"].extend(segmentation)
        elif isinstance(segmentation, dict):
            rle = dict(segmentation)
            if "size" not in rle and None not in size:
                rle["size"] = list(size)
            try:
                rle_runs(rle)  # validate now (nothing built): errors name the entry
            except InputError as exc:
                raise InputError(f"{where}, key 'segmentation': {exc}") from exc
            entry["rle"].append(rle)
        elif segmentation not in (None, []):
            raise InputError(
                f"{where}, key 'segmentation': expected polygons (a list) or an RLE dict."
            )
    items: list[Item] = []
    for image_id in order:
        image, where, size = images[image_id]
        image_path = root / str(image["file_name"])
        if not image_path.exists():
            raise InputError(f"{where}, key 'file_name': {str(image_path)!r} does not exist.")
        entries = [(cls, e) for (iid, cls), e in grouped.items() if iid == image_id]
        if not entries:
            items.append(
                Item(
                    image=str(image["file_name"]),
                    path=image_path,
                    index=len(items),
                    label="0",
                    mask={"empty": True},
                    where=where,
                )
            )
            continue
        for cls, entry in entries:
            if entry["polygons"] and entry["rle"]:
                raise InputError(
                    f"{entry['where']}: image {image['file_name']!r} mixes polygon and RLE "
                    f"segmentations for category {cls!r}; use one kind per image and category."
                )
            mask = None
            if entry["rle"]:
                mask = {"rle": entry["rle"]}
            elif entry["polygons"]:
                mask = {"polygons": entry["polygons"]}
            items.append(
                Item(
                    image=str(image["file_name"]),
                    path=image_path,
                    index=len(items),
                    label="1",
                    cls=cls,
                    mask=mask,
                    boxes=entry["boxes"],
                    where=entry["where"],
                )
            )
    return items


def _check_polygon(poly, where: str) -> None:
    if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
        raise InputError(
            f"{where}: a polygon is a flat list [x0, y0, x1, y1, ...] of at least 3 points."
        )
    for k, value in enumerate(poly):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value):
            raise InputError(
                f"{where}: coordinate {k} is {value!r}; polygon coordinates are finite numbers "
                "(pixels)."
            )


def _coco_box(bbox, where: str, size) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise InputError(f"{where}, key 'bbox': {bbox!r} is not [x, y, width, height].") from None
    if not (np.isfinite([x, y, w, h]).all() and w > 0 and h > 0):
        raise InputError(
            f"{where}, key 'bbox': {bbox!r} is empty or not finite; COCO boxes are "
            "[x, y, width, height] with positive width and height."
        )
    box = (int(np.floor(y)), int(np.floor(x)), int(np.ceil(y + h)), int(np.ceil(x + w)))
    if None in size:
        return box  # checked against the image when it is read
    return clip_to_image(box, (int(size[0]), int(size[1])), f"{where}, key 'bbox' {bbox!r}")


def _looks_chexlocalize(data: dict) -> bool:
    for value in data.values():
        if not isinstance(value, dict):
            return False
        for task in value.values():
            return isinstance(task, dict) and "counts" in task
    return False


def _chexlocalize_image(root: Path, img_id: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        candidate = root / f"{img_id}{suffix}"
        if candidate.exists():
            return candidate
    parts = img_id.split("_")
    if len(parts) >= 3:  # patient64541_study1_view1_frontal -> patient64541/study1/view1_frontal
        nested = root / parts[0] / parts[1] / "_".join(parts[2:])
        for suffix in IMAGE_SUFFIXES:
            candidate = nested.with_name(nested.name + suffix)
            if candidate.exists():
                return candidate
    return None


def _read_chexlocalize(path: Path, data: dict, root: Path) -> list[Item]:
    items = []
    for img_id, tasks in data.items():
        image_path = _chexlocalize_image(root, str(img_id))
        if image_path is None:
            raise InputError(
                f"manifest {str(path)!r}, entry {img_id!r}: no image {img_id}.jpg (or .png, or "
                f"{'/'.join(str(img_id).split('_', 2))}.jpg) under {str(root)!r}; pass the "
                "image folder as image_root (CLI: --images DIR)."
            )
        if not isinstance(tasks, dict):
            raise InputError(f"manifest {str(path)!r}, entry {img_id!r}: expected {{task: rle}}.")
        for task, rle in tasks.items():
            where = f"manifest {str(path)!r}, entry {img_id!r}, task {task!r}"
            try:
                runs = rle_runs(rle)[2]
            except InputError as exc:
                raise InputError(f"{where}: {exc}") from exc
            positive = bool(runs[1::2].any())
            items.append(
                Item(
                    image=str(image_path.relative_to(root))
                    if image_path.is_relative_to(root)
                    else str(image_path),
                    path=image_path,
                    index=len(items),
                    label="1" if positive else "0",
                    cls=str(task),
                    mask={"rle": [dict(rle)]} if positive else {"empty": True},
                    boxes_from_mask=True,
                    where=where,
                    image_id=str(img_id),
                )
            )
    return items
