"""The viewer stays responsive while LiteMedSAM computes an embedding in the widget's worker.

A QTimer fires every 10 ms on the GUI thread and records the gaps between its ticks while a real
LiteMedSAM embedding of the chest radiograph (about 1 s on one core of a 2-core CPU) runs in the
worker. The longest gap is the longest event-loop stall the user would feel.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

# triton (imported by torch._dynamo, which torchvision.ops and transformers' image processors
# import) crashes the process when it is first imported after Mesa's software OpenGL has loaded
# its own LLVM, i.e. after a viewer exists on a machine without GPU: import it up front.
with contextlib.suppress(ImportError):
    import torch._dynamo  # noqa: F401

from napari_samcam._napari._layers import box_to_rectangle
from napari_samcam._napari._session import SamcamSession

pytestmark = [pytest.mark.gui, pytest.mark.slow]

#: The longest acceptable event-loop stall, in seconds.
MAX_STALL = 0.2


class StallMeter:
    """Records the gaps between ticks of a 10 ms QTimer on the GUI thread."""

    def __init__(self, interval_ms: int = 10):
        from qtpy.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.ticks: list[float] = []

    def _tick(self):
        self.ticks.append(time.perf_counter())

    def start(self):
        self.ticks = [time.perf_counter()]
        self.timer.start()

    def stop(self):
        self.timer.stop()
        self.ticks.append(time.perf_counter())

    def gaps(self, start: float = -np.inf, end: float = np.inf) -> np.ndarray:
        """Gaps between consecutive ticks whose end falls in ``[start, end]``."""
        ticks = np.asarray(self.ticks)
        gaps = np.diff(ticks)
        keep = (ticks[1:] >= start) & (ticks[1:] <= end)
        return gaps[keep]


def test_no_stall_while_litemedsam_embeds_in_the_worker(make_napari_viewer, qtbot, litemedsam):
    from napari_samcam._qt._widget import SamcamWidget

    viewer = make_napari_viewer()
    (image,) = viewer.open_sample("napari-samcam", "chest-radiograph")
    height, width = image.data.shape
    lung = (height // 5, width // 10, 4 * height // 5, width // 2)
    viewer.add_shapes(
        [box_to_rectangle(lung)], shape_type="rectangle", name="lung box", scale=image.scale
    )
    # context=None: one embedding of the whole image, the long step
    session = SamcamSession(viewer, segmenter=litemedsam, context=None)
    widget = SamcamWidget(viewer, session=session)
    viewer.window.add_dock_widget(widget)
    widget.shapes.value = viewer.layers["lung box"]
    litemedsam.clear_cache()
    calls = litemedsam.encoder_calls

    steps: list[tuple[float, str]] = []
    widget.runner.step.connect(lambda text: steps.append((time.perf_counter(), text)))
    meter = StallMeter()
    meter.start()
    started = time.perf_counter()
    assert widget.segment_button.isEnabled()
    widget.segment_button.click()
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=120000)
    meter.stop()

    assert litemedsam.encoder_calls == calls + 1  # the embedding really ran in this job
    embed_start = next(t for t, text in steps if "embedding" in text)
    embed_end = next(t for t, text in steps if text.endswith("SAM boxes"))
    assert embed_end - embed_start > 0.2 and len(meter.gaps(embed_start, embed_end)) > 10
    during = meter.gaps(embed_start, embed_end)
    job = meter.gaps(started, meter.ticks[-1])
    longest_embedding, longest_job = float(during.max()), float(job.max())
    print(
        f"embedding {embed_end - embed_start:.2f} s; longest stall during it "
        f"{longest_embedding * 1000:.0f} ms (ticks {len(during)}), during the whole job incl. "
        f"showing the result {longest_job * 1000:.0f} ms"
    )
    assert longest_embedding < MAX_STALL
    regions = viewer.layers[f"{image.name} box regions"]
    assert len(regions.features) == 1 and regions.features["area"].iloc[0] > 1000
