"""Steps run on the GUI thread one per turn of the event loop.

A :class:`TurnQueue` is the :data:`~napari_samcam._napari._later.Later` of the dock widget and
of the menu actions that open samples and sessions: each step runs a short pause after the one
before it, so that the canvas draws and answers in between (see
:func:`~napari_samcam._napari._later.add_hidden`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from qtpy.QtCore import QTimer

logger = logging.getLogger(__name__)


class TurnQueue:
    """Runs the steps given to it in order, one per ``pause_ms``.

    Parameters
    ----------
    pause_ms : int
        Milliseconds between two steps.
    describe : callable, optional
        What the steps are doing, for the log line of a step that fails (the later steps
        still run).
    """

    def __init__(self, pause_ms: int, describe: Callable[[], str] = lambda: "showing layers"):
        self.pause_ms = pause_ms
        self._describe = describe
        self._steps: deque[Callable[[], None]] = deque()

    def __call__(self, step: Callable[[], None]) -> None:
        self._steps.append(step)
        if len(self._steps) == 1:
            self._schedule()

    def _schedule(self) -> None:
        # a lambda, not the bound method: Qt holds a bound method's object weakly, and a queue
        # that nothing else keeps (a menu action's) was collected with its steps
        QTimer.singleShot(self.pause_ms, lambda: self._next())

    @property
    def pending(self) -> bool:
        """Whether steps are still to run."""
        return bool(self._steps)

    def _next(self) -> None:
        try:
            self._steps[0]()
        except Exception as exc:  # a layer removed meanwhile, ...: the rest still runs
            logger.error("%s: a step failed", self._describe(), exc_info=exc)
        finally:
            self._steps.popleft()
            if self._steps:
                self._schedule()
