"""What the SAM side hands around: regions, embeddings, and SAM's prompt geometry.

Coordinates are numpy / napari ``(row, col)``; boxes are ``(row0, col0, row1, col1)`` with the end
exclusive. :func:`to_sam_coords` is the only place that converts to SAM's ``(x, y)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Embedding", "Region", "SamModel", "context_crop", "to_sam_coords"]


@dataclass
class SamModel:
    """A Segment Anything model with its input conventions.

    Attributes
    ----------
    sam : torch.nn.Module
        The model: a ``segment_anything.modeling.Sam`` (image encoder, prompt encoder, mask
        decoder; ``pixel_mean`` / ``pixel_std`` buffers normalise 0-255 intensities), or the
        family's own module (e.g. SAM 2's ``SAM2VideoPredictor``).
    name : str
    image_size : int
        Long side of the encoder input (1024 for SAM, 256 for LiteMedSAM).
    box_only : bool
        Trained with box prompts only: point prompts are answered by boxes chosen around the
        clicks (:mod:`napari_samcam.point_prompts`).
    version : str
    source : str
    family : str
        Which backend serves it (:func:`napari_samcam.sam.make_backend`):
        ``"segment_anything"`` or a family module's ``FAMILY`` (e.g. ``"sam2"``).
    """

    sam: Any
    name: str
    image_size: int
    box_only: bool = False
    version: str = ""
    source: str = ""
    family: str = "segment_anything"


@dataclass
class Region:
    """A region mask with its provenance.

    Attributes
    ----------
    mask : numpy.ndarray
        bool ``(H, W)`` at image resolution.
    source : str
        How the region was obtained: ``"sam-box"``, ``"sam-points"``, ``"sam-saliency-peak"``,
        ``"sam-text"``, ``"ground-truth"``, ``"box"``, ...
    prompt : dict
        The prompt that produced it (points, labels, box, text, context), JSON-friendly.
    score : float
        SAM's predicted IoU (or the text score); NaN for regions not made by a model.
    model : str
        Model name and version, empty for annotations.
    """

    mask: np.ndarray
    source: str
    prompt: dict = field(default_factory=dict)
    score: float = float("nan")
    model: str = ""

    @property
    def area(self) -> int:
        """Number of pixels in the mask."""
        return int(np.count_nonzero(self.mask))

    def provenance(self) -> dict[str, Any]:
        """Everything but the mask, JSON-friendly."""
        return {
            "region_source": self.source,
            "prompt": self.prompt,
            "score": self.score,
            "model": self.model,
            "area": self.area,
        }


@dataclass
class Embedding:
    """An image embedding and the geometry needed to map prompts and masks."""

    features: Any
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    offset: tuple[int, int] = (0, 0)


def to_sam_coords(
    points_rc: np.ndarray, original_size: tuple[int, int], input_size: tuple[int, int]
) -> np.ndarray:
    """Convert ``(row, col)`` pixel coordinates to SAM's ``(x, y)`` at the encoder's input scale.

    Parameters
    ----------
    points_rc : numpy.ndarray
        ``(..., 2)`` row, column coordinates in the original image.
    original_size, input_size : (int, int)
        ``(H, W)`` of the image and of its resized version fed to the encoder.

    Returns
    -------
    numpy.ndarray
        float32 ``(..., 2)`` x, y coordinates.
    """
    points_rc = np.asarray(points_rc, dtype=np.float64)
    scale_r = input_size[0] / original_size[0]
    scale_c = input_size[1] / original_size[1]
    return np.stack([points_rc[..., 1] * scale_c, points_rc[..., 0] * scale_r], -1).astype(
        np.float32
    )


def context_crop(
    box: np.ndarray, shape: tuple[int, int], context: float, min_size: int
) -> tuple[int, int, int, int]:
    """A square crop ``context`` times the box's long side around its centre, inside the image."""
    r0, c0, r1, c1 = (float(v) for v in box)
    side = max(context * max(r1 - r0, c1 - c0), float(min_size))
    side = min(side, float(max(shape)))
    centre_r, centre_c = (r0 + r1) / 2, (c0 + c1) / 2
    out = []
    for centre, limit in ((centre_r, shape[0]), (centre_c, shape[1])):
        length = min(side, limit)
        start = int(round(min(max(centre - length / 2, 0), limit - length)))
        out.append((start, int(min(start + round(length), limit))))
    return out[0][0], out[1][0], out[0][1], out[1][1]
