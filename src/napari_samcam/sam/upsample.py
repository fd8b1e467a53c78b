"""Exact SAM mask upsampling as one matrix per axis, computed only where the mask can be."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._resample import bilinear_matrix
from .._threads import run_blocks

__all__ = ["TILE_PIXELS", "MaskUpsampler"]

#: Full-resolution logits computed at once when upsampling a mask (16 MiB of float32).
TILE_PIXELS = 1 << 22


class MaskUpsampler:
    """Exact mask upsampling from low-resolution logits to the image's pixels.

    Bilinear resizing is separable and linear, so any chain of resizes and crops folds into one
    matrix per axis (``rows``: ``(H, h)``, ``cols``: ``(W, w)``). Output pixels only depend on a
    few low-res logits with non-negative weights: where all of those are <= 0 the output is
    too, so only the window around positive logits is computed, and only from the band of
    low-res rows and columns that window depends on.
    """

    def __init__(self, rows, cols):
        self.rows = rows
        self.cols = cols
        self.shape = (int(rows.shape[0]), int(cols.shape[0]))
        # each output row's first and last low-res index with a positive weight
        self._bands = tuple(self._band(m) for m in (self.rows, self.cols))
        self._devices: dict[str, tuple] = {}

    @classmethod
    def padded(cls, low: int, padded: int, input_size, original_size) -> MaskUpsampler:
        """SAM's two steps: ``low`` -> the padded ``padded`` square, cropped to ``input_size``
        (the resized image), then -> ``original_size`` (``Sam.postprocess_masks``)."""
        rows = bilinear_matrix(padded, low)[: input_size[0]]
        cols = bilinear_matrix(padded, low)[: input_size[1]]
        return cls(
            bilinear_matrix(original_size[0], input_size[0]) @ rows,
            bilinear_matrix(original_size[1], input_size[1]) @ cols,
        )

    @classmethod
    def direct(cls, low: int, original_size) -> MaskUpsampler:
        """One bilinear resize of the ``low`` x ``low`` logits to ``original_size``."""
        return cls(bilinear_matrix(original_size[0], low), bilinear_matrix(original_size[1], low))

    @staticmethod
    def _band(matrix) -> tuple[np.ndarray, np.ndarray]:
        positive = (matrix > 0).numpy()
        first = np.where(positive.any(1), positive.argmax(1), matrix.shape[1])
        last = matrix.shape[1] - 1 - positive[:, ::-1].argmax(1)
        return first, np.where(positive.any(1), last, -1)

    def _on(self, device) -> tuple:
        """``rows`` and ``cols`` on ``device`` (kept per device)."""
        key = str(device)
        if key not in self._devices:
            self._devices[key] = (self.rows.to(device), self.cols.to(device))
        return self._devices[key]

    @staticmethod
    def _span(band, support: np.ndarray) -> tuple[int, int]:
        """First and last+1 output index whose band holds a positive low-res index."""
        first, last = band
        hits = np.flatnonzero(support)
        if len(hits) == 0:
            return 0, 0
        # does [first_i, last_i] contain one of the sorted hits?
        touched = np.searchsorted(hits, last, side="right") > np.searchsorted(hits, first)
        index = np.flatnonzero(touched)
        if len(index) == 0:
            return 0, 0
        return int(index[0]), int(index[-1]) + 1

    def logits(self, low_res) -> tuple[Any, tuple[int, int, int, int]]:
        """Upsampled logits inside the positive window, and the window ``(r0, r1, c0, c1)``."""
        positive = (low_res > 0).cpu().numpy()
        r0, r1 = self._span(self._bands[0], positive.any(1))
        c0, c1 = self._span(self._bands[1], positive.any(0))
        if r1 == r0 or c1 == c0:
            return low_res.new_zeros((0, 0)), (0, 0, 0, 0)
        rows, cols = self._on(low_res.device)
        # the low-res rows / columns the window reads (weights outside are exactly zero)
        lo_r, hi_r = int(self._bands[0][0][r0:r1].min()), int(self._bands[0][1][r0:r1].max()) + 1
        lo_c, hi_c = int(self._bands[1][0][c0:c1].min()), int(self._bands[1][1][c0:c1].max()) + 1
        band = low_res[lo_r:hi_r, lo_c:hi_c]
        window = rows[r0:r1, lo_r:hi_r] @ band @ cols[c0:c1, lo_c:hi_c].T
        return window, (r0, r1, c0, c1)

    def mask(
        self,
        low_res,
        threshold: float = 0.0,
        out: np.ndarray | None = None,
        workers: int = 1,
    ) -> np.ndarray:
        """The bool mask ``upsampled logits > threshold`` at the original size.

        Computed in blocks of output rows (about :data:`TILE_PIXELS` logits each, at least one
        per worker thread), so a large image never holds its full-resolution logits: only the
        mask and one block per worker. ``out``, if given, is an all-False bool array of the
        original size to write the mask into.
        """
        if out is None:
            out = np.zeros(self.shape, dtype=bool)
        positive = (low_res > 0).cpu().numpy()
        r0, r1 = self._span(self._bands[0], positive.any(1))
        c0, c1 = self._span(self._bands[1], positive.any(0))
        if r1 == r0 or c1 == c0:
            return out
        rows, cols = self._on(low_res.device)
        first, last = self._bands[0][0][r0:r1], self._bands[0][1][r0:r1]
        lo_r, hi_r = int(first.min()), int(last.max()) + 1
        lo_c, hi_c = int(self._bands[1][0][c0:c1].min()), int(self._bands[1][1][c0:c1].max()) + 1
        # the window's columns at low-res rows: (low-res rows, window width), small
        wide = low_res[lo_r:hi_r, lo_c:hi_c] @ cols[c0:c1, lo_c:hi_c].T
        step = max(1, min(TILE_PIXELS // (c1 - c0), -(-(r1 - r0) // max(1, workers))))

        def block(start: int) -> None:
            end = min(start + step, r1)
            # the block's rows read only low-res rows lo..hi (the bands grow with the row)
            lo = int(first[start - r0 : end - r0].min())
            hi = int(last[start - r0 : end - r0].max()) + 1
            if hi <= lo:  # rows with no positive weight stay False
                return
            logits = rows[start:end, lo:hi] @ wide[lo - lo_r : hi - lo_r]
            out[start:end, c0:c1] = (logits > threshold).cpu().numpy()

        run_blocks(block, range(r0, r1, step), workers, parallel=low_res.device.type == "cpu")
        return out
