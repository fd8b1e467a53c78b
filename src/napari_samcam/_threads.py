"""Threads: torch's thread settings, and a small shared pool for splitting work into blocks.

Each block runs with one torch thread: the blocks are few and long, so the workers meet once
per call, where torch's own threads would meet after every short kernel (which on busy cores
costs a scheduling delay each; see docs/performance.md).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = [
    "configure_threads",
    "env_flag",
    "idle_cpus",
    "run_blocks",
    "run_threads",
    "thread_settings",
    "torch_threads",
    "usable_cpus",
]

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


def usable_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def idle_cpus() -> int:
    """CPUs free for the caller: the usable CPUs less the 1-minute load average that is not
    the caller's own thread (it counts one while it runs), rounded, at least 1."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not available on this platform
        load = 0.0
    return max(1, round(usable_cpus() - max(0.0, load - 1.0)))


def run_threads(task: Callable[[Any], Any], jobs: Sequence, workers: int) -> list:
    """``[task(job) for job in jobs]`` on up to ``workers`` threads, in order.

    Jobs are cut into contiguous groups, one per thread; the caller runs the first group
    itself, so only ``workers - 1`` pool threads wake up (a wake-up is the costly part on a
    virtual machine's idle cores). The tasks must release the GIL for this to pay (torch and
    numpy kernels do).
    """
    if workers <= 1 or len(jobs) <= 1:
        return [task(job) for job in jobs]
    count = min(workers, len(jobs))
    bounds = [round(i * len(jobs) / count) for i in range(count + 1)]
    groups = [jobs[a:b] for a, b in itertools.pairwise(bounds)]
    pending = [_pool(count - 1).submit(lambda g: [task(job) for job in g], g) for g in groups[1:]]
    results = [task(job) for job in groups[0]]
    for future in pending:
        results.extend(future.result())
    return results


def run_blocks(
    task: Callable[[Any], Any], jobs: Sequence, workers: int, parallel: bool = True
) -> list:
    """:func:`run_threads` for torch work: one torch thread and inference mode in each job.

    Runs in the calling thread when ``parallel`` is False (work on a GPU, which the device
    parallelises itself).
    """
    import torch

    def run(job):
        with torch.inference_mode(), torch_threads(1):
            return task(job)

    return run_threads(run, jobs, workers if parallel else 1)


# -- torch threads -------------------------------------------------------------------------------


def thread_settings() -> dict[str, Any]:
    """torch's intra-op / inter-op thread counts and the CPUs this process may use."""
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    return {
        "intra_op_threads": torch.get_num_threads(),
        "inter_op_threads": torch.get_num_interop_threads(),
        "usable_cpus": usable,
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
    }


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (default: every CPU this process may use); returns it.

    torch already defaults to the physical core count; this matters where the process is pinned
    to fewer CPUs (containers, ``taskset``) than the machine has, and for benchmarks that compare
    thread counts.
    """
    import torch

    if threads is None:
        threads = thread_settings()["usable_cpus"]
    threads = max(1, int(threads))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def env_flag(name: str, default: bool) -> bool:
    """A boolean environment switch (``1/true/yes/on``, ``0/false/no/off``), else ``default``."""
    value = os.environ.get(name, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return default


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run the block with ``threads`` intra-op threads (``None``: leave as is), then restore.

    With torch's OpenMP backend the setting applies to the calling thread (OpenMP keeps it per
    thread), so a napari worker can prompt single-threaded while another thread encodes.
    """
    import torch

    before = torch.get_num_threads()
    if threads is None or int(threads) == before:
        yield
        return
    torch.set_num_threads(max(1, int(threads)))
    try:
        yield
    finally:
        torch.set_num_threads(before)
