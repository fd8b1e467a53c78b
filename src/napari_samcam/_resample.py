"""Bilinear resizing as sparse matrix products: ``F.interpolate``'s weights, less work.

Bilinear resizing, with or without antialiasing, is separable and linear: resizing an image is
``rows @ image @ cols.T`` with one weight matrix per axis, and those matrices are exactly what
``F.interpolate`` computes when it resizes the identity. Each output pixel depends on a few
input pixels only (2 when upsampling, about ``2 * scale`` when downsampling with
antialiasing), so the products are computed from the non-zero bands:

* :func:`downsample` (antialiased, for classifier input): a sparse CSR product per axis reads
  each input pixel once; on a 1955 x 1841 image to 256 x 256, about half the time of
  ``F.interpolate(..., antialias=True)`` on one thread. :func:`downsample_image` does the same
  from a numpy image of any dtype, reading it in blocks of columns, so a large image is never
  copied whole to float32.
* :func:`upsample` (for saliency maps): output rows between the same two input rows form one
  block, computed as a ``(rows, 2) @ (2, width)`` product written in place; about half the time
  of the dense product.

Results equal ``F.interpolate``'s to float32 rounding (the sums run in another order); the
tests compare them.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from typing import Any

from .images import float32_scale, unit_range_limits, window_map

__all__ = [
    "antialias_matrix",
    "bilinear_matrix",
    "downsample",
    "downsample_image",
    "resized_unit_range",
    "upsample",
]

_CACHE: OrderedDict[tuple, Any] = OrderedDict()
_CACHE_SIZE = 64
_LOCK = threading.Lock()


def _cached(key: tuple, build):
    with _LOCK:
        value = _CACHE.get(key)
        if value is not None:
            _CACHE.move_to_end(key)
            return value
    value = build()
    with _LOCK:
        _CACHE[key] = value
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return value


#: Float32 values a resize works on at once: the identity's columns per call of
#: :func:`_weights`, the image's columns per block in :func:`downsample_image` (64 MiB).
_BLOCK_VALUES = 1 << 24


def _weights(n_out: int, n_in: int, antialias: bool):
    import torch
    import torch.nn.functional as F

    # Resizing the identity along its first axis gives every output's weights over the inputs.
    # The columns are independent (the second axis keeps its size), so a large identity is
    # resized a block of columns at a time instead of being built whole (30000^2: 3.6 GB).
    out = torch.empty((n_out, n_in), dtype=torch.float32)
    # at least 2 columns per call: F.interpolate treats a width of 1 differently
    step = max(2, _BLOCK_VALUES // n_in)
    for start in range(0, n_in, step):
        end = min(start + step, n_in)
        first = max(0, min(start, end - 2))  # a last block of one column takes one more
        eye = torch.zeros((1, 1, n_in, end - first), dtype=torch.float32)
        eye[0, 0, first:end].fill_diagonal_(1.0)
        block = F.interpolate(
            eye,
            size=(n_out, end - first),
            mode="bilinear",
            align_corners=False,
            antialias=antialias,
        )
        out[:, start:end] = block[0, 0, :, start - first :]
    return out


def bilinear_matrix(n_out: int, n_in: int):
    """The ``(n_out, n_in)`` float32 CPU matrix of 1-D bilinear resizing (``align_corners=False``).

    Exactly the weights ``F.interpolate(..., mode="bilinear", align_corners=False)`` uses along
    one axis; cached per size pair (treat it as read-only).
    """
    return _cached(("bilinear", int(n_out), int(n_in)), lambda: _weights(n_out, n_in, False))


def antialias_matrix(n_out: int, n_in: int):
    """As :func:`bilinear_matrix`, with ``antialias=True``, as a sparse CSR tensor."""

    def build():
        with warnings.catch_warnings():  # torch calls its sparse CSR support beta
            warnings.simplefilter("ignore", UserWarning)
            return _weights(n_out, n_in, True).to_sparse_csr()

    return _cached(("antialias", int(n_out), int(n_in)), build)


def downsample(image, size: tuple[int, int]):
    """Antialiased bilinear resize of a ``(C, H, W)`` float32 CPU tensor to ``(C, *size)``.

    Equal to ``F.interpolate(image[None], size, mode="bilinear", antialias=True)[0]`` to float32
    rounding; meant for shrinking (it also enlarges correctly, just without a speed gain).
    """
    import torch

    height, width = (int(s) for s in size)
    rows = antialias_matrix(height, image.shape[-2])
    cols = antialias_matrix(width, image.shape[-1])
    out = torch.empty((image.shape[0], height, width), dtype=torch.float32)
    for channel in range(image.shape[0]):
        tall = rows @ image[channel]  # (height, W): reads each input row once
        out[channel] = (cols @ tall.T.contiguous()).T
    return out


def downsample_image(
    image, size: tuple[int, int], *, transform=None, grey: bool = False, scale: float = 1.0
):
    """Antialiased bilinear resize of an ``(H, W)`` or ``(H, W, C)`` numpy image to ``(C, *size)``.

    As :func:`downsample` of the image converted to float32, without that conversion of the
    whole image: the image is read a block of columns at a time (about :data:`_BLOCK_VALUES`
    values), each block converted to float32, passed through ``transform`` and resized along
    the rows; only the ``(C, size[0], W)`` intermediate and one block are held.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)``, any numeric dtype; not modified.
    size : (int, int)
        Output ``(height, width)``.
    transform : callable, optional
        A pointwise map applied to each float32 block (``(H, w)`` or ``(H, w, C)``) before it is
        resized; it may change the block in place and returns the result. Pointwise maps that
        are not linear (clipping to a window) do not commute with resizing; this applies them
        at full resolution, as mapping the whole image first would.
    grey : bool
        Average the channels (after ``transform``) and return one channel.
    scale : float
        Divide the values by this (in the image's own precision) before they become float32:
        keeps float64 values beyond float32's range finite (see ``images.float32_scale``).

    Returns
    -------
    torch.Tensor
        float32 ``(C, *size)`` on the CPU (``C = 1`` for 2-D images or ``grey``).
    """
    import numpy as np
    import torch

    height, width = (int(s) for s in size)
    n_rows, n_cols = image.shape[:2]
    channels = 1 if image.ndim == 2 or grey else image.shape[2]
    rows = antialias_matrix(height, n_rows)
    tall = torch.empty((channels, height, n_cols), dtype=torch.float32)
    per_column = n_rows * (1 if image.ndim == 2 else image.shape[2])
    step = max(1, _BLOCK_VALUES // per_column)
    for start in range(0, n_cols, step):
        end = min(start + step, n_cols)
        block = image[:, start:end]
        if scale != 1.0:
            block = block / scale
        with np.errstate(over="ignore"):  # beyond float32: inf, clipped by a window's map
            block = np.array(block, dtype=np.float32)  # always a copy: writable
        if transform is not None:
            block = transform(block)
        if block.ndim == 2:
            block = block[..., None]
        elif grey:
            block = block.mean(-1, keepdims=True, dtype=np.float32)
        for channel in range(channels):
            plane = torch.from_numpy(np.ascontiguousarray(block[..., channel]))
            tall[channel, :, start:end] = rows @ plane  # (height, w): reads the block once
    cols = antialias_matrix(width, n_cols)
    out = torch.empty((channels, height, width), dtype=torch.float32)
    for channel in range(channels):
        out[channel] = (cols @ tall[channel].T.contiguous()).T
    return out


def resized_unit_range(image, size: tuple[int, int], window, *, grey: bool = False):
    """``to_unit_range(image, window)`` resized to ``size`` (antialiased bilinear), as a
    ``(C, *size)`` float32 tensor, without a float copy of the whole image.

    Without a window the intensity map is affine, so the stored values are resized and only the
    resized pixels are mapped; with one, each block of the image is mapped before it is resized
    (see :func:`downsample_image`). Values beyond float32's range are
    scaled down first (:func:`napari_samcam.images.float32_scale`), as ``to_unit_range`` does.
    """
    import torch

    low, high = unit_range_limits(image)  # also checks that the values are finite
    if window is None:
        scale = float32_scale(low, high)
        tensor = downsample_image(image, size, grey=grey, scale=scale)
        low, high = low / scale, high / scale
        return (tensor - low) / (high - low) if high > low else torch.zeros_like(tensor)
    scale = float32_scale(*window)
    transform = window_map(window, scale=scale)
    return downsample_image(image, size, transform=transform, grey=grey, scale=scale)


def _row_blocks(n_out: int, n_in: int) -> tuple:
    """Runs of output rows that read the same (at most two) input rows, with their weights."""

    def build():
        import numpy as np

        matrix = bilinear_matrix(n_out, n_in)
        first = (matrix != 0).to(dtype=matrix.dtype).argmax(1).numpy()
        starts = np.flatnonzero(np.diff(first, prepend=-1))
        ends = np.append(starts[1:], n_out)
        blocks = []
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            lo = int(first[start])
            hi = min(lo + 2, n_in)
            blocks.append((start, end, lo, hi, matrix[start:end, lo:hi].contiguous()))
        return tuple(blocks)

    return _cached(("blocks", int(n_out), int(n_in)), build)


def upsample(small, shape: tuple[int, int]):
    """Bilinear resize (``align_corners=False``) of a small 2-D float32 CPU tensor to ``shape``.

    Equal to ``F.interpolate`` to float32 rounding.
    """
    import torch

    height, width = (int(s) for s in shape)
    out = torch.empty((height, width), dtype=torch.float32)
    wide = small @ bilinear_matrix(width, small.shape[1]).T  # (h, width), small
    for start, end, lo, hi, weights in _row_blocks(height, small.shape[0]):
        torch.mm(weights, wide[lo:hi], out=out[start:end])
    return out
