"""The interface every SAM family implements for :class:`~napari_samcam.segment.Segmenter`.

A backend turns a resized image into an embedding, prompts on an embedding into low-resolution
mask logits and predicted IoUs, and knows how its logits map back to the image's pixels. It is
all the segmenter knows about a model: caching, regions and prompt strategies live there, the
model's submodules here.

Prompts reach a backend in SAM's frame: ``(x, y)`` coordinates at the scale of
:meth:`SamBackend.input_size` (made by :func:`~napari_samcam.sam.types.to_sam_coords`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

from .._module_copies import fingerprint
from ..errors import InputError
from .upsample import MaskUpsampler

__all__ = ["Prompts", "SamBackend"]


class Prompts:
    """One decoder call's prompts, in SAM's frame (torch tensors on the model's device).

    Attributes
    ----------
    points : tuple or None
        ``(coords (1, N, 2), labels (1, N))``: the same points join every box.
    boxes : tensor or None
        ``(n, 4)`` ``(x0, y0, x1, y1)`` of pixel indices (the end-exclusive edge minus one).
    mask : tensor or None
        ``(1, 1, h, w)`` low-resolution logits from an earlier prediction.
    count : int
        How many prompts (one per box; 1 without boxes).
    """

    __slots__ = ("boxes", "count", "mask", "points")

    def __init__(self, points=None, boxes=None, mask=None):
        self.points = points
        self.boxes = boxes
        self.mask = mask
        self.count = 1 if boxes is None else int(boxes.shape[0])


class SamBackend(ABC):
    """A SAM model behind embed / decode / upsample.

    Attributes
    ----------
    model : object
        The loaded model description (e.g. :class:`~napari_samcam.sam_models.SamModel`).
    name, version, source : str
        Provenance.
    image_size : int
        Long side of the encoder input.
    box_only : bool
        Trained with box prompts only: the segmenter answers clicks with boxes around them.
    mask_threshold : float
        Logits above it are inside the mask.
    """

    mask_threshold: float = 0.0

    def __init__(self, model: Any):
        self.model = model
        self.name = str(model.name)
        self.version = str(getattr(model, "version", "") or "")
        self.source = str(getattr(model, "source", "") or "")
        self.image_size = int(model.image_size)
        self.box_only = bool(getattr(model, "box_only", False))

    # -- what every backend provides ---------------------------------------------------------
    @property
    @abstractmethod
    def module(self):
        """The ``torch.nn.Module`` holding every weight (device, digests)."""

    @abstractmethod
    def embed(self, image) -> Any:
        """The embedding of ``image``, a ``(1, 3, h, w)`` float tensor of 0-255 intensities
        resized to :meth:`input_size` of the original, on :attr:`device`."""

    @abstractmethod
    def decode(self, features: Any, prompts: Prompts, *, multimask: bool, workers: int = 1):
        """Low-resolution mask logits ``(n, k, h, w)`` and predicted IoUs ``(n, k)``.

        ``k`` is 3 with ``multimask`` else 1. ``workers``: threads the backend may use for one
        call (a hint; a plain backend ignores it).
        """

    # -- geometry shared by the SAM families (override where a family differs) ---------------
    def input_size(self, original_size: tuple[int, int]) -> tuple[int, int]:
        """``(h, w)`` the image is resized to before :meth:`embed`: long side
        :attr:`image_size`, aspect ratio kept (SAM's ``ResizeLongestSide``)."""
        height, width = original_size
        scale = self.image_size / max(height, width)
        return int(height * scale + 0.5), int(width * scale + 0.5)

    def low_res_extent(self, low: int, input_size) -> tuple[int, int]:
        """Rows and columns of ``low`` x ``low`` logits that cover the image (not padding)."""
        scale = low / self.image_size
        return math.ceil(input_size[0] * scale), math.ceil(input_size[1] * scale)

    def upsampler(self, low: int, input_size, original_size) -> MaskUpsampler:
        """The exact map from ``low`` x ``low`` logits to the pixels of the original image."""
        return MaskUpsampler.padded(low, self.image_size, input_size, original_size)

    def upsampler_key(self, low: int, input_size, original_size) -> tuple:
        """What :meth:`upsampler`'s result depends on (the segmenter keeps them by it)."""
        return (low, self.image_size, tuple(input_size), tuple(original_size))

    @property
    def device(self):
        """The device the weights live on."""
        return next(self.module.parameters()).device

    def state_token(self) -> Any:
        """Changes whenever the weights do (loading, in-place edits, moving devices)."""
        return fingerprint(self.module)

    #: Whether :meth:`propagate` can carry a prompt through the frames of a volume.
    propagates: bool = False

    def propagate(self, frames, key_index: int, box_xyxy, size, *, progress=None):
        """Carry one box on frame ``key_index`` through the other frames of a volume.

        ``frames``: ``(T, 3, h, w)`` 0-255 intensities at :meth:`input_size`; ``box_xyxy``:
        ``(x0, y0, x1, y1)`` pixel indices of the key frame; ``size``: ``(H, W)``. Returns bool
        masks ``(T, H, W)`` and a score per frame. Only families with a memory of earlier frames
        (SAM 2, :attr:`propagates`) can.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot propagate a prompt")

    def mask_generator(self, **options):
        """The family's automatic mask generator on this model (``generate(uint8 RGB)``)."""
        raise InputError(
            f"SAM model {self.name!r} has no automatic mask generator; use box proposals "
            "(text prompting's proposals='boxes')."
        )
