"""The inference-only copy of a SAM image encoder (TinyViT rewritten block by block, any
other encoder with fused linear layers)."""

from __future__ import annotations

import copy

from ..._module_copies import fingerprint
from .layers import (
    FastConv2d,
    FastLinear,
    LayerNorm2dLast,
    activate,
    is_exact_gelu,
    nn_module,
    options,
    rewrite_generic,
    to_channels_last,
    torch_module,
)
from .upstream import classes

__all__ = [
    "AcceleratedEncoder",
    "accelerate_encoder",
]


def _is_conv_bn(module) -> bool:
    nn = nn_module()
    children = dict(module.named_children())
    return (
        isinstance(module, nn.Sequential)
        and set(children) == {"c", "bn"}
        and isinstance(children["c"], nn.Conv2d)
        and isinstance(children["bn"], nn.BatchNorm2d)
    )


class _ConvBN(nn_module().Module):
    """``Conv2d_BN`` (+ activation) without folding: conv, batch norm, activation."""

    def __init__(self, conv_bn, activation="none"):
        super().__init__()
        self.c = conv_bn.c
        self.bn = conv_bn.bn
        self.activation = activation

    def forward(self, x, residual=None):
        out = self.bn(self.c(x))
        if residual is not None:
            out = out + residual
        return activate(out, self.activation)


def _conv_bn(conv_bn, activation, opts):
    """The replacement of a ``Conv2d_BN`` followed by ``activation``."""
    if opts["fold_bn"]:
        return FastConv2d.from_conv(conv_bn.c, conv_bn.bn, activation, fused=opts["fused"])
    return _ConvBN(conv_bn, activation)


class _MBConv(nn_module().Module):
    def __init__(self, block, opts):
        super().__init__()
        self.conv1 = _conv_bn(block.conv1, "gelu", opts)
        self.conv2 = _conv_bn(block.conv2, "gelu", opts)
        self.conv3 = _conv_bn(block.conv3, "gelu", opts)  # applied after the residual add

    def forward(self, x):
        return self.conv3(self.conv2(self.conv1(x)), residual=x)


class _PatchEmbed(nn_module().Module):
    def __init__(self, embed, opts):
        super().__init__()
        first, _, second = embed.seq
        self.conv1 = _conv_bn(first, "gelu", opts)
        self.conv2 = _conv_bn(second, "none", opts)
        self.channels_last = opts["channels_last"]

    def forward(self, x):
        if self.channels_last:
            x = to_channels_last(x)
        return self.conv2(self.conv1(x))


class _PatchMerging(nn_module().Module):
    def __init__(self, merging, opts):
        super().__init__()
        self.input_resolution = tuple(merging.input_resolution)
        self.conv1 = _conv_bn(merging.conv1, "gelu", opts)
        self.conv2 = _conv_bn(merging.conv2, "gelu", opts)
        self.conv3 = _conv_bn(merging.conv3, "none", opts)
        self.channels_last = opts["channels_last"]

    def forward(self, x):
        if x.ndim == 3:
            h, w = self.input_resolution
            # (B, H*W, C) -> (B, C, H, W): a channels-last view, no copy
            x = x.view(len(x), h, w, -1).permute(0, 3, 1, 2)
            if not self.channels_last:
                x = x.contiguous()
        x = self.conv3(self.conv2(self.conv1(x)))
        return x.flatten(2).transpose(1, 2)


class _Mlp(nn_module().Module):
    def __init__(self, mlp, opts):
        super().__init__()
        self.norm = mlp.norm
        if opts["fused"]:
            self.fc1 = FastLinear.from_linear(mlp.fc1, "gelu")
            self.act = nn_module().Identity()
            self.fc2 = FastLinear.from_linear(mlp.fc2)
        else:
            self.fc1, self.act, self.fc2 = mlp.fc1, mlp.act, mlp.fc2

    def forward(self, x):
        return self.fc2(self.act(self.fc1(self.norm(x))))


