"""The dock widget driven only as a user drives it: real clicks and key presses on its controls.

Buttons get ``qtbot.mouseClick``, drop-downs are set the way a user picks an item, text fields are
typed into and file dialogs are answered by patching ``QFileDialog``. Nothing here calls a slot
of the widget. The classifier is the built-in ``lesion-detector``; SAM is a tiny random-weight
model for the mechanics and the built-in LiteMedSAM where the masks matter (marked ``slow``).
"""

from __future__ import annotations

import contextlib

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

# torch._dynamo pulls in triton, whose LLVM clashes with the one software OpenGL loads for a
# napari canvas: import it before any viewer exists.
with contextlib.suppress(ImportError):
    import torch._dynamo  # noqa: F401

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog

pytestmark = pytest.mark.gui

JOB_TIMEOUT_MS = 120_000


# -- how a user works the controls --------------------------------------------------------------
def click(qtbot, button) -> None:
    """A left click on a button (it must be enabled and shown, as for a user)."""
    assert button.isEnabled(), f"{button.text()!r} is disabled"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def choose(combo, text: str) -> None:
    """Pick the item of a drop-down whose text starts with ``text``, as a user picks it."""
    native = getattr(combo, "native", combo)
    items = [native.itemText(i) for i in range(native.count())]
    matches = [i for i, item in enumerate(items) if item.startswith(text)]
    assert matches, f"no item {text!r} in {items}"
    native.setCurrentIndex(matches[0])


def type_into(qtbot, field, text: str) -> None:
    """Select all of a text field and type ``text`` over it."""
    native = getattr(field, "native", field)
    edit = native.lineEdit() if hasattr(native, "lineEdit") else native
    edit.selectAll()
    qtbot.keyClick(edit, Qt.Key.Key_Delete)
    qtbot.keyClicks(edit, text)


def wait_for_job(widget, qtbot, timeout: int = JOB_TIMEOUT_MS) -> None:
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=timeout)


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture
def notes(monkeypatch):
    """Every notification the plugin shows, as ``(severity, text)``."""
    shown: list[tuple[str, str]] = []
    for module in ("napari_samcam._qt._widget", "napari_samcam._qt._runner"):
        for severity in ("error", "warning", "info"):
            name = f"show_{severity}"
            with contextlib.suppress(AttributeError):
                monkeypatch.setattr(
                    f"{module}.{name}", lambda text, s=severity: shown.append((s, str(text)))
                )
    return shown


def errors_in(notes) -> list[str]:
    return [text for severity, text in notes if severity == "error"]


def dock_widget(viewer, qtbot, segmenter=None):
    """Open the dock widget from the plugin menu entry (as napari does); optionally give its
    session a tiny SAM so that the mechanics run in milliseconds."""
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-samcam", "Saliency localization")
    if segmenter is not None:
        widget.session.segmenter_spec = segmenter
    return widget


def open_sample(viewer, key: str):
    layers = viewer.open_sample("napari-samcam", key)
    return next(lyr for lyr in layers if lyr._type_string == "image")


# -- defect 1: Export CSV… and Save session… -----------------------------------------------------
def test_export_and_save_ask_for_a_file_and_write_it(
    make_napari_viewer, qtbot, tiny_segmenter, notes, tmp_path, monkeypatch
):
    viewer = make_napari_viewer()
    open_sample(viewer, "phantom-lesion")
    widget = dock_widget(viewer, qtbot, tiny_segmenter)
    click(qtbot, widget.explain_button)
    wait_for_job(widget, qtbot)
    click(qtbot, widget.segment_button)
    wait_for_job(widget, qtbot)

    asked: list[str] = []

    def answer(path):
        def dialog(*args, **kwargs):
            asked.append(args[1] if len(args) > 1 else kwargs.get("caption", ""))
            return str(path), ""

        return staticmethod(dialog)

    csv = tmp_path / "metrics.csv"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", answer(csv))
    click(qtbot, widget.export_button)
    assert errors_in(notes) == []
    assert len(asked) == 1 and csv.is_file()
    import pandas as pd

    table = pd.read_csv(csv)
    assert table["region_source"].tolist() == ["sam-box"]

    folder = tmp_path / "case.samcam"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", answer(folder))
    click(qtbot, widget.save_button)
    assert errors_in(notes) == []
    assert (folder / "samcam-session.json").is_file()

    # a dialog closed without a name writes nothing and says nothing
    monkeypatch.setattr(QFileDialog, "getSaveFileName", answer(""))
    n_notes = len(notes)
    click(qtbot, widget.export_button)
    click(qtbot, widget.save_button)
    assert len(notes) == n_notes


# -- defect 3: the status line ends on the final state -------------------------------------------
def shown_texts(label) -> list[str]:
    """Record every text a QLabel is given (the status line the user reads)."""
    texts: list[str] = []
    set_text = label.setText

    def recording(text):
        texts.append(text)
        set_text(text)

    label.setText = recording
    return texts


def test_status_ends_on_the_final_state_of_each_job(
    make_napari_viewer, qtbot, tiny_segmenter, notes
):
    # a shown window: napari's progress bars then process events while they update, which
    # delivered the job's later signals inside an earlier step's handler
    viewer = make_napari_viewer(show=True)
    open_sample(viewer, "phantom-lesion")
    widget = dock_widget(viewer, qtbot, tiny_segmenter)
    texts = shown_texts(widget.status)
    steps = ["loading classifier", "classifier loaded", "loading classifier", "predicting"]
    for button, title, expected in (
        *[(widget.load_button, "Load classifier", steps)] * 4,  # cached: the fastest jobs
        (widget.explain_button, "Explain", ["loading classifier", "gradcam"]),
        (widget.segment_button, "Segment", ["loading SAM", "image embedding", "SAM boxes"]),
    ):
        texts.clear()
        click(qtbot, button)
        wait_for_job(widget, qtbot)
        qtbot.wait(100)  # any late signal would arrive now
        final = texts[-1]
        assert final.startswith(f"{title}: done"), texts
        shown_steps = [t.removeprefix(f"{title}: ") for t in texts if t.startswith(title)][:-1]
        assert [s for s in shown_steps if s in expected] == expected, texts  # in job order
        assert widget.status.text() == final
    assert "region(s)" in widget.status.text()  # the final state says what came out
    assert errors_in(notes) == []


# -- defect 4: Cancel ----------------------------------------------------------------------------
def test_cancel_ends_with_cancelled_and_a_notification(
    make_napari_viewer, qtbot, tiny_segmenter, notes
):
    viewer = make_napari_viewer()
    open_sample(viewer, "phantom-stack")
    widget = dock_widget(viewer, qtbot, tiny_segmenter)
    click(qtbot, widget.load_button)
    wait_for_job(widget, qtbot)
    n_layers = len(viewer.layers)
    click(qtbot, widget.explain_all_button)
    qtbot.waitUntil(lambda: "gradcam (slice" in widget.status.text(), timeout=JOB_TIMEOUT_MS)
    click(qtbot, widget.cancel_button)
    wait_for_job(widget, qtbot)
    qtbot.wait(50)
    assert widget.status.text() == "Explain all slices: cancelled"
    assert ("info", "Explain all slices cancelled.") in notes
    assert len(viewer.layers) == n_layers  # nothing applied
    assert not widget.cancel_button.isEnabled() and widget.explain_all_button.isEnabled()
