"""A script that shows a napari canvas and then runs the models does not crash.

On a machine without a GPU, napari's canvas runs on Mesa's software OpenGL, which loads its own
LLVM; triton (imported by torch._dynamo, which torchvision's ``roi_align`` imports) loaded after
that kills the process with a segmentation fault. The plugin's napari package guards every entry.
These run in fresh processes: the test process itself imported torch._dynamo first (conftest).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("napari")

pytestmark = pytest.mark.gui

SRC = Path(__file__).resolve().parents[1] / "src"


def _run(code: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Mesa/triton clash is Linux's")
@pytest.mark.parametrize(
    "entry",
    [
        "from napari_samcam._napari import SamcamSession; SamcamSession(viewer)",
        "viewer.open_sample('napari-samcam', 'phantom-lesion')",
    ],
    ids=["session", "sample-data"],
)
def test_models_load_after_a_canvas_in_a_fresh_process(entry):
    if not os.environ.get("DISPLAY"):
        pytest.skip("needs an X server (pytest-xvfb provides one)")
    out = _run(
        f"""
        import sys
        import napari

        viewer = napari.Viewer(show=False)   # the canvas: Mesa's LLVM on a GPU-less machine
        {entry}
        import torchvision.ops               # torch._dynamo -> triton (when it may load)
        print("alive", sys.modules.get("triton", "not imported"))
        """
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "alive" in out.stdout


def test_guard_marks_triton_absent_without_a_gpu_device():
    out = _run(
        """
        import os, sys
        from napari_samcam._napari._triton_guard import GPU_DEVICE_FILES
        import napari_samcam._napari
        gpu = any(os.path.exists(d) for d in GPU_DEVICE_FILES)
        print(gpu, "triton" in sys.modules and sys.modules["triton"] is None)
        try:
            import triton  # noqa: F401
            print("importable")
        except ImportError:
            print("absent")
        """
    )
    assert out.returncode == 0, out.stderr[-3000:]
    gpu, marked = out.stdout.split()[:2]
    if sys.platform.startswith("linux") and gpu == "False":
        assert marked == "True" and out.stdout.split()[2] == "absent"
    else:
        assert marked == "False"


def test_core_api_is_not_guarded():
    """The guard belongs to the napari side: importing the core leaves triton alone."""
    out = _run("import sys, napari_samcam; print('triton' in sys.modules)")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "False"
