"""What writing new regions needs of an image's regions Labels layers, prepared in a job's
worker thread.

A new run on a plane clears the old regions of that plane and numbers its new regions after
the largest label in use. On the GUI thread each whole-array pass over an 8000² layer cost
30-150 ms (a second Segment of an 8000² image froze the viewer for 0.5 s). The worker finds
each old region's bounding box and each array's largest label instead, so that the GUI thread
only touches the boxes; it also allocates the array of a layer the job will create. napari
only through the arrays the session hands over; no Qt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: ``(array, {label: plane index})``: a regions layer's array and the labels to clear on the
#: planes a job segments again (read from the layer's table on the GUI thread).
LabelsToScan = tuple[np.ndarray, dict[int, tuple[int, ...]]]


@dataclass
class LabelsScan:
    """One regions array as the worker found it.

    Attributes
    ----------
    array : numpy.ndarray
        The array scanned (the layer's data; a layer given other data since is not covered).
    largest : int
        Its largest label once the labels of ``boxes`` are cleared.
    boxes : dict
        ``{label: index}`` of each label to clear: the label's plane and bounding box as an
        index into ``array``, or ``None`` when no pixel holds it.
    """

    array: np.ndarray
    largest: int
    boxes: dict[int, tuple | None] = field(default_factory=dict)


@dataclass
class LabelsPrep:
    """What a segmentation job's worker prepared for writing its regions.

    Attributes
    ----------
    buffer : numpy.ndarray or None
        A zeroed array for the regions layer the job will create (see :func:`labels_buffer`).
    scans : list of LabelsScan
        The image's existing regions arrays.
    """

    buffer: np.ndarray | None = None
    scans: list[LabelsScan] = field(default_factory=list)

    def scan_of(self, array) -> LabelsScan | None:
        """The scan of ``array`` (the very object), or ``None``."""
        return next((scan for scan in self.scans if scan.array is array), None)


def labels_buffer(shape: tuple[int, ...] | None, dtype=np.uint16) -> np.ndarray | None:
    """A zeroed array for a new regions layer, its memory touched here in the worker thread
    (``None`` for no ``shape``). Fresh pages cost the GUI thread a page fault each on first
    write: 0.36 s for 128 MB here."""
    if shape is None:
        return None
    buffer = np.zeros(shape, dtype=dtype)
    buffer.fill(0)
    return buffer


def prepare_labels(settings: dict) -> LabelsPrep:
    """The :class:`LabelsPrep` of a segmentation job's ``settings``: its
    ``"labels_to_scan"`` (:data:`LabelsToScan` each) scanned and, when
    ``"new_layer_shape"`` asks for one, a :func:`labels_buffer`."""
    scans = [scan_labels(array, labels) for array, labels in settings.get("labels_to_scan", ())]
    return LabelsPrep(labels_buffer(settings.get("new_layer_shape")), scans)


def scan_labels(array: np.ndarray, labels: dict[int, tuple[int, ...]]) -> LabelsScan:
    """Where each of ``labels`` lies on its plane of ``array``, and the largest other label."""
    boxes: dict[int, tuple | None] = {}
    for label, index in labels.items():
        boxes[int(label)] = _label_box(array[index], int(label), index)
    largest = int(array.max(initial=0))
    if largest in boxes:
        # the largest label is about to be cleared: the largest of the others
        cleared = np.isin(array, np.fromiter(boxes, dtype=np.int64))
        largest = int(np.where(cleared, 0, array).max(initial=0))
    return LabelsScan(array, largest, boxes)


def _label_box(plane: np.ndarray, label: int, index: tuple[int, ...]) -> tuple | None:
    from ..box_prompts import mask_box

    box = mask_box(plane == label)
    if box is None:
        return None
    r0, c0, r1, c1 = (int(v) for v in box)
    return (*index, slice(r0, r1), slice(c0, c1))


def clear_label(data: np.ndarray, label: int, scan: LabelsScan | None) -> None:
    """Set the pixels of ``label`` in ``data`` to 0: inside its box when ``scan`` (of
    ``data``) located it, else by a pass over the whole array."""
    if scan is None or label not in scan.boxes:
        data[data == label] = 0
        return
    where = scan.boxes[label]
    if where is not None:
        part = data[where]
        part[part == label] = 0
