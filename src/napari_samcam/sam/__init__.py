"""Segment Anything behind one backend interface.

:class:`~napari_samcam.sam.backend.SamBackend` is all :class:`~napari_samcam.segment.Segmenter`
knows of a model: ``embed``, ``decode``, ``upsampler``. One module per family:

- :mod:`.plain`: ``segment_anything``-style models (SAM ViT-B/L/H, LiteMedSAM, MobileSAM),
  upstream modules called as they are;
- :mod:`._fast`: the fast variant of that backend, used only where it was verified;
- :mod:`.sam2_backend`: SAM 2.1 (the optional ``sam2`` package), images and volumes.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from . import sam2_backend
from .backend import Prompts, SamBackend
from .types import Embedding, Region, SamModel, context_crop, to_sam_coords

__all__ = [
    "Embedding",
    "Prompts",
    "Region",
    "SamBackend",
    "SamModel",
    "context_crop",
    "make_backend",
    "sam_families",
    "to_sam_coords",
]


def sam_families() -> tuple:
    """The modules of the SAM families beyond ``segment_anything``'s, one per family.

    Each has ``FAMILY`` (its :attr:`SamModel.family`), ``NAMES`` (model name -> one line),
    ``load(name, *, checkpoint, device, cache)`` and ``adopt(module)`` (-> ``SamModel``),
    ``owns(module)`` and ``backend(model)`` (-> :class:`SamBackend`). A new family is a new
    module and a line here.
    """
    return (sam2_backend,)


def make_backend(
    model: Any, *, accelerate: bool = True, compile_encoder: bool = False
) -> SamBackend:
    """The backend of a loaded model (by its ``family``); a backend is returned as it is.

    ``accelerate`` / ``compile_encoder`` choose the fast variant where a family has one.
    """
    if isinstance(model, SamBackend):
        return model
    family = getattr(model, "family", None)
    if family == "segment_anything":
        from ._fast.backend import fast_or_plain

        return fast_or_plain(model, accelerate=accelerate, compile_encoder=compile_encoder)
    for module in sam_families():
        if family == module.FAMILY:
            return module.backend(model)
    raise InputError(
        f"SAM model {getattr(model, 'name', type(model).__name__)!r} of family {family!r} has no "
        "backend; load it with napari_samcam.load_sam_model."
    )
