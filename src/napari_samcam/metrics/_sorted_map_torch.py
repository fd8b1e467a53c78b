"""The sort of :class:`~napari_samcam.metrics.PreparedMap` on a torch device (e.g. CUDA).

Only the super-linear steps move to the device: the sort of the map, and per region the sort
of its smaller side and the look-up of its values among the map's distinct values. What comes
back are integer counts per group of equal values, so every metric is computed from the same
integers, in the same order, as on the numpy path: the values are identical, not close.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ._sorted_map import SortedMap


class TorchSortedMap(SortedMap):
    """:class:`._sorted_map.SortedMap` sorted with ``torch.sort`` on a torch device.

    ``values`` and ``bounds`` are numpy copies of the device's arrays (the metrics index them
    per region group); the device keeps its own for the per-region look-ups.
    """

    def __init__(self, flat: np.ndarray, tensor: Any, device: Any) -> None:
        self.device = torch.device(device)
        if tensor is None or tensor.dtype != torch.from_numpy(flat[:1]).dtype:
            tensor = torch.from_numpy(flat)
        self.flat = tensor.reshape(-1).to(self.device)
        self.n = flat.size
        ascending = torch.sort(self.flat).values
        cut = torch.nonzero(ascending[1:] != ascending[:-1]).reshape(-1) + 1
        ends = torch.tensor([0, self.n], dtype=torch.int64, device=self.device)
        bounds = torch.cat([ends[:1], cut, ends[1:]])
        self._values = ascending[bounds[:-1]]
        del ascending
        self._sizes = bounds[1:] - bounds[:-1]
        self.values = self._values.cpu().numpy()
        self.bounds = bounds.cpu().numpy()

    def region_groups(self, inside: np.ndarray, n_pos: int) -> tuple[np.ndarray, np.ndarray]:
        """``(groups, counts)`` of the region's pixels; see :class:`._sorted_map.SortedMap`."""
        mask = torch.from_numpy(np.ascontiguousarray(inside)).to(self.device)
        if n_pos <= self.n - n_pos:
            idx = torch.searchsorted(self._values, torch.sort(self.flat[mask]).values)
            groups, counts = torch.unique_consecutive(idx, return_counts=True)
        else:
            idx = torch.searchsorted(self._values, torch.sort(self.flat[~mask]).values)
            all_counts = self._sizes - torch.bincount(idx, minlength=self._values.numel())
            groups = torch.nonzero(all_counts).reshape(-1)
            counts = all_counts[groups]
        return groups.cpu().numpy().astype(np.int64), counts.cpu().numpy().astype(np.int64)
