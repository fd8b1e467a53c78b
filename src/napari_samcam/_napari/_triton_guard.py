"""Keep torch from loading triton inside a napari process on a machine without a GPU.

triton (which ``torch._dynamo`` imports, and torchvision's ``roi_align`` and transformers import
that) crashes the process with a segmentation fault when it is first loaded after Mesa's software
OpenGL (llvmpipe), which napari's canvas uses on machines without a GPU, has loaded its own LLVM.
Without an NVIDIA or ROCm device triton has nothing to compile for, so marking it absent costs
nothing there. Every napari entry of the plugin (this package, hence the reader, writers, sample
data, :class:`~napari_samcam._napari.SamcamSession` and the dock widget) calls
:func:`guard_triton` before anything can import torch. Imports neither napari nor torch.
"""

from __future__ import annotations

import logging
import os
import sys

logger = logging.getLogger(__name__)

#: Device files whose presence means triton may have a GPU to compile for.
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd")


def guard_triton() -> bool:
    """Mark triton unavailable on Linux machines without a GPU device; True if it did so.

    Does nothing when triton is already imported (it then loaded before Mesa's LLVM and is safe),
    on other systems, or when a GPU device file exists. ``import triton`` raises ImportError
    afterwards, which torch treats as "no triton".
    """
    if "triton" in sys.modules or not sys.platform.startswith("linux"):
        return False
    if any(os.path.exists(dev) for dev in GPU_DEVICE_FILES):
        return False
    sys.modules["triton"] = None
    logger.debug("no GPU device: triton marked unavailable in this napari process")
    return True
