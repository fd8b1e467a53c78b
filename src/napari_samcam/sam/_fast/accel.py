"""Inference speed helpers for the SAM encoder and decoder: same answers, less time.

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

import copy
import threading

from ..._module_copies import fingerprint
from . import staged_decoder as _staged
from .folded_attention import (
    first_block_projections,
    foldable,
    image_to_token,
    token_to_image,
    tokens_of,
)
from .upstream import classes

__all__ = [
    "OPTIMISATIONS",
    "AcceleratedDecoder",
    "AcceleratedEncoder",
    "accelerate_decoder",
    "accelerate_encoder",
    "compile_module",
]

#: The switches of :func:`accelerate_encoder` / :func:`accelerate_decoder`, all on by default.
OPTIMISATIONS = ("fold_bn", "channels_last", "fused", "sdpa", "fold_attention")

_ACTIVATIONS = ("none", "gelu", "relu")
_ALGORITHM = "none"  # oneDNN's GELU variant: "none" is the exact (erf) one, as nn.GELU()
#: Linear layers of fewer multiply-adds than this take ``F.linear`` + activation instead of
#: oneDNN's fused kernel.
_FUSED_MIN_MACS = 1 << 20


def _torch():
    import torch

    return torch


def _nn():
    import torch.nn as nn

    return nn


def _mkldnn_ok(x) -> bool:
    """Whether the fused oneDNN kernels apply: CPU float32, no autograd needed."""
    torch = _torch()
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not (torch.is_grad_enabled() and x.requires_grad)
        and torch.backends.mkldnn.is_available()
    )


def _activate(x, activation: str):
    import torch.nn.functional as F

    if activation == "gelu":
        return F.gelu(x)
    if activation == "relu":
        return F.relu(x)
    return x


# -- building blocks ---------------------------------------------------------------------------


class FastConv2d(_nn().Module):
    """A Conv2d (+ folded batch norm) + optional activation, fused on CPU by oneDNN.

    ``forward(x, residual=None)`` computes ``act(conv(x) + residual)``.
    """

    def __init__(
        self, weight, bias, stride, padding, dilation, groups, activation="none", fused=True
    ):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation {activation!r}: one of {_ACTIVATIONS}")
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.stride = [int(v) for v in stride]
        self.padding = [int(v) for v in padding]
        self.dilation = [int(v) for v in dilation]
        self.groups = int(groups)
        self.activation = activation
        self.fused = bool(fused)

    @classmethod
    def from_conv(cls, conv, bn=None, activation="none", fused=True):
        """From an ``nn.Conv2d`` and an optional ``nn.BatchNorm2d`` to fold into it (eval)."""
        torch = _torch()
        weight, bias = conv.weight, conv.bias
        if bn is not None:
            # Fold in float64: the folded float32 weights are then correctly rounded.
            scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
            conv_bias = torch.zeros_like(scale) if bias is None else bias.double()
            bias = (bn.bias.double() + (conv_bias - bn.running_mean.double()) * scale).to(
                weight.dtype
            )
            weight = (weight.double() * scale[:, None, None, None]).to(weight.dtype)
        if isinstance(conv.padding, str):
            raise ValueError("string padding is not supported")
        return cls(
            weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups, activation, fused
        )

    def forward(self, x, residual=None):
        torch = _torch()
        import torch.nn.functional as F

        if self.fused and _mkldnn_ok(x):
            args = (self.padding, self.stride, self.dilation, self.groups)
            if residual is None:
                return torch.ops.mkldnn._convolution_pointwise(
                    x, self.weight, self.bias, *args, self.activation, [], _ALGORITHM
                )
            out = torch.ops.mkldnn._convolution_pointwise.binary(
                x, residual, self.weight, self.bias, *args, "add", None, None, [], None
            )
            return _activate(out, self.activation)
        out = F.conv2d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )
        if residual is not None:
            out = out + residual
        return _activate(out, self.activation)

    def extra_repr(self) -> str:
        out_c, in_c, kh, kw = self.weight.shape
        return (
            f"{in_c * self.groups}, {out_c}, kernel=({kh}, {kw}), stride={self.stride}, "
            f"padding={self.padding}, groups={self.groups}, activation={self.activation}"
        )


class FastLinear(_nn().Module):
    """A Linear + optional activation, fused on CPU by oneDNN (any leading dimensions)."""

    def __init__(self, weight, bias, activation="none", fused=True):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation {activation!r}: one of {_ACTIVATIONS}")
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.activation = activation
        self.fused = bool(fused)

    @classmethod
    def from_linear(cls, linear, activation="none", fused=True):
        return cls(linear.weight, linear.bias, activation, fused)

    def forward(self, x):
        torch = _torch()
        import torch.nn.functional as F

        # oneDNN's fixed cost per call outweighs the fusion on small products (the decoder's
        # prompt tokens: 35 vs 63 us for 7 x 256 -> 256; 7 x 256 -> 2048 is faster in oneDNN)
        if self.fused and x.numel() * self.weight.shape[0] >= _FUSED_MIN_MACS and _mkldnn_ok(x):
            return torch.ops.mkldnn._linear_pointwise(
                x, self.weight, self.bias, self.activation, [], _ALGORITHM
            )
        return _activate(F.linear(x, self.weight, self.bias), self.activation)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, activation={self.activation}"


class ConvTranspose2x2(_nn().Module):
    """``ConvTranspose2d(kernel 2, stride 2)`` as one matrix product and a pixel shuffle.

    With kernel == stride every output pixel gets exactly one input pixel's contribution, so the
    layer is a ``(H*W, C_in) @ (C_in, 4*C_out)`` product; the result is laid out channels-last.
    """

    def __init__(self, conv, fused: bool = True):
        super().__init__()
        c_in, c_out = conv.weight.shape[:2]
        # (C_in, C_out, kh, kw) -> rows ordered (kh, kw, C_out)
        weight = conv.weight.detach().permute(2, 3, 1, 0).reshape(4 * c_out, c_in)
        bias = conv.bias
        bias = None if bias is None else bias.detach().repeat(4)
        self.linear = FastLinear(weight.contiguous(), bias, fused=fused)
        self.c_out = int(c_out)

    def forward(self, x):
        b, _, h, w = x.shape
        tokens = x.permute(0, 2, 3, 1)  # a view when x is channels-last
        out = self.linear(tokens)
        out = out.view(b, h, w, 2, 2, self.c_out).permute(0, 1, 3, 2, 4, 5)
        out = out.reshape(b, 2 * h, 2 * w, self.c_out)
        return out.permute(0, 3, 1, 2)  # (B, C, 2H, 2W), channels-last memory


class LayerNorm2dLast(_nn().Module):
    """SAM's ``LayerNorm2d`` (over channels) as ``F.layer_norm`` on channels-last memory."""

    def __init__(self, norm):
        super().__init__()
        self.register_buffer("weight", norm.weight.detach().clone())
        self.register_buffer("bias", norm.bias.detach().clone())
        self.eps = float(norm.eps)

    def forward(self, x):
        import torch.nn.functional as F

        out = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return out.permute(0, 3, 1, 2)


