"""The plain backend of ``segment_anything``-style models: upstream modules, called as they are.

Serves SAM ViT-B/L/H, LiteMedSAM (SAM's prompt encoder and decoder on a TinyViT encoder) and
MobileSAM: anything with ``image_encoder``, ``prompt_encoder``, ``mask_decoder``,
``pixel_mean`` / ``pixel_std`` and ``mask_threshold`` as ``segment_anything.modeling.Sam`` has.
"""

from __future__ import annotations

from typing import Any

from .backend import Prompts, SamBackend

__all__ = ["SegmentAnythingBackend"]


class SegmentAnythingBackend(SamBackend):
    """A ``segment_anything`` ``Sam`` (in :class:`~napari_samcam.sam_models.SamModel`)."""

    def __init__(self, model: Any):
        super().__init__(model)
        self.sam = model.sam
        self.mask_threshold = float(self.sam.mask_threshold)

    @property
    def module(self):
        return self.sam

    def encoder_input(self, image):
        """The encoder's input: ``image`` (0-255, resized) normalised and padded to a square."""
        import torch.nn.functional as F

        size = self.image_size
        height, width = image.shape[-2:]
        image = (image - self.sam.pixel_mean) / self.sam.pixel_std
        return F.pad(image, (0, size - width, 0, size - height))

    def embed(self, image):
        import torch

        with torch.inference_mode():
            return self.sam.image_encoder(self.encoder_input(image))

    def prompt_embeddings(self, prompts: Prompts):
        """SAM's prompt encoder on ``prompts``: sparse ``(n, T, C)`` and dense embeddings."""
        n = prompts.count
        points = prompts.points
        if points is not None:
            points = tuple(t.expand(n, *t.shape[1:]) for t in points)
        mask = None if prompts.mask is None else prompts.mask.expand(n, -1, -1, -1)
        return self.sam.prompt_encoder(points=points, boxes=prompts.boxes, masks=mask)

    def decode(self, features, prompts: Prompts, *, multimask: bool, workers: int = 1):
        sparse, dense = self.prompt_embeddings(prompts)
        return self.sam.mask_decoder(
            image_embeddings=features,
            image_pe=self.sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )

    def mask_generator(self, **options):
        from segment_anything import SamAutomaticMaskGenerator

        return SamAutomaticMaskGenerator(self.sam, **options)
