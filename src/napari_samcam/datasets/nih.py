"""NIH ChestX-ray14: ``BBox_List_2017.csv`` (984 boxes on 1024 x 1024 PNGs, 8 findings).

Columns ``Image Index, Finding Label, Bbox [x, y, w, h]`` (the box's four numbers fill the
header's last three, unnamed, columns). Rows of one image and finding are one item with
several boxes. ``Data_Entry_2017*.csv`` (the label list) is read when it lies next to the box
list or is passed: an image it does not list, or whose labels lack the boxed finding, gets a
warning naming the row.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

from ..errors import InputError
from ._common import Annotations, Entry, box_from_corners, number
from ._files import csv_rows, is_regular_file
from .labels import NIH_FINDINGS

__all__ = ["COLUMNS", "IMAGE_SIZE", "read_nih"]

COLUMNS = ("Image Index", "Finding Label", "Bbox [x", "y", "w", "h]")
#: The released PNGs are all 1024 x 1024; the boxes are in their pixels.
IMAGE_SIZE = (1024, 1024)
_ENTRY_COLUMNS = ("Image Index", "Finding Labels")


def _data_entry(path: Path) -> Path | None:
    for candidate in sorted(path.parent.glob("Data_Entry_2017*.csv*")):
        if is_regular_file(candidate):
            return candidate
    return None


def _labels(path: Path) -> dict[str, set[str]]:
    return {
        cells[0]: set(cells[1].split("|"))
        for _, cells in csv_rows(path, _ENTRY_COLUMNS)
        if len(cells) >= 2
    }


def read_nih(path: str | Path, *, data_entry: str | Path | None = None) -> Annotations:
    """Parse NIH ChestX-ray14's box list.

    Parameters
    ----------
    path : path
        ``BBox_List_2017.csv``, plain or gzipped.
    data_entry : path, optional
        ``Data_Entry_2017*.csv`` to check the boxed images against (default: one next to
        ``path``, if any).

    Raises
    ------
    InputError
        A row with an unknown finding, a box that is not four finite numbers, has a negative
        width or height or lies outside the 1024 x 1024 image (the message names the line).
    """
    path = Path(path)
    entry_file = Path(data_entry) if data_entry is not None else _data_entry(path)
    known = _labels(entry_file) if entry_file is not None else None
    grouped: dict[tuple[str, str], Entry] = {}
    findings: Counter = Counter()
    n_rows = 0
    for line, cells in csv_rows(path, COLUMNS):
        n_rows += 1
        where = f"annotation file {str(path)!r}, line {line}"
        if len(cells) < 6:
            raise InputError(f"{where}: {len(cells)} cells; a row is image, finding, x, y, w, h.")
        image, finding = cells[0], cells[1]
        if finding not in NIH_FINDINGS:
            raise InputError(
                f"{where}, column 'Finding Label': {finding!r} is not one of NIH's boxed "
                f"findings ({', '.join(sorted(NIH_FINDINGS))})."
            )
        x, y, w, h = (number(c, where, n) for c, n in zip(cells[2:6], "xywh", strict=True))
        box = box_from_corners(x, y, x + w, y + h, where, IMAGE_SIZE)
        if known is not None and NIH_FINDINGS[finding] not in {
            NIH_FINDINGS.get(label, label) for label in known.get(image, ())
        }:
            warnings.warn(
                f"{where}: {image!r} is not listed with {finding!r} in {str(entry_file)!r}.",
                UserWarning,
                stacklevel=2,
            )
        findings[finding] += 1
        entry = grouped.setdefault(
            (image, finding), Entry(image, NIH_FINDINGS[finding], finding, [])
        )
        entry.boxes.append(box)
        entry.lines.append(line)
    return Annotations(
        "nih",
        path,
        list(grouped.values()),
        n_rows,
        len({image for image, _ in grouped}),
        findings,
        suffixes=(".png",),
        folders=("images", *(f"images_{k:03d}/images" for k in range(1, 13))),
    )
