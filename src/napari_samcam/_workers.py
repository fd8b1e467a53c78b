"""A small shared pool of worker threads for splitting one prompt's work into blocks.

Each block runs with one torch thread: the blocks are few and long, so the workers meet once
per call, where torch's own threads would meet after every short kernel (which on busy cores
costs a scheduling delay each; see docs/performance.md).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["run_blocks"]

_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or workers > _POOL_SIZE:
            if _POOL is not None:
                _POOL.shutdown(wait=False)
            _POOL = ThreadPoolExecutor(workers, thread_name_prefix="samcam-prompt")
            _POOL_SIZE = workers
        return _POOL


def run_blocks(
    task: Callable[[Any], Any], jobs: Sequence, workers: int, parallel: bool = True
) -> list:
    """``[task(job) for job in jobs]``, on up to ``workers`` threads with one torch thread each.

    Runs in the calling thread when ``workers`` is 1, there is one job, or ``parallel`` is
    False (work on a GPU, which the device parallelises itself). Inference mode is on in the
    workers, as torch keeps it per thread.
    """
    import torch

    from ._accel import torch_threads

    def run(job):
        with torch.inference_mode(), torch_threads(1):
            return task(job)

    if workers <= 1 or len(jobs) <= 1 or not parallel:
        return [run(job) for job in jobs]
    # Contiguous groups, one per thread; the caller runs the first group itself, so only
    # workers - 1 pool threads wake up (a wake-up is the costly part on a VM's idle cores).
    count = min(workers, len(jobs))
    bounds = [round(i * len(jobs) / count) for i in range(count + 1)]
    groups = [jobs[a:b] for a, b in itertools.pairwise(bounds)]
    pending = [_pool(count - 1).submit(lambda g: [run(job) for job in g], g) for g in groups[1:]]
    results = [run(job) for job in groups[0]]
    for future in pending:
        results.extend(future.result())
    return results
