"""The engine of the rank metrics: a map's values sorted once, as runs of equal values.

Nothing here defines a metric (see :mod:`.definitions`); it makes the rank metrics fast: a
parallel sort, positions stored as int32 where they fit, and the per-region look-up of groups.
Its torch twin is :mod:`._sorted_map_torch`.
"""

from __future__ import annotations

import itertools

import numpy as np

from .. import _threads

#: Maps with at least this many values are sorted in parallel parts (:func:`sort_values`).
PARALLEL_SORT_MIN = 1 << 20


def sort_values(flat: np.ndarray, workers: int | None = None) -> np.ndarray:
    """``np.sort(flat)``, sorted as a few parts on worker threads and then merged.

    Each part is sorted in place on its own thread (numpy releases the GIL), and a stable sort
    of the whole (timsort) finds the sorted runs and merges them, one pass per doubling: on two
    free cores a radiograph-size map (6.6 M values) sorts in about 0.6 of ``np.sort``'s time.
    On busy cores the parts gain nothing and the merge costs about 0.14 of a sort, so by
    default (``workers=None``) the parts are as many as the CPUs the load average leaves idle,
    at most 4.
    """
    workers = min(4, _threads.idle_cpus()) if workers is None else int(workers)
    if workers < 2 or flat.size < PARALLEL_SORT_MIN:
        return np.sort(flat)
    out = np.array(flat, copy=True)
    bounds = np.linspace(0, out.size, workers + 1).astype(int)
    _threads.run_threads(
        lambda part: part.sort(), [out[a:b] for a, b in itertools.pairwise(bounds)], workers
    )
    out.sort(kind="stable")
    return out


def flag_positions(flags: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """``np.flatnonzero(flags)``, as int32 when every position and twice it fit, built chunk
    by chunk.

    A radiograph-size map has millions of groups: their positions as int64 take ~40 MB, more
    than glibc's largest heap-served block (32 MB), so each map would get fresh pages from the
    kernel, and on a virtual machine whose idle memory the host reclaims a page fault can cost
    tens of microseconds (measured: 7,930 faults and 0.5-1 s more per map on one such machine).
    """
    if flags.size >= 1 << 30:
        return np.flatnonzero(flags)
    out = np.empty(int(np.count_nonzero(flags)), dtype=np.int32)
    filled = 0
    for begin in range(0, flags.size, chunk):
        found = np.flatnonzero(flags[begin : begin + chunk])
        out[filled : filled + found.size] = found
        out[filled : filled + found.size] += begin
        filled += found.size
    return out


class SortedMap:
    """The map's values sorted once, as runs of equal values ("groups").

    ``values[g]`` is the g-th distinct value (ascending), ``bounds[g]`` the number of pixels
    strictly below it and ``bounds[g + 1] - bounds[g]`` the number equal to it (12 bytes per
    distinct value). That is all the rank metrics need from the map; a region then only adds
    its own pixels' groups (:meth:`region_groups`).
    """

    def __init__(self, flat: np.ndarray) -> None:
        self.flat = flat
        ascending = sort_values(flat)
        # A group starts where the value changes (-0.0 == 0.0 share one: the comparison, not
        # the bits, decides equality); one flag pass, one index pass, no concatenation.
        starts = np.empty(flat.size + 1, dtype=bool)
        starts[0] = starts[-1] = True
        np.not_equal(ascending[1:], ascending[:-1], out=starts[1:-1])
        self.bounds = flag_positions(starts)
        self.values = ascending[self.bounds[:-1]]

    @property
    def starts(self) -> np.ndarray:
        """Pixels strictly below each distinct value."""
        return self.bounds[:-1]

    def sizes(self, groups: np.ndarray | None = None) -> np.ndarray:
        """Pixels equal to each distinct value (of ``groups``, or all of them)."""
        if groups is None:
            return np.diff(self.bounds)
        return self.bounds[groups + 1] - self.bounds[groups]

    def region_groups(self, inside: np.ndarray, n_pos: int) -> tuple[np.ndarray, np.ndarray]:
        """``(groups, counts)``: the groups holding region pixels (ascending) and how many.

        Sorts whichever side of the region is smaller, so a region costs at most a sort of
        half the map (a small lesion, a fraction of it) plus a look-up in :attr:`values`.
        """
        if n_pos <= self.flat.size - n_pos:
            values, counts = runs(np.sort(self.flat[inside]))
            return np.searchsorted(self.values, values), counts
        values, counts = runs(np.sort(self.flat[~inside]))
        inside_counts = self.sizes()
        inside_counts[np.searchsorted(self.values, values)] -= counts
        groups = np.flatnonzero(inside_counts)
        return groups, inside_counts[groups]


def runs(ascending: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of a sorted array and how often each occurs."""
    if ascending.size == 0:
        return ascending, np.zeros(0, dtype=np.int64)
    first = np.concatenate(([0], np.flatnonzero(ascending[1:] != ascending[:-1]) + 1))
    return ascending[first], np.diff(np.append(first, ascending.size))


def first_at_least(values: np.ndarray, score, levels: np.ndarray) -> np.ndarray:
    """For each level, the first index ``i`` of ``values`` with ``score(values[i]) >= level``
    (``values.size`` if none), for a ``score`` non-decreasing along ``values``; a vectorised
    bisection that evaluates ``score`` on ``len(levels)`` values per step."""
    lo = np.zeros(levels.shape, dtype=np.int64)
    hi = np.full(levels.shape, values.size, dtype=np.int64)
    while (active := lo < hi).any():
        mid = (lo + hi) // 2
        ok = score(values[np.minimum(mid, values.size - 1)]) >= levels
        hi = np.where(active & ok, mid, hi)
        lo = np.where(active & ~ok, mid + 1, lo)
    return lo
