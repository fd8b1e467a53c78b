"""Steps run one per turn of the event loop, in order, even from a queue nothing else keeps."""

from __future__ import annotations

import gc
import itertools
import time

import pytest

pytest.importorskip("pytestqt")

from napari_samcam._qt._heartbeat import process_events_for
from napari_samcam._qt._turns import TurnQueue

pytestmark = pytest.mark.gui


def test_steps_run_in_order_a_pause_apart_from_a_queue_nothing_keeps(qtbot):
    ran = []

    def start():
        queue = TurnQueue(20)
        for k in range(3):
            queue(lambda k=k: ran.append((k, time.perf_counter())))
        queue(lambda: queue(lambda: ran.append(("added by a step", time.perf_counter()))))

    start()
    gc.collect()  # the queue is referenced only by its own scheduled step
    assert process_events_for(5, lambda: len(ran) == 4)
    assert [k for k, _ in ran] == [0, 1, 2, "added by a step"]
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(ran)]
    assert min(gaps) >= 0.015  # one per pause, never two in the same turn


def test_a_failing_step_is_logged_and_the_next_still_runs(qtbot, caplog):
    ran = []
    queue = TurnQueue(10, lambda: "opening layers")
    queue(lambda: 1 / 0)
    queue(lambda: ran.append("next"))
    assert queue.pending
    assert process_events_for(5, lambda: ran == ["next"])
    assert not queue.pending
    assert "opening layers: a step failed" in caplog.text
