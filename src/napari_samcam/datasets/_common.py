"""What every dataset reader returns, and the items built from it once the images are found."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..dataset_items import Item
from ..errors import InputError
from ._files import ImageFinder

__all__ = ["Annotations", "Entry", "box_from_corners", "items_from", "number"]

#: Largest coordinate accepted before an image's size is known (DICOM rows / columns are 16-bit).
MAX_COORDINATE = 65535


@dataclass
class Entry:
    """The annotation of one finding on one image, as one dataset reader parsed it.

    Attributes
    ----------
    image : str
        The image as the file names it (``00013118_008.png``, a patient id, a SOP instance UID).
    cls : str
        The classifier's name of the finding (:mod:`.labels`).
    finding : str
        The finding as the file writes it.
    boxes : list of (int, int, int, int)
        ``(row0, col0, row1, col1)``, end exclusive, of every reader together.
    readers : dict or None
        Reader id -> that reader's boxes (``[]``: the reader read the image and did not mark
        this finding); ``None`` for single-reader datasets.
    rle : list of dict or None
        COCO RLEs (uncompressed counts) of the mask's parts.
    lines : list of int
        The file's lines that made the entry.
    """

    image: str
    cls: str
    finding: str
    boxes: list = field(default_factory=list)
    readers: dict | None = None
    rle: list | None = None
    lines: list = field(default_factory=list)


@dataclass
class Annotations:
    """A dataset's annotation file, parsed.

    Attributes
    ----------
    dataset : str
        ``"nih"``, ``"rsna"``, ``"siim"`` or ``"vindr"``.
    path : Path
    entries : list of Entry
        One per image and finding present, in the file's order.
    n_rows : int
        Data rows read.
    n_images : int
        Distinct images in the file (negatives included).
    findings : Counter
        Rows per finding as written (negatives under their own name).
    suffixes, folders : tuple of str
        The image files' suffixes and the sub-folders the download puts them in.
    """

    dataset: str
    path: Path
    entries: list
    n_rows: int
    n_images: int
    findings: Counter
    suffixes: tuple = ()
    folders: tuple = ()

    @property
    def n_boxes(self) -> int:
        """Boxes over all entries (every reader's)."""
        return sum(len(entry.boxes) for entry in self.entries)

    @property
    def n_masks(self) -> int:
        """Mask parts over all entries."""
        return sum(len(entry.rle or ()) for entry in self.entries)


def number(cell: str, where: str, column: str) -> float:
    """A finite number from a CSV cell, or an error naming the row and column."""
    try:
        value = float(cell)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InputError(f"{where}, column {column!r}: {cell!r} is not a finite number.")
    return value


def box_from_corners(
    x0: float, y0: float, x1: float, y1: float, where: str, shape: tuple[int, int] | None
) -> tuple[int, int, int, int]:
    """``(row0, col0, row1, col1)`` of a pixel box ``[x0, x1) x [y0, y1)``, checked.

    An empty or inverted box (a negative width) or one wholly outside the image is an error
    naming ``where``; one reaching beyond the image is clipped with a warning. Without a
    ``shape`` (the size is in the image file only) coordinates are bounded by
    :data:`MAX_COORDINATE` and checked again when the image is read.
    """
    if not (x1 > x0 and y1 > y0):
        raise InputError(
            f"{where}: box x {x0:g}..{x1:g}, y {y0:g}..{y1:g} has a negative or zero width or "
            "height; fix the row or remove it."
        )
    box = (math.floor(y0), math.floor(x0), math.ceil(y1), math.ceil(x1))
    limit = shape if shape is not None else (MAX_COORDINATE, MAX_COORDINATE)
    clipped = (max(box[0], 0), max(box[1], 0), min(box[2], limit[0]), min(box[3], limit[1]))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise InputError(
            f"{where}: box x {x0:g}..{x1:g}, y {y0:g}..{y1:g} lies outside the image of "
            f"{limit[1]} x {limit[0]} pixels; fix the row or remove it."
        )
    if clipped != box:
        warnings.warn(
            f"{where}: box x {x0:g}..{x1:g}, y {y0:g}..{y1:g} reaches beyond the image of "
            f"{limit[1]} x {limit[0]} pixels; it was clipped to rows {clipped[0]}..{clipped[2]}, "
            f"columns {clipped[1]}..{clipped[3]}.",
            UserWarning,
            stacklevel=3,
        )
    return clipped


def _lines(lines: list) -> str:
    return f"line {lines[0]}" if len(lines) == 1 else f"lines {', '.join(map(str, lines[:6]))}"


def items_from(annotations: Annotations, root: Path) -> list[Item]:
    """The evaluation items of ``annotations`` whose image is under ``root``.

    Entries whose image is missing are left out with one warning that names their rows; no
    image found at all is an error naming the folder and the layout expected.
    """
    finder = ImageFinder(Path(root), annotations.suffixes, annotations.folders)
    name = str(annotations.path)
    items, missing, found = [], [], {}
    for entry in annotations.entries:
        if entry.image not in found:
            found[entry.image] = finder.find(entry.image)
        path = found[entry.image]
        where = f"annotation file {name!r}, {_lines(entry.lines)} ({entry.image}, {entry.finding})"
        if path is None:
            missing.extend(entry.lines)
            continue
        mask = {"rle": entry.rle} if entry.rle else None
        items.append(
            Item(
                image=str(path.relative_to(root)) if path.is_relative_to(root) else str(path),
                path=path,
                index=len(items),
                label="1",
                cls=entry.cls,
                mask=mask,
                boxes=list(entry.boxes),
                boxes_from_mask=mask is not None and not entry.boxes,
                where=where,
                image_id=entry.image,
                readers=None if entry.readers is None else dict(entry.readers),
            )
        )
    total = len(annotations.entries)
    if not items:
        if not total:
            raise InputError(f"annotation file {name!r} annotates no finding.")
        example = annotations.entries[0].image
        raise InputError(
            f"annotation file {name!r}: none of its {total} annotations (an image and a "
            f"finding each) has its image under {str(root)!r} (looked for e.g. {example!r} "
            f"with {', '.join(annotations.suffixes)}); pass the folder holding the downloaded "
            "images (CLI: --images DIR)."
        )
    if missing:
        lines = sorted(missing)
        shown = ", ".join(map(str, lines[:8])) + (", ..." if len(lines) > 8 else "")
        warnings.warn(
            f"annotation file {name!r}: {total - len(items)} of {total} annotations (an image "
            f"and a finding each) have no image under {str(root)!r} and are left out (lines "
            f"{shown}).",
            UserWarning,
            stacklevel=3,
        )
    return items
