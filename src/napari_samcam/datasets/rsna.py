"""RSNA Pneumonia Detection: ``stage_2_train_labels.csv`` (DICOM, 1024 x 1024).

Columns ``patientId, x, y, width, height, Target``: one row per box of an image with
``Target = 1``, one row with empty box cells per image without. The boxes of one image are one
``Pneumonia`` item; images without a box are counted, not evaluated.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..errors import InputError
from ._common import Annotations, Entry, box_from_corners, number
from ._files import csv_rows
from .labels import RSNA_FINDING

__all__ = ["COLUMNS", "IMAGE_SIZE", "read_rsna"]

COLUMNS = ("patientId", "x", "y", "width", "height", "Target")
IMAGE_SIZE = (1024, 1024)


def read_rsna(path: str | Path) -> Annotations:
    """Parse RSNA Pneumonia's label file (plain, or Kaggle's zip).

    Raises
    ------
    InputError
        ``Target`` not 0 or 1, box cells on a negative row or missing on a positive one, a box
        of negative width or height or outside the 1024 x 1024 image (the message names the
        line).
    """
    path = Path(path)
    grouped: dict[str, Entry] = {}
    images: set[str] = set()
    findings: Counter = Counter()
    n_rows = 0
    for line, cells in csv_rows(path, COLUMNS):
        n_rows += 1
        where = f"annotation file {str(path)!r}, line {line}"
        if len(cells) < 6:
            raise InputError(f"{where}: {len(cells)} cells; a row is {', '.join(COLUMNS)}.")
        image, target = cells[0], cells[5]
        images.add(image)
        if target not in ("0", "1"):
            raise InputError(f"{where}, column 'Target': {target!r}; it is 0 or 1.")
        filled = [bool(c) for c in cells[1:5]]
        if target == "0":
            if any(filled):
                raise InputError(f"{where}: a box on a row with Target 0; empty its box cells.")
            findings["Normal"] += 1
            continue
        if not all(filled):
            raise InputError(f"{where}: Target 1 without all of x, y, width, height.")
        x, y, w, h = (number(c, where, n) for c, n in zip(cells[1:5], COLUMNS[1:5], strict=True))
        box = box_from_corners(x, y, x + w, y + h, where, IMAGE_SIZE)
        findings[RSNA_FINDING] += 1
        entry = grouped.setdefault(image, Entry(image, RSNA_FINDING, "Target 1", []))
        entry.boxes.append(box)
        entry.lines.append(line)
    return Annotations(
        "rsna",
        path,
        list(grouped.values()),
        n_rows,
        len(images),
        findings,
        suffixes=(".dcm", ".png", ".jpg"),
        folders=("stage_2_train_images", "stage_2_test_images"),
    )
