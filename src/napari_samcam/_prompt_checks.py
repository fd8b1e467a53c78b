"""Validation of point and box prompts: the one place that decides what a prompt may be.

Every entry point (the :class:`~napari_samcam.segment.Segmenter`, box regions, the CLI's
``--box`` / ``--point``) checks prompts here, so a bad prompt gets the same
:class:`~napari_samcam.errors.PromptError` everywhere, naming the prompt and its index.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from .errors import PromptError

__all__ = ["check_boxes", "check_points"]


def _rows(values, width: int, name: str, what: str) -> np.ndarray:
    """``values`` as an ``(N, width)`` float64 array of finite numbers, or a PromptError."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":
        if values.size == 0:
            return np.empty((0, width))
        rows = values.reshape(1, -1) if values.ndim == 1 else values
        if rows.ndim != 2 or rows.shape[1] != width:
            raise PromptError(
                f"{name}: shape {values.shape}; pass one {what} or an (N, {width}) array."
            )
        out = rows.astype(np.float64)
        _check_finite(out, name, what)
        return out
    try:
        rows = list(values)
    except TypeError:
        raise PromptError(f"{name} = {values!r}: pass one {what} or a sequence of them.") from None
    if rows and all(_is_number(v) for v in rows):
        rows = [rows]  # a single prompt
    out = np.empty((len(rows), width), dtype=np.float64)
    for i, row in enumerate(rows):
        if isinstance(row, (str, bytes)) or not isinstance(row, (Sequence, np.ndarray)):
            raise PromptError(f"{name}[{i}] = {row!r} is not a {what}.")
        if len(row) != width:
            raise PromptError(
                f"{name}[{i}] = {_show(row)} has {len(row)} values; a {what} has {width}."
            )
        for j, value in enumerate(row):
            if not _is_number(value):
                raise PromptError(
                    f"{name}[{i}] = {_show(row)}: {value!r} is not a number; a {what} holds "
                    "pixel coordinates."
                )
            out[i, j] = value
    _check_finite(out, name, what)
    return out


def _check_finite(rows: np.ndarray, name: str, what: str) -> None:
    bad = ~np.isfinite(rows).all(1)
    if bad.any():
        i = int(np.argmax(bad))
        raise PromptError(
            f"{name}[{i}] = {_show(rows[i])} is not finite; a {what} holds finite pixel "
            "coordinates."
        )


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _show(row) -> str:
    return "(" + ", ".join(repr(v.item() if isinstance(v, np.generic) else v) for v in row) + ")"


def check_boxes(
    boxes, shape: tuple[int, int] | None = None, *, name: str = "boxes"
) -> np.ndarray | None:
    """Boxes as an ``(M, 4)`` float64 array, checked; ``None`` for no boxes.

    Parameters
    ----------
    boxes : array_like or None
        One ``(row0, col0, row1, col1)`` box (end exclusive) or a sequence of them.
    shape : (int, int), optional
        The image's ``(H, W)``: every box must lie inside ``[0, H] x [0, W]``.
    name : str
        How messages refer to the boxes (``"boxes"``, ``"--box"``).

    Raises
    ------
    PromptError
        A box is not 4 finite numbers, is empty (``row1 <= row0`` or ``col1 <= col0``), or reaches
        outside the image; the message names the box and its index.
    """
    if boxes is None:
        return None
    arr = _rows(boxes, 4, name, "box (row0, col0, row1, col1)")
    if len(arr) == 0:
        return None
    empty = (arr[:, 2] <= arr[:, 0]) | (arr[:, 3] <= arr[:, 1])
    if empty.any():
        i = int(np.argmax(empty))
        raise PromptError(
            f"{name}[{i}] = {_show(arr[i])} is empty: row1 > row0 and col1 > col0 are needed "
            "(end exclusive)."
        )
    if shape is not None:
        outside = (arr[:, :2] < 0).any(1) | (arr[:, 2] > shape[0]) | (arr[:, 3] > shape[1])
        if outside.any():
            i = int(np.argmax(outside))
            raise PromptError(
                f"{name}[{i}] = {_show(arr[i])} reaches outside the image of shape "
                f"{tuple(shape)}; clip it to [0, {shape[0]}] x [0, {shape[1]}]."
            )
    return arr


def check_points(
    points, labels=None, shape: tuple[int, int] | None = None, *, name: str = "points"
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Points as an ``(N, 2)`` float64 array and their ``(N,)`` labels, checked.

    Parameters
    ----------
    points : array_like or None
        One ``(row, col)`` point or a sequence of them.
    labels : array_like, optional
        One label per point: 1 positive, 0 negative (all positive when omitted).
    shape : (int, int), optional
        The image's ``(H, W)``: every point must lie inside it.
    name : str
        How messages refer to the points.

    Raises
    ------
    PromptError
        A point is not 2 finite numbers or lies outside the image, or the labels do not match.
    """
    if points is None:
        return None, None
    pts = _rows(points, 2, name, "point (row, col)")
    if len(pts) == 0:
        return None, None
    if shape is not None:
        outside = ~((pts >= 0).all(1) & (pts[:, 0] < shape[0]) & (pts[:, 1] < shape[1]))
        if outside.any():
            i = int(np.argmax(outside))
            raise PromptError(
                f"{name}[{i}] = {_show(pts[i])} lies outside the image of shape "
                f"{tuple(shape)}; points are (row, col) pixel coordinates inside it."
            )
    if labels is None:
        return pts, np.ones(len(pts), dtype=np.int64)
    try:
        labels_arr = np.asarray(labels, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        labels_arr = None
    if (
        labels_arr is None
        or labels_arr.shape[0] != len(pts)
        or not np.isin(labels_arr, (0.0, 1.0)).all()
    ):
        raise PromptError(
            f"point_labels {labels!r}: pass one label per point ({len(pts)}), 1 for a positive "
            "and 0 for a negative point."
        )
    return pts, labels_arr.astype(np.int64)
