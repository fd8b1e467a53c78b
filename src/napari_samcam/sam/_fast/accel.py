"""Inference speed helpers for the SAM encoder and decoder: same answers, less time.

The pieces live in :mod:`.layers`, :mod:`.encoder` and :mod:`.decoder`; this module is their
entry point and holds :func:`compile_module`.

Everything here builds *inference-only copies* of modules; the original model is never changed,
and :func:`fingerprint` tells when a copy has gone stale (weights edited in place, loaded again or
moved). Each optimisation can be switched off on its own (the equivalence tests and the benchmark
suite measure them one by one):

``fold_bn``
    Batch norms folded into the preceding convolutions (TinyViT's ``Conv2d_BN``).
``channels_last``
    Convolution stages run channels-last, so TinyViT's token layout ``(B, H*W, C)`` and its
    convolution layout are the same memory and the reshapes between them copy nothing.
``fused``
    On CPU, oneDNN convolutions and linear layers with their bias and GELU / ReLU fused
    (``torch.ops.mkldnn``): no separate passes over large activations. On other devices the same
    modules fall back to plain ``conv2d`` / ``linear`` + activation.
``sdpa``
    Attention through :func:`torch.nn.functional.scaled_dot_product_attention` (a fused kernel on
    CPU and CUDA) instead of materialising and normalising the attention matrix in steps.
``fold_attention``
    The decoder's cross attentions between the few prompt tokens and the image tokens with the
    image-side projections moved onto the tokens side (:mod:`.folded_attention`):
    about half the multiply-adds of the decoder's transformer.

The decoder copy also keeps the image tokens contiguous (upstream works on a transposed view),
reuses the prompt-independent projections of the first block per image, computes only the
masks asked for, and runs the mask upscaling per pixel without reshuffling the 32-channel
features.

Results agree with the plain modules to float32 rounding (relative ~1e-6); masks are identical
except at pixels whose logit is within that rounding of the threshold, which the plain model
itself flips between thread counts (see ``tests/test_performance_equivalence.py``).

:func:`compile_module` wraps ``torch.compile`` (inductor, with weight freezing on CPU). It is
opt-in: it needs a C compiler and its first call compiles for a minute or more (seconds when
inductor's on-disk cache is warm), which interactive use should not pay for unasked.
"""

from __future__ import annotations

import threading

from .decoder import AcceleratedDecoder, accelerate_decoder
from .encoder import AcceleratedEncoder, accelerate_encoder
from .layers import OPTIMISATIONS, torch_module

__all__ = [
    "OPTIMISATIONS",
    "AcceleratedDecoder",
    "AcceleratedEncoder",
    "accelerate_decoder",
    "accelerate_encoder",
    "compile_module",
]


_COMPILE_LOCK = threading.Lock()


def compile_module(module, *, device=None):
    """``torch.compile`` a module for inference (inductor; weights frozen on CPU).

    The first call of the result compiles (tens of seconds to minutes cold; seconds with
    inductor's on-disk cache warm). Raises ``RuntimeError`` where compilation is unavailable.
    """
    torch = torch_module()
    if not hasattr(torch, "compile"):
        raise RuntimeError("torch.compile needs torch >= 2.0")
    if device is None:
        tensors = [*module.parameters(), *module.buffers()]
        device = tensors[0].device if tensors else torch.device("cpu")
    options = {"freezing": True} if torch.device(device).type == "cpu" else None
    with _COMPILE_LOCK:
        return torch.compile(module, dynamic=False, options=options)