class _UnshuffledUpscaling(_nn().Module):
    """SAM's mask upscaling and hypernetwork product without moving the upscaled features.

    ``output_upscaling`` is ``ConvT(2x2, s2) -> LayerNorm2d -> GELU -> ConvT(2x2, s2) -> GELU``:
    every step acts on each pixel separately, so the whole chain runs on ``(pixel, channel)``
    rows in the order the transposed convolutions produce them, the product with the mask
    tokens' hypernetwork outputs reduces the channels there, and only the final one-channel
    masks are shuffled into image order (upstream shuffles the 32-channel features twice).
    """

    def __init__(self, upscaling, fused: bool):
        super().__init__()
        up1, norm, _, up2, _ = upscaling
        self.up1 = ConvTranspose2x2(up1, fused=fused).linear
        self.up2 = ConvTranspose2x2(up2, fused=fused).linear
        self.up2.activation = "gelu"
        self.register_buffer("norm_weight", norm.weight.detach().clone())
        self.register_buffer("norm_bias", norm.bias.detach().clone())
        self.eps = float(norm.eps)
        self.c1 = int(up1.weight.shape[1])
        self.c2 = int(up2.weight.shape[1])

    @staticmethod
    def matches(upscaling) -> bool:
        nn = _nn()
        if not isinstance(upscaling, nn.Sequential) or len(upscaling) != 5:
            return False
        up1, norm, act1, up2, act2 = upscaling
        return (
            all(_is_2x2_transpose(m) for m in (up1, up2))
            and isinstance(norm, classes().layer_norm_2d)
            and _is_exact_gelu(act1)
            and _is_exact_gelu(act2)
        )

    def masks(self, tokens, hyper_in, h: int, w: int):
        """``tokens`` ``(n, h*w, C)``, ``hyper_in`` ``(n, k, C2)`` -> masks ``(n, k, 4h, 4w)``."""
        return self.shuffle(self.rows(tokens, hyper_in), h, w)

    def rows(self, tokens, hyper_in):
        """Mask logits ``(n, R*16, k)`` of ``R`` image tokens ``(n or 1, R, C)``, rows ordered
        (token, dy1, dx1, dy2, dx2)."""
        import torch.nn.functional as F

        k = hyper_in.shape[1]
        x = self.up1(tokens)
        x = x.view(x.shape[0], -1, self.c1)  # rows: (token, dy1, dx1)
        x = F.gelu(F.layer_norm(x, (self.c1,), self.norm_weight, self.norm_bias, self.eps))
        x = self.up2(x)
        x = x.view(x.shape[0], -1, self.c2)  # rows: (token, dy1, dx1, dy2, dx2)
        out = x @ hyper_in.transpose(1, 2)
        return out.view(out.shape[0], -1, k)

    @staticmethod
    def shuffle(rows, h: int, w: int):
        """:meth:`rows` of all ``h * w`` tokens -> masks ``(n, k, 4h, 4w)``."""
        import torch.nn.functional as F

        n, k = rows.shape[0], rows.shape[-1]
        # output row = 4y + 2dy1 + dy2, column = 4x + 2dx1 + dx2: order each token's 16 values
        # (dy1, dy2, dx1, dx2) as pixel_shuffle's channels, which is faster than one 8-d permute
        m = rows.view(n, h * w, 2, 2, 2, 2, k).permute(0, 6, 2, 4, 3, 5, 1)
        return F.pixel_shuffle(m.reshape(n * k, 16, h, w), 4).view(n, k, 4 * h, 4 * w)


