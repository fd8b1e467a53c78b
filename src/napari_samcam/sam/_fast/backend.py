"""The fast variant of the ``segment_anything`` backend: same answers, less time.

Runs inference-only copies of the encoder and decoder (:mod:`.accel`), the decoder in stages
over row blocks on worker threads (:mod:`.staged_decoder`), and optionally ``torch.compile``.
The copies are rebuilt whenever the model's weights change. It is held to the plain backend by
``tests/test_performance_equivalence.py`` and ``tests/test_staged_decoder.py``, and used only
with the upstream versions those were run on (:func:`fast_or_plain`).
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

from ..._module_copies import fingerprint
from ..backend import Prompts
from ..plain import SegmentAnythingBackend
from . import accel
from .folded_attention import tokens_of
from .upstream import classes, version_mismatch

__all__ = ["FastSegmentAnythingBackend", "fast_or_plain"]

_WARNED: set[str] = set()
_WARNED_LOCK = threading.Lock()


class FastSegmentAnythingBackend(SegmentAnythingBackend):
    """:class:`~napari_samcam.sam.plain.SegmentAnythingBackend` on accelerated module copies.

    Parameters
    ----------
    model : SamModel
    accelerate : bool
        Run the rewritten copies (:mod:`.accel`); False runs the upstream modules (only
        ``compile_encoder`` then applies).
    compile_encoder : bool
        Also ``torch.compile`` the encoder (falls back to eager, with a warning, if that fails).
    """

    def __init__(self, model: Any, *, accelerate: bool = True, compile_encoder: bool = False):
        super().__init__(model)
        self.accelerate = bool(accelerate)
        self.compile_encoder = bool(compile_encoder)
        self._built: dict[str, Any] = {}
        # the decoder's prompt-independent projections of the last prompted features
        self._static: tuple = (None, None, None)
        self._lock = threading.RLock()

    def modules(self) -> dict[str, Any]:
        """Encoder, decoder and dense positional encoding to run, rebuilt when weights change
        (:func:`~napari_samcam._module_copies.fingerprint`)."""
        import torch

        sam = self.sam
        state = (self.accelerate, self.compile_encoder, fingerprint(sam))
        with self._lock:
            if self._built.get("state") == state:
                return self._built
            encoder, decoder = sam.image_encoder, sam.mask_decoder
            if self.accelerate:
                # inductor makes its own fused kernels (and cannot trace the oneDNN ones)
                fused = not self.compile_encoder
                encoder = accel.accelerate_encoder(sam.image_encoder, fused=fused)
                decoder = accel.accelerate_decoder(sam.mask_decoder)
            if self.compile_encoder:
                try:
                    encoder = accel.compile_module(encoder)
                except Exception as exc:  # no compiler, unsupported platform
                    warnings.warn(
                        f"torch.compile is unavailable ({exc}); using the eager encoder.",
                        RuntimeWarning,
                        stacklevel=3,
                    )
            with torch.inference_mode():
                pe = sam.prompt_encoder.get_dense_pe()
            self._built = {
                "state": state,
                "token": object(),
                "encoder": encoder,
                "decoder": decoder,
                "tokens": isinstance(decoder, accel.AcceleratedDecoder),
                "pe": pe,
                "pe_tokens": tokens_of(pe),
            }
            return self._built

    def embed(self, image):
        import torch

        tensor = self.encoder_input(image)
        with torch.inference_mode():
            try:
                return self.modules()["encoder"](tensor)
            except Exception as exc:
                if not self.compile_encoder:
                    raise
                # A compiled encoder failing on first use (no C compiler, ...): run eagerly.
                warnings.warn(
                    f"torch.compile failed ({type(exc).__name__}: {exc}); using the eager "
                    "encoder.",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self.compile_encoder = False
                return self.modules()["encoder"](tensor)

    def decode(self, features, prompts: Prompts, *, multimask: bool, workers: int = 1):
        modules = self.modules()
        sparse, dense = self.prompt_embeddings(prompts)
        extra: dict[str, Any] = {}
        if modules["tokens"]:
            # free when the features are channels-last (the accelerated encoder's output)
            extra = {"image_tokens": tokens_of(features), "pe_tokens": modules["pe_tokens"]}
            if prompts.mask is None:
                # Same dense prompt for every prompt: the decoder keeps the prompt-independent
                # projections of these features, for the last features prompted only.
                with self._lock:
                    owner, token, static = self._static
                    if owner is not features or token is not modules["token"]:
                        static = {}
                        self._static = (features, modules["token"], static)
                extra["static"] = static
            extra["workers"] = workers
        return modules["decoder"](
            image_embeddings=features,
            image_pe=modules["pe"],
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            **extra,
        )


def _unverified_reason(model: Any) -> str | None:
    """Why the fast variant was not verified for ``model``, or None."""
    mismatch = version_mismatch()
    if mismatch is not None:
        return mismatch
    known = classes()
    sam = model.sam
    if not isinstance(sam.mask_decoder, known.mask_decoder):
        return f"its mask decoder is {type(sam.mask_decoder).__qualname__}, not segment_anything's"
    if not isinstance(sam.image_encoder, known.vit_encoder + known.tinyvit):
        return (
            f"its image encoder is {type(sam.image_encoder).__qualname__}, not segment_anything's "
            "ViT or LiteMedSAM's TinyViT"
        )
    return None


def fast_or_plain(
    model: Any, *, accelerate: bool = True, compile_encoder: bool = False
) -> SegmentAnythingBackend:
    """The fast backend where it was verified for ``model``; otherwise the plain backend and one
    warning (per reason and process) that says why."""
    if not (accelerate or compile_encoder):
        return SegmentAnythingBackend(model)
    reason = _unverified_reason(model)
    if reason is None:
        return FastSegmentAnythingBackend(
            model, accelerate=accelerate, compile_encoder=compile_encoder
        )
    with _WARNED_LOCK:
        first = reason not in _WARNED
        _WARNED.add(reason)
    if first:
        warnings.warn(
            f"SAM model {model.name!r}: the fast variant is off because {reason}; the plain "
            "backend (upstream code) runs, with the same results, slower.",
            RuntimeWarning,
            stacklevel=3,
        )
    return SegmentAnythingBackend(model)
