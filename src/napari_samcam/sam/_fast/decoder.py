"""The inference-only copy of SAM's mask decoder: contiguous image tokens, the first block's
prompt-independent projections reused per image, folded cross attention, and only the masks
asked for."""

from __future__ import annotations

import copy

from ..._module_copies import fingerprint
from . import staged_decoder as _staged
from .folded_attention import (
    first_block_projections,
    foldable,
    image_to_token,
    token_to_image,
    tokens_of,
)
from .layers import (
    ConvTranspose2x2,
    FastLinear,
    LayerNorm2dLast,
    UnshuffledUpscaling,
    is_2x2_transpose,
    nn_module,
    options,
    rewrite_generic,
    torch_module,
)
from .upstream import classes

__all__ = [
    "AcceleratedDecoder",
    "accelerate_decoder",
]


class _SamAttention(nn_module().Module):
    """segment_anything's ``transformer.Attention`` with fused projections / attention."""

    def __init__(self, attn, opts):
        super().__init__()

        def linear(m):
            return FastLinear.from_linear(m) if opts["fused"] else m

        self.q_proj = linear(attn.q_proj)
        self.k_proj = linear(attn.k_proj)
        self.v_proj = linear(attn.v_proj)
        self.out_proj = linear(attn.out_proj)
        self.num_heads = int(attn.num_heads)
        self.sdpa = opts["sdpa"]

    def _heads(self, x):
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q, k, v):
        return self.attend(self.q_proj(q), self.k_proj(k), self.v_proj(v))

    def attend(self, q, k, v):
        """Attention of already projected ``q``, ``k``, ``v`` (batch 1 broadcasts)."""
        n = max(q.shape[0], k.shape[0], v.shape[0])
        q, k, v = (self._heads(t.expand(n, -1, -1)) for t in (q, k, v))
        return self._attend_split(q, k, v)

    def attend_heads(self, q, k_heads, v_heads):
        """:meth:`attend` with keys and values already split into heads ``(1, H, N, d/H)``."""
        q = self._heads(q)
        n = q.shape[0]
        return self._attend_split(q, k_heads.expand(n, -1, -1, -1), v_heads.expand(n, -1, -1, -1))

    def _attend_split(self, q, k, v):
        import math

        import torch.nn.functional as F

        if self.sdpa:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            out = attn.softmax(dim=-1) @ v
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


