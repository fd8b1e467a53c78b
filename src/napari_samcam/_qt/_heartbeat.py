"""How long the GUI thread stays busy: the gaps between ticks of a short QTimer.

A timer on the GUI thread fires every ``interval_ms``; while the thread is busy it cannot fire,
so the longest gap between two ticks is the longest stall a user would feel (a frozen canvas,
a button that does not answer). The test suite and ``python -m benchmarks`` measure every action
of the dock widget this way.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

#: The longest acceptable stall of the GUI thread, in seconds.
MAX_STALL_S = 0.3
#: On a busy machine the timer itself is late: a stall may be this many idle gaps long.
IDLE_FACTOR = 3.0


#: An action that adds a layer stalls at least as long as napari takes to add one, and its
#: longest turn may also hold the canvas redraw that follows (60-100 ms for an 8000² image with
#: software OpenGL): the limit is at least this many times napari's insert, measured in the same
#: viewer (:func:`layer_insert_floor`).
FLOOR_FACTOR = 1.5


def stall_limit(idle_gap_s: float, contention: float = 1.0, floor_s: float = 0.0) -> float:
    """The longest acceptable stall: :data:`MAX_STALL_S` scaled by the machine's measured
    ``contention`` (see :func:`cpu_contention`), :data:`IDLE_FACTOR` times the longest gap
    measured with nothing to do in the same process, or :data:`FLOOR_FACTOR` times napari's
    own stall for adding a layer (``floor_s``), whichever is largest."""
    return max(
        MAX_STALL_S * max(1.0, float(contention)),
        IDLE_FACTOR * float(idle_gap_s),
        FLOOR_FACTOR * float(floor_s),
    )


def layer_insert_floor(viewer, shape: tuple[int, int] = (512, 512), repeats: int = 3) -> float:
    """The longest stall of napari adding one empty Labels layer of ``shape`` to ``viewer`` and
    drawing it (``repeats`` times, each removed again): the shortest that an action which adds
    a layer can stall at this moment.

    On the shared virtual machines this runs on, napari's own layer insert varies from 0.1 to
    0.35 s from one moment to the next (page faults, its vispy line patterns, layer controls).
    """
    import numpy as np

    stalls, added = [], []

    def add() -> None:
        added.append(viewer.add_labels(np.zeros(shape, dtype=np.uint16), name="heartbeat floor"))

    for _ in range(repeats):
        stalls.append(worst_stall(add))
        viewer.layers.remove(added.pop())
        process_events_for(0.2)
    return max(stalls)


def cpu_contention(seconds: float = 0.5) -> float:
    """How much longer than its own CPU time a fixed workload takes now: wall time / CPU time
    of this thread over about ``seconds`` of pure-Python work.

    About 1 on an idle machine; on cores shared with other busy processes the thread waits for
    its turn, and the ratio grows with the load (no reference figure from another machine).
    """
    wall_start, cpu_start = time.perf_counter(), time.thread_time()
    total = 0
    while time.thread_time() - cpu_start < seconds / 4 and time.perf_counter() - wall_start < (
        4 * seconds
    ):
        for i in range(5000):
            total += i * i % 7
    wall, cpu = time.perf_counter() - wall_start, time.thread_time() - cpu_start
    return wall / cpu if cpu > 0 else 1.0


class Heartbeat:
    """Records the ticks of a QTimer on the GUI thread.

    Parameters
    ----------
    interval_ms : int
        The timer's interval.
    """

    def __init__(self, interval_ms: int = 20):
        from qtpy.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.ticks: list[float] = []

    def _tick(self) -> None:
        self.ticks.append(time.perf_counter())

    def start(self) -> None:
        self.ticks = [time.perf_counter()]
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()
        self.ticks.append(time.perf_counter())

    def longest_gap(self) -> float:
        """The longest gap between consecutive ticks, in seconds (0 before two ticks)."""
        ticks = self.ticks
        return max((b - a for a, b in itertools.pairwise(ticks)), default=0.0)


def process_events_for(seconds: float, until: Callable[[], bool] | None = None) -> bool:
    """Run the Qt event loop for ``seconds`` or until ``until()``; whether it became true."""
    from qtpy.QtCore import QCoreApplication, QEventLoop

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        if until is not None and until():
            return True
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 10)
        time.sleep(0.002)
    return until is not None and bool(until())


def worst_stall(
    action: Callable[[], object],
    done: Callable[[], bool] | None = None,
    *,
    timeout_s: float = 120.0,
    settle_s: float = 0.3,
    interval_ms: int = 20,
) -> float:
    """The longest stall of the GUI thread while ``action()`` runs and until ``done()``.

    The event loop keeps running after ``action`` returns (its work may continue off the GUI
    thread and come back to it) until ``done()`` is true, then ``settle_s`` longer. Raises
    TimeoutError when ``done`` is not true within ``timeout_s``.
    """
    beat = Heartbeat(interval_ms)
    beat.start()
    process_events_for(0.05)
    action()
    if done is not None and not process_events_for(timeout_s, done):
        beat.stop()
        raise TimeoutError(f"the action did not finish within {timeout_s:.0f} s")
    process_events_for(settle_s)
    beat.stop()
    return beat.longest_gap()


def idle_gap(seconds: float = 1.0, interval_ms: int = 20) -> float:
    """The longest gap of the heartbeat with nothing to do, in seconds (the machine's noise)."""
    return worst_stall(lambda: None, settle_s=seconds, interval_ms=interval_ms)
