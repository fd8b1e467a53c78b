"""Building blocks of the inference-only copies: fused convolutions and linear layers, a
channels-last layer norm, the 2x2 transposed convolution and the switches that enable them."""

from __future__ import annotations

from .upstream import classes

__all__ = [
    "OPTIMISATIONS",
    "ConvTranspose2x2",
    "FastConv2d",
    "FastLinear",
    "LayerNorm2dLast",
    "UnshuffledUpscaling",
    "activate",
    "is_2x2_transpose",
    "is_exact_gelu",
    "mkldnn_ok",
    "nn_module",
    "options",
    "rewrite_generic",
    "to_channels_last",
    "torch_module",
]

#: The switches of :func:`accelerate_encoder` / :func:`accelerate_decoder`, all on by default.
OPTIMISATIONS = ("fold_bn", "channels_last", "fused", "sdpa", "fold_attention")


_ACTIVATIONS = ("none", "gelu", "relu")


_ALGORITHM = "none"  # oneDNN's GELU variant: "none" is the exact (erf) one, as nn.GELU()


#: Linear layers of fewer multiply-adds than this take ``F.linear`` + activation instead of
#: oneDNN's fused kernel.
_FUSED_MIN_MACS = 1 << 20


def torch_module():
    import torch

    return torch


def nn_module():
    import torch.nn as nn

    return nn


def mkldnn_ok(x) -> bool:
    """Whether the fused oneDNN kernels apply: CPU float32, no autograd needed."""
    torch = torch_module()
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not (torch.is_grad_enabled() and x.requires_grad)
        and torch.backends.mkldnn.is_available()
    )


def activate(x, activation: str):
    import torch.nn.functional as F

    if activation == "gelu":
        return F.gelu(x)
    if activation == "relu":
        return F.relu(x)
    return x


# -- building blocks ---------------------------------------------------------------------------


class FastConv2d(nn_module().Module):
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
        torch = torch_module()
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
        torch = torch_module()
        import torch.nn.functional as F

        if self.fused and mkldnn_ok(x):
            args = (self.padding, self.stride, self.dilation, self.groups)
            if residual is None:
                return torch.ops.mkldnn._convolution_pointwise(
                    x, self.weight, self.bias, *args, self.activation, [], _ALGORITHM
                )
            out = torch.ops.mkldnn._convolution_pointwise.binary(
                x, residual, self.weight, self.bias, *args, "add", None, None, [], None
            )
            return activate(out, self.activation)
        out = F.conv2d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )
        if residual is not None:
            out = out + residual
        return activate(out, self.activation)

    def extra_repr(self) -> str:
        out_c, in_c, kh, kw = self.weight.shape
        return (
            f"{in_c * self.groups}, {out_c}, kernel=({kh}, {kw}), stride={self.stride}, "
            f"padding={self.padding}, groups={self.groups}, activation={self.activation}"
        )


class FastLinear(nn_module().Module):
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
        torch = torch_module()
        import torch.nn.functional as F

        # oneDNN's fixed cost per call outweighs the fusion on small products (the decoder's
        # prompt tokens: 35 vs 63 us for 7 x 256 -> 256; 7 x 256 -> 2048 is faster in oneDNN)
        if self.fused and x.numel() * self.weight.shape[0] >= _FUSED_MIN_MACS and mkldnn_ok(x):
            return torch.ops.mkldnn._linear_pointwise(
                x, self.weight, self.bias, self.activation, [], _ALGORITHM
            )
        return activate(F.linear(x, self.weight, self.bias), self.activation)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, activation={self.activation}"


class ConvTranspose2x2(nn_module().Module):
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


class LayerNorm2dLast(nn_module().Module):
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


class UnshuffledUpscaling(nn_module().Module):
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
        nn = nn_module()
        if not isinstance(upscaling, nn.Sequential) or len(upscaling) != 5:
            return False
        up1, norm, act1, up2, act2 = upscaling
        return (
            all(is_2x2_transpose(m) for m in (up1, up2))
            and isinstance(norm, classes().layer_norm_2d)
            and is_exact_gelu(act1)
            and is_exact_gelu(act2)
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


def is_2x2_transpose(layer) -> bool:
    nn = nn_module()
    return (
        isinstance(layer, nn.ConvTranspose2d)
        and tuple(layer.kernel_size) == (2, 2)
        and tuple(layer.stride) == (2, 2)
        and tuple(layer.padding) == (0, 0)
        and tuple(layer.output_padding) == (0, 0)
        and layer.groups == 1
        and tuple(layer.dilation) == (1, 1)
    )


def to_channels_last(x):
    torch = torch_module()
    return x.contiguous(memory_format=torch.channels_last)


# -- TinyViT (LiteMedSAM, MobileSAM) -----------------------------------------------------------


def is_exact_gelu(module) -> bool:
    nn = nn_module()
    return isinstance(module, nn.GELU) and module.approximate == "none"


def rewrite_generic(module, opts, report):
    """Encoders other than TinyViT (e.g. SAM's ViT): fused MLPs and linear layers."""
    nn = nn_module()
    if not opts["fused"]:
        return
    for parent in list(module.modules()):
        if isinstance(parent, classes().mlp_block):
            act = "gelu" if is_exact_gelu(parent.act) else None
            act = "relu" if isinstance(parent.act, nn.ReLU) else act
            if act is not None and isinstance(parent.lin1, nn.Linear):
                parent.lin1 = FastLinear.from_linear(parent.lin1, act)
                parent.act = nn.Identity()
                report["mlp"] = report.get("mlp", 0) + 1
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, FastLinear.from_linear(child))
                report["linear"] = report.get("linear", 0) + 1


def options(**flags) -> dict[str, bool]:
    unknown = set(flags) - set(OPTIMISATIONS)
    if unknown:
        raise TypeError(f"unknown optimisation(s) {sorted(unknown)}; choose from {OPTIMISATIONS}")
    return {name: bool(flags.get(name, True)) for name in OPTIMISATIONS}