def _is_2x2_transpose(layer) -> bool:
    nn = _nn()
    return (
        isinstance(layer, nn.ConvTranspose2d)
        and tuple(layer.kernel_size) == (2, 2)
        and tuple(layer.stride) == (2, 2)
        and tuple(layer.padding) == (0, 0)
        and tuple(layer.output_padding) == (0, 0)
        and layer.groups == 1
        and tuple(layer.dilation) == (1, 1)
    )


def _to_channels_last(x):
    torch = _torch()
    return x.contiguous(memory_format=torch.channels_last)


# -- TinyViT (LiteMedSAM, MobileSAM) -----------------------------------------------------------


def _is_conv_bn(module) -> bool:
    nn = _nn()
    children = dict(module.named_children())
    return (
        isinstance(module, nn.Sequential)
        and set(children) == {"c", "bn"}
        and isinstance(children["c"], nn.Conv2d)
        and isinstance(children["bn"], nn.BatchNorm2d)
    )


def _is_exact_gelu(module) -> bool:
    nn = _nn()
    return isinstance(module, nn.GELU) and module.approximate == "none"


class _ConvBN(_nn().Module):
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
        return _activate(out, self.activation)


def _conv_bn(conv_bn, activation, opts):
    """The replacement of a ``Conv2d_BN`` followed by ``activation``."""
    if opts["fold_bn"]:
        return FastConv2d.from_conv(conv_bn.c, conv_bn.bn, activation, fused=opts["fused"])
    return _ConvBN(conv_bn, activation)


class _MBConv(_nn().Module):
    def __init__(self, block, opts):
        super().__init__()
        self.conv1 = _conv_bn(block.conv1, "gelu", opts)
        self.conv2 = _conv_bn(block.conv2, "gelu", opts)
        self.conv3 = _conv_bn(block.conv3, "gelu", opts)  # applied after the residual add

    def forward(self, x):
        return self.conv3(self.conv2(self.conv1(x)), residual=x)


class _PatchEmbed(_nn().Module):
    def __init__(self, embed, opts):
        super().__init__()
        first, _, second = embed.seq
        self.conv1 = _conv_bn(first, "gelu", opts)
        self.conv2 = _conv_bn(second, "none", opts)
        self.channels_last = opts["channels_last"]

    def forward(self, x):
        if self.channels_last:
            x = _to_channels_last(x)
        return self.conv2(self.conv1(x))


class _PatchMerging(_nn().Module):
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


class _Mlp(_nn().Module):
    def __init__(self, mlp, opts):
        super().__init__()
        self.norm = mlp.norm
        if opts["fused"]:
            self.fc1 = FastLinear.from_linear(mlp.fc1, "gelu")
            self.act = _nn().Identity()
            self.fc2 = FastLinear.from_linear(mlp.fc2)
        else:
            self.fc1, self.act, self.fc2 = mlp.fc1, mlp.act, mlp.fc2

    def forward(self, x):
        return self.fc2(self.act(self.fc1(self.norm(x))))


