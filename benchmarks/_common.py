"""Timing helpers shared by the benchmarks: interleaved rounds, medians, device sync, machine."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ensure_importable() -> None:
    """Let ``python benchmarks/...`` run from a source checkout that is not installed."""
    try:
        import napari_samcam  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT / "src"))
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


_MALLOC_RETAINED = False


def retain_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for reuse in this process; True where it applies.

    By default glibc returns freed blocks of 32 MB and more (and free memory above the heap's
    top) to the kernel, so the next such allocation takes fresh pages, one page fault each. On
    an ordinary machine that is a millisecond or two per 50 MB; on a virtual machine whose idle
    memory the host reclaims it was measured at tens of microseconds a fault, and it made the
    metrics' figures swing by 2-4x from round to round. Timing runs under this setting so the
    ratios measure the computation; both sides of every ratio run under it. The memory
    benchmarks run their cases in fresh processes without it.
    """
    global _MALLOC_RETAINED
    if _MALLOC_RETAINED:
        return True
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = libc.mallopt(m_mmap_threshold, 256 << 20) == 1
    ok = libc.mallopt(m_trim_threshold, 1 << 30) == 1 and ok
    _MALLOC_RETAINED = ok
    return ok


def report(result: dict, print_result, json_path) -> int:
    """Print a benchmark's result and write it as JSON to ``json_path`` (if given); exit code 0."""
    import json

    print_result(result)
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def pick_device(name: str = "auto"):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def synchronize(device) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device=None) -> float:
    """Wall-clock seconds of one call (waiting for the device to finish)."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def interleaved(
    candidates: dict[str, Callable[[], object]],
    rounds: int,
    *,
    device=None,
    warmup: int = 1,
) -> dict[str, list[float]]:
    """Time every candidate once per round, in turn, for ``rounds`` rounds.

    Interleaving keeps a figure and its baseline under the same conditions (a shared machine's
    load, clock and cache state drift over seconds), so their ratio is steadier than either.
    """
    retain_freed_memory()
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            times[name].append(timed(fn, device))
    return times


def median(values) -> float:
    return float(statistics.median(values))


def summary(values) -> dict[str, float]:
    """Median, min and max of a list of seconds, in milliseconds."""
    return {
        "median_ms": 1e3 * median(values),
        "min_ms": 1e3 * min(values),
        "max_ms": 1e3 * max(values),
        "n": len(values),
    }


def matmul_gflops(device, n: int = 2048, repeats: int = 3) -> float:
    """Best-of-``repeats`` fp32 GFLOP/s of an ``n x n`` matrix product (torch.mm)."""
    import torch

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    torch.mm(a, b)
    best = min(timed(lambda: torch.mm(a, b), device) for _ in range(repeats))
    return 2.0 * n**3 / best / 1e9


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine(device) -> dict:
    """What the figures were measured on."""
    import numpy as np
    import torch

    from napari_samcam._threads import thread_settings

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "device": str(device),
        "cpu": cpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "load_average": load_average(),
        "malloc_retains_freed_memory": _MALLOC_RETAINED,
        **thread_settings(),
    }
    if getattr(device, "type", "") == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def chest_radiograph():
    """The real PA chest radiograph of pydicom-data (1955 x 1841, float32)."""
    import numpy as np
    import pydicom.data

    from napari_samcam.images import read_image

    path = pydicom.data.get_testdata_file("RG1_UNCI.dcm", download=False)
    return np.asarray(read_image(path).array, dtype=np.float32)


def radiograph_2k():
    """The chest radiograph resized to 2048 x 2048 (float32): a realistic 2k x 2k image."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    image = torch.from_numpy(chest_radiograph())[None, None]
    image = F.interpolate(image, size=(2048, 2048), mode="bilinear", align_corners=False)
    return np.ascontiguousarray(image[0, 0].numpy())
