"""One annotated image of a dataset: the :class:`Item` every manifest and dataset reader makes."""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .coco_masks import decode_rle, polygons_to_mask
from .errors import ImageReadError, InputError
from .hashing import file_digest
from .images import read_image

__all__ = ["NEGATIVE_LABELS", "Item", "clip_to_image"]

#: Labels that mean "the finding is absent" (compared lower-case, stripped).
NEGATIVE_LABELS = {"", "0", "0.0", "false", "no", "negative", "neg", "absent"}


@dataclass
class Item:
    """One image with the annotation of one finding.

    Attributes
    ----------
    image : str
        The image as the manifest names it (provenance; used in output rows).
    path : Path
        The resolved file.
    index : int
        Position of the item in the manifest (0-based).
    label : str
        Presence label as written (``"1"``, ``"0"``, ...), ``""`` when the manifest has none.
    cls : str
        Finding / class name (COCO category, CheXlocalize task, CSV ``class``), ``""`` if none.
    mask : dict or None
        How to get the ground-truth mask: ``{"path": ...}``, ``{"empty": True}``,
        ``{"rle": {...}}`` or ``{"polygons": [...]}`` (lists per COCO annotation); ``None``
        when there is no ground truth.
    boxes : list of (int, int, int, int)
        Box annotations ``(row0, col0, row1, col1)``, end exclusive.
    boxes_from_mask : bool
        Derive boxes from the mask's connected components (CheXlocalize).
    where : str
        Where in the manifest the item comes from, for error messages.
    image_id : str
        The dataset's own name of the image (CheXlocalize's ``img_id``), ``""`` if none.
    readers : dict or None
        Several readers' boxes of this finding (reader id -> boxes, ``[]`` for a reader who
        did not mark it), each reader a region source ``reader:<id>``; ``None`` if one reader.
    """

    image: str
    path: Path
    index: int
    label: str = ""
    cls: str = ""
    mask: dict | None = None
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    boxes_from_mask: bool = False
    where: str = ""
    image_id: str = ""
    readers: dict | None = None

    @property
    def positive(self) -> bool:
        """Whether the finding is present: from the label, else from the annotations."""
        if self.label.strip():
            return self.label.strip().lower() not in NEGATIVE_LABELS
        return bool(self.boxes) or (self.mask is not None and not self.mask.get("empty"))

    def annotation_id(self) -> str:
        """A digest of everything that defines this item's annotation (for result keys)."""
        mask = self.mask
        if mask is not None and "path" in mask:
            mask = {"path": str(mask["path"]), "sha": file_digest(Path(mask["path"]))}
        payload = json.dumps(
            {
                "image": self.image,
                "label": self.label,
                "class": self.cls,
                "mask": mask,
                "boxes": [list(map(int, b)) for b in self.boxes],
                "boxes_from_mask": self.boxes_from_mask,
                **({"readers": self.readers} if self.readers is not None else {}),
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.blake2b(payload.encode(), digest_size=12).hexdigest()

    def load_mask(self, shape: tuple[int, int]) -> np.ndarray | None:
        """The ground-truth mask at ``shape`` (bool), or ``None`` without ground truth.

        Raises
        ------
        InputError
            The mask file cannot be read or does not match the image's shape.
        """
        if self.mask is None:
            return None
        shape = (int(shape[0]), int(shape[1]))
        if self.mask.get("empty"):
            return np.zeros(shape, dtype=bool)
        if "path" in self.mask:
            mask = _read_mask_file(Path(self.mask["path"]), self.where)
        elif "rle" in self.mask:
            try:
                parts = [decode_rle(r, shape=shape) for r in self.mask["rle"]]
            except InputError as exc:
                raise InputError(f"{self.where}: {exc}") from None
            mask = np.logical_or.reduce(parts) if parts else np.zeros(shape, dtype=bool)
        elif "polygons" in self.mask:
            mask = polygons_to_mask(self.mask["polygons"], shape)
        else:  # pragma: no cover - constructed only here
            raise InputError(f"{self.where}: unknown mask description {self.mask!r}.")
        if mask.shape != shape:
            raise InputError(
                f"{self.where}: the mask has shape {mask.shape} but the image "
                f"{self.image!r} has shape {shape}; masks must match their image pixel for "
                "pixel."
            )
        return mask

    def box_list(
        self, mask: np.ndarray | None, shape: tuple[int, int] | None = None
    ) -> list[tuple[int, int, int, int]]:
        """The box annotations, derived from ``mask`` when the manifest has none.

        With the image's ``shape``, boxes reaching beyond the image are clipped to it with a
        warning that names the manifest row; a box wholly outside is an :class:`InputError`.
        """
        if self.boxes or not self.boxes_from_mask or mask is None or not mask.any():
            if shape is None:
                return list(self.boxes)
            return [clip_to_image(box, shape, self.where) for box in self.boxes]
        from scipy import ndimage  # scipy stays out of reading a manifest

        labels, _ = ndimage.label(mask)
        boxes = []
        for rows, cols in ndimage.find_objects(labels):
            boxes.append((rows.start, cols.start, rows.stop, cols.stop))
        return boxes


def _read_mask_file(path: Path, where: str) -> np.ndarray:
    try:
        data = read_image(path)
    except ImageReadError as exc:
        raise InputError(f"{where}, column 'mask': {exc}") from exc
    array = np.asarray(data.array)
    if array.ndim == 3 and data.rgb:
        array = array[..., :3].max(-1)
    if array.ndim != 2:
        raise InputError(
            f"{where}, column 'mask': {str(path)!r} has shape {array.shape}; a mask is a 2-D "
            "image (0 = background, anything else = region)."
        )
    return array != 0


def clip_to_image(box, shape: tuple[int, int], where: str) -> tuple[int, int, int, int]:
    """``box`` clipped to an image of ``shape``, with a warning naming ``where`` if it reached
    beyond; an error if nothing of it is inside."""
    r0, c0, r1, c1 = (int(v) for v in box)
    clipped = (max(r0, 0), max(c0, 0), min(r1, int(shape[0])), min(c1, int(shape[1])))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise InputError(
            f"{where}: box {[r0, c0, r1, c1]} (row0, col0, row1, col1) lies outside the image of "
            f"shape {tuple(shape)}; fix the annotation."
        )
    if clipped != (r0, c0, r1, c1):
        warnings.warn(
            f"{where}: box {[r0, c0, r1, c1]} (row0, col0, row1, col1) reaches beyond the image "
            f"of shape {tuple(shape)}; it was clipped to {list(clipped)}.",
            UserWarning,
            stacklevel=3,
        )
    return clipped
