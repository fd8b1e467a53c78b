"""Run a session job in a worker thread with a napari progress bar, cancellation and
notifications instead of tracebacks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from napari.utils import cancelable_progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, QTimer, Signal

from .._napari._later import run_now
from .._napari._session import JobCancelled, Step, limit_torch_threads
from .._napari._warmup import freeze_survivors
from ..errors import SamcamError
from ._turns import TurnQueue

logger = logging.getLogger(__name__)

#: Milliseconds between two steps of showing a job's result (see ``JobRunner.later``).
STEP_PAUSE_MS = 30


@dataclass
class Outcome:
    """How a job ended: its apply callable, a cancellation, or an error."""

    apply: Callable[[], Any] | None = None
    cancelled: bool = False
    error: BaseException | None = None


def guarded(job, *, leave_free: int = 1):
    """Wrap a job so that it never raises: errors and cancellation become an :class:`Outcome`.

    Runs in the worker thread. Torch is limited to all cores but ``leave_free`` so that the
    GUI thread keeps a core (see :func:`~napari_samcam._napari._session.limit_torch_threads`).
    What the job left alive (a loaded model, its imports) is then kept out of the garbage
    collector's full collections (see :func:`~napari_samcam._napari._warmup.freeze_survivors`).
    """
    try:
        if leave_free:
            limit_torch_threads(leave_free)
        apply = yield from job
    except JobCancelled:
        return Outcome(cancelled=True)
    except Exception as exc:  # reported as a notification on the GUI thread
        return Outcome(error=exc)
    finally:
        freeze_survivors()
    return Outcome(apply=apply)


def error_message(title: str, exc: BaseException) -> str:
    """The notification text of a failed job: the project's own message, or a short summary."""
    if isinstance(exc, SamcamError):
        return f"{title}: {exc}"
    return (
        f"{title} failed ({type(exc).__name__}: {exc}). Check the inputs and settings; the full "
        "traceback is in the log."
    )


class _JobProgress(cancelable_progress):
    """A napari progress bar whose Cancel button (in the activity dock) stops the job."""

    def cancel(self) -> None:
        super().cancel()
        if self.cancel_callback is not None:
            self.cancel_callback()