class _TinyAttention(nn_module().Module):
    """TinyViT's windowed attention with its learned relative-position bias."""

    def __init__(self, attn, opts):
        super().__init__()
        self.num_heads = attn.num_heads
        self.key_dim = attn.key_dim
        self.d = attn.d
        self.dh = attn.dh
        self.scale = float(attn.scale)
        self.norm = attn.norm

        def linear(m):
            return FastLinear.from_linear(m) if opts["fused"] else m

        self.qkv = linear(attn.qkv)
        self.proj = linear(attn.proj)
        bias = attn.attention_biases.detach()[:, attn.attention_bias_idxs]
        self.register_buffer("ab", bias.clone())
        self.sdpa = opts["sdpa"]

    def forward(self, x):
        import torch.nn.functional as F

        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x))
        q, k, v = qkv.view(b, n, self.num_heads, -1).split([self.key_dim, self.key_dim, self.d], 3)
        q, k, v = q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)
        if self.sdpa:
            # A 4-D mask selects the fused (flash) kernel on CPU.
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=self.ab[None], scale=self.scale
            )
        else:
            attn = (q @ k.transpose(-2, -1)) * self.scale + self.ab
            out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, self.dh))


def _is_tinyvit(encoder) -> bool:
    return isinstance(encoder, classes().tinyvit)


def _rewrite_tinyvit(encoder, opts, report):
    nn = nn_module()
    known = classes()
    encoder.patch_embed = _PatchEmbed(encoder.patch_embed, opts)
    report["conv_bn"] = report.get("conv_bn", 0) + 2
    for parent in list(encoder.modules()):
        for name, child in list(parent.named_children()):
            kind = type(child).__name__  # for the report only
            new = None
            if isinstance(child, known.mbconv):
                new = _MBConv(child, opts)
            elif isinstance(child, known.patch_merging):
                new = _PatchMerging(child, opts)
            elif isinstance(child, known.tiny_mlp) and is_exact_gelu(child.act):
                new = _Mlp(child, opts)
            elif isinstance(child, known.tiny_attention):
                new = _TinyAttention(child, opts)
            elif _is_conv_bn(child):  # e.g. TinyViTBlock.local_conv
                new = _conv_bn(child, "none", opts)
            if new is not None:
                setattr(parent, name, new)
                report[kind if not _is_conv_bn(child) else "conv_bn"] = (
                    report.get(kind if not _is_conv_bn(child) else "conv_bn", 0) + 1
                )
    neck = getattr(encoder, "neck", None)
    if isinstance(neck, nn.Sequential):
        _rewrite_neck(neck, opts, report)


def _rewrite_neck(neck, opts, report):
    nn = nn_module()
    for i, layer in enumerate(list(neck)):
        if isinstance(layer, nn.Conv2d) and opts["fused"] and not isinstance(layer.padding, str):
            neck[i] = FastConv2d.from_conv(layer, fused=True)
            report["conv"] = report.get("conv", 0) + 1
        elif isinstance(layer, classes().layer_norm_2d) and opts["channels_last"]:
            neck[i] = LayerNorm2dLast(layer)
            report["layer_norm_2d"] = report.get("layer_norm_2d", 0) + 1


class AcceleratedEncoder(nn_module().Module):
    """An inference-only copy of a SAM image encoder.

    Returns ``(B, C, H, W)`` features; with ``channels_last`` their memory is channels-last
    (as the last convolution leaves it), which is the token layout the decoder works in.

    Attributes
    ----------
    options : dict
        Which optimisations are on.
    report : dict
        How many modules each rewrite replaced.
    source_fingerprint : tuple
        :func:`fingerprint` of the encoder it was made from.
    """

    def __init__(self, encoder, **flags):
        super().__init__()
        self.options = options(**flags)
        self.report: dict[str, int] = {}
        self.source_fingerprint = fingerprint(encoder)
        body = copy.deepcopy(encoder).eval()
        for p in body.parameters():
            p.requires_grad_(False)
        if _is_tinyvit(body):
            _rewrite_tinyvit(body, self.options, self.report)
        else:
            rewrite_generic(body, self.options, self.report)
        if self.options["channels_last"]:
            body = body.to(memory_format=torch_module().channels_last)
        self.body = body

    def forward(self, x):
        if self.options["channels_last"]:
            x = to_channels_last(x)
        out = self.body(x)
        if self.options["channels_last"]:
            return out.contiguous(memory_format=torch_module().channels_last)
        return out.contiguous()


def accelerate_encoder(encoder, **flags) -> AcceleratedEncoder:
    """An inference-only, faster copy of ``encoder`` (flags: see :data:`OPTIMISATIONS`)."""
    return AcceleratedEncoder(encoder, **flags)


# -- SAM mask decoder --------------------------------------------------------------------------
