"""Bilinear resizing as sparse matrix products: ``F.interpolate``'s weights, less work.

Bilinear resizing, with or without antialiasing, is separable and linear: resizing an image is
``rows @ image @ cols.T`` with one weight matrix per axis, and those matrices are exactly what
``F.interpolate`` computes when it resizes the identity. Each output pixel depends on a few
input pixels only (2 when upsampling, about ``2 * scale`` when downsampling with
antialiasing), so the products are computed from the non-zero bands:

* :func:`downsample` (antialiased, for classifier input): a sparse CSR product per axis reads
  each input pixel once; on a 1955 x 1841 image to 256 x 256, about half the time of
  ``F.interpolate(..., antialias=True)`` on one thread.
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

__all__ = ["antialias_matrix", "bilinear_matrix", "downsample", "upsample"]

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


def _weights(n_out: int, n_in: int, antialias: bool):
    import torch
    import torch.nn.functional as F

    eye = torch.eye(n_in, dtype=torch.float32)[None, None]
    # resizing the identity along one axis gives every output's weights over the inputs
    return F.interpolate(
        eye, size=(n_out, n_in), mode="bilinear", align_corners=False, antialias=antialias
    )[0, 0]


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