class JobRunner(QObject):
    """Runs one session job at a time off the GUI thread.

    Signals
    -------
    busy(bool)
        A job started (True) or ended (False).
    step(str)
        Progress text of the running job.
    finished(str, object)
        Title and return value of the job's apply callable, once its result is in the viewer.
    """

    busy = Signal(bool)
    step = Signal(str)
    finished = Signal(str, object)

    def __init__(self, session, parent=None, *, leave_free: int = 1):
        super().__init__(parent)
        self.session = session
        self.leave_free = leave_free
        self.worker = None
        self._progress = None
        self._title = ""
        self._ended = False  # the running job's final state was shown
        self._cancelling = False
        # the steps of showing a result still to run
        self._turns = TurnQueue(STEP_PAUSE_MS, lambda: f"{self._title}: showing the result")
        self._unapplied: Outcome | None = None  # a job's result waiting for its turn
        self._finish_waiting = False

    @property
    def running(self) -> bool:
        """Whether a job is running, or its new layers are still to be shown."""
        return self.worker is not None or self._turns.pending

    def later(self, step: Callable[[], None]) -> None:
        """Run a step of showing a result (a job's, or new layers of the widget) a turn of the
        event loop after the step before it (see :class:`._turns.TurnQueue`)."""
        self._turns(step)

    def start(self, title: str, make_job: Callable[[], Any]) -> bool:
        """Create the job (on this thread: it reads the layers) and start it in a worker.

        Errors while creating the job (no image, no prompt, ...) are shown as notifications.
        Returns whether a job was started.
        """
        from napari.qt.threading import create_worker

        if self.running:
            show_info(f"{self._title} is still running; wait for it or click Cancel.")
            return False
        try:
            job = make_job()
        except Exception as exc:
            if not isinstance(exc, SamcamError):
                logger.error("%s could not start", title, exc_info=exc)
            # the status line must not keep the previous job's "done"
            self.step.emit(f"{title}: not started (see the notification)")
            show_error(error_message(title, exc))
            return False
        self.session.clear_cancel()
        self._title = title
        self._ended = False
        self._cancelling = False
        worker = create_worker(
            guarded, job, leave_free=self.leave_free, _start_thread=False, _ignore_errors=True
        )
        worker.yielded.connect(self._on_step)
        worker.returned.connect(self._on_returned)
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._progress = _JobProgress(total=1, desc=title, cancel_callback=self.cancel)
        self.busy.emit(True)
        worker.start()
        return True

    def cancel(self) -> None:
        """Stop the running job at its next step; nothing of it is applied."""
        if self.worker is None or self._ended:
            return
        self._cancelling = True
        self.session.cancel()
        self.worker.quit()
        self.step.emit(f"{self._title}: cancelling…")

    def wait(self, timeout_ms: int = 60000) -> None:
        """Block until the running job's thread has ended (tests, closing)."""
        from qtpy.QtCore import QCoreApplication, QElapsedTimer

        timer = QElapsedTimer()
        timer.start()
        while self.worker is not None and timer.elapsed() < timeout_ms:
            QCoreApplication.processEvents()

    # -- worker signals (GUI thread) ----------------------------------------------------------
    def _on_step(self, step: Step) -> None:
        # napari's progress bar processes events while it updates, so later steps and the end of
        # the job can be handled inside this call: show the text first, and nothing once ended.
        if self._ended or self._cancelling:
            return
        text = f"{self._title}: {step.message}"
        self.step.emit(text)
        progress = self._progress
        if progress is not None:
            if progress.total != step.total:
                progress.total = step.total
            delta = step.done - progress.n
            if delta > 0:
                progress.update(delta)
            if not self._ended:
                progress.set_description(text)

    def _on_returned(self, outcome: Outcome) -> None:
        if outcome.cancelled:
            self._report_cancelled()
            return
        if outcome.error is not None:
            exc = outcome.error
            if not isinstance(exc, SamcamError):
                logger.error("%s failed", self._title, exc_info=exc)
            self._end(f"{self._title}: failed")
            show_error(error_message(self._title, exc))
            return
        # applied from the event loop itself: this signal can arrive inside napari's progress
        # bar update (which processes events), and the result's layers and the canvas redraw
        # that follows it then froze the viewer as one stall
        self._unapplied = outcome
        QTimer.singleShot(STEP_PAUSE_MS, self._apply)

    def _apply(self) -> None:
        outcome, self._unapplied = self._unapplied, None
        if outcome is None:
            return
        if self._cancelling:
            self._report_cancelled()
        else:
            self._apply_outcome(outcome)
        if self._finish_waiting:
            self._finish_waiting = False
            self._on_finished()

    def _apply_outcome(self, outcome: Outcome) -> None:
        said: list[str] = []
        self.session.status.connect(said.append)
        self.session.later = self.later
        try:
            value = outcome.apply() if callable(outcome.apply) else outcome.apply
        except Exception as exc:
            if not isinstance(exc, SamcamError):
                logger.error("%s: showing the result failed", self._title, exc_info=exc)
            self._end(f"{self._title}: failed")
            show_error(error_message(self._title, exc))
            return
        finally:
            self.session.status.disconnect(said.append)
            self.session.later = run_now
        self._end(f"{self._title}: done" + (f" ({said[-1]})" if said else ""))
        title = self._title
        self.later(lambda: self.finished.emit(title, value))  # once the result is in the viewer

    def _on_aborted(self) -> None:
        self._report_cancelled()

    def _report_cancelled(self) -> None:
        if self._ended:
            return
        self._end(f"{self._title}: cancelled")
        show_info(f"{self._title} cancelled.")

    def _end(self, text: str) -> None:
        """Show the job's final state; later step messages are dropped."""
        self._ended = True
        self.step.emit(text)

    def _on_finished(self) -> None:
        if self._unapplied is not None:  # the result is still to be shown: finish after it
            self._finish_waiting = True
            return
        if not self._ended:
            # a cancelled worker emits neither `returned` nor `aborted` when the job itself
            # stopped first (JobCancelled at its next step)
            if self._cancelling:
                self._report_cancelled()
            else:
                self._end(f"{self._title}: ended")
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self.worker = None
        self.busy.emit(False)
