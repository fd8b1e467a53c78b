"""SAM's mask decoder for prompts on a cached image, as a few stages over blocks of image rows.

Of the decoder's work for one prompt, nearly all is on the 4096 image tokens, and nearly all of
that treats each image token on its own: the image-to-token attentions, the layer norms, the
mask upscaling. Only the token-to-image attentions mix image tokens, through one softmax over
all of them, and that splits exactly: each block of rows returns its scores' maximum, its sum of
exponentials and its exponential-weighted sum of image tokens, and the blocks' parts combine
into the whole softmax (the "split" form of attention).

So each transformer layer's image side, with the next token-to-image attention's per-block part,
is one stage over row blocks, and the upscaling is another: three stages for SAM's two-layer
transformer. The blocks of a stage run on worker threads, one torch thread each: the few long
blocks meet once per stage, where torch's own threads meet after every one of ~150 short
kernels (which made two threads 3-4x slower than one on busy cores; see docs/performance.md).
The token side, a few hundred kilobytes, runs on the calling thread between the stages.

Used for prompts without a mask prompt (the dense prompt embedding is then the same for every
prompt, see :class:`.accel.AcceleratedDecoder`'s ``static``), on a SAM-style
``TwoWayTransformer`` whose attentions can be folded (:mod:`.folded_attention`).
"""

from __future__ import annotations

import itertools

from ..._threads import run_blocks, torch_threads
from .folded_attention import (
    first_block_projections,
    foldable,
    image_operands,
    image_update,
    token_output,
    token_queries,
)
from .upstream import classes

__all__ = ["row_blocks", "staged_decode", "supports"]

#: Image tokens per row block on one thread (~1 MB of float32 features per block).
_BLOCK_ROWS = 1024


def supports(decoder, tokens: int) -> bool:
    """Whether :func:`staged_decode` can run ``decoder`` (an ``AcceleratedDecoder``) for
    prompts of ``tokens`` sparse + output tokens."""
    transformer = decoder.body.transformer
    if decoder.unshuffled is None or not getattr(transformer, "fold", False):
        return False
    if not transformer.static_ok:
        return False
    layers = list(transformer.layers)
    if not all(isinstance(layer, classes().two_way_block) for layer in layers):
        return False
    if any(layer.skip_first_layer_pe for layer in layers[1:]):
        return False
    attentions = [transformer.final_attn_token_to_image]
    for layer in layers:
        attentions += [layer.cross_attn_token_to_image, layer.cross_attn_image_to_token]
    return all(hasattr(a, "attend") and foldable(a, tokens) for a in attentions)


