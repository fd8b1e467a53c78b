"""SIIM-ACR Pneumothorax: ``train-rle.csv`` (DICOM, 1024 x 1024).

Columns ``ImageId, EncodedPixels``. ``-1`` is an image without pneumothorax; otherwise the
cell is Kaggle's *relative* run-length encoding of one part of the mask: pairs ``start length``
where each start counts the pixels skipped since the end of the previous run, over the pixels
in column-major order (down the first column, then the next). Several rows of one image are
several parts of one mask. Each part becomes a COCO RLE, so the mask is decoded only when an
item is scored, and only after its runs were checked to fit the image.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import InputError
from ._common import Annotations, Entry
from ._files import csv_rows
from .labels import SIIM_FINDING

__all__ = ["COLUMNS", "IMAGE_SIZE", "decode_siim_rle", "encode_siim_rle", "read_siim", "siim_runs"]

COLUMNS = ("ImageId", "EncodedPixels")
IMAGE_SIZE = (1024, 1024)


def siim_runs(cell: str, shape: tuple[int, int], where: str = "RLE") -> list[int]:
    """COCO run lengths (background first, column-major) of one relative-RLE cell.

    Raises
    ------
    InputError
        Not an even number of integers, a negative start, a run of length < 1, or runs that
        reach past the ``shape[0] * shape[1]`` pixels of the image (checked before anything is
        allocated).
    """
    total = int(shape[0]) * int(shape[1])
    tokens = cell.split()
    if len(tokens) % 2 or len(tokens) > total:
        raise InputError(
            f"{where}: {len(tokens)} numbers; a relative RLE is pairs of 'start length' that fit "
            f"the {shape[1]} x {shape[0]} image."
        )
    try:
        values = [int(token) for token in tokens]
    except ValueError:
        raise InputError(f"{where}: {cell[:40]!r} holds something other than integers.") from None
    counts, position = [], 0
    for k in range(0, len(values), 2):
        start, length = values[k], values[k + 1]
        if start < 0 or length < 1:
            raise InputError(
                f"{where}: pair {k // 2 + 1} is start {start}, length {length}; starts are >= 0 "
                "and lengths >= 1."
            )
        position += start + length
        if position > total:
            raise InputError(
                f"{where}: the runs reach pixel {position}, past the {total} pixels of the "
                f"{shape[1]} x {shape[0]} image."
            )
        counts += [start, length]
    counts.append(total - position)
    return counts


def decode_siim_rle(cell: str, shape: tuple[int, int] = IMAGE_SIZE) -> np.ndarray:
    """One relative-RLE cell as a bool mask of ``shape`` (``-1``: empty)."""
    if cell.strip() == "-1":
        return np.zeros(shape, dtype=bool)
    counts = np.asarray(siim_runs(cell, shape), dtype=np.int64)
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    return np.repeat(values, counts).reshape(shape, order="F")


def encode_siim_rle(mask: np.ndarray) -> str:
    """A bool mask as a relative-RLE cell (``-1`` when empty): the inverse of
    :func:`decode_siim_rle`."""
    flat = np.asarray(mask, dtype=bool).reshape(-1, order="F")
    if not flat.any():
        return "-1"
    padded = np.concatenate([[False], flat, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = edges[0::2], edges[1::2]
    previous_end = np.concatenate([[0], ends[:-1]])
    pairs = np.stack([starts - previous_end, ends - starts], axis=1).reshape(-1)
    return " ".join(str(int(v)) for v in pairs)


def read_siim(path: str | Path) -> Annotations:
    """Parse SIIM-ACR's ``train-rle.csv`` (plain or gzipped).

    Raises
    ------
    InputError
        A cell that is not a valid relative RLE of a 1024 x 1024 image, or an image listed both
        with ``-1`` and with mask parts (the message names the line).
    """
    path = Path(path)
    grouped: dict[str, Entry] = {}
    empty: dict[str, int] = {}
    findings: Counter = Counter()
    n_rows = 0
    for line, cells in csv_rows(path, COLUMNS):
        n_rows += 1
        where = f"annotation file {str(path)!r}, line {line}, column 'EncodedPixels'"
        if len(cells) != 2 or not cells[0]:
            raise InputError(f"{where}: a row is ImageId, EncodedPixels.")
        image, cell = cells
        if cell == "-1":
            empty.setdefault(image, line)
            findings["No pneumothorax"] += 1
        else:
            counts = siim_runs(cell, IMAGE_SIZE, where)
            findings[SIIM_FINDING] += 1
            entry = grouped.setdefault(image, Entry(image, SIIM_FINDING, SIIM_FINDING, rle=[]))
            entry.rle.append({"size": list(IMAGE_SIZE), "counts": counts})
            entry.lines.append(line)
        if image in empty and image in grouped:
            raise InputError(
                f"{where}: image {image!r} has mask parts and also '-1' (no mask, line "
                f"{empty[image]}); keep one."
            )
    return Annotations(
        "siim",
        path,
        list(grouped.values()),
        n_rows,
        len(set(empty) | set(grouped)),
        findings,
        suffixes=(".dcm", ".png"),
        folders=("dicom-images-train", "train"),
    )
