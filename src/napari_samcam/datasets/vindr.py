"""VinDr-CXR: ``train.csv`` (DICOM of varying size, three radiologists per image).

Columns ``image_id, class_name, class_id, rad_id, x_min, y_min, x_max, y_max``: one row per box
and reader; ``No finding`` rows (class 14) have empty box cells. Each image and finding that any
reader marked is one item; its ``readers`` hold every reader of the image with their boxes of
that finding (``[]`` when the reader did not mark it), so that each reader is a region source
of its own (``reader:R8``, ...). The item's ``boxes`` are all readers' boxes together.

The image size is in the DICOM file only: box coordinates are checked against it when the image
is read (a box wholly outside is an error naming the row, a box reaching beyond is clipped).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..errors import InputError
from ._common import Annotations, Entry, box_from_corners, number
from ._files import csv_rows
from .labels import VINDR_FINDINGS, VINDR_NO_FINDING

__all__ = ["COLUMNS", "read_vindr"]

COLUMNS = ("image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max")


def read_vindr(path: str | Path) -> Annotations:
    """Parse VinDr-CXR's ``train.csv`` (plain or gzipped).

    Raises
    ------
    InputError
        An unknown ``class_name``, a ``class_id`` that is not the name's, no ``rad_id``, box
        cells on a ``No finding`` row or missing on a finding, a box with a negative width or
        height (the message names the line).
    """
    path = Path(path)
    marks: dict[tuple[str, str], dict[str, list]] = {}
    lines: dict[tuple[str, str], list[int]] = {}
    readers: dict[str, list[str]] = {}
    findings: Counter = Counter()
    n_rows = 0
    for line, cells in csv_rows(path, COLUMNS):
        n_rows += 1
        where = f"annotation file {str(path)!r}, line {line}"
        if len(cells) < 8:
            raise InputError(f"{where}: {len(cells)} cells; a row is {', '.join(COLUMNS)}.")
        image, name, class_id, reader = cells[:4]
        if not image or not reader:
            raise InputError(f"{where}: image_id and rad_id must not be empty.")
        image_readers = readers.setdefault(image, [])
        if reader not in image_readers:
            image_readers.append(reader)
        findings[name] += 1
        if name == VINDR_NO_FINDING[0]:
            expected = VINDR_NO_FINDING[1]
        elif name in VINDR_FINDINGS:
            expected = VINDR_FINDINGS[name][0]
        else:
            raise InputError(
                f"{where}, column 'class_name': {name!r} is not a VinDr-CXR finding "
                f"({', '.join(VINDR_FINDINGS)}, {VINDR_NO_FINDING[0]})."
            )
        if class_id != str(expected):
            raise InputError(
                f"{where}, column 'class_id': {class_id!r}, but {name!r} is class {expected}."
            )
        corners = cells[4:8]
        if name == VINDR_NO_FINDING[0]:
            if any(corners):
                raise InputError(f"{where}: a box on a 'No finding' row; empty its box cells.")
            continue
        if not all(corners):
            raise InputError(f"{where}: {name!r} without all of x_min, y_min, x_max, y_max.")
        x0, y0, x1, y1 = (number(c, where, n) for c, n in zip(corners, COLUMNS[4:], strict=True))
        box = box_from_corners(x0, y0, x1, y1, where, None)
        marks.setdefault((image, name), {}).setdefault(reader, []).append(box)
        lines.setdefault((image, name), []).append(line)
    entries = []
    for (image, name), marked in marks.items():
        by_reader = {reader: list(marked.get(reader, [])) for reader in readers[image]}
        boxes = [box for reader in readers[image] for box in by_reader[reader]]
        entries.append(
            Entry(image, VINDR_FINDINGS[name][1], name, boxes, by_reader, None, lines[image, name])
        )
    return Annotations(
        "vindr",
        path,
        entries,
        n_rows,
        len(readers),
        findings,
        suffixes=(".dicom", ".dcm", ".png", ".jpg"),
        folders=("train", "test"),
    )