class _TwoWayTransformer(nn_module().Module):
    """segment_anything's ``TwoWayTransformer`` on contiguous ``(B, H*W, C)`` image tokens.

    Upstream flattens ``(B, C, H, W)`` to a transposed ``(B, H*W, C)`` view, so every add and
    projection on the 4096 image tokens works on strided memory (and copies it again).

    ``static``: a dict kept per image embedding. When the image tokens do not depend on the prompt
    (no mask prompt), the first block's projections of them (keys and values of the
    token-to-image attention, queries of the image-to-token attention) are the same for every
    prompt: they are computed on the first prompt and reused from ``static``.
    """

    def __init__(self, transformer, fold: bool = False):
        super().__init__()
        self.fold = bool(fold)
        self.layers = transformer.layers
        self.final_attn_token_to_image = transformer.final_attn_token_to_image
        self.norm_final_attn = transformer.norm_final_attn
        first = self.layers[0] if len(self.layers) else None
        self.static_ok = (
            first is not None
            and isinstance(first, classes().two_way_block)
            and bool(first.skip_first_layer_pe)
            and isinstance(first.cross_attn_token_to_image, _SamAttention)
            and isinstance(first.cross_attn_image_to_token, _SamAttention)
        )

    def _first_block(self, layer, queries, keys, query_pe, key_pe, static, fold):
        t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
        # every row of keys is the same image here: its projections are made once
        first_block_projections(layer, keys[:1], key_pe, static)
        # TwoWayAttentionBlock.forward with skip_first_layer_pe, static projections reused.
        queries = layer.norm1(layer.self_attn(q=queries, k=queries, v=queries))
        q = t2i.q_proj(queries + query_pe)
        queries = layer.norm2(queries + t2i.attend_heads(q, *static["t2i_kv_heads"]))
        queries = layer.norm3(queries + layer.mlp(queries))
        if fold:
            q_heads = static["i2t_q_heads"]
            keys = image_to_token(i2t, None, queries + query_pe, queries, keys, q_heads)
        else:
            k = i2t.k_proj(queries + query_pe)
            keys = keys + i2t.attend(static["i2t_q"], k, i2t.v_proj(queries))
        return queries, layer.norm4(keys)

    @staticmethod
    def _folded_block(layer, queries, keys, query_pe, key_pe):
        """``TwoWayAttentionBlock.forward`` with :mod:`.folded_attention`'s cross attentions."""
        if layer.skip_first_layer_pe:
            queries = layer.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + layer.self_attn(q=q, k=q, v=queries)
        queries = layer.norm1(queries)
        keys_pos = keys + key_pe
        out = token_to_image(layer.cross_attn_token_to_image, queries + query_pe, keys_pos, keys)
        queries = layer.norm2(queries + out)
        queries = layer.norm3(queries + layer.mlp(queries))
        q = queries + query_pe
        keys = image_to_token(layer.cross_attn_image_to_token, keys_pos, q, queries, keys)
        return queries, layer.norm4(keys)

    def forward(self, keys, key_pe, point_embedding, static=None):
        queries = point_embedding
        final = self.final_attn_token_to_image
        fold = (
            self.fold
            and isinstance(final, _SamAttention)
            and foldable(final, point_embedding.shape[1])
        )
        for i, layer in enumerate(self.layers):
            if i == 0 and static is not None and self.static_ok:
                queries, keys = self._first_block(
                    layer, queries, keys, point_embedding, key_pe, static, fold
                )
            elif fold and isinstance(layer, classes().two_way_block):
                queries, keys = self._folded_block(layer, queries, keys, point_embedding, key_pe)
            else:
                queries, keys = layer(
                    queries=queries, keys=keys, query_pe=point_embedding, key_pe=key_pe
                )
        q = queries + point_embedding
        k = keys + key_pe
        if fold:
            queries = queries + token_to_image(final, q, k, keys)
        else:
            queries = queries + final(q=q, k=k, v=keys)
        return self.norm_final_attn(queries), keys