class _TinyAttention(_nn().Module):
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
    nn = _nn()
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
            elif isinstance(child, known.tiny_mlp) and _is_exact_gelu(child.act):
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
    nn = _nn()
    for i, layer in enumerate(list(neck)):
        if isinstance(layer, nn.Conv2d) and opts["fused"] and not isinstance(layer.padding, str):
            neck[i] = FastConv2d.from_conv(layer, fused=True)
            report["conv"] = report.get("conv", 0) + 1
        elif isinstance(layer, classes().layer_norm_2d) and opts["channels_last"]:
            neck[i] = LayerNorm2dLast(layer)
            report["layer_norm_2d"] = report.get("layer_norm_2d", 0) + 1


def _rewrite_generic(module, opts, report):
    """Encoders other than TinyViT (e.g. SAM's ViT): fused MLPs and linear layers."""
    nn = _nn()
    if not opts["fused"]:
        return
    for parent in list(module.modules()):
        if isinstance(parent, classes().mlp_block):
            act = "gelu" if _is_exact_gelu(parent.act) else None
            act = "relu" if isinstance(parent.act, nn.ReLU) else act
            if act is not None and isinstance(parent.lin1, nn.Linear):
                parent.lin1 = FastLinear.from_linear(parent.lin1, act)
                parent.act = nn.Identity()
                report["mlp"] = report.get("mlp", 0) + 1
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, FastLinear.from_linear(child))
                report["linear"] = report.get("linear", 0) + 1


def _options(**flags) -> dict[str, bool]:
    unknown = set(flags) - set(OPTIMISATIONS)
    if unknown:
        raise TypeError(f"unknown optimisation(s) {sorted(unknown)}; choose from {OPTIMISATIONS}")
    return {name: bool(flags.get(name, True)) for name in OPTIMISATIONS}


class AcceleratedEncoder(_nn().Module):
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
        self.options = _options(**flags)
        self.report: dict[str, int] = {}
        self.source_fingerprint = fingerprint(encoder)
        body = copy.deepcopy(encoder).eval()
        for p in body.parameters():
            p.requires_grad_(False)
        if _is_tinyvit(body):
            _rewrite_tinyvit(body, self.options, self.report)
        else:
            _rewrite_generic(body, self.options, self.report)
        if self.options["channels_last"]:
            body = body.to(memory_format=_torch().channels_last)
        self.body = body

    def forward(self, x):
        if self.options["channels_last"]:
            x = _to_channels_last(x)
        out = self.body(x)
        if self.options["channels_last"]:
            return out.contiguous(memory_format=_torch().channels_last)
        return out.contiguous()


def accelerate_encoder(encoder, **flags) -> AcceleratedEncoder:
    """An inference-only, faster copy of ``encoder`` (flags: see :data:`OPTIMISATIONS`)."""
    return AcceleratedEncoder(encoder, **flags)


# -- SAM mask decoder --------------------------------------------------------------------------


class _SamAttention(_nn().Module):
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


class _TwoWayTransformer(_nn().Module):
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


class AcceleratedDecoder(_nn().Module):
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
        nn = _nn()
        self.options = opts = _options(**flags)
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
        _rewrite_generic(body, opts, self.report)
        self.tokens = False
        transformer = getattr(body, "transformer", None)
        tokens_ok = opts["channels_last"] or opts["fold_attention"]
        if tokens_ok and isinstance(transformer, classes().two_way_transformer):
            body.transformer = _TwoWayTransformer(transformer, fold=opts["fold_attention"])
            self.tokens = True
            self.report["two_way_transformer"] = 1
        upscaling = getattr(body, "output_upscaling", None)
        self.unshuffled = None
        if opts["channels_last"] and _UnshuffledUpscaling.matches(upscaling):
            self.unshuffled = _UnshuffledUpscaling(upscaling, opts["fused"])
            self.report["unshuffled_upscaling"] = 1
        if isinstance(upscaling, nn.Sequential) and opts["channels_last"]:
            for i, layer in enumerate(list(upscaling)):
                if _is_2x2_transpose(layer):
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
        torch = _torch()
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

_COMPILE_LOCK = threading.Lock()


def compile_module(module, *, device=None):
    """``torch.compile`` a module for inference (inductor; weights frozen on CPU).

    The first call of the result compiles (tens of seconds to minutes cold; seconds with
    inductor's on-disk cache warm). Raises ``RuntimeError`` where compilation is unavailable.
    """
    torch = _torch()
    if not hasattr(torch, "compile"):
        raise RuntimeError("torch.compile needs torch >= 2.0")
    if device is None:
        tensors = [*module.parameters(), *module.buffers()]
        device = tensors[0].device if tensors else torch.device("cpu")
    options = {"freezing": True} if torch.device(device).type == "cpu" else None
    with _COMPILE_LOCK:
        return torch.compile(module, dynamic=False, options=options)