def row_blocks(rows: int, workers: int) -> list[slice]:
    """Contiguous row blocks: at least one per worker, none much over :data:`_BLOCK_ROWS`."""
    count = max(workers, -(-rows // _BLOCK_ROWS))
    count = -(-count // workers) * workers  # whole rounds of the workers
    bounds = [round(i * rows / count) for i in range(count + 1)]
    return [slice(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def _run_blocks(task, jobs, workers: int, device) -> list:
    return run_blocks(task, jobs, workers, parallel=_torch().device(device).type == "cpu")


def _image_stage(job):
    """One row block of a layer's image side: the image-to-token update, the layer norm, the
    positional encoding, and the block's part of the next token-to-image attention."""
    layer, ops, a, image_queries, residual, pe_rows = job
    keys = layer.norm4(image_update(ops, image_queries, residual))
    keys_pos = keys + pe_rows
    return keys, keys_pos, _softmax_parts(a, keys_pos, keys)


def _upscale_stage(job):
    upscaling, keys, hyper_in = job
    return upscaling.rows(keys, hyper_in)


def _softmax_parts(a, keys_pos, keys):
    """One row block's part of ``softmax(a @ keys_pos^T) @ keys``: (max, sum of exp, sum)."""
    torch = _torch()
    scores = torch.matmul(a, keys_pos.transpose(1, 2))  # (B, H*T, R)
    peak = scores.amax(-1, keepdim=True)
    weights = scores.sub_(peak).exp_()
    return peak, weights.sum(-1, keepdim=True), torch.matmul(weights, keys)


def _combine(parts):
    """The whole softmax-weighted sum from the blocks' ``(max, sum of exp, sum)`` parts."""
    torch = _torch()
    peak = parts[0][0]
    for part in parts[1:]:
        peak = torch.maximum(peak, part[0])
    total = mixed = None
    for block_peak, block_sum, block_mixed in parts:
        scale = (block_peak - peak).exp_()
        total = block_sum * scale if total is None else total.addcmul_(block_sum, scale)
        mixed = block_mixed * scale if mixed is None else mixed.addcmul_(block_mixed, scale)
    return mixed.div_(total)


def staged_decode(decoder, tokens, static, pe_tokens, h: int, w: int, multimask: bool, workers):
    """Masks ``(n, k, 4h, 4w)`` and IoU predictions ``(n, k)`` for ``tokens`` ``(n, T, C)``.

    ``static`` holds the embedding's prompt-independent parts (``keys``: image tokens + dense
    prompt embedding, ``(1, h*w, C)``; the first block's projections, filled in here when
    missing). Agrees with the plain decoder to float32 rounding.
    """
    with torch_threads(1):
        return _staged_decode(decoder, tokens, static, pe_tokens, h, w, multimask, workers)


def _staged_decode(decoder, tokens, static, pe_tokens, h, w, multimask, workers):
    torch = _torch()
    body = decoder.body
    transformer = body.transformer
    layers = list(transformer.layers)
    first = layers[0]
    t2i = first.cross_attn_token_to_image
    image = static["keys"]
    first_block_projections(first, image, pe_tokens, static)
    on_cpu = tokens.device.type == "cpu"
    blocks = row_blocks(h * w, workers) if on_cpu else [slice(0, h * w)]
    n_tokens = tokens.shape[1]

    # First block's token side: its token-to-image attention reads only static projections.
    queries = first.norm1(first.self_attn(q=tokens, k=tokens, v=tokens))
    q = t2i.q_proj(queries + tokens)
    queries = first.norm2(queries + t2i.attend_heads(q, *static["t2i_kv_heads"]))
    queries = first.norm3(queries + first.mlp(queries))

    keys = [image[:, block] for block in blocks]
    keys_pos: list = [None] * len(blocks)
    q_heads = static["i2t_q_heads"]
    for index, layer in enumerate(layers):
        attn = layer.cross_attn_image_to_token
        ops = image_operands(attn, queries + tokens, queries, projected=index == 0)
        if index + 1 < len(layers):
            following = layers[index + 1]
            q = queries + tokens
            queries = following.norm1(queries + following.self_attn(q=q, k=q, v=queries))
            next_attn = following.cross_attn_token_to_image
        else:
            following, next_attn = None, transformer.final_attn_token_to_image
        a = token_queries(next_attn, queries + tokens)

        jobs = [
            (
                layer,
                ops,
                a,
                q_heads[..., block] if index == 0 else keys_pos[i],
                keys[i],
                pe_tokens[:, block],
            )
            for i, block in enumerate(blocks)
        ]
        results = _run_blocks(_image_stage, jobs, workers, tokens.device)
        keys = [r[0] for r in results]
        keys_pos = [r[1] for r in results]
        out = token_output(next_attn, _combine([r[2] for r in results]), n_tokens)
        if following is not None:
            queries = following.norm2(queries + out)
            queries = following.norm3(queries + following.mlp(queries))
        else:
            queries = transformer.norm_final_attn(queries + out)

    iou_pred = body.iou_prediction_head(queries[:, 0, :])
    picked = range(1, body.num_mask_tokens) if multimask else range(1)
    hyper_in = torch.stack(
        [body.output_hypernetworks_mlps[i](queries[:, 1 + i, :]) for i in picked], dim=1
    )
    upscaling = decoder.unshuffled
    jobs = [(upscaling, block_keys, hyper_in) for block_keys in keys]
    parts = _run_blocks(_upscale_stage, jobs, workers, tokens.device)
    masks = upscaling.shuffle(torch.cat(parts, dim=1), h, w)
    return masks, iou_pred[:, picked.start : picked.stop]


def _torch():
    import torch

    return torch