class AcceleratedDecoder(nn_module().Module):
    """An inference-only copy of a SAM ``MaskDecoder`` (same call signature and outputs).

    ``forward`` also takes ``image_tokens`` / ``pe_tokens``: :func:`tokens_of` the image
    embedding and of the dense positional encoding, which callers can compute once per image,
    and ``static``, a dict the caller keeps per (image embedding, this decoder) and passes only
    while the dense prompt embedding is the same for every prompt (no mask prompt): the
    prompt-independent projections of the image tokens are stored there and reused. Only the
    masks asked for are computed (upstream computes all four and slices). With ``static`` the
    decoder runs in stages over blocks of image rows (:mod:`.staged_decoder`),
    whose blocks go to ``workers`` threads.
    """

    def __init__(self, decoder, **flags):
        super().__init__()
        nn = nn_module()
        self.options = opts = options(**flags)
        self.report: dict[str, int] = {}
        self.source_fingerprint = fingerprint(decoder)
        body = copy.deepcopy(decoder).eval()
        for p in body.parameters():
            p.requires_grad_(False)
        for parent in list(body.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, classes().attention):
                    setattr(parent, name, _SamAttention(child, opts))
                    self.report["attention"] = self.report.get("attention", 0) + 1
        rewrite_generic(body, opts, self.report)
        self.tokens = False
        transformer = getattr(body, "transformer", None)
        tokens_ok = opts["channels_last"] or opts["fold_attention"]
        if tokens_ok and isinstance(transformer, classes().two_way_transformer):
            body.transformer = _TwoWayTransformer(transformer, fold=opts["fold_attention"])
            self.tokens = True
            self.report["two_way_transformer"] = 1
        upscaling = getattr(body, "output_upscaling", None)
        self.unshuffled = None
        if opts["channels_last"] and UnshuffledUpscaling.matches(upscaling):
            self.unshuffled = UnshuffledUpscaling(upscaling, opts["fused"])
            self.report["unshuffled_upscaling"] = 1
        if isinstance(upscaling, nn.Sequential) and opts["channels_last"]:
            for i, layer in enumerate(list(upscaling)):
                if is_2x2_transpose(layer):
                    upscaling[i] = ConvTranspose2x2(layer, fused=opts["fused"])
                    self.report["conv_transpose"] = self.report.get("conv_transpose", 0) + 1
                elif isinstance(layer, classes().layer_norm_2d):
                    upscaling[i] = LayerNorm2dLast(layer)
                    self.report["layer_norm_2d"] = self.report.get("layer_norm_2d", 0) + 1
        self.body = body

    def forward(
        self,
        image_embeddings,
        image_pe,
        sparse_prompt_embeddings,
        dense_prompt_embeddings,
        multimask_output: bool,
        image_tokens=None,
        pe_tokens=None,
        static=None,
        workers: int = 1,
    ):
        torch = torch_module()
        body = self.body
        if not self.tokens or image_embeddings.shape[0] != 1:
            return body(
                image_embeddings=image_embeddings,
                image_pe=image_pe,
                sparse_prompt_embeddings=sparse_prompt_embeddings,
                dense_prompt_embeddings=dense_prompt_embeddings,
                multimask_output=multimask_output,
            )
        n = sparse_prompt_embeddings.shape[0]
        _, c, h, w = image_embeddings.shape
        output_tokens = torch.cat([body.iou_token.weight, body.mask_tokens.weight], dim=0)
        tokens = torch.cat((output_tokens[None].expand(n, -1, -1), sparse_prompt_embeddings), 1)
        if image_tokens is None:
            image_tokens = tokens_of(image_embeddings)
        if pe_tokens is None:
            pe_tokens = tokens_of(image_pe)
        # The one image's tokens plus each prompt's dense embedding (a broadcast view when
        # there is no mask prompt): upstream's repeat_interleave + add, in token layout. With
        # ``static`` every prompt's sum is the same: one copy, kept.
        keys = None if static is None else static.get("keys")
        if keys is None:
            keys = image_tokens + dense_prompt_embeddings.flatten(2).transpose(1, 2)
            keys = keys.contiguous()
            if static is not None:
                keys = static["keys"] = keys[:1]
        if static is not None and _staged.supports(self, tokens.shape[1]):
            return _staged.staged_decode(
                self, tokens, static, pe_tokens, h, w, multimask_output, workers
            )
        hs, keys = body.transformer(keys, pe_tokens, tokens, static)
        iou_pred = body.iou_prediction_head(hs[:, 0, :])
        picked = range(1, body.num_mask_tokens) if multimask_output else range(1)
        hyper_in = torch.stack(
            [body.output_hypernetworks_mlps[i](hs[:, 1 + i, :]) for i in picked], dim=1
        )
        if self.unshuffled is not None:
            masks = self.unshuffled.masks(keys, hyper_in, h, w)
        else:
            upscaled = body.output_upscaling(keys.transpose(1, 2).view(n, c, h, w))
            b, c_up, h_up, w_up = upscaled.shape
            masks = (hyper_in @ upscaled.reshape(b, c_up, h_up * w_up)).view(b, -1, h_up, w_up)
        return masks, iou_pred[:, picked.start : picked.stop]


def accelerate_decoder(decoder, **flags) -> AcceleratedDecoder:
    """An inference-only, faster copy of a SAM mask decoder (flags: :data:`OPTIMISATIONS`)."""
    return AcceleratedDecoder(decoder, **flags)


# -- torch.compile -----------------------------------------------------------------------------
